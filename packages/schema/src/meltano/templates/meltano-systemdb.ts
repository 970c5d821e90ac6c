// drizzle-kit input for drizzle/meltano-systemdb.

import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from '../../names.js';
import { meltanoStateTable } from '../tables.js';

export const state = meltanoStateTable({ schema: SCHEMA_PLACEHOLDER, table: TABLE_PLACEHOLDER, layout: 'systemdb' });
