CREATE TABLE "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE__" (
	"key" text PRIMARY KEY NOT NULL,
	"data" "bytea" NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "__PGSTATE_TABLE___key_prefix_idx" ON "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE__" USING btree ("key" text_pattern_ops);