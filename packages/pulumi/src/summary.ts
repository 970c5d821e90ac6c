/**
 * Reads what `pulumi stack ls` shows (stack name, `latest.manifest.time`, `len(latest.resources)`) from a
 * checkpoint without building the whole object tree: a structural scan that skips string contents with
 * `indexOf`. Several times cheaper than JSON.parse on a 50 MB checkpoint, so the stack index can be updated in
 * the same transaction as every checkpoint write.
 */
import { gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';

export interface CheckpointSummary {
  /** `checkpoint.stack`, e.g. `organization/proj/dev`. */
  stack: string | undefined;
  /** `checkpoint.latest.manifest.time` (RFC 3339 text), what the CLI shows as LAST UPDATE. */
  lastUpdate: string | undefined;
  /** `len(checkpoint.latest.resources)`, or undefined when the stack has no deployment yet. */
  resourceCount: number | undefined;
}

export type Compression = '' | '.gz' | '.zst';

/** Undoes the CLI's optional compression (`.gz` = gzip, `.zst` = zstd frames). */
export function decompressBytes(bytes: Uint8Array, compression: Compression): Uint8Array {
  if (compression === '.gz') return gunzipSync(bytes);
  if (compression === '.zst') return zstdDecompress(bytes);
  return bytes;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

interface Frame {
  object: boolean;
  key: string | undefined;
  resources: boolean;
}

function stringEnd(buf: Buffer, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = buf.indexOf(QUOTE, from);
    if (quote < 0) throw new Error('unterminated string');
    let backslashes = 0;
    for (let k = quote - 1; buf[k] === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

function keyIs(frames: Frame[], ...path: string[]): boolean {
  if (frames.length !== path.length) return false;
  for (let i = 0; i < path.length; i++) if (frames[i]!.key !== path[i]) return false;
  return true;
}

/** Summarizes an uncompressed checkpoint; undefined when the bytes are not a JSON checkpoint. */
export function summarizeCheckpoint(bytes: Uint8Array): CheckpointSummary | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Frame[] = [];
  let expectKey = false;
  let sawCheckpoint = false;
  let sawLatest = false;
  let stack: string | undefined;
  let lastUpdate: string | undefined;
  let resourceCount: number | undefined;
  try {
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i]!;
      if (c === QUOTE) {
        const end = stringEnd(buf, i);
        const top = frames[frames.length - 1];
        if (top?.object && expectKey) {
          // Only shallow keys matter; deeper ones are skipped without decoding.
          top.key = frames.length <= 4 ? (JSON.parse(buf.toString('utf8', i, end + 1)) as string) : undefined;
          if (frames.length === 1 && top.key === 'checkpoint') sawCheckpoint = true;
          expectKey = false;
        } else if (top?.resources) {
          resourceCount = (resourceCount ?? 0) + 1;
        } else if (keyIs(frames, 'checkpoint', 'stack')) {
          stack = JSON.parse(buf.toString('utf8', i, end + 1)) as string;
        } else if (keyIs(frames, 'checkpoint', 'latest', 'manifest', 'time')) {
          lastUpdate = JSON.parse(buf.toString('utf8', i, end + 1)) as string;
        }
        i = end;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        const top = frames[frames.length - 1];
        if (top?.resources) resourceCount = (resourceCount ?? 0) + 1;
        if (c === OPEN_OBJECT && keyIs(frames, 'checkpoint', 'latest')) sawLatest = true;
        const resources = c === OPEN_ARRAY && keyIs(frames, 'checkpoint', 'latest', 'resources');
        if (resources) resourceCount = 0;
        frames.push({ object: c === OPEN_OBJECT, key: undefined, resources });
        expectKey = c === OPEN_OBJECT;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        frames.pop();
        expectKey = false;
      } else if (c === COMMA) {
        expectKey = frames[frames.length - 1]?.object === true;
      }
    }
  } catch {
    return undefined;
  }
  if (!sawCheckpoint || frames.length !== 0) return undefined;
  // A stack with no deployment has `latest` absent or null: the CLI shows no resource count then.
  if (sawLatest) resourceCount ??= 0;
  return { stack, lastUpdate, resourceCount };
}
