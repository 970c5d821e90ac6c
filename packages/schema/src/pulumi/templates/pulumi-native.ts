// drizzle-kit input for drizzle/pulumi-native: Pulumi's native table and pgstate's side tables (placeholder names).
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from '../../names.js';
import { pulumiNativeTable, pulumiObjectsTable, pulumiStacksTable } from '../tables.js';

const names = { schema: SCHEMA_PLACEHOLDER, table: TABLE_PLACEHOLDER };
export const pulumiNative = pulumiNativeTable(names);
export const pulumiObjects = pulumiObjectsTable(names);
export const pulumiStacks = pulumiStacksTable(names);
