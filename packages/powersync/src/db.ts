import { setTimeout as sleep } from 'node:timers/promises';
import {
  createPool,
  describeConnection,
  isConnectionLoss,
  isRetryableTransactionError,
  PgStateError,
  quoteIdentifier,
  sqlStateOf,
  toPgStateError,
  withTransaction,
} from '@pgstate/core';
import { migrate } from '@pgstate/schema';
import pg from 'pg';
import type { NormalizedStorageConfig } from './config.js';
import { defaultLogger } from './logger.js';
import type { Logger } from './types.js';

// bigint columns come back as strings by default; op ids and checksums need exact values.
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20) return (value: string) => BigInt(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export type Queryable = Pick<pg.ClientBase, 'query'>;

/** Qualified names of the storage objects in the configured schema (validated and quoted once). */
export interface Names {
  schema: string;
  syncRules: string;
  sourceTables: string;
  bucketData: string;
  bucketParameters: string;
  currentData: string;
  writeCheckpoints: string;
  customWriteCheckpoints: string;
  instance: string;
  locks: string;
  connectionReportEvents: string;
  serviceMigrations: string;
  /** pgstate's lease table (created with the migration journal in the storage schema). */
  leases: string;
  opIdSequence: string;
  syncRulesIdSequence: string;
  /** Literal for nextval()/regclass arguments. */
  opIdSequenceLiteral: string;
  syncRulesIdSequenceLiteral: string;
}

export function namesFor(schema: string): Names {
  const s = quoteIdentifier(schema, 'schema name');
  const q = (name: string) => `${s}.${name}`;
  return {
    schema: s,
    syncRules: q('sync_rules'),
    sourceTables: q('source_tables'),
    bucketData: q('bucket_data'),
    bucketParameters: q('bucket_parameters'),
    currentData: q('current_data'),
    writeCheckpoints: q('write_checkpoints'),
    customWriteCheckpoints: q('custom_write_checkpoints'),
    instance: q('instance'),
    locks: q('locks'),
    connectionReportEvents: q('connection_report_events'),
    serviceMigrations: q('service_migrations'),
    leases: q('leases'),
    opIdSequence: q('op_id_sequence'),
    syncRulesIdSequence: q('sync_rules_id_sequence'),
    opIdSequenceLiteral: `'${s}.op_id_sequence'`,
    syncRulesIdSequenceLiteral: `'${s}.sync_rules_id_sequence'`,
  };
}

/** pg's error when `query_timeout` passes without an answer from the server. */
const NO_ANSWER = 'Query read timeout';

/** One pool plus the schema's names; every statement is parameterized, names are pre-validated. */
export class StorageDb {
  readonly pool: pg.Pool;
  readonly names: Names;
  /** The storage's logger (the service's, when the module was given it); parts without a stream log here. */
  logger: Logger = defaultLogger;
  private migrated: Promise<void> | undefined;

  constructor(readonly config: NormalizedStorageConfig) {
    this.pool = createPool(config.connection);
    // Every query of every pooled connection (BEGIN/COMMIT/ROLLBACK too): a server that stops answering (frozen,
    // partitioned) cannot hold the writer forever; statement_timeout cannot help, the server is what is stuck.
    // pg then drops the connection (the pool discards a client whose query failed this way).
    if (config.queryTimeoutMs != null) Object.assign(this.pool.options, { query_timeout: config.queryTimeoutMs });
    this.names = namesFor(config.schema);
  }

  async query<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    values: unknown[] = [],
    client?: Queryable,
  ): Promise<R[]> {
    try {
      const result = await (client ?? this.pool).query<R>({ text, values, types } as pg.QueryConfig);
      return result.rows;
    } catch (error) {
      throw this.noAnswerError(error);
    }
  }

  /**
   * pg's bare "Query read timeout", and a connection cut mid-query (a failover, a restart: pg's "Connection terminated
   * unexpectedly"), as a PgStateError that says what happened (retryable: UNREACHABLE).
   */
  private noAnswerError(error: unknown): unknown {
    if (!(error instanceof Error) || error.message !== NO_ANSWER) {
      return isConnectionLoss(error) ? toPgStateError(error, this.config.connection) : error;
    }
    return new PgStateError(
      'UNREACHABLE',
      `PostgreSQL at ${describeConnection(this.config.connection)} did not answer within ` +
        `storage.query_timeout_ms (${this.config.queryTimeoutMs} ms); the connection was dropped.`,
      {
        fix: 'Check that the server is running and reachable; the operation can be retried (raise query_timeout_ms if statements legitimately take longer).',
        cause: error,
      },
    );
  }

  async first<R extends pg.QueryResultRow = Record<string, unknown>>(
    text: string,
    values: unknown[] = [],
    client?: Queryable,
  ): Promise<R | undefined> {
    return (await this.query<R>(text, values, client))[0];
  }

  /** Runs `fn` in one transaction on one connection. */
  async transaction<T>(
    fn: (client: pg.PoolClient) => Promise<T>,
    options: { isolation?: 'REPEATABLE READ' | 'READ COMMITTED' } = {},
  ): Promise<T> {
    const isolation = options.isolation === 'REPEATABLE READ' ? 'repeatable read' : 'read committed';
    try {
      return await withTransaction(this.pool, (client) => fn(client as pg.PoolClient), { isolation });
    } catch (error) {
      throw this.noAnswerError(error);
    }
  }

  /**
   * A transaction retried on serialization failures and deadlocks, for up to `budgetMs`. Backoff is exponential
   * with full jitter, so concurrent writers spread out instead of colliding again in lock-step (upstream #726).
   */
  async retryingTransaction<T>(
    fn: (client: pg.PoolClient) => Promise<T>,
    options: { budgetMs?: number; onRetry?: (error: unknown, attempt: number) => void; alsoRetry?: string[] } = {},
  ): Promise<T> {
    const deadline = Date.now() + (options.budgetMs ?? 60_000);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transaction(fn, { isolation: 'REPEATABLE READ' });
      } catch (error) {
        const state = sqlStateOf(error);
        const retryable =
          isRetryableTransactionError(error) || (state !== undefined && options.alsoRetry?.includes(state) === true);
        if (!retryable || Date.now() >= deadline) throw error;
        options.onRetry?.(error, attempt);
        const ceiling = Math.min(5_000, 50 * 2 ** Math.min(attempt, 10));
        await sleep(Math.max(10, Math.random() * ceiling));
      }
    }
  }

  /** Creates/updates the storage tables once per process (concurrency-safe; see @pgstate/schema `migrate`). */
  ensureMigrated(): Promise<void> {
    this.migrated ??= migrate(
      this.pool,
      { adapter: 'powersync', schema: this.config.schema },
      // The journal lives in the storage schema itself, so a role that only owns that schema can migrate.
      { internalSchema: this.config.schema },
    ).then(
      () => undefined,
      (error) => {
        this.migrated = undefined;
        throw error;
      },
    );
    return this.migrated;
  }

  /** Forgets that this process migrated (after the storage tables were dropped), so the next call migrates again. */
  forgetMigrated(): void {
    this.migrated = undefined;
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}

export function assertFound<T>(value: T | undefined | null, what: string): T {
  if (value == null) {
    throw new PgStateError('NOT_FOUND', `${what} was not found in PowerSync storage.`, {
      fix: 'It may have been terminated or cleared by another process; restart replication.',
    });
  }
  return value;
}
