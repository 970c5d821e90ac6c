import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type MeltanoLayout, MeltanoStateStore, type MeltanoStoreOptions } from '../src/index.js';

export const LAYOUTS: MeltanoLayout[] = ['pgstate', 'plugin', 'systemdb'];

const here = path.dirname(fileURLToPath(import.meta.url));

/** A store on `dbUrl` in a custom schema (so the schema plumbing is exercised too), migrated. */
export async function openStore(
  dbUrl: string,
  layout: MeltanoLayout,
  extra: Partial<MeltanoStoreOptions> = {},
): Promise<MeltanoStateStore> {
  const store = new MeltanoStateStore({ url: dbUrl, layout, schema: `mel_${layout}`, ...extra });
  await store.migrate();
  return store;
}

/** `node` running a TypeScript worker from source (tsx loader, workspace packages from source). */
export function nodeArgs(script: string): string[] {
  const require = createRequire(import.meta.url);
  const tsx = pathToFileURL(require.resolve('tsx/esm')).href;
  return ['--conditions=pgstate-source', '--import', tsx, path.join(here, script)];
}

export interface ChildRun {
  pid: number;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** Resolves when the child printed a line containing `marker`. */
  waitFor(marker: string): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

export function runWorker(script: string, env: Record<string, string>): ChildRun {
  const child = spawn(process.execPath, nodeArgs(script), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: Array<{ marker: string; resolve: () => void }> = [];
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiters.splice(0)) {
      if (stdout.includes(w.marker)) w.resolve();
      else waiters.push(w);
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return {
    pid: child.pid ?? -1,
    done,
    waitFor: (marker) =>
      new Promise<void>((resolve, reject) => {
        if (stdout.includes(marker)) return resolve();
        waiters.push({ marker, resolve });
        void done.then((r) =>
          stdout.includes(marker) ? resolve() : reject(new Error(`worker exited before "${marker}": ${r.stderr}`)),
        );
      }),
    kill: (signal) => child.kill(signal),
  };
}
