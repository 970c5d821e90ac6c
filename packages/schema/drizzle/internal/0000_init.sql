CREATE TABLE "__PGSTATE_SCHEMA__"."leases" (
	"name" text PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"acquired_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"heartbeat_at" timestamp with time zone,
	"info" jsonb
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."migrations" (
	"config" text NOT NULL,
	"migration" text NOT NULL,
	"adapter" text NOT NULL,
	"schema_name" text NOT NULL,
	"table_name" text,
	"hash" text NOT NULL,
	"applied_at" timestamp with time zone DEFAULT now() NOT NULL,
	"applied_by" text DEFAULT current_user NOT NULL,
	CONSTRAINT "migrations_config_migration_pk" PRIMARY KEY("config","migration")
);
