import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import * as pulumi from '@pulumi/pulumi';
import { LocalWorkspace } from '@pulumi/pulumi/automation/index.js';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import { startPulumiBackend } from '@pgstate/s3-gateway';
import pg from 'pg';

const require = createRequire(import.meta.url);
const peers = process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache/pgstate-peers');
const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'pulumi-shim-'));
const dyn = path.dirname(require.resolve('@pulumi/pulumi/cmd/dynamic-provider/index.js'));
fs.writeFileSync(path.join(bin, 'pulumi-resource-pulumi-nodejs'), `#!/bin/sh\nexec "${process.execPath}" "${dyn}" "$@"\n`, { mode: 0o755 });
const url = process.argv[2]!;
const pool = new pg.Pool({ connectionString: url });
const backend = await startPulumiBackend({ handler: () => createPulumiBucketHandler(url), uploads: { pool } , logger: (r) => { if (r.status && r.status >= 400 && r.status !== 404) console.error(JSON.stringify(r)); } });
console.log(backend.backendUrl);

class Echo extends pulumi.dynamic.Resource {
  declare readonly value: pulumi.Output<string>;
  constructor(name: string, value: string, opts?: pulumi.CustomResourceOptions) {
    super({
      async create(inputs: { value: string }) { return { id: `echo-${inputs.value}`, outs: { value: inputs.value } }; },
      async diff(_id: string, olds: { value: string }, news: { value: string }) { return { changes: olds.value !== news.value }; },
      async update(_id: string, _olds: unknown, news: { value: string }) { return { outs: { value: news.value } }; },
    }, name, { value, ...({} as { value?: string }) }, opts);
  }
}
const program = (v: string) => async () => {
  class Group extends pulumi.ComponentResource { constructor(n: string) { super('test:index:Group', n); new Echo(`${n}-a`, v, { parent: this }); this.registerOutputs({}); } }
  new Group('g');
  return { answer: v };
};
const ws = { envVars: { ...backend.envVars, PULUMI_CONFIG_PASSPHRASE: 'pass', PATH: `${bin}:${path.join(peers, 'bin')}:${process.env.PATH}`, PULUMI_SKIP_UPDATE_CHECK: 'true', PULUMI_HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'pulumi-home-')) }, pulumiCommand: await (await import('@pulumi/pulumi/automation/index.js')).PulumiCommand.get({ root: peers, skipVersionCheck: true }) };
const t0 = Date.now();
const stack = await LocalWorkspace.createOrSelectStack({ projectName: 'proj', stackName: 'dev', program: program('one') }, ws);
const up = await stack.up({ onOutput: () => {} });
console.log('up', up.summary.result, up.outputs.answer?.value, Date.now() - t0);
await backend.close(); await pool.end();
