// drizzle-kit input for drizzle/powersync: every PowerSync storage table under a placeholder schema.
import { SCHEMA_PLACEHOLDER } from '../../names.js';
import { powersyncTables } from '../tables.js';

const tables = powersyncTables({ schema: SCHEMA_PLACEHOLDER });
export const opIdSequence = tables.opIdSequence;
export const syncRulesIdSequence = tables.syncRulesIdSequence;
export const syncRules = tables.syncRules;
export const sourceTables = tables.sourceTables;
export const bucketData = tables.bucketData;
export const bucketParameters = tables.bucketParameters;
export const currentData = tables.currentData;
export const writeCheckpoints = tables.writeCheckpoints;
export const customWriteCheckpoints = tables.customWriteCheckpoints;
export const instance = tables.instance;
export const locks = tables.locks;
export const connectionReportEvents = tables.connectionReportEvents;
export const serviceMigrations = tables.serviceMigrations;
