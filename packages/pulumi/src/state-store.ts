/**
 * Pulumi DIY semantics (project mode, meta version 1) on a blob store: the same keys and file formats the CLI
 * reads and writes, so the CLI (through the S3 gateway or `pulumi login postgres://`) and this API can work on
 * one store interchangeably. Where the CLI takes several round trips, this does one transaction.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import zlib from 'node:zlib';
import { PgStateError } from '@pgstate/core';
import { type BlobTransaction, PulumiBlobStore, type PulumiBlobStoreOptions, parseStackKey } from './blob-store.js';
import { type Compression, decompressBytes } from './summary.js';

export const ORGANIZATION = 'organization';
const NAME = /^[A-Za-z0-9_.-]+$/;

export interface StackRef {
  project: string;
  stack: string;
}

export interface StackSummary extends StackRef {
  /** `organization/<project>/<stack>`, what the CLI prints. */
  name: string;
  /** `latest.manifest.time` of the checkpoint (undefined for a stack never deployed). */
  lastUpdate: string | undefined;
  resourceCount: number | undefined;
  /** Key of the checkpoint variant in use and when it was written. */
  key: string;
  modified: Date;
  size: number;
}

export interface LockHolder {
  key: string;
  id: string;
  pid: number | undefined;
  username: string | undefined;
  hostname: string | undefined;
  /** RFC 3339 time the lock was taken. */
  timestamp: string | undefined;
}

export interface StackLock {
  key: string;
  id: string;
  release(): Promise<void>;
}

/** One `.history.json` record: the CLI's UpdateInfo. */
export interface UpdateInfo {
  kind: string;
  startTime: number;
  message?: string;
  environment?: Record<string, string>;
  config?: Record<string, unknown>;
  result?: string;
  endTime?: number;
  version?: number;
  resourceChanges?: Record<string, number>;
  [other: string]: unknown;
}

export interface HistoryEntry {
  /** The `N` of `S-N.history.json`: UnixNano when the CLI wrote it. */
  timestamp: string;
  key: string;
  checkpointKey: string | undefined;
  info: UpdateInfo;
}

export interface PruneOptions {
  project?: string;
  stack?: string;
  /** Keep this many newest history updates per stack (each = `.history.json` + `.checkpoint.json`). */
  keepHistory?: number;
  /** Keep this many newest backups per stack. */
  keepBackups?: number;
  /** Only delete entries older than this (with keep*, both must allow deletion). */
  olderThan?: Date;
  /** Also delete `.bak` files of checkpoints (older than `olderThan` when given). */
  removeBak?: boolean;
  dryRun?: boolean;
}

export interface PruneResult {
  deleted: string[];
  bytes: number;
}

export interface TransferProgress {
  done: number;
  total: number;
  key: string;
  bytes: number;
}

export interface PulumiStateStoreOptions {
  /** Compression for checkpoints and history this store writes: '' (default), '.gz', or '.zst' (Node >= 22.15). */
  compression?: Compression;
  /** Write `backups/` after each recorded update, like the CLI (default true). */
  backups?: boolean;
}

function invalid(message: string, fix: string): PgStateError {
  return new PgStateError('INVALID_INPUT', message, { fix });
}

/** Project and stack names: letters, digits, `-`, `_`, `.` (the CLI's rule); never `.` or `..`. */
export function validateName(name: string, what: 'project' | 'stack'): string {
  if (typeof name !== 'string' || !NAME.test(name) || name === '.' || name === '..' || name.length > 100) {
    throw invalid(
      `The ${what} name ${JSON.stringify(String(name).slice(0, 80))} is not valid.`,
      'Use letters, digits, "-", "_" and "." only (at most 100 characters).',
    );
  }
  return name;
}

const stackBase = (r: StackRef) => `.pulumi/stacks/${r.project}/${r.stack}`;
const historyDir = (r: StackRef) => `.pulumi/history/${r.project}/${r.stack}/`;
const backupDir = (r: StackRef) => `.pulumi/backups/${r.project}/${r.stack}/`;
const lockDir = (r: StackRef) => `.pulumi/locks/${ORGANIZATION}/${r.project}/${r.stack}/`;
const tagsKey = (r: StackRef) => `${stackBase(r)}.pulumi-tags`;
const fullName = (r: StackRef) => `${ORGANIZATION}/${r.project}/${r.stack}`;

