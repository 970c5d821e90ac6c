// Smoke test of the published @pgstate/core, installed alone: parse a URL, open a pool, ask the server something.
import { createPool, parseConnectionSettings } from '@pgstate/core';

const pool = createPool(parseConnectionSettings(process.env.PG_URL));
const { rows } = await pool.query('SELECT current_database() AS db, 40 + 2 AS answer');
await pool.end();
if (rows[0].answer !== 42) throw new Error('unexpected answer');
console.log(`core: connected to ${rows[0].db}`);
