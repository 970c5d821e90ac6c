// Fails when a published package changed since the last release without a pending changeset naming it.
// "Last release" is the newest commit that touched a package CHANGELOG.md (what `changeset version` writes);
// before the first release it is the start of history. Works on a clean clone: it only needs git history.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const git = (...args) => execFileSync('git', args, { encoding: 'utf8' }).trim();
const packagesDir = 'packages';
const published = fs
  .readdirSync(packagesDir)
  .map((dir) => ({ dir: path.join(packagesDir, dir), manifest: path.join(packagesDir, dir, 'package.json') }))
  .filter((p) => fs.existsSync(p.manifest))
  .map((p) => ({
    ...p,
    name: JSON.parse(fs.readFileSync(p.manifest, 'utf8')).name,
    private: JSON.parse(fs.readFileSync(p.manifest, 'utf8')).private,
  }))
  .filter((p) => !p.private);

const lastRelease = git('log', '-1', '--format=%H', '--', 'packages/*/CHANGELOG.md');
const emptyTree = git('hash-object', '-t', 'tree', '/dev/null');
const base = lastRelease || emptyTree;
// Committed changes since the release plus whatever is staged or modified in the work tree.
const changedFiles = new Set(
  [...git('diff', '--name-only', base, 'HEAD').split('\n'), ...git('diff', '--name-only', 'HEAD').split('\n')].filter(
    Boolean,
  ),
);
const shipsToUsers = (file) =>
  !/(^|\/)(test|tests|__tests__)\//.test(file) &&
  !/\.test\.ts$/.test(file) &&
  !/(^|\/)(vitest\.config\.ts|tsconfig\.json|CHANGELOG\.md)$/.test(file);

const pending = new Set();
const malformed = [];
for (const file of fs.readdirSync('.changeset')) {
  if (!file.endsWith('.md') || file === 'README.md') continue;
  const text = fs.readFileSync(path.join('.changeset', file), 'utf8');
  const front = /^---\n([\s\S]*?)\n---/.exec(text)?.[1] ?? '';
  const named = [...front.matchAll(/^["']?([^"':]+)["']?\s*:\s*(major|minor|patch)\s*$/gm)].map((m) => m[1].trim());
  if (named.length === 0) malformed.push(file);
  for (const name of named) pending.add(name);
}
if (malformed.length > 0) {
  console.error(
    `check:changesets: no package bumps found in the front matter of ${malformed.map((f) => `.changeset/${f}`).join(', ')}`,
  );
  console.error(
    'Each changeset starts with ---, lines like "@pgstate/core": minor, then ---. Run `pnpm changeset` to write one.',
  );
  process.exit(1);
}

const missing = published.filter(
  (p) => [...changedFiles].some((f) => f.startsWith(`${p.dir}/`) && shipsToUsers(f)) && !pending.has(p.name),
);
if (missing.length > 0) {
  console.error(
    `check:changesets: these packages changed since ${lastRelease ? `release ${lastRelease.slice(0, 10)}` : 'the start of history'} without a changeset:`,
  );
  for (const p of missing) console.error(`  - ${p.name} (${p.dir})`);
  console.error('Run `pnpm changeset`, pick these packages and describe the change for users.');
  process.exit(1);
}
console.log(`check:changesets: ok (${pending.size} package(s) with pending changesets)`);
