// A child process that saves large checkpoints of one stack in a loop and announces each one before and after,
// so the parent can SIGKILL it mid-write and check the stored checkpoint is exactly the old or the new one.
import { createHash } from 'node:crypto';
import { PulumiBlobStore, PulumiStateStore } from '@pgstate/pulumi';

const [url, table, sizeMb] = process.argv.slice(2) as [string, string, string];
const store = new PulumiStateStore(new PulumiBlobStore({ connection: url, table }));
const target = Number(sizeMb) * 1024 * 1024;

function checkpoint(version: number): Buffer {
  const filler = String.fromCharCode(97 + (version % 26)).repeat(10_000);
  const resources = [];
  for (let i = 0; resources.length * 10_100 < target; i++) {
    resources.push({ urn: `urn:pulumi:s::p::t:index:R::r${i}`, type: 't:index:R', custom: true, outputs: { filler } });
  }
  const latest = { manifest: { time: new Date(version * 1000).toISOString() }, resources };
  return Buffer.from(JSON.stringify({ version: 3, checkpoint: { stack: 'organization/p/s', latest } }));
}

for (let version = 1; ; version++) {
  const bytes = checkpoint(version);
  const md5 = createHash('md5').update(bytes).digest('hex');
  process.stdout.write(`saving ${version} ${md5}\n`);
  await store.saveCheckpoint('p', 's', bytes);
  process.stdout.write(`saved ${version} ${md5}\n`);
}