/** The CLI detects compression by content, not by name: gzip and zstd magic numbers. */
export function detectCompression(bytes: Uint8Array): Compression {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return '.gz';
  if (bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd) return '.zst';
  return '';
}

function compress(bytes: Uint8Array, compression: Compression): Uint8Array {
  if (compression === '.gz') return zlib.gzipSync(bytes);
  if (compression === '.zst') {
    const zstd = (zlib as unknown as { zstdCompressSync?: (b: Uint8Array) => Buffer }).zstdCompressSync;
    if (!zstd) {
      throw new PgStateError('BAD_SETTING', 'Writing .zst needs Node.js 22.15 or newer (node:zlib zstd).', {
        fix: 'Use compression "" or ".gz" on this Node.js; .zst files written by the CLI are still read.',
      });
    }
    return zstd(bytes);
  }
  return bytes;
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(decompressBytes(bytes, detectCompression(bytes))).toString('utf8'));
  } catch (error) {
    throw new PgStateError('INVALID_INPUT', `The ${what} is not valid JSON.`, {
      fix: 'Check the file; a checkpoint is what `pulumi stack export` or the CLI wrote.',
      cause: error,
    });
  }
}

/** Go's encoding/json output as the CLI writes it: compact, no HTML escaping (JSON.stringify never escapes HTML). */
function compactJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses `urn:pulumi:<stack>::<project>::<type>::<name>`. */
function urnParts(urn: unknown): { stack: string; project: string } | undefined {
  if (typeof urn !== 'string' || !urn.startsWith('urn:pulumi:')) return undefined;
  const parts = urn.slice('urn:pulumi:'.length).split('::');
  if (parts.length < 4) return undefined;
  return { stack: parts[0]!, project: parts[1]! };
}

const URN_FIELDS = ['urn', 'parent', 'deletedWith'] as const;

/** Rewrites the URNs that name a resource's identity and references (not inputs/outputs), as `stack rename` does. */
function renameUrns(deployment: Record<string, unknown>, from: StackRef, to: StackRef): void {
  const oldPrefix = `urn:pulumi:${from.stack}::${from.project}::`;
  const newPrefix = `urn:pulumi:${to.stack}::${to.project}::`;
  const fix = (v: unknown) =>
    typeof v === 'string' && v.startsWith(oldPrefix) ? newPrefix + v.slice(oldPrefix.length) : v;
  const fixResource = (r: unknown) => {
    if (!isObject(r)) return;
    for (const f of URN_FIELDS) if (f in r) r[f] = fix(r[f]);
    if (Array.isArray(r.dependencies)) r.dependencies = r.dependencies.map(fix);
    if (typeof r.provider === 'string') r.provider = fix(r.provider); // `<urn>::<id>`
    if (isObject(r.propertyDependencies)) {
      for (const [k, v] of Object.entries(r.propertyDependencies)) {
        if (Array.isArray(v)) r.propertyDependencies[k] = v.map(fix);
      }
    }
    if (Array.isArray(r.aliases)) r.aliases = r.aliases.map(fix);
  };
  if (Array.isArray(deployment.resources)) deployment.resources.forEach(fixResource);
  if (Array.isArray(deployment.pending_operations)) {
    for (const op of deployment.pending_operations) if (isObject(op)) fixResource(op.resource);
  }
}

export class PulumiStateStore {
  readonly blobs: PulumiBlobStore;
  private readonly owned: boolean;
  readonly compression: Compression;
  private readonly backups: boolean;

