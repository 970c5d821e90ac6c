/** bench-results.json / .md / .html (self-contained: inline SVG bars, no scripts, no external assets). */
import fs from 'node:fs';
import path from 'node:path';
import type { ScenarioResult } from './harness.js';

export interface BenchReport {
  startedAt: string;
  machine: { cpus: string; cores: number; memoryGiB: number; node: string; platform: string };
  postgres: { version: string; source: string };
  quick: boolean;
  results: ScenarioResult[];
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function goalCell(r: ScenarioResult): string {
  if (r.error) return 'error';
  if (!r.goal) return 'no goal';
  return `${r.goal.met ? 'met' : 'NOT met'} (${r.ratio.toFixed(2)}x, goal <= ${r.goal.maxRatio}x)`;
}

export function toMarkdown(report: BenchReport): string {
  const lines = [
    `# pgstate benchmarks${report.quick ? ' (quick smoke run: figures are not meaningful)' : ''}`,
    '',
    `${report.startedAt} - ${report.machine.cpus} x${report.machine.cores}, ${report.machine.memoryGiB} GiB, Node ${report.machine.node} - ${report.postgres.version} (${report.postgres.source})`,
    '',
    '## Goals',
    '',
    '| suite | scenario | goal | ratio | verdict |',
    '|---|---|---|---|---|',
    ...report.results
      .filter((r) => r.goal || r.error)
      .map(
        (r) =>
          `| ${r.suite} | ${r.name} | ${r.goal?.text ?? ''} | ${r.error ? '-' : `${r.ratio.toFixed(2)}x`} | ${goalCell(r)} |`,
      ),
    '',
    '## All scenarios (milliseconds; ratio = candidate median / baseline median, same server, same run)',
    '',
    '| suite | scenario | candidate | median | p95 | min | max | baseline | median | p95 | ratio | extras |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...report.results.map((r) =>
      r.error
        ? `| ${r.suite} | ${r.name} | error: ${r.error} |||||||||||`
        : `| ${r.suite} | ${r.name} | ${r.candidate.label} | ${fmt(r.candidate.stats.medianMs)} | ${fmt(r.candidate.stats.p95Ms)} | ${fmt(r.candidate.stats.minMs)} | ${fmt(r.candidate.stats.maxMs)} | ${r.baseline.label} | ${fmt(r.baseline.stats.medianMs)} | ${fmt(r.baseline.stats.p95Ms)} | ${r.ratio.toFixed(2)}x | ${Object.entries(
            r.extras,
          )
            .map(([k, v]) => `${k}=${v}`)
            .join(', ')} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

function bars(r: ScenarioResult): string {
  if (r.error) return `<p class="err">error: ${esc(r.error)}</p>`;
  const max = Math.max(r.candidate.stats.medianMs, r.baseline.stats.medianMs, 1e-9);
  const row = (label: string, ms: number, p95: number, y: number, cls: string) => {
    const w = Math.max(2, (ms / max) * 420);
    return `<text x="0" y="${y + 14}" class="lbl">${esc(label)}</text><rect x="230" y="${y}" width="${w.toFixed(1)}" height="20" class="${cls}"/><text x="${(236 + w).toFixed(1)}" y="${y + 14}" class="val">${fmt(ms)} ms (p95 ${fmt(p95)})</text>`;
  };
  return `<svg viewBox="0 0 820 56" width="820" height="56" role="img" aria-label="${esc(r.name)}">${row(r.candidate.label, r.candidate.stats.medianMs, r.candidate.stats.p95Ms, 2, 'cand')}${row(r.baseline.label, r.baseline.stats.medianMs, r.baseline.stats.p95Ms, 30, 'base')}</svg>`;
}

export function toHtml(report: BenchReport): string {
  const goals = report.results.filter((r) => r.goal || r.error);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgstate benchmarks</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:1000px}
h1{font-size:1.5rem;margin:0 0 .25rem}.meta{color:#566;margin-bottom:1.5rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #d5dae3;padding:.3rem .6rem;text-align:left}
th{background:#f1f4f8}.met{color:#0a7a32;font-weight:600}.notmet{color:#b3261e;font-weight:600}
section{margin:1rem 0 1.25rem;padding-bottom:.5rem;border-bottom:1px solid #eef}
h3{font-size:1rem;margin:.2rem 0}.lbl{font-size:12px;fill:#333}.val{font-size:12px;fill:#333}
.cand{fill:#2f6fde}.base{fill:#9aa7b8}.err{color:#b3261e}.warn{background:#fff4d6;padding:.5rem;border-radius:4px}
</style></head><body>
<h1>pgstate benchmarks</h1>
<div class="meta">${esc(report.startedAt)} &middot; ${esc(report.machine.cpus)} &times;${report.machine.cores}, ${report.machine.memoryGiB} GiB &middot; Node ${esc(report.machine.node)} &middot; ${esc(report.postgres.version)} (${esc(report.postgres.source)})</div>
${report.quick ? '<p class="warn">Quick smoke run: it proves the harness works; the figures are not meaningful.</p>' : ''}
<h2>Goals</h2>
<table><tr><th>suite</th><th>scenario</th><th>goal</th><th>ratio</th><th>verdict</th></tr>
${goals.map((r) => `<tr><td>${esc(r.suite)}</td><td>${esc(r.name)}</td><td>${esc(r.goal?.text ?? '')}</td><td>${r.error ? '-' : `${r.ratio.toFixed(2)}x`}</td><td class="${r.goal?.met ? 'met' : 'notmet'}">${esc(goalCell(r))}</td></tr>`).join('\n')}
</table>
<h2>Scenarios</h2>
<p>Blue: pgstate (candidate). Grey: the baseline measured in the same run on the same server. Bars show medians.</p>
${report.results
  .map(
    (r) =>
      `<section><h3>${esc(r.suite)} &middot; ${esc(r.name)}${r.error ? '' : ` &middot; ${r.ratio.toFixed(2)}x`}</h3>${bars(r)}${
        Object.keys(r.extras).length
          ? `<div>${Object.entries(r.extras)
              .map(([k, v]) => `${esc(k)}: ${v}`)
              .join(' &middot; ')}</div>`
          : ''
      }</section>`,
  )
  .join('\n')}
</body></html>
`;
}

export function writeReport(report: BenchReport, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const files = {
    'bench-results.json': `${JSON.stringify(report, null, 2)}\n`,
    'bench-results.md': toMarkdown(report),
    'bench-results.html': toHtml(report),
  };
  return Object.entries(files).map(([name, text]) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  });
}
