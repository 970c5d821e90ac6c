// drizzle-kit input for drizzle/pulumi: the seed table and pgstate's side tables under placeholder names.
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from '../../names.js';
import { pulumiObjectsTable, pulumiStacksTable, pulumiStateTable } from '../tables.js';

const names = { schema: SCHEMA_PLACEHOLDER, table: TABLE_PLACEHOLDER };
export const pulumiState = pulumiStateTable(names);
export const pulumiObjects = pulumiObjectsTable(names);
export const pulumiStacks = pulumiStacksTable(names);