  constructor(source: PulumiBlobStore | PulumiBlobStoreOptions | string, options: PulumiStateStoreOptions = {}) {
    this.owned = !(source instanceof PulumiBlobStore);
    this.blobs =
      source instanceof PulumiBlobStore
        ? source
        : new PulumiBlobStore(typeof source === 'string' ? { connection: source } : source);
    this.compression = options.compression ?? '';
    if (!['', '.gz', '.zst'].includes(this.compression)) {
      throw new PgStateError('BAD_SETTING', `Unknown compression ${JSON.stringify(this.compression)}.`, {
        fix: 'Use "", ".gz" or ".zst".',
      });
    }
    if (this.compression === '.zst') compress(new Uint8Array(), '.zst'); // fail early on old Node.js
    this.backups = options.backups ?? true;
  }

  async close(): Promise<void> {
    if (this.owned) await this.blobs.close();
  }

  private ref(project: string, stack: string): StackRef {
    return { project: validateName(project, 'project'), stack: validateName(stack, 'stack') };
  }

  // ---------------------------------------------------------------- meta.yaml

  /** The store's layout version from `.pulumi/meta.yaml` (0 when absent: a legacy or empty store). */
  async metaVersion(): Promise<number> {
    const bytes = await this.blobs.read('.pulumi/meta.yaml');
    if (!bytes) return 0;
    const m = /^version:\s*(\d+)\s*$/m.exec(Buffer.from(bytes).toString('utf8'));
    if (!m)
      throw new PgStateError('INVALID_INPUT', '.pulumi/meta.yaml has no version.', { fix: 'Write "version: 1".' });
    return Number(m[1]);
  }

  /** Writes `version: 1` for a new store (as the CLI does on first use); rejects versions this code does not know. */
  async ensureMeta(): Promise<void> {
    const version = await this.metaVersion();
    if (version > 1) {
      throw new PgStateError('CONFLICT', `This store has layout version ${version}; only version 1 is supported.`, {
        fix: 'Upgrade @pgstate/pulumi.',
      });
    }
    if (version === 0) {
      await this.blobs.put('.pulumi/meta.yaml', Buffer.from('version: 1\n'), { ifNoneMatch: '*' }).catch((error) => {
        if ((error as PgStateError).code !== 'PRECONDITION_FAILED') throw error;
      });
    }
  }

  // ---------------------------------------------------------------- listing

  /** Stacks with what `pulumi stack ls` shows, from the stack index: no checkpoint is read. */
  async listStacks(project?: string): Promise<StackSummary[]> {
    if (project !== undefined) validateName(project, 'project');
    const rows = await this.blobs.stackIndex(project);
    // Several variants of one stack (e.g. `.json` and `.json.gz`): the CLI uses the newest.
    const newest = new Map<string, (typeof rows)[number]>();
    for (const row of rows) {
      const id = `${row.project}/${row.stack}`;
      const seen = newest.get(id);
      if (!seen || row.modified.getTime() >= seen.modified.getTime()) newest.set(id, row);
    }
    return [...newest.values()].map((r) => ({
      project: r.project,
      stack: r.stack,
      name: fullName(r),
      lastUpdate: r.lastUpdate,
      resourceCount: r.resourceCount,
      key: r.key,
      modified: r.modified,
      size: r.size,
    }));
  }

  async listProjects(): Promise<string[]> {
    return [...new Set((await this.listStacks()).map((s) => s.project))];
  }

  // ---------------------------------------------------------------- checkpoints

  /** The checkpoint key the CLI would use: the newest of `.json`, `.json.gz`, `.json.zst`, or undefined. */
  async checkpointKey(project: string, stack: string, tx?: BlobTransaction): Promise<string | undefined> {
    const ref = this.ref(project, stack);
    const base = `${stackBase(ref)}.json`;
    const variants = [base, `${base}.gz`, `${base}.zst`];
    // One query for the three variants (a checkpoint save is latency-bound: every round trip counts).
    const times = tx ? await tx.modifiedTimes(variants) : await this.blobs.modifiedTimes(variants);
    let best: { key: string; modified: number } | undefined;
    for (const key of variants) {
      const modified = times.get(key)?.getTime();
      if (modified !== undefined && (!best || modified >= best.modified)) best = { key, modified };
    }
    return best?.key;
  }

  async stackExists(project: string, stack: string): Promise<boolean> {
    return (await this.checkpointKey(project, stack)) !== undefined;
  }

