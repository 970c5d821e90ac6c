/** bench-results.json / .md / .html (self-contained: inline SVG bars, no scripts, no external assets). */
import fs from 'node:fs';
import path from 'node:path';
import type { ScenarioResult, Unit } from './harness.js';

export interface BenchReport {
  startedAt: string;
  machine: { cpus: string; cores: number; memoryGiB: number; node: string; platform: string };
  postgres: { version: string; source: string };
  quick: boolean;
  results: ScenarioResult[];
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

export function formatValue(value: number, unit: Unit | undefined): string {
  if (!Number.isFinite(value)) return String(value);
  switch (unit) {
    case 'bytes':
      return bytes(value);
    case 'ms':
      return `${fmt(value)} ms`;
    case 'perSecond':
      return `${Math.round(value).toLocaleString('en-US')}/s`;
    case 'count':
      return Math.round(value).toLocaleString('en-US');
    default:
      return String(value);
  }
}

/** "2.61x" plus, below 1, how many times faster (or smaller) that is, which is how such goals are worded. */
export function ratioText(ratio: number): string {
  if (!Number.isFinite(ratio)) return '-';
  const x = `${ratio < 0.1 ? ratio.toFixed(3) : ratio.toFixed(2)}x`;
  return ratio < 1 && ratio > 0 ? `${x} (1/${(1 / ratio).toFixed(1)})` : x;
}

function verdict(r: ScenarioResult): string {
  if (r.error) return 'error';
  if (r.notRun) return 'not run';
  if (!r.goal) return 'no goal';
  return r.goal.met ? 'met' : 'NOT met';
}

function goalRatio(r: ScenarioResult): string {
  if (!r.goal || r.error || r.notRun) return '-';
  const on = r.goal.on ? ` (${r.goal.on.candidate} / ${r.goal.on.baseline})` : '';
  return `${ratioText(r.goal.ratio)}${on}`;
}

function extrasText(r: ScenarioResult): string {
  return Object.entries(r.extras)
    .map(([k, v]) => `${k} ${formatValue(v, r.units[k])}`)
    .join(', ');
}

const goalsOf = (report: BenchReport) => report.results.filter((r) => r.goal || r.error || r.notRun);

export function toMarkdown(report: BenchReport): string {
  const lines = [
    `# pgstate benchmarks${report.quick ? ' (quick smoke run: figures are not meaningful)' : ''}`,
    '',
    `${report.startedAt} - ${report.machine.cpus} x${report.machine.cores}, ${report.machine.memoryGiB} GiB, Node ${report.machine.node} - ${report.postgres.version} (${report.postgres.source})`,
    '',
    '## Goals',
    '',
    'Ratio = candidate / baseline, both measured in this run on this server (medians of the timed runs, unless the',
    'goal names two extras). "Nx faster" goals are written as ratio <= 1/N.',
    '',
    '| suite | scenario | goal | ratio | verdict |',
    '|---|---|---|---|---|',
    ...goalsOf(report).map(
      (r) =>
        `| ${r.suite} | ${r.name} | ${r.goal ? `${r.goal.text} (<= ${r.goal.maxRatio}x)` : ''} | ${goalRatio(r)} | ${verdict(r)}${r.notRun ? `: ${r.notRun}` : ''}${r.error ? `: ${r.error}` : ''} |`,
    ),
    '',
    '## All scenarios (milliseconds)',
    '',
    '| suite | scenario | candidate | median | p95 | min | max | baseline | median | p95 | time ratio | extras |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...report.results.map((r) => {
      if (r.error) return `| ${r.suite} | ${r.name} | error: ${r.error} |||||||||||`;
      if (r.notRun) return `| ${r.suite} | ${r.name} | not run: ${r.notRun} |||||||||||`;
      const c = r.candidate.stats;
      const b = r.baseline.stats;
      return `| ${r.suite} | ${r.name} | ${r.candidate.label} | ${fmt(c.medianMs)} | ${fmt(c.p95Ms)} | ${fmt(c.minMs)} | ${fmt(c.maxMs)} | ${r.baseline.label} | ${fmt(b.medianMs)} | ${fmt(b.p95Ms)} | ${ratioText(r.ratio)} | ${extrasText(r)} |`;
    }),
    '',
  ];
  return lines.join('\n');
}

const CHART_WIDTH = 900;
const BAR_MAX = 620;

