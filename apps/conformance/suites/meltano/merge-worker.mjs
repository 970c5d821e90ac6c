// One OS process of the lost-update test: ROUNDS merges into dev:concurrent, each adding a new bookmark key.
// Runs on the packages' dist (build first); the lane target comes from PGSTATE_LANE.
import { MeltanoStateStore } from '@pgstate/meltano';

const lane = JSON.parse(process.env.PGSTATE_LANE ?? '{}');
const [worker = '0', rounds = '25'] = process.argv.slice(2);
const store = new MeltanoStateStore({ url: lane.url, ...lane.fields, layout: 'seed', schema: 'mel_pgstate' });
try {
  for (let round = 0; round < Number(rounds); round++) {
    await store.merge('dev:concurrent', { singer_state: { bookmarks: { [`p${worker}_${round}`]: round } } });
  }
} finally {
  await store.close();
}
