/**
 * `pulumi up` of 200 resources with the stock Pulumi CLI (issue 6): state through the S3 gateway (seed table) against
 * `file://` and against the CLI's own `postgres://` backend. Driven by the Automation API with an inline program of
 * component resources, so no language plugin or provider binary is needed beyond the CLI itself; each run is a new
 * stack (created untimed), so every run creates 200 resources and saves a growing checkpoint after each step.
 * Runs only when scripts/peers/pulumi-cli.sh has built the CLI, like the CLI tests do.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPool, parseConnectionSettings } from '@pgstate/core';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import { startPulumiBackend } from '@pgstate/s3-gateway';
import * as pulumi from '@pulumi/pulumi';
import { LocalWorkspace, PulumiCommand, type Stack } from '@pulumi/pulumi/automation/index.js';
import { NotRun, type Prepared, type Scenario, type Side } from '../harness.js';

const PEERS = process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'pgstate-peers');
const CLI = path.join(PEERS, 'bin', 'pulumi');
const PROJECT = 'benchup';

class Group extends pulumi.ComponentResource {
  constructor(name: string, opts?: pulumi.ComponentResourceOptions) {
    super('bench:index:Group', name, {}, opts);
    this.registerOutputs({ name });
  }
}

/** 200 resources: 20 groups of 9 children, plus the groups themselves. */
function program(resources: number) {
  return async () => {
    const groups = Math.ceil(resources / 10);
    for (let g = 0; g < groups; g++) {
      const parent = new Group(`group-${g}`);
      for (let c = 0; c < 9 && g * 10 + c + 1 < resources; c++) new Group(`group-${g}-item-${c}`, { parent });
    }
    return { resources };
  };
}

type Backend = 'gateway' | 'file' | 'native';

interface Running {
  side: Side;
  close(): Promise<void>;
}

async function startSide(kind: Backend, url: string, resources: number, command: PulumiCommand): Promise<Running> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), `pgstate-bench-pulumi-${kind}-`));
  let envVars: Record<string, string>;
  let close = async () => {};
  if (kind === 'gateway') {
    const pool = createPool(parseConnectionSettings(url));
    const backend = await startPulumiBackend({ handler: () => createPulumiBucketHandler({ pool }), uploads: { pool } });
    envVars = backend.envVars;
    close = async () => {
      await backend.close();
      await pool.end();
    };
  } else if (kind === 'file') {
    fs.mkdirSync(path.join(home, 'state'));
    envVars = { PULUMI_BACKEND_URL: `file://${path.join(home, 'state')}` };
  } else {
    // The CLI's own driver; its own table so it never meets the seed table of the gateway side.
    const native = new URL(url);
    native.searchParams.set('sslmode', 'disable');
    native.searchParams.set('table', 'pulumi_native_state');
    envVars = { PULUMI_BACKEND_URL: native.toString().replace(/^postgresql:/, 'postgres:') };
  }
  const env = {
    ...envVars,
    PULUMI_HOME: path.join(home, 'home'),
    PULUMI_CONFIG_PASSPHRASE: 'bench',
    PULUMI_SKIP_UPDATE_CHECK: 'true',
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: 'true',
  };
  let n = 0;
  let stack: Stack | undefined;
  const label = {
    gateway: 'pulumi up via the S3 gateway (seed table)',
    file: 'pulumi up with file:// state',
    native: "pulumi up with the CLI's postgres:// backend",
  }[kind];
  return {
    side: {
      label,
      async before() {
        stack = await LocalWorkspace.createStack(
          { projectName: PROJECT, stackName: `${kind}-${process.pid}-${n++}`, program: program(resources) },
          { envVars: env, pulumiCommand: command, workDir: fs.mkdtempSync(path.join(home, 'work-')) },
        );
      },
      async run() {
        const result = await stack!.up({ onOutput: () => {} });
        const created = result.summary.resourceChanges?.create ?? 0;
        // The stack resource itself is created too.
        if (created !== resources + 1)
          throw new Error(`${label}: created ${created} resources, expected ${resources + 1}`);
      },
    },
    async close() {
      await close();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

function upScenario(baseline: Exclude<Backend, 'gateway'>, goal: Scenario['goal']): Scenario {
  return {
    suite: 'pulumi-cli',
    name: `pulumi up, 200 resources: gateway vs ${baseline === 'file' ? 'file://' : 'native postgres://'}`,
    goal,
    runs: 3,
    warmups: 1,
    async prepare({ url, quick }): Promise<Prepared> {
      if (quick) throw new NotRun('skipped in --quick (each run is a full `pulumi up`)');
      if (!fs.existsSync(CLI)) throw new NotRun(`the pulumi CLI is not built at ${CLI} (scripts/peers/pulumi-cli.sh)`);
      const command = await PulumiCommand.get({ root: PEERS, skipVersionCheck: true });
      const resources = 200;
      const candidate = await startSide('gateway', url, resources, command);
      const base = await startSide(baseline, url, resources, command);
      return {
        candidate: candidate.side,
        baseline: base.side,
        units: { resources: 'count' },
        extras: async () => ({ resources }),
        async teardown() {
          await candidate.close();
          await base.close();
        },
      };
    },
  };
}

export const pulumiUpScenarios: Scenario[] = [
  upScenario('file', { text: '<= 1.2x the time with file:// state', maxRatio: 1.2 }),
  upScenario('native', { text: "faster than the CLI's native postgres:// backend", maxRatio: 1 }),
];
