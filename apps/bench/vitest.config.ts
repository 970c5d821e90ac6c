import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['pgstate-source'] },
  ssr: { resolve: { conditions: ['pgstate-source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    passWithNoTests: true,
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
