// A child process racing for stack locks. Reads "go <round>" lines on stdin, tries to take the lock of stack
// `race-<round>` once, and prints one JSON line with the outcome.
import readline from 'node:readline';
import { PulumiBlobStore, PulumiStateStore } from '@pgstate/pulumi';

const [url, table] = process.argv.slice(2) as [string, string];
const blobs = new PulumiBlobStore({ connection: url, table });
const store = new PulumiStateStore(blobs);
await blobs.ensureTables();
await blobs.head('warm-up'); // open a connection before the race starts
process.stdout.write('ready\n');
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [command, round] = line.split(' ');
  if (command === 'exit') break;
  try {
    await store.acquireLock('race', `race-${round}`);
    process.stdout.write(`${JSON.stringify({ round: Number(round), won: true })}\n`);
  } catch (error) {
    const code = (error as { code?: string }).code;
    process.stdout.write(`${JSON.stringify({ round: Number(round), won: false, code })}\n`);
  }
}
await store.close();
