/**
 * Reads what `pulumi stack ls` shows (stack name, `latest.manifest.time`, `len(latest.resources)`) from a
 * checkpoint without building the whole object tree: a walk down the path to those fields that skips every
 * other value by bracket depth. Much cheaper than JSON.parse on a 50 MB checkpoint, so the stack index can be
 * updated in the same statement as every checkpoint write.
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
const COLON = 0x3a;

class NotJson extends Error {}

function notJson(): never {
  throw new NotJson();
}

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(b: Uint8Array, i: number): number {
  while (isSpace(b[i])) i++;
  return i;
}

/**
 * Index of the quote closing the string that opens at `start`. A plain loop: checkpoint strings are short (keys,
 * URNs, ids), where a native `indexOf` call per string costs more than it saves.
 */
function stringEnd(b: Uint8Array, start: number): number {
  const n = b.length;
  let i = start + 1;
  while (i < n) {
    const c = b[i];
    if (c === QUOTE) return i;
    i += c === BACKSLASH ? 2 : 1;
  }
  return notJson();
}

/** Index just past the value at `i`: containers are skipped by bracket depth, without building anything. */
function skipValue(b: Uint8Array, i: number): number {
  const first = b[i];
  if (first === QUOTE) return stringEnd(b, i) + 1;
  const n = b.length;
  if (first === OPEN_OBJECT || first === OPEN_ARRAY) {
    let depth = 0;
    for (; i < n; i++) {
      const c = b[i];
      if (c === QUOTE) i = stringEnd(b, i);
      else if (c === OPEN_OBJECT || c === OPEN_ARRAY) depth++;
      else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        if (--depth === 0) return i + 1;
      }
    }
    return notJson();
  }
  // A number, true, false or null: up to the next delimiter.
  let j = i;
  while (j < n) {
    const c = b[j];
    if (c === COMMA || c === CLOSE_OBJECT || c === CLOSE_ARRAY || isSpace(c)) break;
    j++;
  }
  return j > i ? j : notJson();
}

function stringAt(buf: Buffer, start: number, end: number): string {
  return JSON.parse(buf.toString('utf8', start, end + 1)) as string;
}

/**
 * Walks the members of the object opening at `i`; `member` returns the index past a value it consumed itself, or
 * undefined to have it skipped. Returns the index past the closing brace.
 */
function eachMember(buf: Buffer, i: number, member: (key: string, at: number) => number | undefined): number {
  if (buf[i] !== OPEN_OBJECT) return notJson();
  i = skipSpace(buf, i + 1);
  if (buf[i] === CLOSE_OBJECT) return i + 1;
  for (;;) {
    if (buf[i] !== QUOTE) return notJson();
    const end = stringEnd(buf, i);
    const key = stringAt(buf, i, end);
    i = skipSpace(buf, end + 1);
    if (buf[i] !== COLON) return notJson();
    i = skipSpace(buf, i + 1);
    i = skipSpace(buf, member(key, i) ?? skipValue(buf, i));
    if (buf[i] === CLOSE_OBJECT) return i + 1;
    if (buf[i] !== COMMA) return notJson();
    i = skipSpace(buf, i + 1);
  }
}

/** Counts the elements of the array opening at `i`; returns the count and the index past it. */
function countElements(buf: Buffer, i: number): [number, number] {
  i = skipSpace(buf, i + 1);
  let count = 0;
  if (buf[i] === CLOSE_ARRAY) return [0, i + 1];
  for (;;) {
    count++;
    i = skipSpace(buf, skipValue(buf, i));
    if (buf[i] === CLOSE_ARRAY) return [count, i + 1];
    if (buf[i] !== COMMA) return notJson();
    i = skipSpace(buf, i + 1);
  }
}

/**
 * Summarizes an uncompressed checkpoint; undefined when the bytes are not a JSON checkpoint. Only the path to the
 * three fields is walked member by member; every other value (each resource included) is skipped by bracket depth.
 * Syntax is checked only as far as that walk needs: this reads what the CLI wrote, it does not validate JSON.
 */
export function summarizeCheckpoint(bytes: Uint8Array): CheckpointSummary | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let sawCheckpoint = false;
  let stack: string | undefined;
  let lastUpdate: string | undefined;
  let resourceCount: number | undefined;
  const latest = (key: string, at: number): number | undefined => {
    if (key === 'resources' && buf[at] === OPEN_ARRAY) {
      const [count, end] = countElements(buf, at);
      resourceCount = count;
      return end;
    }
    if (key === 'manifest' && buf[at] === OPEN_OBJECT) {
      return eachMember(buf, at, (name, v) => {
        if (name !== 'time' || buf[v] !== QUOTE) return undefined;
        const end = stringEnd(buf, v);
        lastUpdate = stringAt(buf, v, end);
        return end + 1;
      });
    }
    return undefined;
  };
  const checkpoint = (key: string, at: number): number | undefined => {
    if (key === 'stack' && buf[at] === QUOTE) {
      const end = stringEnd(buf, at);
      stack = stringAt(buf, at, end);
      return end + 1;
    }
    if (key === 'latest' && buf[at] === OPEN_OBJECT) {
      // A stack with no deployment has `latest` absent or null: the CLI shows no resource count then.
      resourceCount ??= 0;
      return eachMember(buf, at, latest);
    }
    return undefined;
  };
  try {
    const end = eachMember(buf, skipSpace(buf, 0), (key, at) => {
      if (key !== 'checkpoint') return undefined;
      sawCheckpoint = true;
      return buf[at] === OPEN_OBJECT ? eachMember(buf, at, checkpoint) : undefined;
    });
    if (skipSpace(buf, end) !== buf.length) return undefined;
  } catch (error) {
    if (error instanceof NotJson || error instanceof SyntaxError) return undefined;
    throw error;
  }
  return sawCheckpoint ? { stack, lastUpdate, resourceCount } : undefined;
}
