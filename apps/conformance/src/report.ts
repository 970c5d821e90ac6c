/** The matrix (adapter x PostgreSQL version x lane) and its three renderings: JSON, Markdown, self-contained HTML. */
import type { CaseEvent } from './reporter.js';

export type CellStatus = 'pass' | 'fail' | 'not-run';

export interface Failure {
  test: string;
  messages: string[];
}

export interface Cell {
  adapter: string;
  major: number;
  lane: string;
  status: CellStatus;
  passed: number;
  failed: number;
  /** Tests (or the whole lane) that could not run here, with the reasons. */
  notRun: number;
  notRunReasons: string[];
  durationMs: number;
  failures: Failure[];
  /** Measured figures tests reported (`figure(name, value)`), e.g. seconds until writes resumed after a failover. */
  figures?: { test: string; values: Record<string, number | string> }[];
}

export interface VersionRun {
  major: number;
  status: 'ran' | 'not-run';
  version?: string;
  /** url, container, local or embedded. */
  source?: string;
  origin?: string;
  reason?: string;
  /** Sources tried before the one that ran (or all of them, when none could start), with their errors. */
  fallbacks?: string[];
  durationMs: number;
  /** Suite files that failed to load or crashed, and errors outside any test. */
  errors: { file: string; messages: string[] }[];
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  mode: 'ci' | 'matrix';
  node: string;
  provisioning: string[];
  versions: VersionRun[];
  cells: Cell[];
  ok: boolean;
  summary: { pass: number; fail: number; notRun: number };
}

/** Folds case events into cells (one per adapter, major, lane). */
export function addCase(cells: Map<string, Cell>, major: number, event: CaseEvent): Cell {
  const key = `${event.adapter}\u0000${major}\u0000${event.lane}`;
  let cell = cells.get(key);
  if (!cell) {
    cell = {
      adapter: event.adapter,
      major,
      lane: event.lane,
      status: 'not-run',
      passed: 0,
      failed: 0,
      notRun: 0,
      notRunReasons: [],
      durationMs: 0,
      failures: [],
    };
    cells.set(key, cell);
  }
  cell.durationMs += event.durationMs;
  if (event.figures && Object.keys(event.figures).length)
    cell.figures = [...(cell.figures ?? []), { test: event.name, values: event.figures }];
  if (event.state === 'passed') cell.passed++;
  else if (event.state === 'failed') {
    cell.failed++;
    cell.failures.push({ test: event.name, messages: event.errors });
  } else {
    cell.notRun++;
    const reason = event.notRun ?? `skipped: ${event.name}`;
    if (!cell.notRunReasons.includes(reason)) cell.notRunReasons.push(reason);
  }
  cell.status = cell.failed > 0 ? 'fail' : cell.passed > 0 ? 'pass' : 'not-run';
  return cell;
}

export function finishReport(report: Omit<Report, 'ok' | 'summary'>): Report {
  const summary = { pass: 0, fail: 0, notRun: 0 };
  for (const c of report.cells) summary[c.status === 'not-run' ? 'notRun' : c.status]++;
  const errors = report.versions.some((v) => v.errors.length > 0);
  const anyRan = report.versions.some((v) => v.status === 'ran');
  return { ...report, summary, ok: anyRan && summary.fail === 0 && !errors };
}

const lanesOf = (cells: Cell[], adapter: string) => [
  ...new Set(cells.filter((c) => c.adapter === adapter).map((c) => c.lane)),
];
const adaptersOf = (cells: Cell[]) => [...new Set(cells.map((c) => c.adapter))].sort();
/** "; fell back from: <source>: <error>" for a version whose preferred sources could not start. */
const fellBack = (v: VersionRun) =>
  v.status === 'ran' && v.fallbacks?.length ? `; fell back from: ${v.fallbacks.join('; ')}` : '';

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
/** "name=value, ..." of one test's figures. */
const figureText = (values: Record<string, number | string>) =>
  Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
const withFigures = (cells: Cell[]) => cells.filter((c) => c.figures?.length);

function cellText(cell: Cell | undefined): string {
  if (!cell) return '—';
  if (cell.status === 'not-run') return 'NOT RUN';
  const parts = [cell.status === 'pass' ? `✓ ${cell.passed}` : `✗ ${cell.failed}/${cell.passed + cell.failed}`];
  if (cell.notRun) parts.push(`${cell.notRun} not run`);
  return parts.join(' · ');
}

