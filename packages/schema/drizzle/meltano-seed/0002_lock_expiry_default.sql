ALTER TABLE "__PGSTATE_SCHEMA__"."meltano_state_locks" ADD COLUMN IF NOT EXISTS "expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "__PGSTATE_SCHEMA__"."meltano_state_locks" ALTER COLUMN "expires_at" SET DEFAULT now() + interval '5 minutes';--> statement-breakpoint
UPDATE "__PGSTATE_SCHEMA__"."meltano_state_locks" SET "expires_at" = now() + interval '5 minutes' WHERE "expires_at" IS NULL;
