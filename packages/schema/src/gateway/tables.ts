import { bigint, foreignKey, integer, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { bytea, schemaFor } from '../names.js';

/** `public`, like every other adapter's default: the tables are schema-qualified, never left to search_path. */
export const GATEWAY_DEFAULT_SCHEMA = 'public';
export const GATEWAY_UPLOADS_TABLE = 'pgstate_s3_uploads';
export const GATEWAY_UPLOAD_PARTS_TABLE = 'pgstate_s3_upload_parts';

export interface GatewayNames {
  /** Default `public`. Table names are fixed (several gateways on one database must find the same tables). */
  schema?: string;
}

/**
 * The S3 gateway's multipart bookkeeping: one row per upload in flight and one per part, so any gateway on the
 * database can continue or complete an upload another one started. Constraint names are PostgreSQL's own defaults,
 * the names the gateway's former inline DDL gave them (drizzle's default foreign-key name would exceed 63 bytes).
 */
export function gatewayTables(names: GatewayNames = {}) {
  const schema = schemaFor(names.schema ?? GATEWAY_DEFAULT_SCHEMA);
  const uploads = schema.table(GATEWAY_UPLOADS_TABLE, {
    uploadId: text('upload_id').primaryKey(),
    bucket: text('bucket').notNull(),
    key: text('key').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  });
  const parts = schema.table(
    GATEWAY_UPLOAD_PARTS_TABLE,
    {
      uploadId: text('upload_id').notNull(),
      partNumber: integer('part_number').notNull(),
      etag: text('etag').notNull(),
      size: bigint('size', { mode: 'number' }).notNull(),
      data: bytea('data').notNull(),
      uploadedAt: timestamp('uploaded_at', { withTimezone: true }).notNull().defaultNow(),
    },
    (t) => [
      primaryKey({ name: `${GATEWAY_UPLOAD_PARTS_TABLE}_pkey`, columns: [t.uploadId, t.partNumber] }),
      foreignKey({
        name: `${GATEWAY_UPLOAD_PARTS_TABLE}_upload_id_fkey`,
        columns: [t.uploadId],
        foreignColumns: [uploads.uploadId],
      }).onDelete('cascade'),
    ],
  );
  return { uploads, parts };
}

export type GatewayTables = ReturnType<typeof gatewayTables>;
