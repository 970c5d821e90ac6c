import { PgStateError } from '@pgstate/core';

/** S3's limit; Pulumi keys are far shorter. */
export const MAX_KEY_BYTES = 1024;

const CONTROL = /[\u0000-\u001f\u007f]/;

function invalid(message: string, fix: string): PgStateError {
  return new PgStateError('INVALID_INPUT', message, { fix });
}

function describe(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}...` : key);
}

/** Lone surrogates cannot be encoded as UTF-8; PostgreSQL text could not round-trip them. */
function isWellFormed(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

function checkCommon(value: string, what: string): void {
  if (typeof value !== 'string') throw invalid(`The ${what} is not a string.`, `Pass the ${what} as text.`);
  if (!isWellFormed(value)) {
    throw invalid(`The ${what} ${describe(value)} is not valid UTF-8.`, `Use a ${what} made of valid Unicode text.`);
  }
  if (CONTROL.test(value)) {
    throw invalid(
      `The ${what} ${describe(value)} contains a control character (NUL, newline, ...).`,
      `Remove control characters from the ${what}; Pulumi never writes them.`,
    );
  }
  if (Buffer.byteLength(value) > MAX_KEY_BYTES) {
    throw invalid(
      `The ${what} ${describe(value)} is longer than ${MAX_KEY_BYTES} bytes.`,
      `Use a ${what} of at most ${MAX_KEY_BYTES} UTF-8 bytes.`,
    );
  }
  if (value.startsWith('/') || value.includes('\\')) {
    throw invalid(
      `The ${what} ${describe(value)} starts with "/" or contains "\\".`,
      `Use relative keys separated by "/", such as ".pulumi/meta.yaml".`,
    );
  }
}

/**
 * Object keys: non-empty, valid UTF-8, no control characters, at most 1024 bytes, relative, and no `.`/`..`
 * segments (keys become file paths when a store is exported to a directory).
 */
export function validateKey(key: string): string {
  checkCommon(key, 'key');
  if (key.length === 0) throw invalid('The key is empty.', 'Use a non-empty key such as ".pulumi/meta.yaml".');
  for (const segment of key.split('/')) {
    if (segment === '.' || segment === '..' || segment === '') {
      throw invalid(
        `The key ${describe(key)} has an empty, "." or ".." path segment.`,
        'Use keys without "//", "./" or "../" segments.',
      );
    }
  }
  return key;
}

/** List prefixes: like keys, but may be empty, end with "/", and end in a partial segment such as ".". */
export function validatePrefix(prefix: string): string {
  checkCommon(prefix, 'prefix');
  const complete = prefix.split('/').slice(0, -1);
  for (const segment of complete) {
    if (segment === '.' || segment === '..' || segment === '') {
      throw invalid(
        `The prefix ${describe(prefix)} has an empty, "." or ".." path segment.`,
        'Use prefixes without "//", "./" or "../" segments.',
      );
    }
  }
  return prefix;
}

/**
 * The smallest string greater than every string that starts with `prefix`, in code point order (which is UTF-8
 * byte order), or undefined when no such bound exists (empty prefix). Lets a listing use an index range scan
 * `key >= prefix AND key < bound` instead of LIKE, so `_` and `%` are plain characters.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      points.push(String.fromCodePoint(next));
      return points.join('');
    }
  }
  return undefined;
}

/** Compares two strings in UTF-8 byte order (code point order), the order S3 and Pulumi expect. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
