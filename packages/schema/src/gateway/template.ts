// drizzle-kit input for drizzle/gateway: the S3 gateway's multipart tables under a placeholder schema.
import { SCHEMA_PLACEHOLDER } from '../names.js';
import { gatewayTables } from './tables.js';

const tables = gatewayTables({ schema: SCHEMA_PLACEHOLDER });
export const uploads = tables.uploads;
export const parts = tables.parts;
