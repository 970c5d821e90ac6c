CREATE TABLE "__PGSTATE_SCHEMA__"."meltano_state" (
	"state_id" varchar(900) PRIMARY KEY NOT NULL,
	"partial_state" text,
	"completed_state" text,
	"updated_at" timestamp DEFAULT now()
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."meltano_state_locks" (
	"state_id" varchar(900) PRIMARY KEY NOT NULL,
	"locked_at" timestamp DEFAULT now(),
	"lock_id" varchar(255),
	"expires_at" timestamp with time zone
);
