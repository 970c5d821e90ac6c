import pg from 'pg';
import { settingsOf, withClient } from './client.js';
import { validateIdentifier } from './identifiers.js';
import type { ConnectionSettings, SslMode } from './settings.js';

export interface HealthReport {
  server: { version: string; versionNum: number };
  database: string;
  currentUser: string;
  tls: {
    inUse: boolean;
    version: string | null;
    cipher: string | null;
    bits: number | null;
    /** The sslmode we connected with (undefined for a pool not made by `createPool`). */
    sslmode: SslMode | undefined;
    /** What was checked about the server certificate, given that sslmode and root certificate. */
    verified: 'nothing' | 'ca' | 'ca+hostname';
  };
  schema: {
    name: string;
    exists: boolean;
    /** The role may use objects in the schema (USAGE). */
    usage: boolean;
    /** The role may create tables in the schema (CREATE), i.e. run migrations itself. */
    create: boolean;
    /** The role may create the schema when it does not exist (CREATE on the database). */
    canCreateSchema: boolean;
  };
}

function verification(settings: ConnectionSettings | undefined, inUse: boolean): HealthReport['tls']['verified'] {
  if (!inUse || !settings) return 'nothing';
  if (settings.sslmode === 'verify-full') return 'ca+hostname';
  if (settings.sslmode === 'verify-ca' || settings.sslRootCert !== undefined || settings.sslRootCertSystem) {
    return 'ca';
  }
  return 'nothing';
}

/**
 * One round trip that tells a user whether pgstate can work here: server version, TLS (from pg_stat_ssl), the role,
 * and its rights on the target schema (default: the settings' schema, else `public`).
 */
export async function checkHealth(
  source: pg.Pool | ConnectionSettings,
  options: { schema?: string } = {},
): Promise<HealthReport> {
  const settings = source instanceof pg.Pool ? settingsOf(source) : source;
  const schema = validateIdentifier(options.schema ?? settings?.schema ?? 'public', 'schema name');
  return withClient(source, async (client) => {
    const { rows } = await client.query<{
      version: string;
      version_num: string;
      db: string;
      usr: string;
      ssl: boolean | null;
      ssl_version: string | null;
      cipher: string | null;
      bits: number | null;
      schema_exists: boolean;
      usage: boolean | null;
      can_create: boolean | null;
      db_create: boolean;
    }>(
      `SELECT current_setting('server_version') AS version,
              current_setting('server_version_num') AS version_num,
              current_database() AS db,
              current_user AS usr,
              s.ssl, s.version AS ssl_version, s.cipher, s.bits,
              n.oid IS NOT NULL AS schema_exists,
              CASE WHEN n.oid IS NULL THEN NULL ELSE has_schema_privilege(n.oid, 'USAGE') END AS usage,
              CASE WHEN n.oid IS NULL THEN NULL ELSE has_schema_privilege(n.oid, 'CREATE') END AS can_create,
              has_database_privilege(current_database(), 'CREATE') AS db_create
         FROM (SELECT 1) AS one
         LEFT JOIN pg_stat_ssl s ON s.pid = pg_backend_pid()
         LEFT JOIN pg_namespace n ON n.nspname = $1`,
      [schema],
    );
    const row = rows[0];
    if (!row) throw new Error('checkHealth: the server returned no row');
    const inUse = row.ssl === true;
    return {
      server: { version: row.version, versionNum: Number(row.version_num) },
      database: row.db,
      currentUser: row.usr,
      tls: {
        inUse,
        version: inUse ? row.ssl_version : null,
        cipher: inUse ? row.cipher : null,
        bits: inUse ? row.bits : null,
        sslmode: settings?.sslmode,
        verified: verification(settings, inUse),
      },
      schema: {
        name: schema,
        exists: row.schema_exists,
        usage: row.usage === true,
        create: row.can_create === true,
        canCreateSchema: row.db_create,
      },
    };
  });
}
