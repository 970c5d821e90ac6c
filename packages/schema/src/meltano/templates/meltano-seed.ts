// drizzle-kit input for drizzle/meltano-seed: fixed table names, placeholder schema.

import { SCHEMA_PLACEHOLDER } from '../../names.js';
import { meltanoSeedTables } from '../tables.js';

export const { state: meltanoState, locks: meltanoStateLocks } = meltanoSeedTables({ schema: SCHEMA_PLACEHOLDER });
