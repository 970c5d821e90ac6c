/**
 * A blob store (the subset of S3 the Pulumi CLI uses) over one PostgreSQL table, in either layout. Every write is
 * one transaction that also keeps the side tables (sizes/MD5s, stack index) right, so whichever path writes a
 * key (this API, the S3 gateway, the state store) the index stays correct.
 */
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import {
  type ByteRange,
  type ConnectionInput,
  createPool,
  type ListRequest,
  type ListResult,
  type ObjectBody,
  type ObjectInfo,
  PgStateError,
  type PutConditions,
  parseConnectionSettings,
  pgErrorKind,
  toPgStateError,
  withTransaction,
} from '@pgstate/core';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { compareKeys, prefixUpperBound, validateKey, validatePrefix } from './keys.js';
import { type Compression, decompressBytes, summarizeCheckpoint } from './summary.js';
import {
  DEFAULT_TABLE,
  type PulumiLayout,
  type PulumiLayoutInput,
  type PulumiTableNames,
  pulumiTableNames,
} from './tables.js';

/** URL query parameters this package understands (never sent to the server). */
export const PULUMI_URL_PARAMS = ['table', 'schema', 'layout', 'key_prefix'] as const;

export interface PulumiBlobStoreOptions {
  /** A `postgres://` URL or connection fields; `?table=`, `?schema=`, `?layout=bytea|native` and `?key_prefix=` are read from it. */
  connection?: ConnectionInput;
  /** Use this pool instead of creating one (it is not closed by `close()`). */
  pool?: pg.Pool;
  table?: string;
  schema?: string;
  /** `bytea` (default; `seed` is its former name) or `native`. */
  layout?: PulumiLayoutInput;
  /**
   * Prefix every stored key gets. Default: none for `bytea`; `<database>/` for `native`, which is what
   * `pulumi login postgres://host/db` writes.
   */
  keyPrefix?: string;
  /**
   * Run `migrate` from `@pgstate/schema` for this table on first use (default true). Up to date, it only reads
   * the migration journal (no lock, no writes), so it works for a DML-only role and behind PgBouncer once an
   * administrator ran `pgstate migrate`. With `false` nothing is checked: a missing table surfaces as
   * MIGRATIONS_PENDING on the first query.
   */
  migrate?: boolean;
  /** Schema of pgstate's migration journal, when not `pgstate` (as `pgstate migrate --internal-schema`). */
  internalSchema?: string;
}

/** Stack checkpoint keys the index follows: `.pulumi/stacks/<project>/<stack>.json[.gz|.zst]`. */
const STACK_KEY = /^\.pulumi\/stacks\/([^/]+)\/([^/]+)\.json(\.gz|\.zst)?$/;

export function parseStackKey(key: string): { project: string; stack: string; compression: Compression } | undefined {
  const m = STACK_KEY.exec(key);
  if (!m) return undefined;
  return { project: m[1]!, stack: m[2]!, compression: (m[3] ?? '') as Compression };
}

export interface StackIndexRow {
  project: string;
  stack: string;
  /** The logical key of the checkpoint variant (`.json`, `.json.gz` or `.json.zst`). */
  key: string;
  /** When the checkpoint row was written. */
  modified: Date;
  size: number;
  /** `latest.manifest.time` of the checkpoint. */
  lastUpdate: string | undefined;
  resourceCount: number | undefined;
}

type Queryable = pg.Pool | pg.PoolClient;

const MAX_LIST_KEYS = 1000;

export class PulumiBlobStore {
  readonly names: PulumiTableNames;
  readonly layout: PulumiLayout;
  readonly keyPrefix: string;
  readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly runMigrations: boolean;
  private readonly internalSchema: string | undefined;
  private ready: Promise<void> | undefined;
  /** @internal SQL for the object size, the ETag and the raw bytes of row `t` joined with side row `o`. */
  readonly sizeSql: string;
  /** @internal */
  readonly etagSql: string;
  /** @internal */
  readonly bytesSql: string;

