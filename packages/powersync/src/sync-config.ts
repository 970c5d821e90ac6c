import {
  PrecompiledSyncConfig,
  SqlSyncRules,
  type SyncConfigWithErrors,
  serializeSyncPlan,
} from '@powersync/service-sync-rules';
import type { SerializedSyncPlan, UpdateSyncRulesOptions } from './types.js';

/**
 * `UpdateSyncRulesOptions` from sync-rules YAML (what service-core's `updateSyncRulesFromYaml` returns): the
 * parsed config, plus the serialized plan when the YAML uses the sync streams compiler.
 */
export function syncRulesFromYaml(
  yaml: string,
  options: Omit<UpdateSyncRulesOptions, 'config'> & { validate?: boolean } = {},
): UpdateSyncRulesOptions {
  const { validate, ...rest } = options;
  const parsed: SyncConfigWithErrors = SqlSyncRules.fromYaml(yaml, {
    schema: undefined,
    defaultSchema: options.defaultSchema ?? 'not_applicable',
    throwOnError: validate ?? false,
  });
  let plan: SerializedSyncPlan | null = null;
  const { config, errors } = parsed;
  if (config instanceof PrecompiledSyncConfig) {
    const eventDescriptors: Record<string, string[]> = {};
    for (const event of config.eventDescriptors) eventDescriptors[event.name] = event.sourceQueries.map((q) => q.sql);
    plan = {
      compatibility: config.compatibility.serialize(),
      plan: serializeSyncPlan(config.plan),
      eventDescriptors,
      errors: errors.map((e) => ({
        level: e.type,
        message: e.message,
        location: e.location ? { start_offset: e.location.start, end_offset: e.location.end } : undefined,
      })),
    };
  }
  return { config: { yaml: config.content, plan, parsed }, ...rest };
}
