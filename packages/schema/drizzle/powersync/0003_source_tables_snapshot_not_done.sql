ALTER TABLE "__PGSTATE_SCHEMA__"."source_tables" ALTER COLUMN "snapshot_done" SET DEFAULT false;--> statement-breakpoint
-- Rows resolved before this migration took the old default (done) although the replicator never copied them (it
-- skips tables reported done), so their pre-existing rows never reached clients. Marking them not done makes the
-- replicator copy them: during initial replication, or for an active stream when it next sees the table.
UPDATE "__PGSTATE_SCHEMA__"."source_tables" SET "snapshot_done" = false WHERE "snapshot_done";
