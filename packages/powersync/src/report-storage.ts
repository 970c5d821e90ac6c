/**
 * Client connection analytics: service-core's `ReportStorage` (upstream commit 06b4092fc) on the
 * `connection_report_events` table. Behaviour follows upstream's Postgres storage: a connection re-uses the row of the
 * same user and client connected earlier the same UTC day; a disconnection closes the row of that exact connection;
 * "connected" means not disconnected and the token not yet expired; `deleteOldConnectionData(date)` removes rows
 * connected before `date` that are closed or expired (open, unexpired connections stay whatever their age).
 */
import { randomUUID } from 'node:crypto';
import { PgStateError } from '@pgstate/core';
import type { StorageDb } from './db.js';
import type {
  ClientConnection,
  ClientConnectionAnalyticsRequest,
  ClientConnectionBucketData,
  ClientConnectionReportRequest,
  ClientConnectionReportResponse,
  ClientDisconnectionEventData,
  DeleteOldConnectionData,
  Logger,
  PaginatedResponse,
  ReportStorage,
} from './types.js';

const DEFAULT_PAGE = 100;

function validDate(value: unknown, field: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new PgStateError('INVALID_INPUT', `${field} must be a valid Date.`, {
      fix: `Pass a JavaScript Date as ${field}.`,
    });
  }
  return value;
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string') {
    throw new PgStateError('INVALID_INPUT', `${field} must be a string.`, { fix: `Pass ${field} as a string.` });
  }
  return value;
}

/** Start and end of the UTC day `date` falls in (the window in which a reconnect re-uses its row). */
function utcDay(date: Date): [Date, Date] {
  const start = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  return [new Date(start), new Date(start + 86_400_000)];
}

export class PgStateReportStorage implements ReportStorage {
  constructor(
    private readonly db: StorageDb,
    private readonly options: { logger?: Logger; now?: () => Date; ownsDb?: boolean } = {},
  ) {}

  private get table(): string {
    return this.db.names.connectionReportEvents;
  }

  async reportClientConnection(data: ClientConnectionBucketData): Promise<void> {
    const connectedAt = validDate(data.connected_at, 'connected_at');
    const jwtExp = validDate(data.jwt_exp, 'jwt_exp');
    const userId = text(data.user_id, 'user_id');
    const clientId = text(data.client_id, 'client_id');
    const sdk = text(data.sdk, 'sdk');
    const userAgent = data.user_agent ?? '';
    // Upstream keys the day on the service's clock, not on connected_at.
    const [dayStart, dayEnd] = utcDay(this.options.now?.() ?? new Date());
    await this.db.ensureMigrated();
    // One statement: update today's row of this user and client, or insert one.
    await this.db.query(
      `WITH updated AS (
         UPDATE ${this.table} SET connected_at = $3, sdk = $4, user_agent = $5, jwt_exp = $6, disconnected_at = NULL
         WHERE user_id = $1 AND client_id = $2 AND connected_at >= $7 AND connected_at < $8
         RETURNING id
       )
       INSERT INTO ${this.table} (id, user_id, client_id, connected_at, sdk, user_agent, jwt_exp)
       SELECT $9, $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM updated)`,
      [userId, clientId, connectedAt, sdk, userAgent, jwtExp, dayStart, dayEnd, randomUUID()],
    );
  }

  async reportClientDisconnection(data: ClientDisconnectionEventData): Promise<void> {
    const disconnectedAt = validDate(data.disconnected_at, 'disconnected_at');
    const connectedAt = validDate(data.connected_at, 'connected_at');
    await this.db.ensureMigrated();
    await this.db.query(
      `UPDATE ${this.table} SET disconnected_at = $3, jwt_exp = NULL
       WHERE user_id = $1 AND client_id = $2 AND connected_at = $4`,
      [text(data.user_id, 'user_id'), text(data.client_id, 'client_id'), disconnectedAt, connectedAt],
    );
  }

  /** Clients not disconnected whose token has not expired. */
  async getConnectedClients(): Promise<ClientConnectionReportResponse> {
    return this.summary('disconnected_at IS NULL AND jwt_exp > now()', []);
  }

  /** Unique users, and per SDK unique users and clients, of connections made between `start` and `end`. */
  async getClientConnectionReports(data: ClientConnectionReportRequest): Promise<ClientConnectionReportResponse> {
    const start = validDate(data?.start, 'start');
    const end = validDate(data?.end, 'end');
    return this.summary('connected_at >= $1 AND connected_at <= $2', [start, end]);
  }

  private async summary(where: string, values: unknown[]): Promise<ClientConnectionReportResponse> {
    await this.db.ensureMigrated();
    const row = await this.db.first<{ users: number; sdks: ClientConnectionReportResponse['sdks'] | null }>(
      `WITH filtered AS (SELECT sdk, user_id, client_id FROM ${this.table} WHERE ${where})
       SELECT (SELECT count(DISTINCT user_id)::int FROM filtered) AS users,
              (SELECT json_agg(s ORDER BY s.sdk) FROM (
                 SELECT sdk, count(DISTINCT user_id)::int AS users, count(DISTINCT client_id)::int AS clients
                 FROM filtered GROUP BY sdk
               ) s) AS sdks`,
      values,
    );
    return {
      users: row?.users ?? 0,
      sdks: (row?.sdks ?? []).map((s) => ({ sdk: s.sdk, users: s.users, clients: s.clients })),
    };
  }