  /** The checkpoint file's raw bytes (as stored, maybe compressed) and its key; null when the stack does not exist. */
  async readCheckpointBytes(project: string, stack: string): Promise<{ key: string; bytes: Uint8Array } | null> {
    const key = await this.checkpointKey(project, stack);
    if (!key) return null;
    const bytes = await this.blobs.read(key);
    return bytes ? { key, bytes } : null;
  }

  /** The parsed versioned checkpoint `{version, checkpoint: {stack, config?, latest}}`, or null. */
  async readCheckpoint(project: string, stack: string): Promise<Record<string, unknown> | null> {
    const found = await this.readCheckpointBytes(project, stack);
    if (!found) return null;
    const parsed = parseJson(found.bytes, `checkpoint ${found.key}`);
    if (!isObject(parsed) || !isObject(parsed.checkpoint)) {
      throw new PgStateError('INVALID_INPUT', `${found.key} is not a Pulumi checkpoint.`, {
        fix: 'Restore it from its .bak or from backups/.',
      });
    }
    return parsed;
  }

  /**
   * Saves a versioned checkpoint like the CLI (copy the current file to `.bak`, write, drop the old variant when
   * the compression changed), but in ONE transaction: readers see the old or the new checkpoint, never none.
   */
  async saveCheckpoint(
    project: string,
    stack: string,
    checkpoint: Record<string, unknown> | Uint8Array,
  ): Promise<string> {
    const ref = this.ref(project, stack);
    const raw = checkpoint instanceof Uint8Array ? checkpoint : compactJson(checkpoint);
    const bytes = compress(raw, this.compression);
    const target = `${stackBase(ref)}.json${this.compression}`;
    return this.blobs.batch(async (tx) => {
      await this.saveInTx(tx, ref, target, bytes);
      return target;
    });
  }

  private async saveInTx(tx: BlobTransaction, ref: StackRef, target: string, bytes: Uint8Array): Promise<void> {
    const existing = await this.checkpointKey(ref.project, ref.stack, tx);
    // copy() of a missing target writes nothing and returns null: no separate existence check needed.
    await tx.copy(target, `${target}.bak`);
    if (existing && existing !== target) await tx.move(existing, `${existing}.bak`);
    await tx.put(target, bytes);
  }

  // ---------------------------------------------------------------- export / import

  /** What `pulumi stack export` prints: `{version: 3, deployment: <latest>}`. */
  async exportDeployment(project: string, stack: string): Promise<{ version: number; deployment: unknown }> {
    const chk = await this.readCheckpoint(project, stack);
    if (!chk) throw this.noStack({ project, stack });
    return { version: 3, deployment: (chk.checkpoint as Record<string, unknown>).latest ?? null };
  }

  /**
   * `pulumi stack import`: validates the deployment (JSON, version, every resource URN belongs to this stack
   * unless `force`), takes the stack lock, and saves. On any error nothing is written.
   */
  async importDeployment(
    project: string,
    stack: string,
    input: string | Uint8Array | { version?: unknown; deployment?: unknown },
    options: { force?: boolean } = {},
  ): Promise<void> {
    const ref = this.ref(project, stack);
    const untyped =
      typeof input === 'string' || input instanceof Uint8Array
        ? parseJson(typeof input === 'string' ? Buffer.from(input) : input, 'deployment')
        : input;
    if (!isObject(untyped) || typeof untyped.version !== 'number' || !isObject(untyped.deployment)) {
      throw invalid(
        'The deployment is not `{"version": N, "deployment": {...}}`.',
        'Import what `pulumi stack export` wrote.',
      );
    }
    if (untyped.version < 1 || untyped.version > 3) {
      throw invalid(
        `Deployment version ${untyped.version} is not supported (1-3).`,
        'Export it with a Pulumi CLI 3.x.',
      );
    }
    const deployment = untyped.deployment;
    const resources = deployment.resources ?? [];
    if (!Array.isArray(resources)) throw invalid('deployment.resources is not an array.', 'Check the file.');
    for (const r of resources) {
      const parts = isObject(r) ? urnParts(r.urn) : undefined;
      if (!parts) throw invalid(`A resource has no valid URN: ${JSON.stringify(r).slice(0, 120)}`, 'Check the file.');
      if (!options.force && (parts.stack !== ref.stack || parts.project !== ref.project)) {
        throw new PgStateError(
          'CONFLICT',
          `The deployment belongs to stack ${parts.project}/${parts.stack}, not ${ref.project}/${ref.stack}.`,
          { fix: 'Import it into the matching stack, or pass force to import it anyway.' },
        );
      }
    }
    const existing = await this.readCheckpoint(ref.project, ref.stack).catch(() => null);
    const config = isObject(existing?.checkpoint) ? existing.checkpoint.config : undefined;
    const checkpoint = {
      version: 3,
      checkpoint: { stack: fullName(ref), ...(config === undefined ? {} : { config }), latest: deployment },
    };
    await this.withLock(ref.project, ref.stack, () => this.saveCheckpoint(ref.project, ref.stack, checkpoint));
  }