/** Two labelled horizontal bars: candidate (blue) over baseline (grey), with their values at the bar ends. */
function barPair(
  caption: string,
  rows: { label: string; value: number; text: string; cls: 'cand' | 'base' }[],
  limit?: { value: number; text: string },
): string {
  const max = Math.max(...rows.map((r) => r.value), limit?.value ?? 0, 1e-9);
  const rowHeight = 44;
  const height = 22 + rows.length * rowHeight;
  const scale = (v: number) => Math.max(2, (v / max) * BAR_MAX);
  const bars = rows
    .map((row, i) => {
      const y = 22 + i * rowHeight;
      const w = scale(row.value);
      return `<text x="0" y="${y + 12}" class="lbl">${esc(row.label)}</text><rect x="0" y="${y + 17}" width="${w.toFixed(1)}" height="18" rx="2" class="${row.cls}"/><text x="${(w + 8).toFixed(1)}" y="${y + 31}" class="val">${esc(row.text)}</text>`;
    })
    .join('');
  // The goal's limit as a dashed mark across each bar (not across the labels above them).
  const x = limit ? scale(limit.value).toFixed(1) : '';
  const line = limit
    ? `<text x="${x}" y="12" text-anchor="${Number(x) < 90 ? 'start' : 'middle'}" class="limtxt">${esc(limit.text)}</text>${rows
        .map((_, i) => {
          const y = 22 + i * rowHeight;
          return `<line x1="${x}" x2="${x}" y1="${y + 13}" y2="${y + 39}" class="limit"/>`;
        })
        .join('')}`
    : '';
  return `<figure><figcaption>${esc(caption)}</figcaption><svg viewBox="0 0 ${CHART_WIDTH} ${height}" width="${CHART_WIDTH}" height="${height}" role="img" aria-label="${esc(caption)}">${line}${bars}</svg></figure>`;
}

function charts(r: ScenarioResult): string {
  const c = r.candidate.stats;
  const b = r.baseline.stats;
  const onTime = r.goal && !r.goal.on;
  let out = barPair(
    'Time per run (median; p95 in brackets)',
    [
      { label: r.candidate.label, value: c.medianMs, text: `${fmt(c.medianMs)} ms (p95 ${fmt(c.p95Ms)})`, cls: 'cand' },
      { label: r.baseline.label, value: b.medianMs, text: `${fmt(b.medianMs)} ms (p95 ${fmt(b.p95Ms)})`, cls: 'base' },
    ],
    onTime && r.goal ? { value: b.medianMs * r.goal.maxRatio, text: `goal: ${r.goal.maxRatio}x baseline` } : undefined,
  );
  const on = r.goal?.on;
  if (r.goal && on) {
    const cv = r.extras[on.candidate] ?? Number.NaN;
    const bv = r.extras[on.baseline] ?? Number.NaN;
    const cl = on.candidateLabel ?? on.candidate;
    const bl = on.baselineLabel ?? on.baseline;
    out += barPair(
      `What the goal is on: ${cl} / ${bl}`,
      [
        { label: cl, value: cv, text: formatValue(cv, on.unit), cls: 'cand' },
        { label: bl, value: bv, text: formatValue(bv, on.unit), cls: 'base' },
      ],
      { value: bv * r.goal.maxRatio, text: `goal: ${r.goal.maxRatio}x ${bl}` },
    );
  }
  return out;
}

function section(r: ScenarioResult): string {
  const badge = r.error
    ? '<span class="tag err">error</span>'
    : r.notRun
      ? '<span class="tag skip">not run</span>'
      : r.goal
        ? `<span class="tag ${r.goal.met ? 'met' : 'notmet'}">goal ${r.goal.met ? 'met' : 'not met'}: ${esc(ratioText(r.goal.ratio))}</span>`
        : `<span class="tag plain">${esc(ratioText(r.ratio))}</span>`;
  const body = r.error
    ? `<p class="err">${esc(r.error)}</p>`
    : r.notRun
      ? `<p class="skip">${esc(r.notRun)}</p>`
      : `${r.goal ? `<p class="goal">Goal: ${esc(r.goal.text)} (ratio &le; ${r.goal.maxRatio}).</p>` : ''}${charts(r)}${
          Object.keys(r.extras).length ? `<p class="extras">${esc(extrasText(r))}</p>` : ''
        }`;
  return `<section><h3>${esc(r.name)} ${badge}</h3>${body}</section>`;
}

