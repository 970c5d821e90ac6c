// Smoke test of the published @pgstate/schema, installed alone. Extend it with real work as the package grows.
import * as api from '@pgstate/schema';

const names = Object.keys(api);
if (names.length === 0) throw new Error('@pgstate/schema exports nothing');
console.log(`schema: exports ${names.sort().join(', ')}`);
