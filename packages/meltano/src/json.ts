/**
 * JSON as Meltano's Python sees it. `JSON.parse` would silently round integers above 2^53 (bookmarks are often
 * 64-bit ids), so we parse ourselves: integers outside the safe range become `bigint`, everything else is plain JS.
 * The writer produces what Python's `json.dumps` produces (`ensure_ascii`, Python float repr, its separators).
 */
import { PgStateError } from '@pgstate/core';

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Sets an own property even for keys like `__proto__` (JSON data may contain any key). */
export function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  // `__proto__` is the only accessor a plain object inherits; every other key can be assigned (much faster).
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function invalid(what: string, text: string, at: number, reason: string): PgStateError {
  const near = JSON.stringify(text.slice(Math.max(0, at - 10), at + 10));
  return new PgStateError(
    'INVALID_INPUT',
    `The ${what} is not valid JSON: ${reason} at position ${at} (near ${near}).`,
    {
      fix: 'Pass a JSON object, e.g. {"singer_state": {"bookmarks": {}}}.',
    },
  );
}

const WS = new Set([' ', '\t', '\n', '\r']);
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/**
 * Nesting we accept: twice what Python's `json` reads and writes with its default recursion limit (about 1,000), so
 * every state Meltano can store is read, and the recursive parser and writers stay far from the JS stack limit.
 */
const MAX_JSON_DEPTH = 2000;
const MAX_DEPTH = MAX_JSON_DEPTH;

/**
 * After `JSON.parse`: does the value need our own parser? Yes if it nests deeper than we accept, or holds an
 * integral number outside the safe range (an integer literal `JSON.parse` rounded, or a float literal that only
 * our parser keeps as a float); in both cases parsing again with the full parser gives the exact answer.
 */
function needsExactParse(v: unknown, depth: number): boolean {
  if (typeof v === 'number') return Number.isInteger(v) && !Number.isSafeInteger(v);
  if (v === null || typeof v !== 'object') return false;
  if (depth >= MAX_DEPTH) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (needsExactParse(v[i], depth + 1)) return true;
    return false;
  }
  for (const k in v) if (needsExactParse((v as JsonObject)[k], depth + 1)) return true;
  return false;
}

/**
 * Parses JSON text the way Python's `json.loads` does (including NaN/Infinity); throws INVALID_INPUT.
 * Fast path: the built-in `JSON.parse` gives exactly our value (own `__proto__` keys, last duplicate wins in the
 * first one's place, same numbers) unless an integer is unsafe or the nesting too deep, which a walk detects;
 * then, and for Python's extras (NaN, Infinity) and invalid text (with its position), our own parser decides.
 */
export function parseJson(text: string, what = 'state'): JsonValue {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return parseJsonExact(text, what);
  }
  return needsExactParse(value, 0) ? parseJsonExact(text, what) : (value as JsonValue);
}

/** The full parser: big integers as bigint, Python's NaN/Infinity, precise errors. Exported for tests. */
export function parseJsonExact(text: string, what = 'state'): JsonValue {
  let i = 0;
  const fail = (reason: string): never => {
    throw invalid(what, text, i, reason);
  };
  const skip = () => {
    while (i < text.length && WS.has(text[i] as string)) i++;
  };
  const literal = (word: string, value: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail('unexpected token');
  };
  const parseString = (): string => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        if (e === 'u') {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
          out += String.fromCharCode(Number.parseInt(hex, 16));
          i += 6;
        } else if (e !== undefined && ESCAPES[e] !== undefined) {
          out += ESCAPES[e];
          i += 2;
        } else {
          fail('bad escape');
        }
        start = i;
        continue;
      }
      i++;
    }
  };
  const parseNumber = (): number | bigint => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected token');
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    return Number(m[0]);
  };
  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH)
      throw new PgStateError(
        'INVALID_INPUT',
        `The ${what} nests deeper than ${MAX_DEPTH} levels (at position ${i}); pgstate does not read it.`,
        { fix: `Python's json module itself stops at about 1,000 levels: flatten the ${what}.` },
      );
    skip();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: JsonObject = {};
      skip();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail('expected a string key');
        const key = parseString();
        skip();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        setOwn(obj, key, parseValue(depth + 1));
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      skip();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return parseString();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    if (c === 'N') return literal('NaN', Number.NaN);
    if (c === 'I') return literal('Infinity', Number.POSITIVE_INFINITY);
    if (c === '-' && text.startsWith('-Infinity', i)) return literal('-Infinity', Number.NEGATIVE_INFINITY);
    if (c === undefined) return fail('unexpected end of input');
    return parseNumber();
  };
  const value = parseValue(0);
  skip();
  if (i < text.length) fail('extra data after the value');
  return value;
}

