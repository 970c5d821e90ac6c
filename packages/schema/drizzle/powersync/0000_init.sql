CREATE SEQUENCE "__PGSTATE_SCHEMA__"."op_id_sequence" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE SEQUENCE "__PGSTATE_SCHEMA__"."sync_rules_id_sequence" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."bucket_data" (
	"group_id" integer NOT NULL,
	"bucket_name" text NOT NULL,
	"op_id" bigint NOT NULL,
	"op" text NOT NULL,
	"source_table" text,
	"source_key" "bytea",
	"table_name" text,
	"row_id" text,
	"checksum" bigint NOT NULL,
	"data" text,
	"target_op" bigint,
	CONSTRAINT "bucket_data_group_id_bucket_name_op_id_pk" PRIMARY KEY("group_id","bucket_name","op_id")
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."bucket_parameters" (
	"id" bigint PRIMARY KEY NOT NULL,
	"group_id" integer NOT NULL,
	"source_table" text NOT NULL,
	"source_key" "bytea" NOT NULL,
	"lookup" "bytea" NOT NULL,
	"bucket_parameters" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."current_data" (
	"group_id" integer NOT NULL,
	"source_table" text NOT NULL,
	"source_key" "bytea" NOT NULL,
	"buckets" jsonb NOT NULL,
	"data" "bytea" NOT NULL,
	"lookups" "bytea"[] NOT NULL,
	CONSTRAINT "current_data_group_id_source_table_source_key_pk" PRIMARY KEY("group_id","source_table","source_key")
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."custom_write_checkpoints" (
	"user_id" text NOT NULL,
	"write_checkpoint" bigint NOT NULL,
	"sync_rules_id" integer NOT NULL,
	CONSTRAINT "custom_write_checkpoints_user_id_sync_rules_id_pk" PRIMARY KEY("user_id","sync_rules_id")
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."instance" (
	"id" text PRIMARY KEY NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."locks" (
	"name" text PRIMARY KEY NOT NULL,
	"lock_id" uuid NOT NULL,
	"ts" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."source_tables" (
	"id" text PRIMARY KEY NOT NULL,
	"group_id" integer NOT NULL,
	"connection_id" integer NOT NULL,
	"relation_id" jsonb,
	"schema_name" text NOT NULL,
	"table_name" text NOT NULL,
	"replica_id_columns" jsonb,
	"snapshot_done" boolean DEFAULT true NOT NULL,
	"snapshot_total_estimated_count" bigint,
	"snapshot_replicated_count" bigint,
	"snapshot_last_key" "bytea"
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."sync_rules" (
	"id" integer PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"snapshot_done" boolean DEFAULT false NOT NULL,
	"snapshot_lsn" text,
	"last_checkpoint" bigint,
	"last_checkpoint_lsn" text,
	"no_checkpoint_before" text,
	"slot_name" text NOT NULL,
	"last_checkpoint_ts" timestamp with time zone,
	"last_keepalive_ts" timestamp with time zone,
	"keepalive_op" bigint,
	"last_fatal_error" text,
	"last_fatal_error_ts" timestamp with time zone,
	"content" text NOT NULL,
	"sync_plan" jsonb,
	"storage_version" integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."write_checkpoints" (
	"user_id" text PRIMARY KEY NOT NULL,
	"lsns" jsonb NOT NULL,
	"write_checkpoint" bigint NOT NULL,
	"checkpoint_requested_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "bucket_parameters_lookup" ON "__PGSTATE_SCHEMA__"."bucket_parameters" USING btree ("group_id","lookup","id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "bucket_parameters_source" ON "__PGSTATE_SCHEMA__"."bucket_parameters" USING btree ("group_id","source_table","source_key");--> statement-breakpoint
CREATE INDEX "source_tables_lookup" ON "__PGSTATE_SCHEMA__"."source_tables" USING btree ("group_id","table_name");