/** The compact terminal table: one row per adapter lane, one column per version. */
export function renderTerminal(report: Report, color = process.stdout.isTTY): string {
  const paint = (s: string, status: CellStatus | undefined) => {
    if (!color || !status) return s;
    const code = status === 'pass' ? 32 : status === 'fail' ? 31 : 41;
    return `\x1b[${code}m${s}\x1b[0m`;
  };
  const majors = report.versions.map((v) => v.major);
  const rows: { label: string; cells: (Cell | undefined)[] }[] = [];
  for (const adapter of adaptersOf(report.cells)) {
    for (const lane of lanesOf(report.cells, adapter)) {
      rows.push({
        label: `${adapter} › ${lane}`,
        cells: majors.map((m) => report.cells.find((c) => c.adapter === adapter && c.lane === lane && c.major === m)),
      });
    }
  }
  const labelWidth = Math.max(10, ...rows.map((r) => r.label.length));
  const width = Math.max(8, ...rows.flatMap((r) => r.cells.map((c) => cellText(c).length)));
  const lines = [`${''.padEnd(labelWidth)}  ${majors.map((m) => `pg${m}`.padEnd(width)).join('  ')}`];
  for (const row of rows) {
    lines.push(
      `${row.label.padEnd(labelWidth)}  ${row.cells.map((c) => paint(cellText(c).padEnd(width), c?.status)).join('  ')}`,
    );
  }
  for (const v of report.versions.filter((v) => v.status === 'ran'))
    lines.push(`pg${v.major}: ${v.version} from ${v.origin}${fellBack(v)}`);
  for (const v of report.versions.filter((v) => v.status === 'not-run'))
    lines.push(paint(`pg${v.major}: NOT RUN: ${v.reason}`, 'not-run'));
  for (const c of report.cells.filter((c) => c.status === 'not-run' || c.notRun))
    lines.push(`not run  ${c.adapter} › ${c.lane} pg${c.major}: ${c.notRunReasons.join('; ')}`);
  for (const c of withFigures(report.cells))
    for (const f of c.figures ?? [])
      lines.push(`figures  ${c.adapter} › ${c.lane} pg${c.major}: ${figureText(f.values)}`);
  for (const c of report.cells.filter((c) => c.status === 'fail'))
    for (const f of c.failures)
      lines.push(
        paint(`FAIL ${c.adapter} › ${c.lane} pg${c.major}: ${f.test}: ${f.messages[0]?.split('\n')[0] ?? ''}`, 'fail'),
      );
  for (const v of report.versions)
    for (const e of v.errors)
      lines.push(paint(`ERROR pg${v.major} ${e.file}: ${e.messages[0]?.split('\n')[0] ?? ''}`, 'fail'));
  const s = report.summary;
  lines.push(`${report.ok ? 'OK' : 'FAILED'}: ${s.pass} cells pass, ${s.fail} fail, ${s.notRun} not run`);
  return lines.join('\n');
}

const md = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function renderMarkdown(report: Report): string {
  const majors = report.versions.map((v) => v.major);
  const out = [
    `# pgstate conformance report`,
    '',
    `**${report.ok ? 'PASSED' : 'FAILED'}**: ${report.summary.pass} cells pass, ${report.summary.fail} fail, ${report.summary.notRun} not run. Mode ${report.mode}, Node ${report.node}, ${report.startedAt}.`,
    '',
    '## PostgreSQL versions',
    '',
    '| version | status | source | origin / reason | time |',
    '|---|---|---|---|---|',
    ...report.versions.map(
      (v) =>
        `| ${v.major} | ${v.status === 'ran' ? `ran ${v.version ?? ''}` : '**NOT RUN**'} | ${v.source ?? '—'} | ${md((v.origin ?? v.reason ?? '') + fellBack(v))} | ${seconds(v.durationMs)} |`,
    ),
  ];
  for (const adapter of adaptersOf(report.cells)) {
    out.push('', `## ${adapter}`, '', `| lane | ${majors.map((m) => `pg${m}`).join(' | ')} |`);
    out.push(`|---|${majors.map(() => '---').join('|')}|`);
    for (const lane of lanesOf(report.cells, adapter)) {
      const cells = majors.map((m) => {
        const c = report.cells.find((x) => x.adapter === adapter && x.lane === lane && x.major === m);
        if (!c) return '—';
        const text = cellText(c);
        return c.status === 'pass' && !c.notRun ? `${text} (${seconds(c.durationMs)})` : `**${text}**`;
      });
      out.push(`| ${lane} | ${cells.join(' | ')} |`);
    }
  }
  const notRun = report.cells.filter((c) => c.notRun > 0 || c.status === 'not-run');
  if (notRun.length) {
    out.push('', '## Not run', '');
    for (const c of notRun) out.push(`- ${c.adapter} › ${c.lane} (pg${c.major}): ${md(c.notRunReasons.join('; '))}`);
  }
  const measured = withFigures(report.cells);
  if (measured.length) {
    out.push('', '## Figures', '');
    for (const c of measured)
      for (const f of c.figures ?? [])
        out.push(`- ${c.adapter} › ${c.lane} (pg${c.major}): ${md(f.test)}: ${md(figureText(f.values))}`);
  }
  const failed = report.cells.filter((c) => c.failures.length);
  const errors = report.versions.flatMap((v) => v.errors.map((e) => ({ ...e, major: v.major })));
  if (failed.length || errors.length) {
    out.push('', '## Failures', '');
    for (const c of failed)
      for (const f of c.failures)
        out.push(
          `- ${c.adapter} › ${c.lane} (pg${c.major}): ${md(f.test)}`,
          '  ```',
          ...f.messages.map((m) => `  ${m.split('\n').slice(0, 6).join('\n  ')}`),
          '  ```',
        );
    for (const e of errors) out.push(`- pg${e.major} ${e.file}: ${md(e.messages.join('; '))}`);
  }
  out.push('', '## Provisioning', '', ...report.provisioning.map((l) => `- ${md(l)}`), '');
  return out.join('\n');
}

