// The stock Pulumi CLI (built from the Go module proxy by scripts/peers/pulumi-cli.sh) driven by the Automation API
// of @pulumi/pulumi from npm: an inline program with a component, stack outputs and dynamic-provider resources keeps
// its state in PostgreSQL through @pgstate/s3-gateway + the Pulumi bucket handler, and @pgstate/pulumi reads what the
// CLI wrote. Also the CLI's own `postgres://` backend, read and written through @pgstate/pulumi's native layout.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createPool, parseConnectionSettings } from '@pgstate/core';
import { createPulumiBucketHandler, PulumiStateStore } from '@pgstate/pulumi';
import { type PulumiBackend, startPulumiBackend } from '@pgstate/s3-gateway';
import * as pulumi from '@pulumi/pulumi';
import { LocalWorkspace, type LocalWorkspaceOptions, PulumiCommand } from '@pulumi/pulumi/automation/index.js';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';

const PEERS = process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'pgstate-peers');

/** The pulumi CLI: the one scripts/peers/pulumi-cli.sh built, else one on PATH. */
function pulumiBinary(): string | undefined {
  const built = path.join(PEERS, 'bin', 'pulumi');
  if (fs.existsSync(built)) return built;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'pulumi'))) return path.join(dir, 'pulumi');
  }
  return undefined;
}

/**
 * Dynamic providers run as the plugin `pulumi-resource-pulumi-nodejs`, a tiny launcher the CLI's release archive
 * ships next to the binary; a CLI built from source has none, so the lane writes its own into a temp bin directory.
 */
function dynamicProviderShim(): string {
  const require = createRequire(import.meta.url);
  const entry = path.dirname(require.resolve('@pulumi/pulumi/cmd/dynamic-provider/index.js'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-pulumi-shim-'));
  fs.writeFileSync(
    path.join(dir, 'pulumi-resource-pulumi-nodejs'),
    `#!/bin/sh\nexec "${process.execPath}" "${entry}" "$@"\n`,
    {
      mode: 0o755,
    },
  );
  return dir;
}

interface Echo {
  value: string;
  delayMs?: number;
}

/** A dynamic resource whose state is its input; `delayMs` keeps an update running (to hold the stack lock). */
class EchoResource extends pulumi.dynamic.Resource {
  declare readonly value: pulumi.Output<string>;
  constructor(name: string, args: Echo, opts?: pulumi.CustomResourceOptions) {
    const provider: pulumi.dynamic.ResourceProvider = {
      async create(inputs: Echo) {
        if (inputs.delayMs) await new Promise((r) => setTimeout(r, inputs.delayMs));
        return { id: `echo-${inputs.value}`, outs: { value: inputs.value } };
      },
      async diff(_id: string, olds: Echo, news: Echo) {
        return { changes: olds.value !== news.value, replaces: [] };
      },
      async update(_id: string, _olds: Echo, news: Echo) {
        if (news.delayMs) await new Promise((r) => setTimeout(r, news.delayMs));
        return { outs: { value: news.value } };
      },
      async read(id: string, props: Echo) {
        return { id, props };
      },
    };
    super(provider, name, { value: args.value, delayMs: args.delayMs ?? 0 }, opts);
  }
}

class Group extends pulumi.ComponentResource {
  readonly first: EchoResource;
  constructor(name: string, value: string, count: number, delayMs = 0) {
    super('pgstate:test:Group', name);
    this.first = new EchoResource(`${name}-0`, { value, delayMs }, { parent: this });
    for (let i = 1; i < count; i++) new EchoResource(`${name}-${i}`, { value: `${value}-${i}` }, { parent: this });
    this.registerOutputs({ first: this.first.value });
  }
}

const program =
  (value: string, count = 3, delayMs = 0) =>
  async () => {
    const group = new Group('group', value, count, delayMs);
    return { answer: group.first.value, count };
  };

interface Harness {
  backend: PulumiBackend;
  pool: pg.Pool;
  state: PulumiStateStore;
  options(extraEnv?: Record<string, string>): Promise<LocalWorkspaceOptions>;
  close(): Promise<void>;
}

async function harness(lane: LaneTarget): Promise<Harness> {
  const pool = createPool(parseConnectionSettings(lane.url));
  const backend = await startPulumiBackend({ handler: createPulumiBucketHandler({ pool }), uploads: { pool } });
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-pulumi-home-'));
  const shim = dynamicProviderShim();
  const binary = pulumiBinary()!;
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(path.dirname(binary)), skipVersionCheck: true });
  return {
    backend,
    pool,
    state: new PulumiStateStore({ pool }),
    async options(extraEnv = {}) {
      return {
        pulumiCommand,
        envVars: {
          ...backend.envVars,
          PULUMI_CONFIG_PASSPHRASE: 'conformance',
          PULUMI_HOME: home,
          PULUMI_SKIP_UPDATE_CHECK: 'true',
          PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: 'true',
          PATH: `${shim}${path.delimiter}${path.dirname(binary)}${path.delimiter}${process.env.PATH ?? ''}`,
          ...extraEnv,
        },
      };
    },
    async close() {
      await backend.close();
      await pool.end();
      fs.rmSync(home, { recursive: true, force: true });
      fs.rmSync(shim, { recursive: true, force: true });
    },
  };
}