/** Python's `repr(float)`: shortest round-trip digits, scientific below 1e-4 and from 1e16. */
function pythonFloat(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return 'Infinity';
  if (n === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (Object.is(n, -0)) return '-0.0';
  const [mantissa = '', expText = '0'] = n.toExponential().split('e');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const fixed = n.toFixed(Math.max(0, (mantissa.split('.')[1]?.length ?? 0) - exp));
  return fixed.includes('.') ? fixed : `${fixed}.0`;
}

/** Printable ASCII without `"` and `\\`: JSON text as is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const NON_ASCII = /[\u007f-\uffff]/;
const NON_ASCII_ALL = /[\u007f-\uffff]/g;
const escapeNonAscii = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;

function pythonString(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  // JSON.stringify escapes quotes, backslashes, controls and lone surrogates like Python; Python also escapes
  // everything non-ASCII (ensure_ascii). Most strings are ASCII: test before replacing.
  const json = JSON.stringify(s);
  return NON_ASCII.test(json) ? json.replace(NON_ASCII_ALL, escapeNonAscii) : json;
}

export interface DumpOptions {
  /** `compact` = `separators=(",", ":")` (what `meltano state get` prints); default Python's `", "` / `": "`. */
  compact?: boolean;
  /** Pretty print with this indent (Python's `indent=`; separators become `","` / `": "`). */
  indent?: number;
}

/** `json.dumps(value)` as Python writes it. Small integral numbers print as ints (`1.0` comes back as `1`). */
export function dumpJson(value: JsonValue, options: DumpOptions = {}): string {
  const colon = options.compact ? ':' : ': ';
  if (options.indent !== undefined) return dumpIndented(value, options.indent, colon);
  return dumpFlat(value, options.compact ? ',' : ', ', colon);
}

function scalar(v: null | boolean | number | bigint | string): string {
  if (v === null) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'bigint') return v.toString();
  // Our parser turns unsafe integers into bigint, so an unsafe integral number was a float in the text.
  if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0) ? String(v) : pythonFloat(v);
  return pythonString(v);
}

/** One line (the common case: what is stored, and `meltano state get`), built by concatenation. */
function dumpFlat(v: JsonValue, item: string, colon: string): string {
  if (v === null || typeof v !== 'object') return scalar(v);
  let out: string;
  if (Array.isArray(v)) {
    out = '[';
    for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : item) + dumpFlat(v[i] as JsonValue, item, colon);
    return `${out}]`;
  }
  out = '{';
  const keys = Object.keys(v);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    out += (i === 0 ? '' : item) + pythonString(k) + colon + dumpFlat(v[k] as JsonValue, item, colon);
  }
  return `${out}}`;
}

/** Python's `indent=`: separators become `","` / `": "`. */
function dumpIndented(value: JsonValue, indent: number, colon: string): string {
  const write = (v: JsonValue, level: number): string => {
    if (v === null || typeof v !== 'object') return scalar(v);
    const entries: string[] = Array.isArray(v)
      ? v.map((x) => write(x, level + 1))
      : Object.keys(v).map((k) => `${pythonString(k)}${colon}${write(v[k] as JsonValue, level + 1)}`);
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (entries.length === 0) return `${open}${close}`;
    const pad = ' '.repeat(indent * (level + 1));
    const end = ' '.repeat(indent * level);
    return `${open}\n${pad}${entries.join(`,\n${pad}`)}\n${end}${close}`;
  };
  return write(value, 0);
}
