// Smoke test of the published @pgstate/s3-gateway, installed alone. Extend it with real work as the package grows.
import * as api from '@pgstate/s3-gateway';

const names = Object.keys(api);
if (names.length === 0) throw new Error('@pgstate/s3-gateway exports nothing');
console.log(`s3-gateway: exports ${names.sort().join(', ')}`);