  /**
   * Connections, newest first, optionally for one client and/or user and a `connected_at` range, `limit` (100) per
   * page. Rows connected at the same instant come in the order they were recorded, as PowerSync's own storage
   * returns them. `cursor` is the previous page's; it names the last row (time and insertion position), so rows
   * connected at the same instant are never skipped between pages. A bare ISO date (the cursor of PowerSync's own
   * Postgres storage) continues before that instant.
   */
  async getGeneralClientConnectionAnalytics(
    data: ClientConnectionAnalyticsRequest = {},
  ): Promise<PaginatedResponse<ClientConnection>> {
    const limit = data.limit ?? DEFAULT_PAGE;
    if (!Number.isInteger(limit) || limit <= 0) {
      throw new PgStateError('INVALID_INPUT', `limit must be a positive integer, got ${String(limit)}.`, {
        fix: 'Pass a whole number above 0, or leave limit out (100).',
      });
    }
    const conditions: string[] = [];
    const values: unknown[] = [];
    const add = (condition: (p: () => string) => string) => conditions.push(condition(() => `$${values.length}`));
    if (data.client_id != null) {
      values.push(text(data.client_id, 'client_id'));
      add((p) => `client_id = ${p()}`);
    }
    if (data.user_id != null) {
      values.push(text(data.user_id, 'user_id'));
      add((p) => `user_id = ${p()}`);
    }
    if (data.date_range != null) {
      values.push(validDate(data.date_range.start, 'date_range.start'));
      add((p) => `connected_at >= ${p()}`);
      values.push(validDate(data.date_range.end, 'date_range.end'));
      add((p) => `connected_at <= ${p()}`);
    }
    if (data.cursor != null) {
      const [at, seq] = parseCursor(data.cursor);
      values.push(at);
      const atParam = `$${values.length}::timestamptz`;
      if (seq == null) {
        conditions.push(`connected_at < ${atParam}`);
      } else {
        values.push(seq);
        conditions.push(`(connected_at < ${atParam} OR (connected_at = ${atParam} AND seq > $${values.length}))`);
      }
    }
    values.push(limit);
    await this.db.ensureMigrated();
    const rows = await this.db.query<{
      id: string;
      sdk: string;
      user_agent: string;
      client_id: string;
      user_id: string;
      jwt_exp: Date | null;
      connected_at: Date;
      disconnected_at: Date | null;
      seq: bigint;
      at: string;
    }>(
      // `at`: connected_at to the microsecond, for the cursor (a JS Date keeps milliseconds only).
      `SELECT id, sdk, user_agent, client_id, user_id, jwt_exp, connected_at, disconnected_at, seq,
              to_char(connected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
       FROM ${this.table}
       ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''}
       ORDER BY connected_at DESC, seq
       LIMIT $${values.length}`,
      values,
    );
    const items: ClientConnection[] = rows.map((r) => ({
      id: r.id,
      sdk: r.sdk,
      user_agent: r.user_agent,
      client_id: r.client_id,
      user_id: r.user_id,
      jwt_exp: r.jwt_exp ?? undefined,
      connected_at: r.connected_at,
      disconnected_at: r.disconnected_at ?? undefined,
    }));
    const more = items.length === limit;
    const last = rows.at(-1);
    return {
      items,
      count: items.length,
      cursor: more && last != null ? `${last.at}|${last.seq}` : undefined,
      more,
    };
  }

  /** Retention: removes connections made before `date` that are closed or whose token expired. */
  async deleteOldConnectionData(data: DeleteOldConnectionData): Promise<void> {
    const date = validDate(data?.date, 'date');
    await this.db.ensureMigrated();
    const rows = await this.db.query<{ n: number }>(
      `WITH deleted AS (
         DELETE FROM ${this.table}
         WHERE connected_at < $1 AND (disconnected_at IS NOT NULL OR (disconnected_at IS NULL AND jwt_exp < now()))
         RETURNING 1
       ) SELECT count(*)::int AS n FROM deleted`,
      [date],
    );
    const n = rows[0]?.n ?? 0;
    if (n > 0)
      (this.options.logger ?? this.db.logger).info(
        `Removed ${n} connection report rows older than ${date.toISOString()}`,
      );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.options.ownsDb) await this.db.end();
  }
}

/** `<ISO date>|<seq>` from this storage, or a bare ISO date (upstream's Postgres cursor). */
function parseCursor(cursor: unknown): [string, string | undefined] {
  const bar = typeof cursor === 'string' ? cursor.indexOf('|') : -1;
  const at = typeof cursor === 'string' ? (bar < 0 ? cursor : cursor.slice(0, bar)) : '';
  if (typeof cursor !== 'string' || Number.isNaN(new Date(at).getTime())) {
    throw new PgStateError('INVALID_INPUT', 'cursor is not one this storage returned.', {
      fix: "Pass the `cursor` of the previous page's response unchanged.",
    });
  }
  const seq = bar < 0 ? '' : cursor.slice(bar + 1);
  // A cursor of an earlier version (`<date>|<id>`) continues by time only.
  return [at, /^\d{1,19}$/.test(seq) ? seq : undefined];
}
