// Packs the package the way `pnpm publish` does (workspace: ranges rewritten), then runs publint and
// are-the-types-wrong on that tarball, and refuses any `workspace:` range left in the packed manifest.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-pack-'));
try {
  execFileSync('pnpm', ['pack', '--pack-destination', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = fs.readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error('pnpm pack produced no tarball');
  const file = path.join(dir, tarball);
  execFileSync('tar', ['-xzf', file, '-C', dir]);
  const manifest = fs.readFileSync(path.join(dir, 'package', 'package.json'), 'utf8');
  if (manifest.includes('workspace:'))
    throw new Error(`${tarball}: a workspace: range leaked into the packed manifest`);
  execFileSync('pnpm', ['exec', 'publint', 'run', '--strict', '--pack', 'false', path.join(dir, 'package')], {
    stdio: 'inherit',
  });
  execFileSync('pnpm', ['exec', 'attw', file, '--profile', 'esm-only', '--format', 'table-flipped'], {
    stdio: 'inherit',
  });
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
