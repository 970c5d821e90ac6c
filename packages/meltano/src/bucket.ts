/**
 * Meltano's S3 state backend layout served from the pgstate layout's tables, for `@pgstate/s3-gateway`:
 * - `{prefix}/{state_id}/state.json` = `{"completed": ..., "partial": ...}` <-> one `meltano_state` row;
 * - `{prefix}/{state_id}/lock` (a UTC epoch as text) <-> one `meltano_state_locks` row with an expiry.
 * Stock Meltano checks the lock file, then writes it, which is not atomic on S3. Here the PUT is atomic: it waits
 * while another live holder has the lock and takes it over once that holder's row expired, so two Meltano
 * processes (or Meltano and pgstate) really exclude each other. An expired lock reads as absent, as Meltano would
 * treat it.
 */
import { createHash } from 'node:crypto';
import {
  type BucketHandler,
  type ByteRange,
  type ListRequest,
  type ListResult,
  type ObjectBody,
  type ObjectInfo,
  PgStateError,
  type PutConditions,
  withTransaction,
} from '@pgstate/core';
import type pg from 'pg';
import { dumpJson, isJsonObject, parseJson } from './json.js';
import { backoff, expiredCondition, lockRowUpsert, sleep } from './locks.js';
import { readStoredPart, validateStateId, writePart } from './state.js';
import { MeltanoStateStore, type MeltanoStoreOptions } from './store.js';

export interface MeltanoBucketOptions {
  /** An open pgstate-layout store, or the options to open one (then `close()` closes it). */
  store?: MeltanoStateStore;
  storeOptions?: MeltanoStoreOptions;
  /**
   * The path of Meltano's `state_backend.uri` (`s3://bucket/<prefix>`), without slashes at the ends. Default ''.
   * Keys outside it are INVALID_INPUT.
   */
  prefix?: string;
  /**
   * Longest time a lock-file PUT waits for a live holder (default lockTimeoutSeconds + 5: long enough for a dead
   * holder's lock to expire). Then the PUT fails with CONFLICT.
   */
  lockWaitSeconds?: number;
  /**
   * Create or update the tables on first use with `@pgstate/schema`'s migrator (default true, like the Pulumi
   * bucket). With `false` nothing is checked: a missing table fails the request.
   */
  migrate?: boolean;
}

const STATE_FILE = 'state.json';
const LOCK_FILE = 'lock';
const S3_LOCK_PREFIX = 's3:';
/** A lock file's text: what Meltano wrote, or the lock time of a pgstate / Python lock row. */
const LOCK_TEXT_SQL = `CASE WHEN lock_id LIKE '${S3_LOCK_PREFIX}%' THEN substr(lock_id, ${S3_LOCK_PREFIX.length + 1})
  ELSE extract(epoch from locked_at::timestamptz)::text END`;
/** Sorts after every key that starts with the string before it (UTF-8 order). */
const AFTER_ALL = '\u{10FFFF}';

type ParsedKey = { stateId: string; file: 'state' | 'lock' };

interface KeyRow {
  key: string;
  kind: 'state' | 'lock';
  state_id: string;
  partial_state: string | null;
  completed_state: string | null;
  modified: Date | null;
  lock_text: string | null;
}

export function createMeltanoBucketHandler(options: MeltanoBucketOptions = {}): BucketHandler {
  return new MeltanoBucketHandler(options);
}

class MeltanoBucketHandler implements BucketHandler {
  readonly kind = 'meltano';
  readonly #store: MeltanoStateStore;
  readonly #ownsStore: boolean;
  readonly #prefix: string;
  readonly #lockWaitMs: number;
  readonly #state: string;
  readonly #locks: string;
  readonly #migrate: boolean;
  #ready: Promise<void> | undefined;

  constructor(options: MeltanoBucketOptions) {
    this.#store = options.store ?? new MeltanoStateStore({ ...options.storeOptions, layout: 'pgstate' });
    this.#ownsStore = options.store === undefined;
    if (this.#store.layout !== 'pgstate' || !this.#store.config.locksTable) {
      throw new PgStateError('BAD_SETTING', 'The Meltano S3 bucket is served from the pgstate layout only.', {
        fix: 'Open the store with layout "pgstate" (the default; formerly "seed").',
      });
    }
    this.#migrate = options.migrate ?? true;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.#prefix = prefix === '' ? '' : `${prefix}/`;
    this.#lockWaitMs = ((options.lockWaitSeconds ?? this.#store.lockTimeoutSeconds + 5) * 1000) | 0;
    this.#state = this.#store.config.stateTable;
    this.#locks = this.#store.config.locksTable;
  }

