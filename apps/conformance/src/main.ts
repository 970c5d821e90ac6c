/**
 * `pnpm conformance [--ci [--one-version]] [--pg 16[,17]] [--suites <glob,...>] [--out <dir>] [--workers N] [--node 24]`
 * Every adapter suite against every PostgreSQL it can get; writes report.json, report.md and report.html.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderHtml, renderMarkdown, renderTerminal } from './report.js';
import { APP_DIR, runConformance } from './runner.js';

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    'one-version': { type: 'boolean', default: false },
    pg: { type: 'string', multiple: true },
    suites: { type: 'string' },
    out: { type: 'string' },
    workers: { type: 'string' },
    node: { type: 'string' },
  },
});

/**
 * `--node 24` runs the suites under another Node.js major (users run 22 and 24), taken from the npm `node` package;
 * `--node /path/to/node` uses that binary.
 */
function resolveNode(want: string | undefined): { binary: string; version: string } | undefined {
  if (!want) return undefined;
  const binary = /^\d+$/.test(want)
    ? execFileSync('npx', ['-y', `node@${want}`, '-p', 'process.execPath'], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .at(-1)!
    : want;
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  return { binary, version };
}
const node = resolveNode(values.node);

const majors = values.pg
  ?.flatMap((v) => v.split(','))
  .map((v) => Number.parseInt(v, 10))
  .filter((n) => Number.isInteger(n));
const outDir = path.resolve(values.out ?? path.join(APP_DIR, 'reports'));
fs.mkdirSync(outDir, { recursive: true });

const started = performance.now();
console.log(
  `conformance: ${values.ci ? 'CI mode (one or two PostgreSQL versions)' : 'matrix'} on Node ${node?.version ?? process.version}; reports in ${outDir}`,
);
const report = await runConformance({
  ci: values.ci ?? false,
  oneVersion: values['one-version'] ?? false,
  majors: majors?.length ? majors : undefined,
  include: values.suites?.split(','),
  workers: values.workers ? Number(values.workers) : undefined,
  node,
  logDir: path.join(outDir, 'logs'),
  print: (line) => console.log(line),
  progress: (mark) => process.stdout.write(mark),
});

fs.writeFileSync(path.join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
fs.writeFileSync(path.join(outDir, 'report.md'), renderMarkdown(report));
fs.writeFileSync(path.join(outDir, 'report.html'), renderHtml(report));
console.log(`\n${renderTerminal(report)}`);
console.log(`\n${path.join(outDir, 'report.html')} (${((performance.now() - started) / 1000).toFixed(1)}s)`);
process.exitCode = report.ok ? 0 : 1;
