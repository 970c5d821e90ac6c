// Generates the committed SQL migrations from the Drizzle templates in src/templates/*.ts, or checks that they agree.
//   node scripts/migrations.mjs generate [set] [--name <migration name>]
//   node scripts/migrations.mjs check          (part of `pnpm test`)
// One migration set per template file: src/templates/<set>.ts, src/<set>/template.ts or src/<adapter>/templates/<set>.ts
// -> drizzle/<set>/.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const drizzleKit = path.join(root, 'node_modules', '.bin', 'drizzle-kit');
const templatesDir = path.join(root, 'src', 'templates');
/** Set name -> its template file. A set whose tables live in their own folder keeps its template there. */
const templates = new Map(
  fs
    .readdirSync(templatesDir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => [f.slice(0, -3), path.join(templatesDir, f)]),
);
for (const entry of fs.readdirSync(path.join(root, 'src'), { withFileTypes: true })) {
  if (!entry.isDirectory()) continue;
  const file = path.join(root, 'src', entry.name, 'template.ts');
  if (fs.existsSync(file)) templates.set(entry.name, file);
  // An adapter folder with several sets (one per layout): src/<adapter>/templates/<set>.ts.
  const dir = path.join(root, 'src', entry.name, 'templates');
  if (entry.name === 'templates' || !fs.existsSync(dir)) continue;
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts')))
    templates.set(f.slice(0, -3), path.join(dir, f));
}
const sets = [...templates.keys()].sort();

async function generate(set, out, name) {
  // drizzle-kit reads earlier snapshots from `./<out>`: the path must be relative to the package.
  const relOut = path.relative(root, out);
  const schema = path.relative(root, templates.get(set));
  const args = ['generate', '--dialect', 'postgresql', '--schema', schema, '--out', relOut];
  if (name) args.push('--name', name);
  const { stdout, stderr } = await run(drizzleKit, args, { cwd: root, maxBuffer: 16 << 20 });
  const output = stdout + stderr;
  // drizzle-kit can print an error and still exit 0: insist on one of its two success messages.
  if (!output.includes('No schema changes') && !output.includes('Your SQL migration file')) {
    throw new Error(`drizzle-kit generate failed for ${set}:\n${output}`);
  }
  return output;
}

const sqlFiles = (dir) =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.sql'))
        .sort()
    : [];

async function check(set) {
  const committed = path.join(root, 'drizzle', set);
  const problems = [];
  if (sqlFiles(committed).length === 0) return [`${set}: no committed migrations in drizzle/${set}`];
  const cacheDir = path.join(root, 'node_modules', '.cache');
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(cacheDir, `pgstate-migrations-${set}-`));
  try {
    // 1. Generating on top of the committed snapshots must find nothing to do.
    const onTop = path.join(tmp, 'on-top');
    fs.cpSync(committed, onTop, { recursive: true });
    await generate(set, onTop);
    const extra = sqlFiles(onTop).filter((f) => !sqlFiles(committed).includes(f));
    if (extra.length > 0) {
      const sql = fs.readFileSync(path.join(onTop, extra[0]), 'utf8');
      problems.push(`${set}: the Drizzle definitions changed but no migration was generated:\n${sql}`);
    }
    // 2. The committed SQL must be what drizzle-kit produces (catches hand edits): compare a fresh generation with
    //    the first migration when it is the only one, and every snapshot with its journal entry.
    const fresh = path.join(tmp, 'fresh');
    await generate(set, fresh);
    const journal = JSON.parse(fs.readFileSync(path.join(committed, 'meta', '_journal.json'), 'utf8'));
    const tags = journal.entries.map((e) => `${e.tag}.sql`);
    const files = sqlFiles(committed);
    if (JSON.stringify(tags) !== JSON.stringify(files)) {
      problems.push(`${set}: meta/_journal.json lists ${tags.join(', ')} but the folder has ${files.join(', ')}`);
    }
    if (problems.length === 0 && files.length === 1) {
      const freshSql = fs.readFileSync(path.join(fresh, sqlFiles(fresh)[0]), 'utf8');
      const committedSql = fs.readFileSync(path.join(committed, files[0]), 'utf8');
      if (freshSql !== committedSql) {
        problems.push(`${set}: drizzle/${set}/${files[0]} differs from what drizzle-kit generates:\n${freshSql}`);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return problems;
}

const [command, ...rest] = process.argv.slice(2);
const nameAt = rest.indexOf('--name');
const name = nameAt >= 0 ? rest[nameAt + 1] : undefined;
const only = rest.find((a, i) => !a.startsWith('--') && (nameAt < 0 || i !== nameAt + 1));
const selected = only ? [only] : sets;
if (only && !sets.includes(only)) {
  console.error(`unknown migration set "${only}"; known: ${sets.join(', ')}`);
  process.exit(2);
}

if (command === 'generate') {
  for (const set of selected) {
    const output = await generate(set, path.join(root, 'drizzle', set), name);
    console.log(`${set}: ${output.includes('No schema changes') ? 'no changes' : 'generated'}`);
  }
} else if (command === 'check') {
  const problems = (await Promise.all(selected.map(check))).flat();
  if (problems.length > 0) {
    console.error(problems.join('\n\n'));
    console.error('\nRun `pnpm --filter @pgstate/schema migrations:generate` and commit drizzle/.');
    process.exit(1);
  }
  console.log(`migrations agree with the Drizzle definitions (${selected.join(', ')})`);
} else {
  console.error('usage: migrations.mjs generate [set] [--name n] | check [set]');
  process.exit(2);
}
