/**
 * The checkpoint summarizer behind the stack index walks only the path to three fields and skips everything else by
 * bracket depth. Here it must agree with JSON.parse on what `stack ls` shows for any formatting, escapes and
 * brackets inside strings, and say "not a checkpoint" for what is not one.
 */
import { describe, expect, it } from 'vitest';
import { summarizeCheckpoint } from '../src/summary.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What the summary must be, computed the slow, obvious way. */
function oracle(text: string) {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(doc) || !('checkpoint' in doc)) return undefined;
  const chk = doc.checkpoint;
  const latest = isObject(chk) && isObject(chk.latest) ? chk.latest : undefined;
  const manifest = latest && isObject(latest.manifest) ? latest.manifest : undefined;
  return {
    stack: isObject(chk) && typeof chk.stack === 'string' ? chk.stack : undefined,
    lastUpdate: manifest && typeof manifest.time === 'string' ? manifest.time : undefined,
    resourceCount: latest ? (Array.isArray(latest.resources) ? latest.resources.length : 0) : undefined,
  };
}

const summarize = (text: string) => summarizeCheckpoint(Buffer.from(text, 'utf8'));

/** Deterministic PRNG (mulberry32). */
function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Strings full of what trips a structural scanner: quotes, backslashes (also at the end), brackets, unicode. */
const NASTY = ['"', '\\', '\\"', '{', '}', '[', ']', ',', ':', '\n', '\u00e9', '\u{1F600}', 'urn:pulumi:x', ' '];

function value(rand: () => number, depth: number): unknown {
  const r = rand();
  if (depth > 3 || r < 0.3) {
    const k = Math.floor(rand() * 5);
    if (k === 0) return Math.floor(rand() * 1e6) / 7;
    if (k === 1) return rand() < 0.5;
    if (k === 2) return null;
    return Array.from({ length: Math.floor(rand() * 4) }, () => NASTY[Math.floor(rand() * NASTY.length)]).join('');
  }
  if (r < 0.65) return Array.from({ length: Math.floor(rand() * 4) }, () => value(rand, depth + 1));
  const obj: Record<string, unknown> = {};
  for (let i = Math.floor(rand() * 4); i > 0; i--) {
    obj[`${NASTY[Math.floor(rand() * NASTY.length)]}k${i}`] = value(rand, depth + 1);
  }
  return obj;
}

function checkpoint(rand: () => number): Record<string, unknown> {
  const resources = Array.from({ length: Math.floor(rand() * 6) }, () => ({
    urn: `urn:pulumi:dev::p::t::r${Math.floor(rand() * 100)}`,
    inputs: value(rand, 1),
    outputs: value(rand, 1),
  }));
  const latest: Record<string, unknown> = { secrets_providers: value(rand, 2) };
  // Members in varying order, some missing.
  if (rand() < 0.8)
    latest.manifest = { magic: value(rand, 3), time: `2026-01-0${1 + Math.floor(rand() * 9)}T00:00:00Z` };
  if (rand() < 0.8) latest.resources = resources;
  if (rand() < 0.5) latest.pendingOperations = value(rand, 2);
  const inner: Record<string, unknown> = {};
  if (rand() < 0.5) inner.extra = value(rand, 1);
  inner.stack = `organization/p/s${Math.floor(rand() * 10)}`;
  inner.latest = rand() < 0.15 ? null : latest;
  const doc: Record<string, unknown> = {};
  if (rand() < 0.5) doc.before = value(rand, 1);
  doc.version = 3;
  doc.checkpoint = inner;
  if (rand() < 0.5) doc.after = value(rand, 1);
  return doc;
}

describe('summarizeCheckpoint', () => {
  it('agrees with JSON.parse on random checkpoints, minified and indented', () => {
    const rand = random(42);
    for (let i = 0; i < 300; i++) {
      const doc = checkpoint(rand);
      for (const text of [
        JSON.stringify(doc),
        JSON.stringify(doc, null, 4), // what the CLI writes
        JSON.stringify(doc, null, '\t').replace(/\n/g, '\r\n'),
        `  ${JSON.stringify(doc, null, 1)}\n`,
      ]) {
        expect(summarize(text), text).toEqual(oracle(text));
      }
    }
  });

  it('reads escaped field values and keys', () => {
    const text =
      '{"checkpoint":{"st\\u0061ck":"org\\/p\\"q","latest":{"manifest":{"time":"t\\\\"},"resources":["]","}",{"a":"\\\\"}]}}}';
    expect(summarize(text)).toEqual({ stack: 'org/p"q', lastUpdate: 't\\', resourceCount: 3 });
  });

  it('a stack without a deployment has no resource count; an empty deployment has 0', () => {
    expect(summarize('{"version":3,"checkpoint":{"stack":"o/p/s","latest":null}}')).toEqual({
      stack: 'o/p/s',
      lastUpdate: undefined,
      resourceCount: undefined,
    });
    expect(summarize('{"version":3,"checkpoint":{"stack":"o/p/s"}}')?.resourceCount).toBeUndefined();
    expect(summarize('{"checkpoint":{"latest":{}}}')?.resourceCount).toBe(0);
    expect(summarize('{"checkpoint":{"latest":{"resources":[]}}}')?.resourceCount).toBe(0);
  });

  it('is undefined for what is not a checkpoint', () => {
    for (const text of [
      '',
      'null',
      '[]',
      '{"version":3}',
      '{"checkpoint":{"latest":{"resources":[{}]}}', // truncated
      '{"checkpoint":{"latest":{"resources":[{"a":"}]}}}', // unterminated string
      '{"checkpoint":{}} trailing',
      '{"checkpoint" {}}',
      'not json at all',
    ]) {
      expect(summarize(text), text).toBeUndefined();
    }
  });
});
