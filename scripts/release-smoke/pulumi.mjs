// Smoke test of the published @pgstate/pulumi, installed alone. Extend it with real work as the package grows.
import * as api from '@pgstate/pulumi';

const names = Object.keys(api);
if (names.length === 0) throw new Error('@pgstate/pulumi exports nothing');
console.log(`pulumi: exports ${names.sort().join(', ')}`);