  // ---------------------------------------------------------------- history and backups

  /** Update history, newest first (what `pulumi stack history` shows). */
  async history(project: string, stack: string, limit?: number): Promise<HistoryEntry[]> {
    const ref = this.ref(project, stack);
    const dir = historyDir(ref);
    const keys = (await this.blobs.listAll(dir)).map((o) => o.key);
    const entries = keys
      .map((key) => ({ key, m: /^(.*)-(\d+)\.history\.json(\.gz|\.zst)?$/.exec(key.slice(dir.length)) }))
      .filter((e) => e.m && e.m[1] === ref.stack)
      .sort((a, b) => compareNano(b.m![2]!, a.m![2]!));
    const out: HistoryEntry[] = [];
    for (const { key, m } of entries.slice(0, limit)) {
      const bytes = await this.blobs.read(key);
      if (!bytes) continue;
      const checkpointKey = `${dir}${ref.stack}-${m![2]}.checkpoint.json${m![3] ?? ''}`;
      out.push({
        timestamp: m![2]!,
        key,
        checkpointKey: keys.includes(checkpointKey) ? checkpointKey : undefined,
        info: parseJson(bytes, `history file ${key}`) as UpdateInfo,
      });
    }
    return out;
  }

  /**
   * Records a finished update the way the CLI does after `up`/`refresh`/`destroy`: the UpdateInfo, a copy of the
   * current checkpoint next to it and (unless disabled) a backup, in one transaction.
   */
  async recordUpdate(project: string, stack: string, info: UpdateInfo, now = process.hrtime.bigint()): Promise<string> {
    const ref = this.ref(project, stack);
    const nano = unixNano(now);
    const ext = `json${this.compression}`;
    const prefix = `${historyDir(ref)}${ref.stack}-${nano}`;
    const body = compress(compactJson(info), this.compression);
    return this.blobs.batch(async (tx) => {
      const current = await this.checkpointKey(ref.project, ref.stack, tx);
      await tx.put(`${prefix}.history.${ext}`, body);
      if (current) {
        await tx.copy(current, `${prefix}.checkpoint.${ext}`);
        if (this.backups) {
          await tx.copy(current, `${backupDir(ref)}${ref.stack}.${nano}.json${compressionOf(current)}`);
        }
      }
      return nano;
    });
  }

  /** Backup keys of a stack, newest first. */
  async listBackups(project: string, stack: string): Promise<{ key: string; timestamp: string; size: number }[]> {
    const ref = this.ref(project, stack);
    const dir = backupDir(ref);
    return (await this.blobs.listAll(dir))
      .map((o) => ({ o, m: /^(.*)\.(\d+)\.json(\.gz|\.zst)?$/.exec(o.key.slice(dir.length)) }))
      .filter((e) => e.m && e.m[1] === ref.stack)
      .sort((a, b) => compareNano(b.m![2]!, a.m![2]!))
      .map((e) => ({ key: e.o.key, timestamp: e.m![2]!, size: e.o.size }));
  }

