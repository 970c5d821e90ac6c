import { spawnSync } from 'node:child_process';
import { isPgStateError } from '@pgstate/core';
import { describe, expect, test } from 'vitest';
import { dumpJson, type JsonValue, parseJson, parseJsonExact } from '../src/json.js';

/** A faithful picture of a parsed value: types (bigint vs number, -0), own keys in order, `__proto__` included. */
function shape(v: JsonValue): unknown {
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (typeof v === 'number') return Object.is(v, -0) ? { number: '-0' } : { number: String(v) };
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === 'object') return Object.keys(v).map((k) => [k, shape(v[k] as JsonValue)]);
  return v;
}

const nested = (depth: number, inner = '1') => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

const TEXTS = [
  '{"singer_state": {"bookmarks": {"users": {"replication_key_value": "2024-01-01T00:00:00Z", "version": 1700000000000}}}}',
  '{"id": 9007199254740991, "next": 9007199254740992, "big": 12345678901234567890, "neg": -9223372036854775808}',
  '{"f": 1e20, "g": 1.5, "h": -0, "i": 0.1, "j": 1e-7, "k": 123456789012345.5, "l": 5e-324, "m": 1E400}',
  '{"a": 1, "a": 2, "b": {"__proto__": {"x": 1}, "constructor": 3, "toString": "s"}}',
  '{"u": "h\\u00e9\\ud83d\\ude00 \\ud800 caf\u00e9", "esc": "q\\"b\\\\s\\/\\b\\f\\n\\r\\t", "ctl": "\\u0001\\u007f"}',
  '{"10": "int-like key", "b": 1, "2": [true, false, null, [], {}]}',
  ' \n\t{ "spaced" :\r [ 1 , 2 ] } \n',
  '{"nan": NaN, "inf": Infinity, "ninf": -Infinity}',
  nested(511),
  nested(600),
  nested(999),
  nested(1999),
  nested(2000),
  nested(2001),
  `{"deep": ${nested(2100, '"x"')}}`,
  '{"bad": }',
  '{"trailing": 1} x',
  '[1, 2',
  '"unterminated',
  '{"ctl": "a\u0001b"}',
  '',
];

describe('parseJson (JSON.parse fast path) gives exactly what the full parser gives', () => {
  test.each(TEXTS.map((t) => [t.length > 60 ? `${t.slice(0, 57)}...` : t, t]))('%s', (_label, text) => {
    const run = (f: (t: string) => JsonValue) => {
      try {
        return { value: shape(f(text)) };
      } catch (error) {
        expect(isPgStateError(error)).toBe(true);
        return { error: (error as Error).message };
      }
    };
    expect(run(parseJson)).toEqual(run(parseJsonExact));
  });

  test('integers beyond 2^53 stay exact; nesting Python writes is read, beyond 2000 refused (fast path hides neither)', () => {
    expect((parseJson('{"id": 12345678901234567890}') as { id: unknown }).id).toBe(12345678901234567890n);
    // 999 levels: the deepest state Python's json.dumps/json.loads handle with the default recursion limit.
    const deep = parseJson(`{"s": ${nested(998)}}`);
    expect(dumpJson(deep)).toBe(`{"s": ${nested(998)}}`);
    expect(dumpJson(deep, { indent: 2 }).split('\n').length).toBe(2 * 999 + 1);
    expect(() => parseJson(nested(2001))).toThrow(/nests deeper than 2000 levels/);
    expect(() => parseJson(nested(2001))).not.toThrow(/not valid JSON/);
    expect(() => parseJson('{"a": }')).toThrow(/position 6/);
  });
});

const python = spawnSync('python3', ['-c', 'import json'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!python)("dumpJson writes what Python's json.dumps writes (python3 on PATH)", () => {
  // Values whose Python round trip is exact for us (known, documented differences: integral floats like 1.0 print
  // as 1, and JavaScript orders integer-like keys first).
  const values = [
    '{"singer_state": {"bookmarks": {"users": {"replication_key_value": "2024-01-01T00:00:00Z", "version": 1700000000000}}, "currently_syncing": null}}',
    '{"big": 12345678901234567890, "neg": -9223372036854775808, "safe": 9007199254740991}',
    '{"floats": [0.1, 1.5, -2.25, 1e-05, 0.0001, 1e+16, 1.2345678901234567e+20, 123456789.123, 5e-324, 1.7976931348623157e+308, -0.0]}',
    '{"nan": NaN, "inf": [Infinity, -Infinity]}',
    '{"s": "caf\\u00e9 \\ud83d\\ude00 \\ud800 \\u2028 \\u007f \\u0001 \\"q\\" \\\\ / tab\\t nl\\n", "k\\u00e9y": [true, false, null], "del": "a\\u007fb", "q": "say \\"hi\\""}',
    '{"empty": {}, "list": [], "nested": [[{"a": [1, {"b": []}]}]], "__proto__": {"x": 1}, "constructor": 2}',
    // Deep, as Meltano can write it (Python's own limit is about 1,000 levels; its indent encoder stops sooner).
    `{"deep": ${nested(900, '{"x": 1}')}}`,
  ];
  const pythonDump = (mode: string) => {
    const script = `import json, sys
mode = sys.argv[1]
for line in sys.stdin.read().split("\\n"):
    v = json.loads(line)
    if mode == "compact": print(json.dumps(v, separators=(",", ":")))
    elif mode == "indent": print(json.dumps(v, indent=2).replace("\\n", "\\\\n"))
    else: print(json.dumps(v))`;
    const out = spawnSync('python3', ['-c', script, mode], {
      input: values.join('\n'),
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(out.status, out.stderr).toBe(0);
    return out.stdout.trimEnd().split('\n');
  };

  test.each(['default', 'compact', 'indent'])('%s separators', (mode) => {
    const expected = pythonDump(mode);
    const ours = values.map((t) => {
      const v = parseJson(t);
      if (mode === 'compact') return dumpJson(v, { compact: true });
      if (mode === 'indent') return dumpJson(v, { indent: 2 }).replaceAll('\n', '\\n');
      return dumpJson(v);
    });
    expect(ours).toEqual(expected);
  });
});
