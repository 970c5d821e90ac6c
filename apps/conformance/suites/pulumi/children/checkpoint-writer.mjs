// Child for the SIGKILL test: saves ~<sizeMb> MB checkpoints of stack p/s in a loop through the built
// @pgstate/pulumi, announcing `saving <n> <md5>` before and `saved <n> <md5>` after each save.
import { createHash } from 'node:crypto';
import { PulumiStateStore } from '@pgstate/pulumi';

const lane = JSON.parse(process.env.PGSTATE_LANE ?? '{}');
const [, table, sizeMb] = process.argv.slice(2);
const url = new URL(lane.url);
url.searchParams.set('table', table);
url.searchParams.set('application_name', 'pulumi-writer');
const store = new PulumiStateStore(url.toString());
const target = Number(sizeMb) * 1024 * 1024;

function checkpoint(version) {
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
  console.log(`saving ${version} ${md5} ${bytes.length}`);
  await store.saveCheckpoint('p', 's', bytes);
  console.log(`saved ${version} ${md5} ${bytes.length}`);
}