  constructor(options: PulumiBlobStoreOptions) {
    let table = options.table;
    let schema = options.schema;
    let layout = options.layout;
    let keyPrefix = options.keyPrefix;
    let database: string | undefined;
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else {
      const settings = parseConnectionSettings(options.connection ?? 'postgres://', {
        adapterParams: PULUMI_URL_PARAMS,
      });
      table ??= settings.adapterParams.table;
      schema ??= settings.adapterParams.schema;
      layout ??= settings.adapterParams.layout as PulumiLayoutInput | undefined;
      keyPrefix ??= settings.adapterParams.key_prefix;
      database = settings.database;
      // Validate names before a pool exists, so a bad name leaks nothing.
      pulumiTableNames(table ?? DEFAULT_TABLE, schema, layout ?? 'bytea');
      this.pool = createPool(settings);
      this.ownsPool = true;
    }
    this.names = pulumiTableNames(table ?? DEFAULT_TABLE, schema, layout ?? 'bytea');
    this.layout = this.names.layout;
    if (keyPrefix === undefined && this.layout === 'native') {
      database ??= (this.pool.options as { database?: string }).database;
      if (!database) {
        throw new PgStateError('BAD_SETTING', 'The native layout needs the database name as its key prefix.', {
          fix: 'Pass keyPrefix (e.g. "mydb/"), or a connection URL that names the database.',
        });
      }
      keyPrefix = `${database}/`;
    }
    this.keyPrefix = keyPrefix ?? '';
    if (this.keyPrefix) validatePrefix(this.keyPrefix);
    this.runMigrations = options.migrate ?? true;
    this.internalSchema = options.internalSchema;
    if (this.layout === 'bytea') {
      this.bytesSql = 't.data';
      this.sizeSql = 'octet_length(t.data)';
      this.etagSql =
        'CASE WHEN o.updated_at = t.updated_at AND o.size = octet_length(t.data) THEN o.md5 ELSE md5(t.data) END';
    } else {
      this.bytesSql = "decode(t.data->>'data', 'base64')";
      this.sizeSql = `CASE WHEN o.updated_at = t.updated_at THEN o.size ELSE octet_length(${this.bytesSql}) END`;
      this.etagSql = `CASE WHEN o.updated_at = t.updated_at THEN o.md5 ELSE md5(${this.bytesSql}) END`;
    }
  }

  // ---------------------------------------------------------------- setup

