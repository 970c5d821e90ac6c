// The release flow, for real, against a throwaway npm registry (verdaccio on 127.0.0.1, storage in a temp dir):
// copy the workspace, `pnpm version-packages` from the pending changesets, `pnpm release` (build + changeset publish),
// then install every published package ALONE into a fresh project outside the workspace and run its smoke script
// (scripts/release-smoke/<dir>.mjs) against a real PostgreSQL. Nothing here touches the real checkout.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const peers = process.env.PGSTATE_PEERS_DIR ?? path.join(os.homedir(), '.cache', 'pgstate-peers');
// verdaccio 6.10+ refuses Node 20 at start-up; 5.33 runs on every Node we support.
const VERDACCIO = '5.33.0';
const log = (msg) => console.log(`check:release: ${msg}`);
const sh = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });

function ensureVerdaccio() {
  const dir = path.join(peers, `verdaccio-${VERDACCIO}`);
  const bin = path.join(dir, 'node_modules', '.bin', 'verdaccio');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(dir, { recursive: true });
  // verdaccio's dependency tree asks for the dist-tag node-fetch@cjs, which this registry lacks: pin it.
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ private: true, dependencies: { verdaccio: VERDACCIO }, overrides: { 'node-fetch@cjs': '2.7.0' } }),
  );
  log(`installing verdaccio ${VERDACCIO} into ${dir}`);
  sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
  return bin;
}