const esc = (s: string) =>
  s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

export function renderHtml(report: Report): string {
  const majors = report.versions.map((v) => v.major);
  const versionHead = report.versions
    .map(
      (v) =>
        `<th>PostgreSQL ${v.major}<div class="sub">${esc(v.status === 'ran' ? `${v.version ?? ''} · ${v.source ?? ''}` : 'NOT RUN')}</div></th>`,
    )
    .join('');
  const tables = adaptersOf(report.cells)
    .map((adapter) => {
      const rows = lanesOf(report.cells, adapter)
        .map((lane) => {
          const tds = majors
            .map((m) => {
              const c = report.cells.find((x) => x.adapter === adapter && x.lane === lane && x.major === m);
              if (!c) return '<td class="none">—</td>';
              const detail =
                c.status === 'not-run'
                  ? `<div class="why">${esc(c.notRunReasons.join('; '))}</div>`
                  : `<div class="sub">${c.passed} passed${c.failed ? `, ${c.failed} failed` : ''} · ${seconds(c.durationMs)}</div>${
                      c.notRun ? `<div class="badge">${c.notRun} not run: ${esc(c.notRunReasons.join('; '))}</div>` : ''
                    }${c.failures.map((f) => `<div class="why">✗ ${esc(f.test)}</div>`).join('')}${(c.figures ?? [])
                      .map((f) => `<div class="sub">${esc(figureText(f.values))}</div>`)
                      .join('')}`;
              const label = c.status === 'pass' ? 'PASS' : c.status === 'fail' ? 'FAIL' : 'NOT RUN';
              return `<td class="${c.status}"><strong>${label}</strong>${detail}</td>`;
            })
            .join('');
          return `<tr><th class="lane">${esc(lane)}</th>${tds}</tr>`;
        })
        .join('\n');
      return `<h2>${esc(adapter)}</h2>\n<table><tr><th>lane</th>${versionHead}</tr>\n${rows}</table>`;
    })
    .join('\n');
  const failures = report.cells
    .flatMap((c) =>
      c.failures.map(
        (f) =>
          `<details open><summary>${esc(`${c.adapter} › ${c.lane} · PostgreSQL ${c.major} · ${f.test}`)}</summary><pre>${esc(f.messages.join('\n\n'))}</pre></details>`,
      ),
    )
    .concat(
      report.versions.flatMap((v) =>
        v.errors.map(
          (e) =>
            `<details open><summary>${esc(`PostgreSQL ${v.major} · ${e.file}`)}</summary><pre>${esc(e.messages.join('\n\n'))}</pre></details>`,
        ),
      ),
    );
  const versions = report.versions
    .map(
      (v) =>
        `<tr><td>${v.major}</td><td class="${v.status === 'ran' ? 'pass' : 'not-run'}">${v.status === 'ran' ? `ran ${esc(v.version ?? '')}` : 'NOT RUN'}</td><td>${esc(v.source ?? '—')}</td><td>${esc((v.origin ?? v.reason ?? '') + fellBack(v))}</td><td>${seconds(v.durationMs)}</td></tr>`,
    )
    .join('');
  const s = report.summary;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgstate conformance</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:600}
.verdict.ok{background:#1a7f37}.verdict.bad{background:#cf222e}
table{border-collapse:collapse;margin:4px 0}th,td{border:1px solid #d0d7de;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}th.lane{min-width:130px}.sub{font-size:12px;color:#57606a;font-weight:400}
td.pass{background:#dafbe1}td.fail{background:#ffebe9;color:#a40e26}td.not-run{background:#cf222e;color:#fff}
td.not-run .why{color:#fff}td.none{color:#8c959f}.why{font-size:12px;max-width:320px}
.badge{font-size:12px;margin-top:3px;padding:1px 5px;border-radius:3px;background:#cf222e;color:#fff;display:inline-block}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:300px;font-size:12px}summary{cursor:pointer;color:#a40e26}
</style></head><body>
<h1>pgstate conformance</h1>
<p><span class="verdict ${report.ok ? 'ok' : 'bad'}">${report.ok ? 'PASSED' : 'FAILED'}</span>
${s.pass} cells pass · ${s.fail} fail · ${s.notRun} not run · mode ${report.mode} · Node ${esc(report.node)} · ${esc(report.startedAt)}</p>
${tables || '<p>No suite ran.</p>'}
${failures.length ? `<h2>Failures</h2>${failures.join('\n')}` : ''}
<h2>PostgreSQL versions</h2><table><tr><th>major</th><th>status</th><th>source</th><th>origin / reason</th><th>time</th></tr>${versions}</table>
<h2>Provisioning</h2><pre>${esc(report.provisioning.join('\n'))}</pre>
</body></html>
`;
}