  // ---------------------------------------------------------------- tags

  async getTags(project: string, stack: string): Promise<Record<string, string>> {
    const bytes = await this.blobs.read(tagsKey(this.ref(project, stack)));
    if (!bytes) return {};
    const file = parseJson(bytes, 'tags file');
    if (!isObject(file) || file.version !== 1) {
      throw new PgStateError('INVALID_INPUT', 'The stack tags file is not version 1.', { fix: 'Rewrite the tags.' });
    }
    return isObject(file.tags) ? (file.tags as Record<string, string>) : {};
  }

  async setTags(project: string, stack: string, tags: Record<string, string>): Promise<void> {
    const ref = this.ref(project, stack);
    for (const [k, v] of Object.entries(tags)) {
      if (typeof v !== 'string') throw invalid(`The tag ${k} is not a string.`, 'Tags are string to string.');
    }
    await this.blobs.put(tagsKey(ref), Buffer.from(JSON.stringify({ version: 1, tags }, null, 4)));
  }

  // ---------------------------------------------------------------- lifecycle

  /** `pulumi stack init`: writes an empty checkpoint; CONFLICT when the stack exists. */
  async createStack(project: string, stack: string, options: { tags?: Record<string, string> } = {}): Promise<void> {
    const ref = this.ref(project, stack);
    await this.ensureMeta();
    await this.withLock(ref.project, ref.stack, async () => {
      if (await this.stackExists(ref.project, ref.stack)) {
        throw new PgStateError('CONFLICT', `The stack ${fullName(ref)} already exists.`, {
          fix: 'Pick another name, or select the existing stack.',
        });
      }
      const checkpoint = { version: 3, checkpoint: { stack: fullName(ref), latest: null } };
      await this.saveCheckpoint(ref.project, ref.stack, checkpoint);
      if (options.tags) await this.setTags(ref.project, ref.stack, options.tags);
    });
  }

  /**
   * `pulumi stack rm`: refuses while resources remain unless `force`. Deletes tags and history; without
   * `removeBackups` the checkpoint moves to `.bak`, with it the file, `.bak` and backups are deleted. One transaction.
   */
  async removeStack(
    project: string,
    stack: string,
    options: { force?: boolean; removeBackups?: boolean } = {},
  ): Promise<void> {
    const ref = this.ref(project, stack);
    await this.withLock(ref.project, ref.stack, async () => {
      const chk = await this.readCheckpoint(ref.project, ref.stack);
      if (!chk) throw this.noStack(ref);
      const latest = (chk.checkpoint as Record<string, unknown>).latest;
      const count = isObject(latest) && Array.isArray(latest.resources) ? latest.resources.length : 0;
      if (!options.force && count > 0) {
        throw new PgStateError('CONFLICT', `Refusing to remove ${fullName(ref)}: it still has ${count} resources.`, {
          fix: 'Destroy the resources first, or pass force.',
        });
      }
      await this.blobs.batch(async (tx) => {
        const file = await this.checkpointKey(ref.project, ref.stack, tx);
        if (file) {
          if (options.removeBackups) {
            await tx.delete(file);
            await tx.delete(`${file}.bak`); // missing .bak is fine (the native driver fails here)
            for (const key of await tx.keys(backupDir(ref))) await tx.delete(key);
          } else {
            await tx.move(file, `${file}.bak`);
          }
        }
        await tx.delete(tagsKey(ref));
        for (const key of await tx.keys(historyDir(ref))) await tx.delete(key);
      });
    });
  }