  /**
   * Brings this configuration's tables up to date once per store, with `@pgstate/schema`'s migrator (the only
   * place that creates them): safe when many processes start at once, and a no-op without a lock when an
   * administrator already migrated. With `migrate: false` it does nothing.
   */
  ensureTables(): Promise<void> {
    this.ready ??= this.migrateTables().catch((error) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async migrateTables(): Promise<void> {
    if (!this.runMigrations) return;
    await migrate(
      this.pool,
      { adapter: 'pulumi', layout: this.layout, schema: this.names.schema, table: this.names.table },
      { internalSchema: this.internalSchema },
    );
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }

  // ---------------------------------------------------------------- reads

  async head(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    await this.ensureTables();
    const { rows } = await this.pool
      .query<{ size: number; etag: string; updated_at: Date }>(
        `SELECT (${this.sizeSql})::int4 AS size, ${this.etagSql} AS etag, t.updated_at
           FROM ${this.names.blobs} t LEFT JOIN ${this.names.objects} o ON o.key = t.key
          WHERE t.key = $1`,
        [this.keyPrefix + key],
      )
      .catch(fail);
    const row = rows[0];
    return row ? { key, size: row.size, etag: row.etag, lastModified: row.updated_at } : null;
  }

  /** The object's bytes (or the requested range of them), read in one statement so bytes and metadata agree. */
  async get(key: string, range?: ByteRange): Promise<ObjectBody | null> {
    validateKey(key);
    if (range) validateRange(range);
    await this.ensureTables();
    const slice =
      this.layout === 'bytea' && range
        ? range.end === undefined
          ? 'substring(t.data FROM $2::int4 + 1)'
          : 'substring(t.data FROM $2::int4 + 1 FOR $3::int4 - $2::int4 + 1)'
        : this.layout === 'bytea'
          ? 't.data'
          : "t.data->>'data'";
    const values: unknown[] = [this.keyPrefix + key];
    if (this.layout === 'bytea' && range) {
      values.push(range.start);
      if (range.end !== undefined) values.push(range.end);
    }
    const rows = await queryRows(
      this.pool,
      `SELECT (${this.sizeSql})::int4 AS size, ${this.etagSql} AS etag, t.updated_at, ${slice} AS body
         FROM ${this.names.blobs} t LEFT JOIN ${this.names.objects} o ON o.key = t.key
        WHERE t.key = $1`,
      values,
    ).catch(fail);
    const row = rows[0] as { size: number; etag: string; updated_at: Date; body: Buffer | string } | undefined;
    if (!row) return null;
    const info: ObjectInfo = { key, size: row.size, etag: row.etag, lastModified: row.updated_at };
    if (range && (range.start >= info.size || (info.size === 0 && range.start === 0))) {
      throw new PgStateError('INVALID_INPUT', `The range ${range.start}- is outside the object (${info.size} bytes).`, {
        fix: 'Request a range that starts before the end of the object.',
      });
    }
    let body: Uint8Array = typeof row.body === 'string' ? Buffer.from(row.body, 'base64') : row.body;
    if (range && this.layout === 'native') {
      body = body.subarray(range.start, range.end === undefined ? undefined : range.end + 1);
    }
    return { info, body };
  }

  /** Reads a whole object's bytes, or null when missing. */
  async read(key: string): Promise<Uint8Array | null> {
    return (await this.get(key))?.body ?? null;
  }

  /**
   * Lists keys under a prefix in UTF-8 byte order. With a delimiter, keys whose remainder after the prefix
   * contains it are rolled up into common prefixes (S3 semantics); a page holds at most maxKeys objects + prefixes.
   */
  async list(request: ListRequest): Promise<ListResult> {
    const prefix = validatePrefix(request.prefix ?? '');
    const delimiter = request.delimiter ? validateDelimiter(request.delimiter) : undefined;
    const startAfter = request.startAfter ? validatePrefix(request.startAfter) : undefined;
    const maxKeys = Math.max(0, Math.min(MAX_LIST_KEYS, Math.floor(request.maxKeys)));
    await this.ensureTables();
    const result: ListResult = { objects: [], commonPrefixes: [], isTruncated: false };
    if (maxKeys === 0) return result;

    const stored = this.keyPrefix + prefix;
    const upper = prefixUpperBound(stored);
    let atLeast = stored;
    let after: string | undefined;
    if (startAfter !== undefined && compareKeys(startAfter, prefix) >= 0) {
      const rollup = delimiter ? commonPrefixOf(startAfter, prefix, delimiter) : undefined;
      if (rollup !== undefined) {
        const next = prefixUpperBound(this.keyPrefix + rollup);
        if (next === undefined) return result;
        atLeast = next;
      } else {
        after = this.keyPrefix + startAfter;
      }
    }
    let emitted = 0;
    let last: string | undefined;
    for (;;) {
      const limit = maxKeys - emitted + 1;
      const rows = await this.listRows(atLeast, after, upper, limit);
      let restart = false;
      for (const row of rows) {
        const key = row.key.slice(this.keyPrefix.length);
        const rollup = delimiter ? commonPrefixOf(key, prefix, delimiter) : undefined;
        if (emitted === maxKeys) {
          result.isTruncated = true;
          result.nextStartAfter = last;
          return result;
        }
        if (rollup !== undefined) {
          result.commonPrefixes.push(rollup);
          emitted++;
          last = rollup;
          // Skip every other key under this common prefix with one new range scan.
          const next = prefixUpperBound(this.keyPrefix + rollup);
          if (next === undefined) return result;
          atLeast = next;
          after = undefined;
          restart = true;
          break;
        }
        result.objects.push({ key, size: row.size, etag: row.etag, lastModified: row.updated_at });
        emitted++;
        last = key;
        after = row.key;
      }
      if (!restart && rows.length < limit) return result;
    }
  }

  private async listRows(
    atLeast: string,
    after: string | undefined,
    upper: string | undefined,
    limit: number,
  ): Promise<{ key: string; size: number; etag: string; updated_at: Date }[]> {
    // Pattern operators compare bytes (memcmp) and use the seed's `text_pattern_ops` index: UTF-8 byte order
    // whatever the database collation, and `_`/`%` are ordinary characters.
    const where = ['t.key ~>=~ $1'];
    const values: unknown[] = [atLeast, limit];
    if (after !== undefined) {
      values.push(after);
      where.push(`t.key ~>~ $${values.length}`);
    }
    if (upper !== undefined) {
      values.push(upper);
      where.push(`t.key ~<~ $${values.length}`);
    }
    const { rows } = await this.pool
      .query(
        `SELECT t.key, (${this.sizeSql})::int4 AS size, ${this.etagSql} AS etag, t.updated_at
           FROM ${this.names.blobs} t LEFT JOIN ${this.names.objects} o ON o.key = t.key
          WHERE ${where.join(' AND ')}
          ORDER BY t.key USING ~<~
          LIMIT $2`,
        values,
      )
      .catch(fail);
    return rows;
  }

  /** Every object under a prefix (all pages). */
  async listAll(prefix: string): Promise<ObjectInfo[]> {
    const all: ObjectInfo[] = [];
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.list({ prefix, startAfter, maxKeys: MAX_LIST_KEYS });
      all.push(...page.objects);
      if (!page.isTruncated) return all;
      startAfter = page.nextStartAfter;
    }
  }

  // ---------------------------------------------------------------- writes

  /**
   * Writes an object. `ifNoneMatch: '*'` writes only when the key is absent; `ifMatch` only when the current
   * ETag equals it (compare-and-swap). A failed condition throws PRECONDITION_FAILED and writes nothing.
   */
  async put(key: string, body: Uint8Array, conditions: PutConditions = {}): Promise<ObjectInfo> {
    validateKey(key);
    checkBody(body);
    await this.ensureTables();
    // A CAS or a CLI lock file needs statements before the write (row lock, advisory lock): a transaction. Every
    // other write is one statement, atomic on its own, so it costs one round trip instead of five.
    // Large bodies take the transaction path too, where the MD5 and summary overlap the server's work.
    if (conditions.ifMatch !== undefined || lockDirOf(key) !== undefined || body.byteLength >= OVERLAP_BYTES) {
      return this.batch((tx) => tx.put(key, body, conditions));
    }
    const info = await this.writeObject(this.pool, key, body, conditions.ifNoneMatch === '*', false).catch(fail);
    return info ?? alreadyExists(key);
  }

  /** Copies an object inside the database (the bytes never travel to this process). Null when the source is missing. */
  async copy(sourceKey: string, destinationKey: string): Promise<ObjectInfo | null> {
    validateKey(sourceKey);
    validateKey(destinationKey);
    await this.ensureTables();
    // A stack index row needs the copied bytes read back, a lock file its advisory lock: both in a transaction.
    if (parseStackKey(destinationKey) || lockDirOf(destinationKey) !== undefined) {
      return this.batch((tx) => tx.copy(sourceKey, destinationKey));
    }
    const { rows } = await this.pool
      .query<CopyRow>(this.copySql, [this.keyPrefix + sourceKey, this.keyPrefix + destinationKey])
      .catch(fail);
    return copiedInfo(destinationKey, rows[0]);
  }

  /** Last-modified time of each of `keys` that exists, in one query. */
  async modifiedTimes(keys: string[]): Promise<Map<string, Date>> {
    for (const key of keys) validateKey(key);
    await this.ensureTables();
    return modifiedTimes(this.pool, this, keys).catch(fail);
  }

  /** Deletes an object; false when it did not exist. */
  async delete(key: string): Promise<boolean> {
    validateKey(key);
    await this.ensureTables();
    return this.batch((tx) => tx.delete(key));
  }

  /** Deletes an object; throws NOT_FOUND when it did not exist. */
  async deleteExisting(key: string): Promise<void> {
    if (!(await this.delete(key))) {
      throw new PgStateError('NOT_FOUND', `The object ${JSON.stringify(key)} does not exist.`, {
        fix: 'List the prefix to see which keys exist.',
      });
    }
  }

  /**
   * Writes `key` only if no key under `prefix` exists, atomically across processes and connections: a transaction
   * takes an advisory lock on the prefix, checks it is empty and inserts. Transaction-scoped, so it also works
   * behind PgBouncer in transaction mode. Returns false (writing nothing) when something already is there.
   */
  async putIfPrefixEmpty(prefix: string, key: string, body: Uint8Array): Promise<boolean> {
    validatePrefix(prefix);
    validateKey(key);
    checkBody(body);
    await this.ensureTables();
    return this.batch(async (tx) => {
      await tx.lockPrefix(prefix);
      if ((await tx.keys(prefix, 1)).length > 0) return false;
      await tx.put(key, body, { ifNoneMatch: '*' });
      return true;
    });
  }

  /** Deletes every key under a prefix in one transaction; returns how many were deleted. */
  async deletePrefix(prefix: string): Promise<number> {
    validatePrefix(prefix);
    await this.ensureTables();
    return this.batch(async (tx) => {
      let count = 0;
      for (const key of await tx.keys(prefix)) if (await tx.delete(key)) count++;
      return count;
    });
  }

  /**
   * Runs several blob operations in ONE transaction: all of them happen or none (used for checkpoint saves with
   * their `.bak`, renames and lock acquisition). Keys given to the transaction are validated like everywhere else.
   */
  async batch<T>(fn: (tx: BlobTransaction) => Promise<T>): Promise<T> {
    await this.ensureTables();
    return this.transaction((client) => fn(new BlobTransaction(this, client)));
  }

  // ---------------------------------------------------------------- stack index

  /**
   * Every stack checkpoint key with what `pulumi stack ls` shows, from the index. Rows written by other tools
   * (the index's `updated_at` differs from the blob's) are re-read and repaired, so the answer is always current.
   */
  async stackIndex(project?: string): Promise<StackIndexRow[]> {
    await this.ensureTables();
    const prefix = `.pulumi/stacks/${project === undefined ? '' : `${project}/`}`;
    const stored = this.keyPrefix + prefix;
    const upper = prefixUpperBound(stored)!;
    const { rows } = await this.pool
      .query<{
        key: string;
        updated_at: Date;
        fresh: boolean;
        size: string;
        last_update: string | null;
        resource_count: number | null;
      }>(
        `SELECT t.key, t.updated_at, s.updated_at IS NOT DISTINCT FROM t.updated_at AS fresh, s.size,
                s.last_update, s.resource_count
           FROM ${this.names.blobs} t LEFT JOIN ${this.names.stacks} s ON s.key = t.key
          WHERE t.key ~>=~ $1 AND t.key ~<~ $2
          ORDER BY t.key USING ~<~`,
        [stored, upper],
      )
      .catch(fail);
    const out: StackIndexRow[] = [];
    for (const row of rows) {
      const key = row.key.slice(this.keyPrefix.length);
      const parsed = parseStackKey(key);
      if (!parsed) continue;
      if (row.fresh) {
        out.push({
          ...parsed,
          key,
          modified: row.updated_at,
          size: Number(row.size),
          lastUpdate: row.last_update ?? undefined,
          resourceCount: row.resource_count ?? undefined,
        });
        continue;
      }
      const repaired = await this.reindexStackKey(key);
      if (repaired) out.push(repaired);
    }
    return out;
  }

  /** Re-reads one checkpoint and rewrites its index row (used for rows other tools wrote). */
  private async reindexStackKey(key: string): Promise<StackIndexRow | undefined> {
    return this.transaction(async (client) => {
      const parsed = parseStackKey(key);
      if (!parsed) return undefined;
      const rows = await queryRows(
        client,
        `SELECT ${this.bytesSql} AS body, t.updated_at FROM ${this.names.blobs} t WHERE t.key = $1 FOR SHARE`,
        [this.keyPrefix + key],
      );
      const row = rows[0] as { body: Buffer; updated_at: Date } | undefined;
      if (!row) return undefined;
      const summary = await this.writeStackIndex(client, key, row.body.byteLength, row.body);
      return {
        ...parsed,
        key,
        modified: row.updated_at,
        size: row.body.byteLength,
        lastUpdate: summary?.lastUpdate,
        resourceCount: summary?.resourceCount,
      };
    });
  }

  // ---------------------------------------------------------------- internals

  /**
   * @internal Writes one object on `client`: the blob row, the size/MD5 side row and, for a checkpoint key, the stack
   * index row, all stamped with the blob row's `updated_at`. The MD5 and the summary are computed in JS, once, from
   * the bytes in hand (SQL `md5(data)` would read the value back out of TOAST), and a Buffer goes to the server as
   * a binary parameter (pg's encoding of Buffers), not as hex text.
   *
   * Small bodies: ONE statement (blob row, then the side rows from its RETURNING), atomic on its own, so outside a
   * transaction it costs one round trip. Large bodies (`inTransaction` only): the blob INSERT is sent first and the
   * MD5 and summary are computed while the server stores it (TOAST compression of megabytes takes the server far
   * longer than one more round trip), then one statement writes the side rows; the transaction makes it atomic.
   * Returns undefined when `onlyIfAbsent` found the key taken (nothing written).
   */
  async writeObject(
    client: pg.PoolClient | pg.Pool,
    key: string,
    body: Uint8Array,
    onlyIfAbsent: boolean,
    inTransaction: boolean,
  ): Promise<ObjectInfo | undefined> {
    const { names } = this;
    const stored = this.keyPrefix + key;
    const value = this.layout === 'bytea' ? asBuffer(body) : nativeJson(body);
    const cast = this.layout === 'bytea' ? 'bytea' : 'json';
    const onConflict = onlyIfAbsent
      ? 'DO NOTHING'
      : 'DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at';
    const insert = `INSERT INTO ${names.blobs} AS t (key, data, updated_at) VALUES ($1, $2::${cast}, clock_timestamp())
        ON CONFLICT (key) ${onConflict} RETURNING t.key, t.updated_at`;
    const stack = parseStackKey(key) !== undefined;
    if (!inTransaction || body.byteLength < OVERLAP_BYTES) {
      const side = this.sideValues(key, body);
      const { rows } = await client.query<{ updated_at: Date }>(
        `WITH w AS (${insert})${this.sideCtes('w', 3, stack)} SELECT w.updated_at FROM w`,
        [stored, value, ...side],
      );
      return rows[0] && { key, size: body.byteLength, etag: side[1] as string, lastModified: rows[0].updated_at };
    }
    const written = client.query<{ updated_at: Date }>(insert, [stored, value]);
    written.catch(() => {}); // awaited below; never an unhandled rejection while the digest runs
    await requestSent(client as pg.PoolClient, written);
    const side = this.sideValues(key, body);
    const { rows } = await written;
    if (!rows[0]) return undefined;
    await client.query(
      `WITH t AS (SELECT key, updated_at FROM ${names.blobs} WHERE key = $1)${this.sideCtes('t', 2, stack)} SELECT 1`,
      [stored, ...side],
    );
    return { key, size: body.byteLength, etag: side[1] as string, lastModified: rows[0].updated_at };
  }

  /** Size, MD5 and, for a checkpoint key, project, stack, last update and resource count. */
  private sideValues(key: string, body: Uint8Array): unknown[] {
    const values: unknown[] = [body.byteLength, md5Hex(body)];
    const parsed = parseStackKey(key);
    if (parsed) {
      const summary = summarize(body, parsed.compression);
      values.push(parsed.project, parsed.stack, summary?.lastUpdate ?? null, summary?.resourceCount ?? null);
    }
    return values;
  }

  /** CTEs writing the side rows of the row in CTE `from` (columns key, updated_at); `sideValues` from `$first`. */
  private sideCtes(from: string, first: number, stack: boolean): string {
    const p = (i: number) => `$${first + i}`;
    let text = `, o AS (
        INSERT INTO ${this.names.objects} (key, size, md5, updated_at)
        SELECT ${from}.key, ${p(0)}::int8, ${p(1)}::text, ${from}.updated_at FROM ${from}
        ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size, md5 = EXCLUDED.md5, updated_at = EXCLUDED.updated_at)`;
    if (stack) {
      text += `, s AS (
        INSERT INTO ${this.names.stacks} (key, project, stack, updated_at, size, last_update, resource_count)
        SELECT ${from}.key, ${p(2)}::text, ${p(3)}::text, ${from}.updated_at, ${p(0)}::int8, ${p(4)}::text,
               ${p(5)}::int4 FROM ${from}
        ON CONFLICT (key) DO UPDATE SET project = EXCLUDED.project, stack = EXCLUDED.stack,
          updated_at = EXCLUDED.updated_at, size = EXCLUDED.size, last_update = EXCLUDED.last_update,
          resource_count = EXCLUDED.resource_count)`;
    }
    return text;
  }

  /**
   * @internal A server-side copy as one statement ($1 source, $2 destination): the source row (share-locked, so it
   * cannot change under the copy), the destination row and its side row with the source's size and ETag. The
   * bytes stay in the database (TOAST data is copied as stored, never recompressed).
   */
  get copySql(): string {
    const { names } = this;
    return `WITH src AS (
        SELECT t.data, (${this.sizeSql})::int8 AS size, ${this.etagSql} AS etag
          FROM ${names.blobs} t LEFT JOIN ${names.objects} o ON o.key = t.key
         WHERE t.key = $1 FOR SHARE OF t
      ), w AS (
        INSERT INTO ${names.blobs} AS t (key, data, updated_at) SELECT $2, src.data, clock_timestamp() FROM src
        ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
        RETURNING t.key, t.updated_at
      ), o AS (
        INSERT INTO ${names.objects} (key, size, md5, updated_at) SELECT w.key, src.size, src.etag, w.updated_at
          FROM w, src
        ON CONFLICT (key) DO UPDATE SET size = EXCLUDED.size, md5 = EXCLUDED.md5, updated_at = EXCLUDED.updated_at
      )
      SELECT w.updated_at, src.size, src.etag FROM w, src`;
  }

  /** @internal */
  async writeStackIndex(
    client: pg.PoolClient,
    key: string,
    size: number,
    bytes: Uint8Array,
  ): Promise<ReturnType<typeof summarizeCheckpoint>> {
    const parsed = parseStackKey(key)!;
    const summary = summarize(bytes, parsed.compression);
    await client.query(
      `INSERT INTO ${this.names.stacks} (key, project, stack, updated_at, size, last_update, resource_count)
       SELECT t.key, $2, $3, t.updated_at, $4, $5, $6 FROM ${this.names.blobs} t WHERE t.key = $1
       ON CONFLICT (key) DO UPDATE SET project = EXCLUDED.project, stack = EXCLUDED.stack,
         updated_at = EXCLUDED.updated_at, size = EXCLUDED.size, last_update = EXCLUDED.last_update,
         resource_count = EXCLUDED.resource_count`,
      [
        this.keyPrefix + key,
        parsed.project,
        parsed.stack,
        size,
        summary?.lastUpdate ?? null,
        summary?.resourceCount ?? null,
      ],
    );
    return summary;
  }

  /** Runs fn in one transaction on one connection (core's withTransaction: a connection that failed is discarded). */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // A client checked out of the pool, as this method has always promised its callers.
    return withTransaction(this.pool, (client) => fn(client as pg.PoolClient)).catch(fail);
  }
}