const quiet = { onOutput: () => {} };

function resourcesOf(
  checkpoint: Record<string, unknown> | null,
): Array<{ type: string; urn: string; outputs?: Record<string, unknown> }> {
  const cp = checkpoint as { checkpoint?: { latest?: { resources?: Array<{ type: string; urn: string }> } } } | null;
  return cp?.checkpoint?.latest?.resources ?? [];
}

defineConformance({
  adapter: '@pgstate/s3-gateway',
  lanes: [
    {
      name: 'pulumi-cli',
      via: 'direct',
      requires: () =>
        pulumiBinary() ? undefined : 'the pulumi CLI is not built (scripts/peers/pulumi-cli.sh) nor on PATH',
    },
  ],
  create: (lane) => harness(lane),
  close: (h) => h.close(),
  probes: (admin: pg.Pool) => ({
    async keys(prefix: string): Promise<string[]> {
      const { rows } = await admin.query<{ key: string }>(
        'SELECT key FROM pulumi_state WHERE left(key, length($1)) = $1 ORDER BY key COLLATE "C"',
        [prefix],
      );
      return rows.map((r) => r.key);
    },
  }),
  tests({ test }) {
    test(
      'stack init, up, preview, refresh, up with changes, history, export/import, rename, cancel, destroy, rm',
      async ({ adapter: h, probes }) => {
        const opts = await h.options();
        const stack = await LocalWorkspace.createStack(
          { projectName: 'proj', stackName: 'dev', program: program('one') },
          opts,
        );
        expect(await probes.keys('.pulumi/stacks/proj/')).toContain('.pulumi/stacks/proj/dev.json');

        const up = await stack.up(quiet);
        expect(up.summary.result).toBe('succeeded');
        expect(up.outputs.answer?.value).toBe('one');
        // @pgstate/pulumi reads what the CLI wrote through the gateway.
        const cp = await h.state.readCheckpoint('proj', 'dev');
        const types = resourcesOf(cp).map((r) => r.type);
        expect(types).toContain('pulumi:pulumi:Stack');
        expect(types).toContain('pgstate:test:Group');
        expect(types.filter((t) => t === 'pulumi-nodejs:dynamic:Resource')).toHaveLength(3);

        const preview = await stack.preview(quiet);
        expect(preview.changeSummary.same).toBe(5);
        const refresh = await stack.refresh(quiet);
        expect(refresh.summary.result).toBe('succeeded');

        const stack2 = await LocalWorkspace.selectStack(
          { projectName: 'proj', stackName: 'dev', program: program('two', 4) },
          opts,
        );
        const up2 = await stack2.up(quiet);
        expect(up2.outputs.answer?.value).toBe('two');
        expect(up2.summary.resourceChanges).toMatchObject({ update: 3, create: 1 });
        // Stack, component, the dynamic provider and four echoes.
        expect(resourcesOf(await h.state.readCheckpoint('proj', 'dev'))).toHaveLength(7);

        const history = await stack2.history();
        // Newest first.
        expect(history.map((u) => u.kind)).toEqual(['update', 'refresh', 'update']);
        const fromStore = await h.state.history('proj', 'dev');
        expect(fromStore).toHaveLength(3);

        const exported = await stack2.exportStack();
        expect((exported.deployment as { resources: unknown[] }).resources).toHaveLength(7);
        await stack2.importStack(exported);
        expect(resourcesOf(await h.state.readCheckpoint('proj', 'dev'))).toHaveLength(7);

        await stack2.cancel(); // nothing is running: a no-op that must not fail or leave anything behind
        expect(await probes.keys('.pulumi/locks/')).toEqual([]);

        await stack2.rename({ stackName: 'prod', ...quiet });
        expect((await h.state.listStacks('proj')).map((s) => s.stack)).toEqual(['prod']);

        const prod = await LocalWorkspace.selectStack(
          { projectName: 'proj', stackName: 'prod', program: program('two', 4) },
          opts,
        );
        const destroy = await prod.destroy(quiet);
        expect(destroy.summary.result).toBe('succeeded');
        expect(resourcesOf(await h.state.readCheckpoint('proj', 'prod')).length).toBeLessThanOrEqual(1);
        await prod.workspace.removeStack('prod');
        expect(await h.state.listStacks('proj')).toEqual([]);
        // Rename and `stack rm` (without --remove-backups) keep the old checkpoints as `.bak`, as on every DIY backend.
        expect(await probes.keys('.pulumi/stacks/proj/')).toEqual([
          '.pulumi/stacks/proj/dev.json.bak',
          '.pulumi/stacks/proj/prod.json.bak',
        ]);
      },
      { timeout: 600_000 },
    );

    test(
      'two `up` runs on one stack: one fails with "currently locked", the other succeeds, the state stays valid',
      async ({ adapter: h, probes }) => {
        const opts = await h.options();
        const base = await LocalWorkspace.createStack(
          { projectName: 'race', stackName: 'dev', program: program('a', 1) },
          opts,
        );
        await base.up(quiet);
        const slow = await LocalWorkspace.selectStack(
          { projectName: 'race', stackName: 'dev', program: program('slow', 1, 4000) },
          opts,
        );
        const fast = await LocalWorkspace.selectStack(
          { projectName: 'race', stackName: 'dev', program: program('fast', 1) },
          opts,
        );
        const first = slow.up(quiet);
        // Start the second update only once the first one holds the stack lock.
        for (let i = 0; i < 400 && (await probes.keys('.pulumi/locks/organization/race/dev/')).length === 0; i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(await probes.keys('.pulumi/locks/organization/race/dev/')).toHaveLength(1);
        const second = await fast.up(quiet).then(
          () => undefined,
          (error: Error) => error,
        );
        expect(second?.message).toMatch(/currently locked/);
        const won = await first;
        expect(won.outputs.answer?.value).toBe('slow');
        expect(await probes.keys('.pulumi/locks/')).toEqual([]);
        const cp = await h.state.readCheckpoint('race', 'dev');
        const echo = resourcesOf(cp).find((r) => r.type === 'pulumi-nodejs:dynamic:Resource');
        expect(echo?.outputs?.value).toBe('slow');
        const preview = await base.preview(quiet);
        expect(preview.changeSummary.update).toBe(1); // program 'a' vs stored 'slow': a consistent diff, no error
      },
      { timeout: 600_000 },
    );

    test(
      "the CLI's native postgres:// backend and @pgstate/pulumi's native layout read each other's stacks",
      async ({ adapter: h, lane }) => {
        const u = new URL(lane.url);
        u.search = '';
        u.searchParams.set('sslmode', 'disable');
        u.searchParams.set('table', 'pulumi_native');
        const native = u.toString();
        const opts = await h.options({ PULUMI_BACKEND_URL: native });
        const stack = await LocalWorkspace.createStack(
          { projectName: 'nat', stackName: 'dev', program: program('n', 2) },
          opts,
        );
        await stack.up(quiet);
        const store = new PulumiStateStore({ connection: native, layout: 'native' });
        try {
          expect((await store.listStacks('nat')).map((s) => s.stack)).toEqual(['dev']);
          expect(resourcesOf(await store.readCheckpoint('nat', 'dev')).map((r) => r.type)).toContain(
            'pgstate:test:Group',
          );
          // And the other way: a stack pgstate creates in the native layout is one the CLI lists and can update.
          await store.createStack('nat', 'made-by-pgstate');
          const listed = await stack.workspace.listStacks();
          expect(listed.map((s) => s.name).sort()).toEqual(['dev', 'made-by-pgstate']);
          const made = await LocalWorkspace.selectStack(
            { projectName: 'nat', stackName: 'made-by-pgstate', program: program('m', 1) },
            opts,
          );
          const up = await made.up(quiet);
          expect(up.outputs.answer?.value).toBe('m');
          expect(resourcesOf(await store.readCheckpoint('nat', 'made-by-pgstate')).length).toBeGreaterThan(1);
        } finally {
          await store.close();
        }
      },
      { timeout: 600_000 },
    );
  },
});
