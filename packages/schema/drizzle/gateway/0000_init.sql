CREATE TABLE "__PGSTATE_SCHEMA__"."pgstate_s3_upload_parts" (
	"upload_id" text NOT NULL,
	"part_number" integer NOT NULL,
	"etag" text NOT NULL,
	"size" bigint NOT NULL,
	"data" "bytea" NOT NULL,
	"uploaded_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pgstate_s3_upload_parts_pkey" PRIMARY KEY("upload_id","part_number")
);
--> statement-breakpoint
CREATE TABLE "__PGSTATE_SCHEMA__"."pgstate_s3_uploads" (
	"upload_id" text PRIMARY KEY NOT NULL,
	"bucket" text NOT NULL,
	"key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "__PGSTATE_SCHEMA__"."pgstate_s3_upload_parts" ADD CONSTRAINT "pgstate_s3_upload_parts_upload_id_fkey" FOREIGN KEY ("upload_id") REFERENCES "__PGSTATE_SCHEMA__"."pgstate_s3_uploads"("upload_id") ON DELETE cascade ON UPDATE no action;