async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(url, timeoutMs, child) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`verdaccio exited with code ${child.exitCode}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`verdaccio did not answer at ${url}`);
}

// What is committed is what gets released: the copy is `git archive HEAD`, never the work tree.
function copyWorkspace(target) {
  fs.mkdirSync(target, { recursive: true });
  execFileSync('bash', ['-c', `git archive --format=tar HEAD | tar -x -C "${target}"`], {
    cwd: root,
    stdio: 'inherit',
  });
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgstate-release-'));
// The CLI smoke runs pgstate's own PostgreSQL from the consumer's node_modules as the postgres OS user (we may be
// root): it must be able to enter this directory, which mkdtemp creates private.
fs.chmodSync(work, 0o755);
let registry;
let cluster;
try {
  const verdaccio = ensureVerdaccio();
  const port = await freePort();
  const registryUrl = `http://127.0.0.1:${port}/`;
  const upstream = sh('npm', ['config', 'get', 'registry']).trim() || 'https://registry.npmjs.org/';
  fs.writeFileSync(
    path.join(work, 'config.yaml'),
    [
      `storage: ${path.join(work, 'storage')}`,
      'auth:',
      `  htpasswd: { file: ${path.join(work, 'htpasswd')}, max_users: 10 }`,
      `uplinks:\n  upstream: { url: ${JSON.stringify(upstream)}, timeout: 60s }`,
      'packages:',
      // Our names never come from upstream: what is installed is exactly what this run published.
      "  '@pgstate/*': { access: $all, publish: $authenticated }",
      "  'pgstate': { access: $all, publish: $authenticated }",
      "  '**': { access: $all, publish: $authenticated, proxy: upstream }",
      'log: { type: stdout, format: pretty, level: warn }',
      '',
    ].join('\n'),
  );
  registry = spawn(verdaccio, ['--config', path.join(work, 'config.yaml'), '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitFor(`${registryUrl}-/ping`, 60_000, registry);
  const user = await fetch(`${registryUrl}-/user/org.couchdb.user:release-test`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'release-test', password: `pw-${process.pid}-${Date.now()}` }),
  });
  const { token } = await user.json();
  if (!token) throw new Error(`verdaccio refused to create a user (${user.status})`);
  const npmrc = `registry=${registryUrl}\n//127.0.0.1:${port}/:_authToken=${token}\n`;
  log(`registry ${registryUrl} (storage in ${work})`);

  const repo = path.join(work, 'repo');
  copyWorkspace(repo);
  fs.writeFileSync(path.join(repo, '.npmrc'), npmrc, { flag: 'a' });
  const env = { ...process.env, npm_config_registry: registryUrl, TURBO_TELEMETRY_DISABLED: '1', CI: 'true' };
  const inRepo = (cmd, args) => sh(cmd, args, { cwd: repo, env });
  inRepo('pnpm', ['install', '--frozen-lockfile', '--prefer-offline', '--reporter=silent']);
  const pending = fs.readdirSync(path.join(repo, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md');
  if (pending.length === 0) {
    // Nothing pending in the checkout: release what a user would from a fresh patch changeset.
    const names = fs
      .readdirSync(path.join(repo, 'packages'))
      .map((d) => JSON.parse(fs.readFileSync(path.join(repo, 'packages', d, 'package.json'), 'utf8')).name);
    fs.writeFileSync(
      path.join(repo, '.changeset', 'release-test.md'),
      `---\n${names.map((n) => `"${n}": patch`).join('\n')}\n---\n\nRelease test.\n`,
    );
  }
  log('pnpm version-packages');
  inRepo('pnpm', ['version-packages']);
  log('pnpm release (build + changeset publish)');
  const released = inRepo('pnpm', ['release']);
  if (process.env.PGSTATE_RELEASE_VERBOSE) console.log(released);

  const packages = fs
    .readdirSync(path.join(repo, 'packages'))
    .map((dir) => ({
      dir,
      manifest: JSON.parse(fs.readFileSync(path.join(repo, 'packages', dir, 'package.json'), 'utf8')),
    }))
    .filter((p) => !p.manifest.private);

  const { startTestServer, createTestDatabase } = await import(path.join(root, 'packages/core/dist/testing.js'));
  cluster = await startTestServer();
  const failures = [];
  for (const { dir, manifest } of packages) {
    const packument = await (await fetch(`${registryUrl}${manifest.name.replace('/', '%2f')}`)).json();
    const published = packument.versions?.[manifest.version];
    if (!published) {
      failures.push(`${manifest.name}@${manifest.version} was not published`);
      continue;
    }
    const ranges = JSON.stringify({
      ...published.dependencies,
      ...published.peerDependencies,
      ...published.optionalDependencies,
    });
    if (ranges.includes('workspace:'))
      failures.push(`${manifest.name}: a workspace: range leaked into the published manifest`);
    const consumer = path.join(work, `consumer-${dir}`);
    fs.mkdirSync(consumer);
    fs.writeFileSync(
      path.join(consumer, 'package.json'),
      JSON.stringify({ name: `consumer-${dir}`, private: true, type: 'module' }),
    );
    fs.writeFileSync(path.join(consumer, '.npmrc'), `registry=${registryUrl}\n`);
    const smoke = path.join(root, 'scripts', 'release-smoke', `${dir}.mjs`);
    try {
      // `npm test` exports npm_config_registry to its scripts, which beats any .npmrc: name the registry explicitly.
      sh(
        'npm',
        [
          'install',
          '--no-audit',
          '--no-fund',
          '--prefer-offline',
          '--loglevel=error',
          `--registry=${registryUrl}`,
          `${manifest.name}@${manifest.version}`,
        ],
        {
          cwd: consumer,
          env: { ...process.env, npm_config_registry: registryUrl },
        },
      );
      fs.copyFileSync(smoke, path.join(consumer, 'smoke.mjs'));
      const db = await createTestDatabase(cluster.url, `release_${dir.replace(/\W/g, '_')}`);
      try {
        const out = sh('node', ['smoke.mjs'], {
          cwd: consumer,
          env: { ...process.env, PG_URL: db.url, PGSTATE_HOME: path.join(consumer, '.pgstate') },
        });
        log(`${manifest.name}@${manifest.version}: installed alone and ran: ${out.trim().split('\n').at(-1)}`);
      } finally {
        await db.drop();
      }
    } catch (error) {
      failures.push(
        `${manifest.name}: ${(error.stderr || error.message || String(error)).toString().trim().split('\n').slice(-12).join(' | ')}`,
      );
    }
  }
  if (failures.length > 0) {
    for (const f of failures) console.error(`check:release: FAIL ${f}`);
    process.exitCode = 1;
  } else {
    log(`ok: ${packages.length} packages published and installed individually`);
  }
} finally {
  registry?.kill('SIGTERM');
  await cluster?.cluster?.destroy();
  fs.rmSync(work, { recursive: true, force: true });
}
