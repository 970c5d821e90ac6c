/** `pgstate serve` as a child process, for lanes that drive the built CLI the way a user runs it. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const PGSTATE_BIN = path.join(
  path.dirname(createRequire(import.meta.url).resolve('pgstate/package.json')),
  'dist',
  'bin.js',
);

/** A lane's `requires`: why it cannot run without the built CLI. */
export const needPgstateBin = (): string | undefined =>
  fs.existsSync(PGSTATE_BIN) ? undefined : `the pgstate CLI is not built (${PGSTATE_BIN})`;

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  /** The endpoint from serve's `--json` document. */
  url: URL;
  /** Everything serve wrote on stderr so far (its JSON request log). */
  log(): string;
  exited: Promise<number | null>;
  /** SIGTERM (graceful drain), then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `node <pgstate> ...args` and resolves once serve printed its `--json` document (args must include `--json`
 * and `serve`); rejects with serve's output if it exits first.
 */
export async function spawnServe(args: readonly string[], env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, [PGSTATE_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
  child.stdin.end();
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const url = await new Promise<URL>((resolve, reject) => {
    let text = '';
    createInterface({ input: child.stdout }).on('line', (line) => {
      text += `${line}\n`;
      try {
        // One document, in the CLI's envelope (`{"ok": true, "data": ...}`).
        const doc = JSON.parse(text) as { url?: string; data?: { url: string } };
        resolve(new URL(doc.data?.url ?? doc.url ?? ''));
      } catch {}
    });
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${text}${log.slice(-2000)}`)));
  });
  return {
    child,
    url,
    log: () => log,
    exited,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}
