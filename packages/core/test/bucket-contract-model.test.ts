/**
 * modelListing, the S3 listing rules the bucket-handler contract compares handlers with (a pure function: the
 * contract itself runs against real handlers on PostgreSQL in the adapter packages).
 */
import { describe, expect, test } from 'vitest';
import { modelListing } from '../src/testing.js';

const keys = ['c/x/y', 'a/2', 'b', 'a/1', 'é', 'Z', '\uFFFF', '😀'];
const listed = (request: Parameters<typeof modelListing>[1]) => {
  const r = modelListing(keys, request);
  return { objects: r.objects.map((o) => o.key), prefixes: r.commonPrefixes, truncated: r.isTruncated };
};

describe('modelListing', () => {
  test('UTF-8 byte order, not UTF-16 order (U+FFFF sorts before an astral character)', () => {
    expect(listed({ maxKeys: 100 }).objects).toEqual(['Z', 'a/1', 'a/2', 'b', 'c/x/y', 'é', '\uFFFF', '😀']);
  });

  test('a delimiter rolls keys up into common prefixes after the prefix', () => {
    expect(listed({ delimiter: '/', maxKeys: 100 })).toEqual({
      objects: ['Z', 'b', 'é', '\uFFFF', '😀'],
      prefixes: ['a/', 'c/'],
      truncated: false,
    });
    expect(listed({ prefix: 'c/', delimiter: '/', maxKeys: 100 })).toEqual({
      objects: [],
      prefixes: ['c/x/'],
      truncated: false,
    });
  });

  test('objects and common prefixes together count against maxKeys', () => {
    expect(listed({ delimiter: '/', maxKeys: 3 })).toEqual({ objects: ['Z', 'b'], prefixes: ['a/'], truncated: true });
    // The last entry fills the page exactly: not truncated.
    expect(listed({ prefix: 'a/', maxKeys: 2 })).toEqual({ objects: ['a/1', 'a/2'], prefixes: [], truncated: false });
  });

  test('startAfter is exclusive, in byte order', () => {
    expect(listed({ startAfter: 'b', maxKeys: 2 })).toEqual({ objects: ['c/x/y', 'é'], prefixes: [], truncated: true });
  });
});
