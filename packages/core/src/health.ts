import pg from 'pg';
import { connectedHost, settingsOf, withClient } from './client.js';
import { validateIdentifier } from './identifiers.js';
import { type ConnectionSettings, hostLabel, hostsOf, type SslMode, type TargetSessionAttrs } from './settings.js';

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

/** Which server a connection reached and whether writes can go there: `pgstate doctor`'s `host` check. */
export interface ServerRoleCheck {
  status: 'pass' | 'warn';
  detail: string;
  fix?: string;
  data: {
    /** `host:port` of the server reached. */
    reached: string;
    /** How many hosts the settings list. */
    hosts: number;
    role: 'primary' | 'standby';
    /** The session is read-only (a standby, or default_transaction_read_only). */
    readOnly: boolean;
    targetSessionAttrs: TargetSessionAttrs;
  };
}

/**
 * Asks the server on `client` (connected with `settings`) whether it is a primary or a standby, and warns when writes
 * could go to a standby: the server reached is one, or several hosts are listed with a target_session_attrs that
 * does not insist on the primary (any, read-only, standby, prefer-standby).
 */
export async function checkServerRole(client: pg.ClientBase, settings: ConnectionSettings): Promise<ServerRoleCheck> {
  const { rows } = await client.query<{ standby: boolean; read_only: string }>(
    "SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') AS read_only",
  );
  const standby = rows[0]?.standby === true;
  const readOnly = rows[0]?.read_only === 'on';
  const hosts = hostsOf(settings);
  const target = connectedHost(client) ?? hosts[0];
  const reached = target ? hostLabel(target) : 'the server';
  const attrs = settings.targetSessionAttrs ?? 'any';
  const data = {
    reached,
    hosts: hosts.length,
    role: standby ? 'standby' : 'primary',
    readOnly,
    targetSessionAttrs: attrs,
  } as const;
  const where = `${reached}${hosts.length > 1 ? ` (one of ${hosts.length} hosts, target_session_attrs=${attrs})` : ''}`;
  if (standby) {
    return {
      status: 'warn',
      detail: `reached ${where}: a standby (read-only); state writes will fail there`,
      fix: 'Point pgstate at the primary, or list every host and add target_session_attrs=read-write so connections follow the primary.',
      data,
    };
  }
  if (hosts.length > 1 && attrs !== 'read-write' && attrs !== 'primary') {
    return {
      status: 'warn',
      detail: `reached ${where}: a primary, but target_session_attrs=${attrs} lets connections land on a standby, where writes fail`,
      fix: 'Add target_session_attrs=read-write to the connection URL (or PGTARGETSESSIONATTRS=read-write).',
      data,
    };
  }
  if (readOnly) {
    return {
      status: 'warn',
      detail: `reached ${where}: a primary, but this session is read-only (default_transaction_read_only=on)`,
      fix: 'Remove default_transaction_read_only for this role or database (ALTER ROLE ... RESET default_transaction_read_only).',
      data,
    };
  }
  return { status: 'pass', detail: `reached ${where}: a primary`, data };
}
