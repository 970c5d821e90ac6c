/**
 * Lease locks over rows of a table (`@pgstate/schema` owns its DDL: `pgstate.leases` by default). Every operation is
 * one statement, so the lock works across processes and hosts and behind PgBouncer in transaction mode, where session
 * state (advisory locks, temp tables) does not survive between statements. The database clock decides expiry.
 *
 * Columns used: name text PRIMARY KEY, owner text NOT NULL, acquired_at timestamptz NOT NULL,
 * expires_at timestamptz NOT NULL, heartbeat_at timestamptz NULL, info jsonb NULL.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { PgStateError } from './errors.js';
import { qualifiedName } from './identifiers.js';

/** Anything that runs a parameterized query: a `pg.Pool`, `pg.Client` or pool client. */
export interface Queryable {
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface LeaseInfo {
  name: string;
  owner: string;
  /** When the current owner first took the lease. */
  acquiredAt: Date;
  expiresAt: Date;
  /** The last renewal (null until the first heartbeat). */
  heartbeatAt: Date | null;
  info: unknown;
}

export interface LeaseOptions {
  /** Who holds the lease; default a unique `host:pid:random` id per call. */
  owner?: string;
  /** How long the lease lasts without a heartbeat. */
  ttlMs: number;
  /** Stored in the row for humans (`who holds it`): e.g. `{ command: 'pulumi up' }`. */
  info?: unknown;
}

export interface AcquireLeaseOptions extends LeaseOptions {
  /** Give up with LOCK_TIMEOUT after this long (default 30 s; 0 = try once). */
  timeoutMs?: number;
  /** Pause between attempts (default 250 ms). */
  retryMs?: number;
  /** Renewal interval (default ttlMs / 3). */
  heartbeatMs?: number;
}

/** A lease we hold, renewed in the background until released. */
export interface HeldLease extends AsyncDisposable {
  readonly name: string;
  readonly owner: string;
  /** True once a renewal found the lease taken over, or renewals failed past the expiry. */
  readonly lost: boolean;
  /** Aborted (with a LOCK_LOST PgStateError as reason) when the lease is lost. */
  readonly signal: AbortSignal;
  /** Throws LOCK_LOST when the lease is no longer ours. */
  assertHeld(): void;
  release(): Promise<void>;
}

interface LeaseRow extends Record<string, unknown> {
  name: string;
  owner: string;
  acquired_at: Date;
  expires_at: Date;
  heartbeat_at: Date | null;
  info: unknown;
}

const toInfo = (row: LeaseRow): LeaseInfo => ({
  name: row.name,
  owner: row.owner,
  acquiredAt: row.acquired_at,
  expiresAt: row.expires_at,
  heartbeatAt: row.heartbeat_at,
  info: row.info,
});

export function defaultLeaseOwner(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new PgStateError('INVALID_INPUT', `A lease needs a positive ttlMs, got ${ttlMs}.`, {
      fix: 'Pass ttlMs, e.g. 30000.',
    });
  }
}

export class LeaseLocks {
  private readonly table: string;

  /** `table` is the leases table, e.g. `{ schema: 'pgstate', table: 'leases' }` (validated and quoted). */
  constructor(
    private readonly db: Queryable,
    table: { schema: string; table: string },
  ) {
    this.table = qualifiedName(table.schema, table.table);
  }

  /**
   * Takes the lease if it is free, expired, or already ours (then it is renewed). One statement: concurrent callers
   * serialize on the row, and only one of them sees it expired. Returns undefined when someone else holds it.
   */
  async tryAcquire(name: string, options: LeaseOptions): Promise<LeaseInfo | undefined> {
    checkTtl(options.ttlMs);
    const owner = options.owner ?? defaultLeaseOwner();
    const { rows } = await this.db.query<LeaseRow>(
      `INSERT INTO ${this.table} AS l (name, owner, acquired_at, expires_at, heartbeat_at, info)
       VALUES ($1, $2, now(), now() + $3 * interval '1 millisecond', NULL, $4::jsonb)
       ON CONFLICT (name) DO UPDATE
         SET owner = EXCLUDED.owner,
             acquired_at = CASE WHEN l.owner = EXCLUDED.owner THEN l.acquired_at ELSE now() END,
             expires_at = EXCLUDED.expires_at,
             heartbeat_at = CASE WHEN l.owner = EXCLUDED.owner THEN now() ELSE NULL END,
             info = EXCLUDED.info
         WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner
       RETURNING name, owner, acquired_at, expires_at, heartbeat_at, info`,
      [name, owner, options.ttlMs, options.info === undefined ? null : JSON.stringify(options.info)],
    );
    return rows[0] ? toInfo(rows[0]) : undefined;
  }