export function toHtml(report: BenchReport): string {
  const suites = [...new Set(report.results.map((r) => r.suite))];
  const goals = goalsOf(report);
  const met = goals.filter((r) => r.goal?.met && !r.error && !r.notRun).length;
  const measuredGoals = goals.filter((r) => r.goal && !r.error && !r.notRun).length;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgstate benchmarks</title><style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;color:#1d2330;max-width:980px;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.25rem;margin:2rem 0 .5rem;border-bottom:2px solid #e3e8f0;padding-bottom:.2rem}
.meta{color:#566;margin-bottom:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}td,th{border:1px solid #d5dae3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.nw,td .nw{white-space:nowrap}td.met{color:#0a7a32;font-weight:600}td.notmet{color:#b3261e;font-weight:600}td.skip{color:#7a6400}td.err{color:#b3261e}
section{margin:.75rem 0 1.25rem;padding-bottom:.5rem;border-bottom:1px solid #eef}
h3{font-size:1rem;margin:.2rem 0 .3rem}figure{margin:.3rem 0}figcaption{font-size:12px;color:#667}
.lbl{font-size:12.5px;fill:#333}.val{font-size:12.5px;fill:#222;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:4px}
.cand{fill:#2f6fde}.base{fill:#a3afbf}.limit{stroke:#d9822b;stroke-width:2;stroke-dasharray:5 3}.limtxt{font-size:11px;fill:#b5651d}
.tag{font-size:12px;font-weight:600;padding:.1rem .45rem;border-radius:9px;margin-left:.4rem;vertical-align:middle}
.tag.met{background:#dff3e6;color:#0a7a32}.tag.notmet{background:#fbe3e1;color:#b3261e}.tag.skip{background:#fff4d6;color:#7a6400}
.tag.err{background:#b3261e;color:#fff}.tag.plain{background:#eef1f6;color:#334}
p.goal,p.extras{margin:.2rem 0;color:#445;font-size:13px}p.skip{color:#7a6400}.err{color:#b3261e}
.warn{background:#fff4d6;padding:.5rem;border-radius:4px}.legend span{display:inline-block;width:12px;height:12px;margin:0 .3rem 0 .8rem;vertical-align:-1px;border-radius:2px}
</style></head><body>
<h1>pgstate benchmarks</h1>
<div class="meta">${esc(report.startedAt)} &middot; ${esc(report.machine.cpus)} &times;${report.machine.cores}, ${report.machine.memoryGiB} GiB &middot; Node ${esc(report.machine.node)} &middot; ${esc(report.machine.platform)}<br>${esc(report.postgres.version)} (${esc(report.postgres.source)})</div>
${report.quick ? '<p class="warn">Quick smoke run: it proves the harness works; the figures are not meaningful.</p>' : ''}
<h2>Goals: ${met} of ${measuredGoals} met</h2>
<p>Suites: ${suites.map((s) => `<a href="#${esc(s)}">${esc(s)}</a>`).join(' &middot; ')}</p>
<p>Ratio = candidate / baseline, both measured in this run on this server: medians of the timed runs, or two measured extras where the goal says so. A goal "N&times; faster" is a ratio &le; 1/N.</p>
<table><tr><th>suite</th><th>scenario</th><th>goal</th><th>limit</th><th>measured ratio</th><th>verdict</th></tr>
${goals
  .map((r) => {
    const v = verdict(r);
    const cls = r.error ? 'err' : r.notRun ? 'skip' : r.goal?.met ? 'met' : 'notmet';
    const why = r.notRun ?? r.error;
    return `<tr><td>${esc(r.suite)}</td><td>${esc(r.name)}</td><td>${esc(r.goal?.text ?? '')}</td><td class="nw">${r.goal ? `&le; ${r.goal.maxRatio}x` : ''}</td><td>${esc(goalRatio(r))}</td><td class="${cls}"><span class="nw">${esc(v)}</span>${why ? `: ${esc(why)}` : ''}</td></tr>`;
  })
  .join('\n')}
</table>
<p class="legend">Bars show medians over the timed runs:<span class="cand" style="background:#2f6fde"></span>pgstate (candidate)<span style="background:#a3afbf"></span>baseline, same server, same run, interleaved<span style="background:#d9822b;height:3px;vertical-align:3px"></span>where the goal puts the candidate's limit</p>
${suites
  .map(
    (suite) =>
      `<h2 id="${esc(suite)}">${esc(suite)}</h2>\n${report.results
        .filter((r) => r.suite === suite)
        .map(section)
        .join('\n')}`,
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
