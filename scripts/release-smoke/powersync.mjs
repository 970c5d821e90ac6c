// Smoke test of the published @pgstate/powersync, installed alone. Extend it with real work as the package grows.
import * as api from '@pgstate/powersync';

const names = Object.keys(api);
if (names.length === 0) throw new Error('@pgstate/powersync exports nothing');
console.log(`powersync: exports ${names.sort().join(', ')}`);
