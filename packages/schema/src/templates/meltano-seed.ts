// drizzle-kit input for drizzle/meltano-seed: fixed table names, placeholder schema.
import { meltanoSeedTables } from '../meltano.js';
import { SCHEMA_PLACEHOLDER } from '../names.js';

export const { state: meltanoState, locks: meltanoStateLocks } = meltanoSeedTables({ schema: SCHEMA_PLACEHOLDER });
