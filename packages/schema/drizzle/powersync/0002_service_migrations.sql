CREATE TABLE "__PGSTATE_SCHEMA__"."service_migrations" (
	"id" integer PRIMARY KEY NOT NULL,
	"last_run" text NOT NULL,
	"log" jsonb NOT NULL
);
