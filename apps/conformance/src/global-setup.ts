/**
 * globalSetup of vitest.suites.config.ts: the runner passes its server in PGSTATE_CONFORMANCE_TARGET; a suite run by
 * hand (`pnpm vitest run -c vitest.suites.config.ts suites/x`) gets a throwaway server of its own instead.
 */
import type { TestProject } from 'vitest/node';
import type { ConformanceTarget } from './kit.js';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const given = process.env.PGSTATE_CONFORMANCE_TARGET;
  const runner = Number(process.env.PGSTATE_CONFORMANCE_RUNNER_PID);
  if (runner) {
    // The runner was killed without a chance to clean up (SIGKILL): end this vitest and its workers with it.
    setInterval(() => {
      try {
        process.kill(runner, 0);
      } catch {
        try {
          process.kill(-process.pid, 'SIGKILL');
        } catch {
          process.exit(1);
        }
      }
    }, 500).unref();
  }
  if (given) {
    project.provide('conformanceTarget', JSON.parse(given) as ConformanceTarget);
    return undefined;
  }
  // Imported only here: vitest resolves globalSetup imports of workspace packages to their built dist.
  const { candidatesFor, discover, startFirst } = await import('./provision.js');
  const { createRunDir, sweepRunDir } = await import('./rundir.js');
  const wanted = Number(process.env.PGSTATE_CONFORMANCE_PG ?? 15);
  const candidates = candidatesFor(await discover({ majors: [wanted] }), wanted);
  if (candidates.length === 0)
    throw new Error(`no PostgreSQL ${wanted} found (set PGSTATE_CONFORMANCE_PG or PGSTATE_TEST_DATABASE_URL)`);
  const runDir = createRunDir();
  const attempts: string[] = [];
  const started = await startFirst(candidates, (c, i) => `${runDir}/pg${wanted}-${i}-${c.source}`, attempts);
  if (!started) {
    sweepRunDir(runDir);
    throw new Error(`PostgreSQL ${wanted} could not start: ${attempts.join('; ')}`);
  }
  for (const line of attempts) console.warn(`fell back: ${line}`);
  const { server } = started;
  project.provide('conformanceTarget', { runDir, server: server.target });
  return async () => {
    await server.stop().catch(() => {});
    sweepRunDir(runDir);
  };
}
