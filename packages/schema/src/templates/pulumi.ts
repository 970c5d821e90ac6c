// drizzle-kit input for drizzle/pulumi: the seed table under placeholder names (see names.ts).
import { SCHEMA_PLACEHOLDER, TABLE_PLACEHOLDER } from '../names.js';
import { pulumiStateTable } from '../pulumi.js';

export const pulumiState = pulumiStateTable({ schema: SCHEMA_PLACEHOLDER, table: TABLE_PLACEHOLDER });