async function deleteRows(client: Queryable, names: PulumiTableNames, keys: string[]): Promise<number> {
  if (keys.length === 0) return 0;
  const { rowCount } = await client.query(`DELETE FROM ${names.blobs} WHERE key = ANY($1::text[])`, [keys]);
  await client.query(`DELETE FROM ${names.objects} WHERE key = ANY($1::text[])`, [keys]);
  await client.query(`DELETE FROM ${names.stacks} WHERE key = ANY($1::text[])`, [keys]);
  return rowCount ?? 0;
}

interface CopyRow {
  updated_at: Date;
  size: string;
  etag: string;
}

function copiedInfo(key: string, row: CopyRow | undefined): ObjectInfo | null {
  return row ? { key, size: Number(row.size), etag: row.etag, lastModified: row.updated_at } : null;
}

function alreadyExists(key: string): never {
  throw new PgStateError('PRECONDITION_FAILED', `The object ${JSON.stringify(key)} already exists.`, {
    fix: 'Only write it if absent when you expect it to be new; otherwise drop the if-none-match condition.',
  });
}

/**
 * From this size on, a write sends the bytes first and digests them while the server stores them (see
 * `writeObject`); below it, the extra round trips of a transaction cost more than the overlap saves.
 */
const OVERLAP_BYTES = 3 * 1024 * 1024;

