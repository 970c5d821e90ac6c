// The conformance suites (run by src/main.ts, one vitest child per PostgreSQL version). Not the harness's own tests.
import { defineConfig } from 'vitest/config';

const include = process.env.PGSTATE_CONFORMANCE_INCLUDE?.split(',') ?? ['suites/**/*.conformance.ts'];

export default defineConfig({
  resolve: { conditions: ['pgstate-source'] },
  ssr: { resolve: { conditions: ['pgstate-source'] } },
  test: {
    include,
    globalSetup: ['./src/global-setup.ts'],
    reporters: process.env.PGSTATE_CONFORMANCE_EVENTS_FD ? ['./src/reporter.ts'] : ['default'],
    pool: 'forks',
    maxWorkers: Number(process.env.PGSTATE_CONFORMANCE_WORKERS ?? 3),
    testTimeout: 120_000,
    hookTimeout: 300_000,
    passWithNoTests: true,
  },
});
