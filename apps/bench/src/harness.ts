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

export interface Goal {
  /** Human text of the goal, e.g. "within 1.3x of a bare INSERT ... ON CONFLICT". */
  text: string;
  /** The goal holds when candidate/baseline (median) is at most this. */
  maxRatio: number;
}

export interface ScenarioContext {
  /** Superuser URL of a fresh database for this scenario. */
  url: string;
  quick: boolean;
}

export interface Side {
  label: string;
  run(): Promise<void>;
}

export interface Prepared {
  candidate: Side;
  baseline: Side;
  /** Extra figures to report (bytes, peak RSS ...), measured by the scenario itself. */
  extras?(): Promise<Record<string, number>>;
  teardown?(): Promise<void>;
}

export interface Scenario {
  suite: string;
  name: string;
  goal?: Goal;
  /** Measured runs (quick mode uses 2 and no warm-up beyond one). */
  runs?: number;
  prepare(ctx: ScenarioContext): Promise<Prepared>;
}

export interface ScenarioResult {
  suite: string;
  name: string;
  candidate: { label: string; stats: Stats };
  baseline: { label: string; stats: Stats };
  ratio: number;
  goal?: Goal & { met: boolean };
  extras: Record<string, number>;
  error?: string;
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

async function time(side: Side): Promise<number> {
  const start = performance.now();
  await side.run();
  return performance.now() - start;
}

export async function measure(scenario: Scenario, ctx: ScenarioContext): Promise<ScenarioResult> {
  const prepared = await scenario.prepare(ctx);
  try {
    const runs = ctx.quick ? 2 : (scenario.runs ?? 7);
    const warmups = ctx.quick ? 1 : 2;
    for (let i = 0; i < warmups; i++) {
      await prepared.baseline.run();
      await prepared.candidate.run();
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
    return {
      suite: scenario.suite,
      name: scenario.name,
      candidate: { label: prepared.candidate.label, stats: candidate },
      baseline: { label: prepared.baseline.label, stats: baseline },
      ratio,
      ...(scenario.goal ? { goal: { ...scenario.goal, met: ratio <= scenario.goal.maxRatio } } : {}),
      extras: (await prepared.extras?.()) ?? {},
    };
  } finally {
    await prepared.teardown?.();
  }
}
