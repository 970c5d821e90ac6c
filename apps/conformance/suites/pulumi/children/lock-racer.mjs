// Child for the lock race: plain node on the built @pgstate/pulumi. Each round waits for the parent's go file,
// tries once to take the lock of stack `race-<round>` and prints `round <n> won|lost [code]`.
import fs from 'node:fs';
import path from 'node:path';
import { PulumiStateStore } from '@pgstate/pulumi';

const lane = JSON.parse(process.env.PGSTATE_LANE ?? '{}');
const [index, goDir, rounds, table] = process.argv.slice(2);
const url = new URL(lane.url);
url.searchParams.set('table', table);
const store = new PulumiStateStore(url.toString());
await store.listStacks(); // migrate check + a warm connection before the race
console.log(`ready ${index}`);
for (let round = 0; round < Number(rounds); round++) {
  const go = path.join(goDir, `go-${round}`);
  while (!fs.existsSync(go)) await new Promise((r) => setTimeout(r, 2));
  try {
    await store.acquireLock('race', `race-${round}`);
    console.log(`round ${round} won`);
  } catch (error) {
    console.log(`round ${round} lost ${error?.code ?? String(error)}`);
  }
}
await store.close();
console.log('RESULT {"done":true}');