  /**
   * `pulumi stack rename`: rewrites URNs, saves under the new name, moves the old file to `.bak` and history
   * files `S-N.*` to `New-N.*` (backups stay, as in the CLI). One transaction; CONFLICT when the target exists.
   */
  async renameStack(project: string, stack: string, newProject: string, newStack: string): Promise<void> {
    const from = this.ref(project, stack);
    const to = this.ref(newProject, newStack);
    await this.withLock(from.project, from.stack, async () => {
      const chk = await this.readCheckpoint(from.project, from.stack);
      if (!chk) throw this.noStack(from);
      if (await this.stackExists(to.project, to.stack)) {
        throw new PgStateError('CONFLICT', `A stack named ${fullName(to)} already exists.`, {
          fix: 'Pick another name.',
        });
      }
      const inner = chk.checkpoint as Record<string, unknown>;
      if (isObject(inner.latest)) renameUrns(inner.latest, from, to);
      inner.stack = fullName(to);
      const bytes = compress(compactJson(chk), this.compression);
      await this.blobs.batch(async (tx) => {
        const old = await this.checkpointKey(from.project, from.stack, tx);
        await this.saveInTx(tx, to, `${stackBase(to)}.json${this.compression}`, bytes);
        if (old) await tx.move(old, `${old}.bak`);
        const tags = await tx.read(tagsKey(from));
        if (tags) {
          await tx.put(tagsKey(to), tags);
          await tx.delete(tagsKey(from));
        }
        const dir = historyDir(from);
        for (const key of await tx.keys(dir)) {
          const file = key.slice(dir.length);
          const dash = file.lastIndexOf('-');
          if (dash < 0 || file.slice(0, dash) !== from.stack) continue;
          await tx.move(key, `${historyDir(to)}${to.stack}${file.slice(dash)}`);
        }
      });
    });
  }

  // ---------------------------------------------------------------- locks

  /**
   * Takes the stack lock: a CLI-compatible `.pulumi/locks/organization/P/S/<uuid>.json`, written only if no other
   * lock file exists, atomically (an advisory lock on the lock directory serializes every writer, including CLI
   * lock files written through the S3 gateway). Throws CONFLICT naming the holders when the stack is locked.
   */
  async acquireLock(project: string, stack: string): Promise<StackLock> {
    const ref = this.ref(project, stack);
    const id = randomUUID();
    const key = `${lockDir(ref)}${id}.json`;
    const content = {
      pid: process.pid,
      username: safeUsername(),
      hostname: os.hostname(),
      timestamp: new Date().toISOString(),
    };
    const won = await this.blobs.putIfPrefixEmpty(lockDir(ref), key, Buffer.from(JSON.stringify(content)));
    if (!won) {
      const holders = await this.lockHolders(ref.project, ref.stack);
      throw new PgStateError(
        'CONFLICT',
        `The stack ${fullName(ref)} is currently locked by ${holders.length} lock(s)` +
          holders
            .map((h) => `; ${h.id}: created by ${h.username}@${h.hostname} (pid ${h.pid}) at ${h.timestamp}`)
            .join(''),
        { fix: 'Wait for the other process to finish, or run `pgstate pulumi cancel` if it is gone.' },
      );
    }
    return {
      key,
      id,
      release: async () => {
        await this.blobs.delete(key);
      },
    };
  }

