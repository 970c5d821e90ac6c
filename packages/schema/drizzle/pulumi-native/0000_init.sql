CREATE TABLE "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE__" (
	"key" text PRIMARY KEY NOT NULL,
	"data" json NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE___objects" (
	"key" text PRIMARY KEY NOT NULL,
	"size" bigint NOT NULL,
	"md5" text NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE___stacks" (
	"key" text PRIMARY KEY NOT NULL,
	"project" text NOT NULL,
	"stack" text NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"size" bigint NOT NULL,
	"last_update" text,
	"resource_count" integer
);
--> statement-breakpoint
CREATE INDEX "__PGSTATE_TABLE___key_prefix_idx" ON "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE__" USING btree ("key" text_pattern_ops);