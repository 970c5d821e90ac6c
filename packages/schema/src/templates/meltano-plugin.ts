// drizzle-kit input for drizzle/meltano-plugin.
import { meltanoStateTable } from '../meltano.js';
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from '../names.js';

export const state = meltanoStateTable({ schema: SCHEMA_PLACEHOLDER, table: TABLE_PLACEHOLDER, layout: 'plugin' });
