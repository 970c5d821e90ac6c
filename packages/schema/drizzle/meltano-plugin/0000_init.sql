CREATE TABLE "__PGSTATE_SCHEMA__"."__PGSTATE_TABLE__" (
	"state_id" varchar(900) PRIMARY KEY NOT NULL,
	"partial_state" text,
	"completed_state" text,
	"updated_at" timestamp DEFAULT now()
);