/**
 * Resolves once the request of `pending` has left this process (the socket's write buffer drained), or once the
 * query settled, whichever comes first. An optimization only: without pg's socket at hand it resolves at once.
 */
async function requestSent(client: pg.PoolClient, pending: Promise<unknown>): Promise<void> {
  const socket = (client as unknown as { connection?: { stream?: Writable } }).connection?.stream;
  if (!socket || typeof socket.writableLength !== 'number' || socket.writableLength === 0) return;
  let onDrain: (() => void) | undefined;
  await Promise.race([
    new Promise<void>((resolve) => {
      onDrain = resolve;
      socket.once('drain', resolve);
      socket.once('close', resolve);
    }),
    pending.then(
      () => {},
      () => {},
    ),
  ]);
  if (onDrain) {
    socket.off('drain', onDrain);
    socket.off('close', onDrain);
  }
}

async function modifiedTimes(db: Queryable, store: PulumiBlobStore, keys: string[]): Promise<Map<string, Date>> {
  const { rows } = await db.query<{ key: string; updated_at: Date }>(
    `SELECT key, updated_at FROM ${store.names.blobs} WHERE key = ANY($1::text[])`,
    [keys.map((k) => store.keyPrefix + k)],
  );
  return new Map(rows.map((r) => [r.key.slice(store.keyPrefix.length), r.updated_at]));
}

