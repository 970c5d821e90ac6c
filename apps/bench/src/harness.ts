/**
 * Side-by-side measurement: every scenario runs its candidate and its baseline on the same server in the same run,
 * interleaved (baseline, candidate, baseline, ...) so drift on a shared machine hits both alike. Goals are ratios.
 */
import { performance } from 'node:perf_hooks';

export interface Stats {
  runs: number;
  medianMs: number;
  p95Ms: number;
  minMs: number;
  maxMs: number;
}

/** Units of extras, for formatting and for the charts of goals on extras. */
export type Unit = 'bytes' | 'ms' | 'count' | 'perSecond';

export interface Goal {
  /** Human text of the goal, e.g. "within 1.3x of a bare INSERT ... ON CONFLICT". "Nx faster" is maxRatio 1/N. */
  text: string;
  /** The goal holds when the ratio (candidate / baseline) is at most this. */
  maxRatio: number;
  /**
   * What the ratio divides. Default: the medians of the timed runs. Otherwise two extras the scenario reports
   * (bytes on disk, peak RSS over idle ...), `extras[candidate] / extras[baseline]`.
   */
  on?: { candidate: string; baseline: string; unit: Unit; candidateLabel?: string; baselineLabel?: string };
}

export interface ScenarioContext {
  /** Superuser URL of a fresh database for this scenario. */
  url: string;
  quick: boolean;
}

export interface Side {
  label: string;
  /** Untimed work before each run (a fresh stack, a cleared table ...). */
  before?(): Promise<void>;
  /** The timed work. A side that times its own critical section (e.g. inside a child process) returns its ms. */
  // biome-ignore lint/suspicious/noConfusingVoidType: most runs return nothing; a number is the optional own timing.
  run(): Promise<void | number>;
}

export interface Prepared {
  candidate: Side;
  baseline: Side;
  /** Extra figures to report (bytes, peak RSS, rows/s ...), measured by the scenario itself after the runs. */
  extras?(stats: { candidate: Stats; baseline: Stats }): Promise<Record<string, number>>;
  /** Units of extras (default: plain numbers). */
  units?: Record<string, Unit>;
  teardown?(): Promise<void>;
}

export interface Scenario {
  suite: string;
  name: string;
  goal?: Goal;
  /** Measured runs (default 7; --quick always uses 2). */
  runs?: number;
  /** Unmeasured runs of each side first (default 2; --quick uses 1). */
  warmups?: number;
  /** Throw NotRun from here when an adapter feature, a peer or a tool is missing. */
  prepare(ctx: ScenarioContext): Promise<Prepared>;
}

/** Thrown by `prepare` when the scenario cannot run here (missing peer, unimplemented feature); never a failure. */
export class NotRun extends Error {
  override readonly name = 'NotRun';
}

export interface ScenarioResult {
  suite: string;
  name: string;
  candidate: { label: string; stats: Stats };
  baseline: { label: string; stats: Stats };
  /** Candidate median / baseline median of the timed runs. */
  ratio: number;
  /** The goal with the ratio it is judged on (the time ratio, or the ratio of two extras). */
  goal?: Goal & { ratio: number; met: boolean };
  extras: Record<string, number>;
  units: Record<string, Unit>;
  error?: string;
  /** Why the scenario did not run (missing peer or feature); set instead of figures. */
  notRun?: string;
}

export function summarize(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
  const mid = sorted.length / 2;
  const median =
    sorted.length % 2 ? (sorted[Math.floor(mid)] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return {
    runs: sorted.length,
    medianMs: median,
    p95Ms: at(0.95),
    minMs: sorted[0] ?? Number.NaN,
    maxMs: sorted.at(-1) ?? Number.NaN,
  };
}

const EMPTY: Stats = { runs: 0, medianMs: Number.NaN, p95Ms: Number.NaN, minMs: Number.NaN, maxMs: Number.NaN };

/** A result without figures: the scenario errored or did not run. */
export function emptyResult(scenario: Scenario, outcome: { error: string } | { notRun: string }): ScenarioResult {
  return {
    suite: scenario.suite,
    name: scenario.name,
    candidate: { label: '', stats: EMPTY },
    baseline: { label: '', stats: EMPTY },
    ratio: Number.NaN,
    ...(scenario.goal ? { goal: { ...scenario.goal, ratio: Number.NaN, met: false } } : {}),
    extras: {},
    units: {},
    ...outcome,
  };
}

async function time(side: Side): Promise<number> {
  await side.before?.();
  const start = performance.now();
  const own = await side.run();
  const elapsed = performance.now() - start;
  return typeof own === 'number' ? own : elapsed;
}

export async function measure(scenario: Scenario, ctx: ScenarioContext): Promise<ScenarioResult> {
  let prepared: Prepared;
  try {
    prepared = await scenario.prepare(ctx);
  } catch (error) {
    if (error instanceof NotRun) return emptyResult(scenario, { notRun: error.message });
    throw error;
  }
  try {
    const runs = ctx.quick ? 2 : (scenario.runs ?? 7);
    const warmups = ctx.quick ? 1 : (scenario.warmups ?? 2);
    for (let i = 0; i < warmups; i++) {
      await time(prepared.baseline);
      await time(prepared.candidate);
    }
    const base: number[] = [];
    const cand: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate which side goes first so neither always enjoys a warmer cache.
      if (i % 2 === 0) {
        base.push(await time(prepared.baseline));
        cand.push(await time(prepared.candidate));
      } else {
        cand.push(await time(prepared.candidate));
        base.push(await time(prepared.baseline));
      }
    }
    const candidate = summarize(cand);
    const baseline = summarize(base);
    const ratio = candidate.medianMs / baseline.medianMs;
    const extras = (await prepared.extras?.({ candidate, baseline })) ?? {};
    let goal: ScenarioResult['goal'];
    if (scenario.goal) {
      const on = scenario.goal.on;
      const goalRatio = on ? (extras[on.candidate] ?? Number.NaN) / (extras[on.baseline] ?? Number.NaN) : ratio;
      goal = { ...scenario.goal, ratio: goalRatio, met: goalRatio <= scenario.goal.maxRatio };
    }
    return {
      suite: scenario.suite,
      name: scenario.name,
      candidate: { label: prepared.candidate.label, stats: candidate },
      baseline: { label: prepared.baseline.label, stats: baseline },
      ratio,
      ...(goal ? { goal } : {}),
      extras,
      units: prepared.units ?? {},
    };
  } finally {
    await prepared.teardown?.();
  }
}

/** Operations per second of a run that did `count` operations in `ms`. */
export const perSecond = (count: number, ms: number) => Math.round((count * 1000) / ms);
