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
import { emptyResult, measure, type Scenario, type ScenarioResult } from './harness.js';
import { type BenchReport, writeReport } from './report.js';
import { coreScenarios } from './scenarios/core.js';
import { meltanoScenarios } from './scenarios/meltano.js';
import { memoryScenarios } from './scenarios/memory.js';
import { powersyncScenarios } from './scenarios/powersync.js';
import { pulumiScenarios } from './scenarios/pulumi.js';
import { pulumiUpScenarios } from './scenarios/pulumi-up.js';
import { s3GatewayScenarios } from './scenarios/s3-gateway.js';

// The AWS SDK warns on Node 20 at its first client; the warning says nothing about the figures.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const all: Scenario[] = [
  ...coreScenarios,
  ...pulumiScenarios,
  ...s3GatewayScenarios,
  ...pulumiUpScenarios,
  ...meltanoScenarios,
  ...powersyncScenarios,
  ...memoryScenarios,
];

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
    const started = Date.now();
    try {
      result = await measure(scenario, { url: db.url, quick });
      console.log(`${describe(result)} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      console.log(`error: ${message}`);
      result = emptyResult(scenario, { error: message });
    } finally {
      await db.drop();
    }
    report.results.push(result);
  }
  const files = writeReport(report, outDir);
  console.log(`bench: wrote ${files.join(', ')}`);
  const broken = report.results.filter(
    (r) => r.error || (!r.notRun && (!Number.isFinite(r.ratio) || (r.goal && !Number.isFinite(r.goal.ratio)))),
  );
  if (broken.length > 0) {
    console.error(`bench: ${broken.length} scenario(s) broke: ${broken.map((r) => r.name).join(', ')}`);
    process.exitCode = 1;
  }
} finally {
  await stop();
}

function describe(r: ScenarioResult): string {
  if (r.notRun) return `not run: ${r.notRun}`;
  const time = `${r.ratio.toFixed(2)}x (${r.candidate.stats.medianMs.toFixed(1)} ms vs ${r.baseline.stats.medianMs.toFixed(1)} ms)`;
  if (!r.goal) return time;
  const on = r.goal.on ? ` ${r.goal.on.candidate}/${r.goal.on.baseline} = ${r.goal.ratio.toFixed(2)}x,` : '';
  return `${time},${on} goal ${r.goal.met ? 'met' : 'NOT met'}`;
}
