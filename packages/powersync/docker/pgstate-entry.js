// pgstate-entry.js, placed next to the service's entry.js (/app/service/lib in the official image)

import { registerPgStateStorage } from '@pgstate/powersync/service';
import { logger } from '@powersync/lib-services-framework';
import { modules } from '@powersync/service-core';

registerPgStateStorage(modules.ModuleManager, { logger }); // storage + replication logs go through the service's logger
await import('./entry.js'); // the stock entry, unchanged: start [-r unified|api|sync], compact, migrate, teardown