  /** Extends our lease. Undefined when it is no longer ours (taken over after expiring, or released). */
  async renew(name: string, owner: string, ttlMs: number): Promise<LeaseInfo | undefined> {
    checkTtl(ttlMs);
    // While the row still names us nobody else can have held it: taking over rewrites the owner.
    const { rows } = await this.db.query<LeaseRow>(
      `UPDATE ${this.table}
          SET expires_at = now() + $3 * interval '1 millisecond', heartbeat_at = now()
        WHERE name = $1 AND owner = $2
        RETURNING name, owner, acquired_at, expires_at, heartbeat_at, info`,
      [name, owner, ttlMs],
    );
    return rows[0] ? toInfo(rows[0]) : undefined;
  }

  /** Releases the lease if (and only if) `owner` holds it. Returns whether a row was released. */
  async release(name: string, owner: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`DELETE FROM ${this.table} WHERE name = $1 AND owner = $2`, [name, owner]);
    return (rowCount ?? 0) > 0;
  }

  /** Who holds the lease and since when; undefined when nobody does (expired leases are reported as free). */
  async inspect(name: string): Promise<LeaseInfo | undefined> {
    const { rows } = await this.db.query<LeaseRow>(
      `SELECT name, owner, acquired_at, expires_at, heartbeat_at, info FROM ${this.table}
        WHERE name = $1 AND expires_at > now()`,
      [name],
    );
    return rows[0] ? toInfo(rows[0]) : undefined;
  }

  /** Waits for the lease (LOCK_TIMEOUT naming the holder), then keeps it alive with heartbeats until released. */
  async acquire(name: string, options: AcquireLeaseOptions): Promise<HeldLease> {
    checkTtl(options.ttlMs);
    const owner = options.owner ?? defaultLeaseOwner();
    const timeoutMs = options.timeoutMs ?? 30_000;
    const retryMs = options.retryMs ?? 250;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const started = Date.now();
      const got = await this.tryAcquire(name, { ...options, owner });
      if (got) return this.hold(name, owner, options, started + options.ttlMs);
      if (Date.now() + retryMs > deadline) {
        const holder = await this.inspect(name);
        throw new PgStateError(
          'LOCK_TIMEOUT',
          holder
            ? `The lock "${name}" is held by ${holder.owner} since ${holder.acquiredAt.toISOString()} (expires ${holder.expiresAt.toISOString()}).`
            : `The lock "${name}" could not be taken within ${timeoutMs} ms.`,
          { fix: 'Wait for the other process to finish, or stop it; an abandoned lease expires by itself.' },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  private hold(name: string, owner: string, options: AcquireLeaseOptions, localExpiry: number): HeldLease {
    const controller = new AbortController();
    let released = false;
    let expiry = localExpiry;
    const lose = (why: string) => {
      if (controller.signal.aborted) return;
      clearInterval(timer);
      controller.abort(
        new PgStateError('LOCK_LOST', `The lease "${name}" was lost: ${why}.`, {
          fix: 'Stop writing: another process may hold the lock now. Retry the operation from the start.',
        }),
      );
    };
    const heartbeat = async () => {
      const started = Date.now();
      try {
        const renewed = await this.renew(name, owner, options.ttlMs);
        if (renewed) expiry = started + options.ttlMs;
        else if (!released) lose('another owner took it over after it expired');
      } catch {
        // A dropped connection is survivable until the lease would have expired.
        if (Date.now() >= expiry) lose('renewals failed until it expired');
      }
    };
    const timer = setInterval(
      () => void heartbeat(),
      options.heartbeatMs ?? Math.max(1, Math.floor(options.ttlMs / 3)),
    );
    timer.unref();
    const release = async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      await this.release(name, owner);
    };
    return {
      name,
      owner,
      get lost() {
        return controller.signal.aborted;
      },
      signal: controller.signal,
      assertHeld() {
        if (controller.signal.aborted) throw controller.signal.reason;
        if (Date.now() >= expiry) {
          lose('no successful renewal before it expired');
          throw controller.signal.reason;
        }
      },
      release,
      [Symbol.asyncDispose]: release,
    };
  }
}
