/**
 * A separate OS process for the concurrency tests. MODE=merge: ROUNDS merges, each adding a new bookmark key
 * `p<WORKER>_<round>`; MODE=hold: take the lock, print LOCKED, and wait to be killed.
 */
import { MeltanoStateStore } from '../../src/index.js';

const env = process.env;
const store = new MeltanoStateStore({
  url: env.URL,
  layout: env.LAYOUT,
  schema: env.SCHEMA,
  lockTimeoutSeconds: Number(env.LOCK_TIMEOUT ?? 10),
  lockWaitSeconds: 120,
});
const stateId = env.STATE_ID ?? 'dev:tap-to-target';

if (env.MODE === 'hold') {
  await store.acquireLock(stateId);
  process.stdout.write('LOCKED\n');
  setInterval(() => {}, 1000);
} else {
  const rounds = Number(env.ROUNDS ?? 100);
  for (let round = 0; round < rounds; round++) {
    await store.merge(stateId, { singer_state: { bookmarks: { [`p${env.WORKER}_${round}`]: round } } });
  }
  await store.close();
  process.stdout.write('DONE\n');
}
