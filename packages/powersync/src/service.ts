/**
 * `@pgstate/powersync/service`: plugs `storage.type: pgstate` into a PowerSync service build.
 *
 * The service picks its storage module through the loaders its entry hands to
 * `ModuleManager.registerDynamicModules({ storage, connection })` (service-core at 06b4092fc); the stock entry only
 * lists the built-in storages. `registerPgStateStorage(ModuleManager)` makes every loader map registered from then
 * on also offer `pgstate`, so a custom entry is: register, then run the stock entry unchanged.
 * service-core is not on npm, so the module manager is typed structurally here.
 */
import { PGSTATE_STORAGE_TYPE } from './config.js';
import { PgStateStorageModule } from './module.js';
import type { Logger } from './types.js';

/** service-core's `ModuleLoaders`: storage / connection type -> loads the module serving it. */
export interface ModuleLoaders {
  storage: { [type: string]: () => Promise<unknown> };
  connection: { [type: string]: () => Promise<unknown> };
}

/** The part of service-core's `ModuleManager` this touches. */
export interface ModuleManagerLike {
  registerDynamicModules(loaders: ModuleLoaders): void;
}

export interface PgStateServiceOptions {
  /** The service's logger (e.g. `logger` of `@powersync/lib-services-framework`), handed to the storage module. */
  logger?: Logger;
}

/** `loaders` plus the `pgstate` storage loader (a new object; `loaders` is left as is). */
export function withPgStateStorage(loaders: ModuleLoaders, options: PgStateServiceOptions = {}): ModuleLoaders {
  return {
    ...loaders,
    storage: { ...loaders.storage, [PGSTATE_STORAGE_TYPE]: async () => new PgStateStorageModule(options.logger) },
  };
}

const REGISTERED = Symbol.for('@pgstate/powersync/service.registered');

type Patchable = ModuleManagerLike & { [REGISTERED]?: true };

/**
 * Adds the `pgstate` storage to every `registerDynamicModules` call of a module manager: pass the `ModuleManager`
 * class (all its instances, e.g. the one the stock entry creates) or one instance (then register the loaders after
 * this call). Idempotent.
 */
export function registerPgStateStorage(
  target: ModuleManagerLike | { prototype: ModuleManagerLike },
  options: PgStateServiceOptions = {},
): void {
  const holder: Patchable = 'prototype' in target ? target.prototype : target;
  if (typeof holder.registerDynamicModules !== 'function') {
    throw new TypeError(
      'registerPgStateStorage needs the service\'s ModuleManager (from "@powersync/service-core": modules.ModuleManager) or an instance of it',
    );
  }
  if (holder[REGISTERED]) return;
  const original = holder.registerDynamicModules;
  holder.registerDynamicModules = function (this: ModuleManagerLike, loaders: ModuleLoaders) {
    return original.call(this, withPgStateStorage(loaders, options));
  };
  holder[REGISTERED] = true;
}