/** What `stack ls` shows, from a checkpoint's bytes; undefined when they do not decode (indexed without a count). */
function summarize(bytes: Uint8Array, compression: Compression): ReturnType<typeof summarizeCheckpoint> {
  try {
    return summarizeCheckpoint(decompressBytes(bytes, compression));
  } catch {
    return undefined;
  }
}

function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** What Pulumi's native driver stores: `{"data":"<base64>"}` (Go's []byte JSON encoding, no line breaks). */
function nativeJson(body: Uint8Array): string {
  return `{"data":"${Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64')}"}`;
}

function commonPrefixOf(key: string, prefix: string, delimiter: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const at = key.indexOf(delimiter, prefix.length);
  return at < 0 ? undefined : key.slice(0, at + delimiter.length);
}

function validateRange(range: ByteRange): void {
  const ok =
    Number.isSafeInteger(range.start) &&
    range.start >= 0 &&
    (range.end === undefined || (Number.isSafeInteger(range.end) && range.end >= range.start));
  if (!ok) {
    throw new PgStateError('INVALID_INPUT', `The byte range ${JSON.stringify(range)} is not valid.`, {
      fix: 'Use a range with 0 <= start <= end.',
    });
  }
}

async function queryRows(db: Queryable, text: string, values: unknown[]): Promise<unknown[]> {
  const result = await db.query(text, values);
  return result.rows;
}