  get #pool(): pg.Pool {
    return this.#store.pool;
  }

  /**
   * Brings the tables up to date on first use, as the Pulumi bucket does: an up-to-date database costs one journal
   * read (no lock, no writes, fine for a DML-only role); a failure is retried on the next request.
   */
  #ensureTables(): Promise<void> {
    if (!this.#migrate) return Promise.resolve();
    this.#ready ??= this.#store.migrate().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  #parseKey(key: string): ParsedKey {
    const bad = (why: string, fix: string) =>
      new PgStateError('INVALID_INPUT', `The key ${JSON.stringify(key.slice(0, 200))} ${why}.`, { fix });
    if (!key.startsWith(this.#prefix)) {
      throw bad(`is outside the prefix "${this.#prefix}"`, 'Set the handler prefix to the path of state_backend.uri.');
    }
    const rest = key.slice(this.#prefix.length);
    const slash = rest.lastIndexOf('/');
    const file = rest.slice(slash + 1);
    if (slash <= 0 || (file !== STATE_FILE && file !== LOCK_FILE)) {
      throw bad('is not a Meltano state file', 'Meltano stores {prefix}/{state_id}/state.json and .../lock only.');
    }
    const stateId = rest.slice(0, slash);
    if (stateId.includes('/')) {
      throw bad(
        'has a state id with "/" (or the handler prefix does not match state_backend.uri)',
        'Set the handler prefix to the path of state_backend.uri; Meltano state ids cannot contain "/".',
      );
    }
    return { stateId: validateStateId(stateId), file: file === STATE_FILE ? 'state' : 'lock' };
  }

  #stateBody(stateId: string, row: { partial_state: string | null; completed_state: string | null }): Uint8Array {
    const completed = readStoredPart(row.completed_state, stateId, 'completed_state');
    const partial = readStoredPart(row.partial_state, stateId, 'partial_state');
    // Python's json.dumps layout, and `{}` (never null) for an empty part: Meltano's file backends crash on null.
    return Buffer.from(dumpJson({ completed, partial }), 'utf8');
  }

  #info(key: string, body: Uint8Array, modified: Date | null): ObjectInfo {
    return {
      key,
      size: body.byteLength,
      etag: createHash('md5').update(body).digest('hex'),
      lastModified: modified ?? new Date(0),
    };
  }

  async #readState(client: pg.Pool | pg.ClientBase, stateId: string, forUpdate = false) {
    const { rows } = await client.query<{
      partial_state: string | null;
      completed_state: string | null;
      updated_at: Date | null;
    }>(
      `SELECT partial_state, completed_state, updated_at FROM ${this.#state} WHERE state_id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
      [stateId],
    );
    return rows[0];
  }

  async #readLock(stateId: string): Promise<{ text: string; modified: Date } | undefined> {
    const { rows } = await this.#pool.query<{ text: string; modified: Date }>(
      `SELECT ${LOCK_TEXT_SQL} AS text, locked_at::timestamptz AS modified
       FROM ${this.#locks} AS l WHERE state_id = $1 AND NOT ${expiredCondition('l')}`,
      [stateId],
    );
    return rows[0];
  }

  async #object(key: string): Promise<{ info: ObjectInfo; body: Uint8Array } | null> {
    const { stateId, file } = this.#parseKey(key);
    if (file === 'lock') {
      const lock = await this.#readLock(stateId);
      if (!lock) return null;
      const body = Buffer.from(lock.text, 'utf8');
      return { info: this.#info(key, body, lock.modified), body };
    }
    const row = await this.#readState(this.#pool, stateId);
    if (!row) return null;
    const body = this.#stateBody(stateId, row);
    return { info: this.#info(key, body, row.updated_at), body };
  }

  async headObject(key: string): Promise<ObjectInfo | null> {
    await this.#ensureTables();
    return (await this.#object(key))?.info ?? null;
  }

  async getObject(key: string, range?: ByteRange): Promise<ObjectBody | null> {
    await this.#ensureTables();
    const found = await this.#object(key);
    if (!found) return null;
    const body = range
      ? found.body.subarray(range.start, range.end === undefined ? undefined : range.end + 1)
      : found.body;
    return { info: found.info, body };
  }

  async putObject(key: string, body: Uint8Array, conditions: PutConditions = {}): Promise<ObjectInfo> {
    await this.#ensureTables();
    const { stateId, file } = this.#parseKey(key);
    const text = Buffer.from(body).toString('utf8');
    if (file === 'lock') return this.#putLock(key, stateId, text, conditions);
    const value = parseJson(text, `state file ${key}`);
    if (!isJsonObject(value)) {
      throw new PgStateError('INVALID_INPUT', `The state file ${key} is not a JSON object.`, {
        fix: 'Write {"completed": {...}, "partial": {...}} as Meltano does.',
      });
    }
    const part = (name: 'completed' | 'partial') => {
      const v = value[name];
      if (v === undefined || v === null) return {};
      if (!isJsonObject(v)) {
        throw new PgStateError('INVALID_INPUT', `The "${name}" part of ${key} is not a JSON object.`, {
          fix: 'Each part must be a JSON object or null.',
        });
      }
      return v;
    };
    const completed = part('completed');
    const partial = part('partial');
    const updatedAt = await withTransaction(this.#pool, async (client) => {
      if (conditions.ifNoneMatch || conditions.ifMatch) {
        // Take the row (or the key's insert slot) so the condition and the write are one atomic step.
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 7))', [stateId]);
        const current = await this.#readState(client, stateId, true);
        if (conditions.ifNoneMatch && current) throw preconditionFailed(key, 'it exists');
        if (conditions.ifMatch) {
          const etag = current ? this.#info(key, this.#stateBody(stateId, current), null).etag : undefined;
          if (etag !== conditions.ifMatch) throw preconditionFailed(key, 'its ETag differs');
        }
      }
      const { rows } = await client.query<{ updated_at: Date }>(
        `INSERT INTO ${this.#state} (state_id, partial_state, completed_state, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (state_id) DO UPDATE SET partial_state = EXCLUDED.partial_state,
           completed_state = EXCLUDED.completed_state, updated_at = EXCLUDED.updated_at
         RETURNING updated_at`,
        [stateId, writePart(partial, 'null'), writePart(completed, 'null')],
      );
      return rows[0]?.updated_at ?? null;
    });
    return this.#info(
      key,
      this.#stateBody(stateId, {
        completed_state: writePart(completed, 'null'),
        partial_state: writePart(partial, 'null'),
      }),
      updatedAt,
    );
  }

  async #putLock(key: string, stateId: string, text: string, conditions: PutConditions): Promise<ObjectInfo> {
    if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || text.length > 200) {
      throw new PgStateError('INVALID_INPUT', `The lock file ${key} must hold a UTC epoch number.`, {
        fix: 'Write the current time as seconds since the epoch, as Meltano does.',
      });
    }
    const lockId = `${S3_LOCK_PREFIX}${text.trim()}`;
    const deadline = Date.now() + (conditions.ifNoneMatch ? 0 : this.#lockWaitMs);
    for (let attempt = 0; ; attempt++) {
      const { rowCount } = await this.#pool.query(lockRowUpsert(this.#locks), [
        stateId,
        lockId,
        this.#store.lockTimeoutSeconds,
      ]);
      if (rowCount === 1) return this.#info(key, Buffer.from(text.trim(), 'utf8'), new Date());
      if (Date.now() >= deadline) {
        if (conditions.ifNoneMatch) throw preconditionFailed(key, 'the state is locked');
        throw new PgStateError('CONFLICT', `The state "${stateId}" stayed locked by another writer.`, {
          fix: 'Another Meltano run holds this state; retry when it finished.',
        });
      }
      await sleep(Math.min(backoff(attempt, 250), Math.max(0, deadline - Date.now())));
    }
  }

  async copyObject(sourceKey: string, destinationKey: string): Promise<ObjectInfo | null> {
    await this.#ensureTables();
    const source = this.#parseKey(sourceKey);
    const destination = this.#parseKey(destinationKey);
    if (source.file !== 'state' || destination.file !== 'state') {
      throw new PgStateError('INVALID_INPUT', 'Only state.json files can be copied.', {
        fix: 'Copy {prefix}/{state_id}/state.json objects.',
      });
    }
    const found = await this.getObject(sourceKey);
    if (!found) return null;
    return this.putObject(destinationKey, found.body);
  }

  async deleteObject(key: string): Promise<boolean> {
    await this.#ensureTables();
    const { stateId, file } = this.#parseKey(key);
    if (file === 'lock') {
      // Only lock files: pgstate's and the Python plugin's lock rows are released by their holders.
      const { rowCount } = await this.#pool.query(
        `DELETE FROM ${this.#locks} WHERE state_id = $1 AND lock_id LIKE '${S3_LOCK_PREFIX}%'`,
        [stateId],
      );
      return (rowCount ?? 0) > 0;
    }
    const { rowCount } = await this.#pool.query(`DELETE FROM ${this.#state} WHERE state_id = $1`, [stateId]);
    return rowCount === 1;
  }

  async listObjects(request: ListRequest): Promise<ListResult> {
    await this.#ensureTables();
    const prefix = request.prefix ?? '';
    const delimiter = request.delimiter || undefined;
    const objects: ObjectInfo[] = [];
    const commonPrefixes: string[] = [];
    let cursor = request.startAfter ?? '';
    let last: string | undefined;
    const full = () => objects.length + commonPrefixes.length >= request.maxKeys;
    if (request.maxKeys <= 0) return { objects, commonPrefixes, isTruncated: false };
    for (;;) {
      const rows = await this.#keysAfter(prefix, cursor, 500);
      for (const row of rows) {
        const rest = row.key.slice(prefix.length);
        const cut = delimiter ? rest.indexOf(delimiter) : -1;
        const common = delimiter && cut >= 0 ? prefix + rest.slice(0, cut + delimiter.length) : undefined;
        // A key that rolls up into the common prefix just listed is no new entry: the page is not truncated by it.
        if (common !== undefined && commonPrefixes[commonPrefixes.length - 1] === common) continue;
        if (full()) return { objects, commonPrefixes, isTruncated: true, nextStartAfter: last };
        if (common !== undefined) {
          commonPrefixes.push(common);
          // Resume after everything under this common prefix.
          last = common + AFTER_ALL;
          continue;
        }
        const body =
          row.kind === 'state' ? this.#stateBody(row.state_id, row) : Buffer.from(row.lock_text ?? '', 'utf8');
        objects.push(this.#info(row.key, body, row.modified));
        last = row.key;
      }
      if (rows.length < 500) return { objects, commonPrefixes, isTruncated: false };
      cursor = rows[rows.length - 1]?.key ?? cursor;
    }
  }

  /** Keys of this bucket after `cursor` that start with `prefix`, in byte order. */
  async #keysAfter(prefix: string, cursor: string, limit: number): Promise<KeyRow[]> {
    const { rows } = await this.#pool.query<KeyRow>(
      `SELECT k.key, k.kind, k.state_id, k.partial_state, k.completed_state, k.modified, k.lock_text FROM (
         SELECT $1 || state_id || '/${STATE_FILE}' AS key, 'state' AS kind, state_id, partial_state, completed_state,
                updated_at AS modified, NULL AS lock_text
         FROM ${this.#state}
         UNION ALL
         SELECT $1 || state_id || '/${LOCK_FILE}', 'lock', state_id, NULL, NULL, locked_at::timestamptz, ${LOCK_TEXT_SQL}
         FROM ${this.#locks} AS l WHERE NOT ${expiredCondition('l')}
       ) AS k
       WHERE k.key COLLATE "C" > $2 AND starts_with(k.key, $3)
       ORDER BY k.key COLLATE "C" LIMIT ${limit}`,
      [this.#prefix, cursor, prefix],
    );
    return rows;
  }

  async close(): Promise<void> {
    if (this.#ownsStore) await this.#store.close();
  }
}

function preconditionFailed(key: string, why: string): PgStateError {
  return new PgStateError('PRECONDITION_FAILED', `The condition on ${key} failed: ${why}.`, {
    fix: 'Read the object again and retry with its current ETag.',
  });
}
