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
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
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

/** Parses JSON text the way Python's `json.loads` does (including NaN/Infinity); throws INVALID_INPUT. */
export function parseJson(text: string, what = 'state'): JsonValue {
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
    if (depth > 512) fail('nesting too deep');
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

function pythonString(s: string): string {
  // JSON.stringify escapes quotes, backslashes and controls like Python; Python also escapes everything non-ASCII.
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface DumpOptions {
  /** `compact` = `separators=(",", ":")` (what `meltano state get` prints); default Python's `", "` / `": "`. */
  compact?: boolean;
  /** Pretty print with this indent (Python's `indent=`; separators become `","` / `": "`). */
  indent?: number;
}

/** `json.dumps(value)` as Python writes it. Small integral numbers print as ints (`1.0` comes back as `1`). */
export function dumpJson(value: JsonValue, options: DumpOptions = {}): string {
  const item = options.indent !== undefined || options.compact ? ',' : ', ';
  const colon = options.compact ? ':' : ': ';
  const write = (v: JsonValue, level: number): string => {
    if (v === null) return 'null';
    if (v === true) return 'true';
    if (v === false) return 'false';
    if (typeof v === 'bigint') return v.toString();
    // Our parser turns unsafe integers into bigint, so an unsafe integral number was a float in the text.
    if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0) ? String(v) : pythonFloat(v);
    if (typeof v === 'string') return pythonString(v);
    const entries: string[] = Array.isArray(v)
      ? v.map((x) => write(x, level + 1))
      : Object.keys(v).map((k) => `${pythonString(k)}${colon}${write(v[k] as JsonValue, level + 1)}`);
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    if (entries.length === 0) return `${open}${close}`;
    if (options.indent === undefined) return `${open}${entries.join(item)}${close}`;
    const pad = ' '.repeat(options.indent * (level + 1));
    const end = ' '.repeat(options.indent * level);
    return `${open}\n${pad}${entries.join(`${item}\n${pad}`)}\n${end}${close}`;
  };
  return write(value, 0);
}