function validateDelimiter(delimiter: string): string {
  if (typeof delimiter !== 'string' || /[\u0000-\u001f]/.test(delimiter) || delimiter.length > 16) {
    throw new PgStateError('INVALID_INPUT', `The delimiter ${JSON.stringify(String(delimiter))} is not supported.`, {
      fix: 'Use a short printable delimiter such as "/".',
    });
  }
  return delimiter;
}

function fail(error: unknown): never {
  throw mapError(error, true);
}

/** Turns driver errors into PgStateErrors with stable codes; messages carry no connection strings. */
export function mapError(error: unknown, rethrow?: false): never;
export function mapError(error: unknown, rethrow: true): PgStateError;
export function mapError(error: unknown, rethrow = false): PgStateError {
  let mapped: PgStateError;
  const kind = pgErrorKind(error);
  const message = (error as { message?: string } | null)?.message ?? String(error);
  if (error instanceof PgStateError) mapped = error;
  else if (kind === 'insufficient-privilege') {
    mapped = new PgStateError('PERMISSION_DENIED', `PostgreSQL refused: ${message}`, {
      fix: 'Grant the role SELECT/INSERT/UPDATE/DELETE on the Pulumi tables (see `pgstate doctor`).',
      cause: error,
    });
  } else if (kind === 'undefined-table') {
    mapped = new PgStateError('MIGRATIONS_PENDING', `A Pulumi table is missing: ${message}`, {
      fix: 'Apply the Pulumi migrations for this schema and table (`migrate` of @pgstate/schema, or `pgstate migrate`) as a role that may create tables.',
      cause: error,
    });
  } else if (kind === 'connection-lost') {
    mapped = new PgStateError('UNREACHABLE', `Lost the database connection: ${message}`, {
      fix: 'Check that PostgreSQL is running and reachable; the write was not applied.',
      cause: error,
    });
  } else {
    // Connection problems core knows (a host that does not resolve, auth, TLS) keep core's codes and fixes.
    const core = toPgStateError(error);
    mapped = core.code === 'QUERY_FAILED' ? new PgStateError('QUERY_FAILED', message, { cause: error }) : core;
  }
  if (rethrow) return mapped;
  throw mapped;
}

function md5Hex(body: Uint8Array): string {
  return createHash('md5').update(body).digest('hex');
}

function checkBody(body: Uint8Array): void {
  if (!(body instanceof Uint8Array)) {
    throw new PgStateError('INVALID_INPUT', 'The object body is not bytes.', { fix: 'Pass a Buffer/Uint8Array.' });
  }
}

/** CLI lock files: `.pulumi/locks/organization/<project>/<stack>/<id>.json`. */
const LOCK_KEY = /^(\.pulumi\/locks\/[^/]+\/[^/]+\/[^/]+\/)[^/]+$/;

/** The lock directory a key belongs to, when it is a CLI lock file. */
export function lockDirOf(key: string): string | undefined {
  return LOCK_KEY.exec(key)?.[1];
}

/**
 * Blob operations inside one open transaction (see `PulumiBlobStore.batch`). Writes to a CLI lock file take the
 * lock directory's advisory lock first, so a lock file the CLI writes through the S3 gateway and an atomic
 * `acquireLock` from this package serialize: they never both win.
 */
export class BlobTransaction {
  constructor(
    private readonly store: PulumiBlobStore,
    readonly client: pg.PoolClient,
  ) {}

  private stored(key: string): string {
    return this.store.keyPrefix + key;
  }

