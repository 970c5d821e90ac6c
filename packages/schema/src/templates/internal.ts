// drizzle-kit input for drizzle/internal: the migration journal and leases under a placeholder schema.
import { leasesTable, migrationJournalTable } from '../internal.js';
import { SCHEMA_PLACEHOLDER } from '../names.js';

export const migrations = migrationJournalTable({ schema: SCHEMA_PLACEHOLDER });
export const leases = leasesTable({ schema: SCHEMA_PLACEHOLDER });
