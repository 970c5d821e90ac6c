/**
 * `pnpm bench [suite ...] [--quick] [--out DIR]`: runs every scenario side by side with its baseline on one throwaway
 * PostgreSQL (PGSTATE_TEST_DATABASE_URL wins), writes bench-results.{json,md,html}. It asserts no timing: in --quick
 * mode it fails only if the harness breaks (an error, or a ratio that is not a finite number).
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, startTestServer } from '@pgstate/core/testing';
import pg from 'pg';
import { measure, type Scenario, type ScenarioResult } from './harness.js';
import { type BenchReport, writeReport } from './report.js';
import { coreScenarios } from './scenarios/core.js';

const all: Scenario[] = [...coreScenarios];

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outIndex = args.indexOf('--out');
const outDir =
  outIndex >= 0
    ? path.resolve(args[outIndex + 1] ?? '.')
    : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const suites = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--out');
const unknown = suites.filter((s) => !all.some((sc) => sc.suite === s));
if (unknown.length > 0) {
  console.error(
    `bench: unknown suite(s) ${unknown.join(', ')}; known: ${[...new Set(all.map((s) => s.suite))].join(', ')}`,
  );
  process.exit(2);
}
const selected = all.filter((s) => suites.length === 0 || suites.includes(s.suite));

const server = await startTestServer();
const stop = async () => server.cluster?.destroy();
process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
process.once('SIGTERM', () => void stop().finally(() => process.exit(143)));
try {
  const probe = new pg.Client({ connectionString: server.url });
  await probe.connect();
  const version = (await probe.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v.split(' on ')[0] ?? 'unknown';
  await probe.end();
  const cpus = os.cpus();
  const report: BenchReport = {
    startedAt: new Date().toISOString(),
    machine: {
      cpus: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
    },
    postgres: {
      version,
      source: server.cluster
        ? `throwaway cluster from ${server.cluster.installation.binDir}`
        : 'PGSTATE_TEST_DATABASE_URL',
    },
    quick,
    results: [],
  };
  for (const scenario of selected) {
    process.stdout.write(`bench: ${scenario.suite} / ${scenario.name} ... `);
    const db = await createTestDatabase(server.url, 'bench');
    let result: ScenarioResult;
    try {
      result = await measure(scenario, { url: db.url, quick });
      console.log(
        `${result.ratio.toFixed(2)}x (${result.candidate.stats.medianMs.toFixed(1)} ms vs ${result.baseline.stats.medianMs.toFixed(1)} ms)${result.goal ? (result.goal.met ? ' goal met' : ' goal NOT met') : ''}`,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      console.log(`error: ${message}`);
      const empty = { runs: 0, medianMs: Number.NaN, p95Ms: Number.NaN, minMs: Number.NaN, maxMs: Number.NaN };
      result = {
        suite: scenario.suite,
        name: scenario.name,
        candidate: { label: '', stats: empty },
        baseline: { label: '', stats: empty },
        ratio: Number.NaN,
        extras: {},
        error: message,
      };
    } finally {
      await db.drop();
    }
    report.results.push(result);
  }
  const files = writeReport(report, outDir);
  console.log(`bench: wrote ${files.join(', ')}`);
  const broken = report.results.filter((r) => r.error || !Number.isFinite(r.ratio));
  if (broken.length > 0) {
    console.error(`bench: ${broken.length} scenario(s) broke: ${broken.map((r) => r.name).join(', ')}`);
    process.exitCode = 1;
  }
} finally {
  await stop();
}