  async withLock<T>(project: string, stack: string, fn: () => Promise<T>): Promise<T> {
    const lock = await this.acquireLock(project, stack);
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  /** Who holds the stack lock, since when (empty when unlocked). */
  async lockHolders(project: string, stack: string): Promise<LockHolder[]> {
    const ref = this.ref(project, stack);
    const dir = lockDir(ref);
    const out: LockHolder[] = [];
    for (const o of await this.blobs.listAll(dir)) {
      const bytes = await this.blobs.read(o.key);
      let content: Record<string, unknown> = {};
      try {
        const parsed = bytes ? JSON.parse(Buffer.from(bytes).toString('utf8')) : {};
        if (isObject(parsed)) content = parsed;
      } catch {
        // An unreadable lock file still locks the stack; report what we know.
      }
      out.push({
        key: o.key,
        id: o.key.slice(dir.length).replace(/\.json$/, ''),
        pid: typeof content.pid === 'number' ? content.pid : undefined,
        username: typeof content.username === 'string' ? content.username : undefined,
        hostname: typeof content.hostname === 'string' ? content.hostname : undefined,
        timestamp: typeof content.timestamp === 'string' ? content.timestamp : o.lastModified.toISOString(),
      });
    }
    return out;
  }

  /** Every locked stack in the store. */
  async listLocks(): Promise<(StackRef & { holders: LockHolder[] })[]> {
    const byStack = new Map<string, StackRef>();
    for (const o of await this.blobs.listAll(`.pulumi/locks/${ORGANIZATION}/`)) {
      const parts = o.key.split('/');
      if (parts.length === 6) byStack.set(`${parts[3]}/${parts[4]}`, { project: parts[3]!, stack: parts[4]! });
    }
    const out = [];
    for (const ref of byStack.values()) out.push({ ...ref, holders: await this.lockHolders(ref.project, ref.stack) });
    return out;
  }

  /** `pulumi cancel` for a DIY store: deletes every lock file of the stack. Returns how many were removed. */
  async cancel(project: string, stack: string): Promise<number> {
    return this.blobs.deletePrefix(lockDir(this.ref(project, stack)));
  }

  // ---------------------------------------------------------------- retention

  /** Deletes old history updates, backups and (optionally) `.bak` files; returns what was (or would be) deleted. */
  async prune(options: PruneOptions): Promise<PruneResult> {
    const stacks = (await this.listStacks(options.project)).filter(
      (s) => options.stack === undefined || s.stack === options.stack,
    );
    const olderThan = options.olderThan ? BigInt(options.olderThan.getTime()) * 1_000_000n : undefined;
    const old = (nano: string) => olderThan === undefined || BigInt(nano) < olderThan;
    const doomed: { key: string; size: number }[] = [];
    for (const s of stacks) {
      const dir = historyDir(s);
      const objects = await this.blobs.listAll(dir);
      if (options.keepHistory !== undefined || olderThan !== undefined) {
        const updates = new Map<string, typeof objects>();
        for (const o of objects) {
          const m = /^(.*)-(\d+)\.(history|checkpoint)\.json(\.gz|\.zst)?$/.exec(o.key.slice(dir.length));
          if (!m || m[1] !== s.stack) continue;
          updates.set(m[2]!, [...(updates.get(m[2]!) ?? []), o]);
        }
        const order = [...updates.keys()].sort((a, b) => compareNano(b, a));
        order.forEach((nano, i) => {
          if (i >= (options.keepHistory ?? 0) && old(nano)) {
            for (const o of updates.get(nano)!) doomed.push(o);
          }
        });
      }
      if (options.keepBackups !== undefined || olderThan !== undefined) {
        const backups = await this.listBackups(s.project, s.stack);
        backups.forEach((b, i) => {
          if (i >= (options.keepBackups ?? 0) && old(b.timestamp)) doomed.push(b);
        });
      }
      if (options.removeBak) {
        for (const o of await this.blobs.listAll(`${stackBase(s)}.json`)) {
          const cutoff = options.olderThan?.getTime();
          if (
            o.key.endsWith('.bak') &&
            parseStackKey(o.key.slice(0, -4)) &&
            (cutoff === undefined || o.lastModified.getTime() < cutoff)
          ) {
            doomed.push(o);
          }
        }
      }
    }
    const result: PruneResult = { deleted: doomed.map((d) => d.key), bytes: doomed.reduce((n, d) => n + d.size, 0) };
    if (!options.dryRun && doomed.length > 0) {
      await this.blobs.batch(async (tx) => {
        for (const d of doomed) await tx.delete(d.key);
      });
    }
    return result;
  }

  // ---------------------------------------------------------------- helpers

  private noStack(ref: StackRef): PgStateError {
    return new PgStateError('NOT_FOUND', `The stack ${fullName(ref)} does not exist.`, {
      fix: 'List stacks with `pgstate pulumi stacks`.',
    });
  }
}

function compressionOf(key: string): Compression {
  return key.endsWith('.gz') ? '.gz' : key.endsWith('.zst') ? '.zst' : '';
}

/** Nanosecond timestamps as decimal strings compare by length first, then text. */
function compareNano(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

const HRTIME_ORIGIN = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** UnixNano like Go's time.Now().UnixNano(), from a process.hrtime.bigint() reading. */
function unixNano(hr: bigint): string {
  return String(HRTIME_ORIGIN + hr);
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'unknown';
  }
}
