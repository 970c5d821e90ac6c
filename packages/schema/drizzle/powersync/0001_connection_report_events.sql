CREATE TABLE "__PGSTATE_SCHEMA__"."connection_report_events" (
	"id" text PRIMARY KEY NOT NULL,
	"user_agent" text NOT NULL,
	"client_id" text NOT NULL,
	"user_id" text NOT NULL,
	"sdk" text NOT NULL,
	"jwt_exp" timestamp with time zone,
	"connected_at" timestamp with time zone NOT NULL,
	"disconnected_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "connection_report_events_connected" ON "__PGSTATE_SCHEMA__"."connection_report_events" USING btree ("connected_at","id");--> statement-breakpoint
CREATE INDEX "connection_report_events_user_client" ON "__PGSTATE_SCHEMA__"."connection_report_events" USING btree ("user_id","client_id","connected_at");--> statement-breakpoint
CREATE INDEX "connection_report_events_client" ON "__PGSTATE_SCHEMA__"."connection_report_events" USING btree ("client_id","connected_at");--> statement-breakpoint
CREATE INDEX "connection_report_events_open" ON "__PGSTATE_SCHEMA__"."connection_report_events" USING btree ("jwt_exp") WHERE "__PGSTATE_SCHEMA__"."connection_report_events"."disconnected_at" IS NULL;