  /** Serializes with every other writer of this prefix until the transaction ends. */
  async lockPrefix(prefix: string): Promise<void> {
    await this.client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `pgstate:pulumi:${this.store.names.blobs}:${this.stored(prefix)}`,
    ]);
  }

  private async lockIfLockFile(key: string): Promise<void> {
    const dir = lockDirOf(key);
    if (dir !== undefined) await this.lockPrefix(dir);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    validateKey(key);
    const { rows } = await this.client.query<{ size: string; etag: string; updated_at: Date }>(
      `SELECT ${this.store.sizeSql} AS size, ${this.store.etagSql} AS etag, t.updated_at
         FROM ${this.store.names.blobs} t LEFT JOIN ${this.store.names.objects} o ON o.key = t.key
        WHERE t.key = $1`,
      [this.stored(key)],
    );
    const row = rows[0];
    return row ? { key, size: Number(row.size), etag: row.etag, lastModified: row.updated_at } : null;
  }

  async read(key: string): Promise<Uint8Array | null> {
    validateKey(key);
    const { rows } = await this.client.query<{ body: Buffer }>(
      `SELECT ${this.store.bytesSql} AS body FROM ${this.store.names.blobs} t WHERE t.key = $1`,
      [this.stored(key)],
    );
    return rows[0]?.body ?? null;
  }

  /** Logical keys under a prefix, in byte order. */
  async keys(prefix: string, limit?: number): Promise<string[]> {
    validatePrefix(prefix);
    const stored = this.stored(prefix);
    const upper = prefixUpperBound(stored);
    const values: unknown[] = [stored];
    let where = 't.key ~>=~ $1';
    if (upper !== undefined) {
      values.push(upper);
      where += ` AND t.key ~<~ $${values.length}`;
    }
    let tail = '';
    if (limit !== undefined) {
      values.push(limit);
      tail = ` LIMIT $${values.length}`;
    }
    const { rows } = await this.client.query<{ key: string }>(
      `SELECT t.key FROM ${this.store.names.blobs} t WHERE ${where} ORDER BY t.key USING ~<~${tail}`,
      values,
    );
    return rows.map((r) => r.key.slice(this.store.keyPrefix.length));
  }

  async put(key: string, body: Uint8Array, conditions: PutConditions = {}): Promise<ObjectInfo> {
    validateKey(key);
    checkBody(body);
    if (conditions.ifMatch !== undefined && !/^[0-9a-f]{32}$/.test(conditions.ifMatch)) {
      throw new PgStateError('PRECONDITION_FAILED', `The ETag ${JSON.stringify(conditions.ifMatch)} does not match.`, {
        fix: 'Pass the hex MD5 ETag returned by head/put, without quotes.',
      });
    }
    await this.lockIfLockFile(key);
    const { names } = this.store;
    if (conditions.ifMatch !== undefined) {
      const { rows } = await this.client.query<{ etag: string }>(
        `SELECT ${this.store.etagSql} AS etag
           FROM ${names.blobs} t LEFT JOIN ${names.objects} o ON o.key = t.key
          WHERE t.key = $1 FOR UPDATE OF t`,
        [this.stored(key)],
      );
      const current = rows[0]?.etag;
      if (current !== conditions.ifMatch) {
        throw new PgStateError(
          'PRECONDITION_FAILED',
          current === undefined
            ? `The object ${JSON.stringify(key)} does not exist, so its ETag cannot match.`
            : `The object ${JSON.stringify(key)} changed: its ETag is no longer ${conditions.ifMatch}.`,
          { fix: 'Read the object again and retry with its current ETag.' },
        );
      }
    }
    const info = await this.store.writeObject(this.client, key, body, conditions.ifNoneMatch === '*', true);
    return info ?? alreadyExists(key);
  }

  async copy(sourceKey: string, destinationKey: string): Promise<ObjectInfo | null> {
    validateKey(sourceKey);
    validateKey(destinationKey);
    await this.lockIfLockFile(destinationKey);
    const { rows } = await this.client.query<CopyRow>(this.store.copySql, [
      this.stored(sourceKey),
      this.stored(destinationKey),
    ]);
    const info = copiedInfo(destinationKey, rows[0]);
    if (info && parseStackKey(destinationKey)) {
      const bytes = await this.read(destinationKey);
      await this.store.writeStackIndex(this.client, destinationKey, info.size, bytes!);
    }
    return info;
  }

  /** Last-modified time of each of `keys` that exists, in one query. */
  async modifiedTimes(keys: string[]): Promise<Map<string, Date>> {
    for (const key of keys) validateKey(key);
    return modifiedTimes(this.client, this.store, keys);
  }

  async delete(key: string): Promise<boolean> {
    validateKey(key);
    await this.lockIfLockFile(key);
    return (await deleteRows(this.client, this.store.names, [this.stored(key)])) > 0;
  }

  /** Copy then delete: a rename that is atomic with the rest of the transaction. */
  async move(sourceKey: string, destinationKey: string): Promise<boolean> {
    if (!(await this.copy(sourceKey, destinationKey))) return false;
    if (sourceKey !== destinationKey) await this.delete(sourceKey);
    return true;
  }
}
