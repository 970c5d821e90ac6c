// Smoke test of the published @pgstate/meltano, installed alone. Extend it with real work as the package grows.
import * as api from '@pgstate/meltano';

const names = Object.keys(api);
if (names.length === 0) throw new Error('@pgstate/meltano exports nothing');
console.log(`meltano: exports ${names.sort().join(', ')}`);
