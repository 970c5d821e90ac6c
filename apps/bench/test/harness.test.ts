// The harness's bookkeeping: what `pnpm bench` reports must follow from what it measured. Scenarios here do real
// (small) PostgreSQL round trips so nothing is simulated; the assertions are on the arithmetic and the report, never
// on timings.
import { createTestDatabase } from '@pgstate/core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { measure, NotRun, type Scenario, summarize } from '../src/harness.js';
import { toHtml, toMarkdown } from '../src/report.js';

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let client: pg.Client;
beforeAll(async () => {
  db = await createTestDatabase(inject('pgUrl'), 'bench_harness');
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterAll(async () => {
  await client?.end();
  await db?.drop();
});

const side = (label: string, sql: string) => ({ label, run: async () => void (await client.query(sql)) });

describe('summarize', () => {
  it('gives the median of even and odd samples, p95, min and max', () => {
    expect(summarize([5, 1, 3])).toEqual({ runs: 3, medianMs: 3, p95Ms: 5, minMs: 1, maxMs: 5 });
    expect(summarize([4, 1, 3, 2]).medianMs).toBe(2.5);
  });
});

describe('measure', () => {
  it('runs both sides interleaved, the said number of times, before() untimed before each run', async () => {
    const order: string[] = [];
    const scenario: Scenario = {
      suite: 't',
      name: 'order',
      runs: 3,
      warmups: 1,
      async prepare() {
        return {
          candidate: {
            label: 'c',
            before: async () => void order.push('c-before'),
            run: async () => void order.push('c'),
          },
          baseline: { label: 'b', run: async () => void order.push('b') },
        };
      },
    };
    const r = await measure(scenario, { url: db.url, quick: false });
    expect(order.filter((x) => x === 'c')).toHaveLength(4);
    expect(order.filter((x) => x === 'c-before')).toHaveLength(4);
    // warm-up b,c; then b,c / c,b / b,c
    expect(order.filter((x) => x !== 'c-before')).toEqual(['b', 'c', 'b', 'c', 'c', 'b', 'b', 'c']);
    expect(r.candidate.stats.runs).toBe(3);
  });

  it('judges a goal on two extras when the goal says so, not on time', async () => {
    const scenario: Scenario = {
      suite: 't',
      name: 'bytes',
      goal: { text: 'half the bytes', maxRatio: 0.5, on: { candidate: 'a', baseline: 'b', unit: 'bytes' } },
      async prepare() {
        return {
          candidate: side('c', 'SELECT 1'),
          baseline: side('b', 'SELECT 1'),
          extras: async () => ({ a: 60, b: 100 }),
        };
      },
    };
    const r = await measure(scenario, { url: db.url, quick: true });
    expect(r.goal).toMatchObject({ ratio: 0.6, met: false });
    expect(Number.isFinite(r.ratio)).toBe(true);
    expect(toMarkdown(report([r]))).toContain(
      '| t | bytes | half the bytes (<= 0.5x) | 0.60x (1/1.7) (a / b) | NOT met |',
    );
  });

  it('a side may report its own timing (a child process timing its critical section)', async () => {
    const r = await measure(
      {
        suite: 't',
        name: 'own',
        async prepare() {
          return { candidate: { label: 'c', run: async () => 40 }, baseline: { label: 'b', run: async () => 10 } };
        },
      },
      { url: db.url, quick: true },
    );
    expect(r.ratio).toBe(4);
  });

  it('records NotRun from prepare as not run with its reason, and the report says so', async () => {
    const r = await measure(
      {
        suite: 't',
        name: 'missing peer',
        goal: { text: 'x', maxRatio: 1 },
        async prepare() {
          throw new NotRun('the pulumi CLI is not built');
        },
      },
      { url: db.url, quick: true },
    );
    expect(r.notRun).toBe('the pulumi CLI is not built');
    expect(r.goal?.met).toBe(false);
    expect(toMarkdown(report([r]))).toContain('not run: the pulumi CLI is not built');
    expect(toHtml(report([r]))).toMatch(/not run<\/span>: the pulumi CLI is not built/);
  });

  it('lets other errors from prepare through (main records them as errors and fails)', async () => {
    await expect(
      measure(
        {
          suite: 't',
          name: 'broken',
          async prepare() {
            throw new Error('boom');
          },
        },
        { url: db.url, quick: true },
      ),
    ).rejects.toThrow('boom');
  });
});

function report(results: Awaited<ReturnType<typeof measure>>[]) {
  return {
    startedAt: 'now',
    machine: { cpus: 'cpu', cores: 1, memoryGiB: 1, node: 'v20', platform: 'linux-x64' },
    postgres: { version: 'PostgreSQL 15', source: 'test' },
    quick: true,
    results,
  };
}
