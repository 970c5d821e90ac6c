import { validateIdentifier } from '@pgstate/core';
import { type TargetKind, withSchema } from '../resolved.js';
import { POWERSYNC_DEFAULT_SCHEMA, powersyncTables } from './tables.js';

export const powersyncTarget: TargetKind = {
  adapter: 'powersync',
  resolve(target) {
    const schema = validateIdentifier(target.schema ?? POWERSYNC_DEFAULT_SCHEMA, 'schema name');
    // PowerSync keeps its journal in its own schema by default: its least-privilege service user may have rights
    // there only, and every caller (the storage module, `pgstate migrate`, `pgstate doctor`) looks in one place.
    return withSchema('powersync', 'powersync', schema, () => powersyncTables({ schema }), { journalSchema: schema });
  },
};
