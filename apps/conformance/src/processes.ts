/**
 * Real OS processes for concurrency and crash tests. A child is `node <script>` (scripts import the built `dist` of
 * workspace packages, so run `pnpm turbo run build --filter @pgstate/conformance...` first); it reports its outcome
 * by printing one line `RESULT <json>`. Each child leaves a pid file in the run directory so a sweep can kill it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface ChildResult {
  index: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The parsed JSON of the last `RESULT <json>` line, if the child printed one. */
  result: unknown;
}

export interface ChildHandle {
  pid: number;
  process: ChildProcess;
  /** Resolves with the first stdout line matching `pattern` (e.g. a "writing" marker); rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
  done: Promise<ChildResult>;
}

export interface SpawnOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Directory for pid files (the kit passes the run directory). */
  pidDir?: string;
  index?: number;
  /** The child is killed with SIGKILL after this long (default 120 s). */
  timeoutMs?: number;
}

/** The line of a child's stderr that says what went wrong (Node prints the stack after it). */
export function firstError(stderr: string): string {
  const lines = stderr.trim().split('\n');
  return (lines.find((l) => /^\w*Error\b|Error \[/.test(l)) ?? lines.slice(-3).join(' ')).slice(0, 500);
}

export function spawnChild(script: string, options: SpawnOptions = {}): ChildHandle {
  const child = spawn(process.execPath, [script, ...(options.args ?? [])], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid ?? -1;
  const pidFile = options.pidDir ? path.join(options.pidDir, `child-${pid}.pid`) : undefined;
  if (pidFile) {
    fs.mkdirSync(path.dirname(pidFile), { recursive: true });
    fs.writeFileSync(pidFile, `${pid}\n`);
  }
  let stdout = '';
  let stderr = '';
  const lineWaiters = new Set<(line: string) => void>();
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) for (const waiter of lineWaiters) waiter(line);
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const done = new Promise<ChildResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pidFile) fs.rmSync(pidFile, { force: true });
      const resultLine = stdout
        .split('\n')
        .reverse()
        .find((l) => l.startsWith('RESULT '));
      let result: unknown;
      try {
        result = resultLine ? JSON.parse(resultLine.slice('RESULT '.length)) : undefined;
      } catch {
        result = undefined;
      }
      resolve({ index: options.index ?? 0, pid, code, signal, stdout, stderr, result });
    });
  });
  return {
    pid,
    process: child,
    kill: (signal = 'SIGKILL') => {
      child.kill(signal);
    },
    done,
    waitForLine(pattern, timeoutMs = 60_000) {
      const seen = stdout.split('\n').find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = (line: string) => {
          if (!pattern.test(line)) return;
          cleanup();
          resolve(line);
        };
        const timeout = setTimeout(() => {
          cleanup();
          reject(new Error(`child ${pid} printed no line matching ${pattern} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onExit = () => {
          cleanup();
          reject(new Error(`child ${pid} exited before printing ${pattern}: ${firstError(stderr)}`));
        };
        const cleanup = () => {
          clearTimeout(timeout);
          lineWaiters.delete(waiter);
          child.off('close', onExit);
        };
        lineWaiters.add(waiter);
        child.once('close', onExit);
      });
    },
  };
}

/** Starts `count` processes running `script` at once and waits for all of them. */
export async function runProcesses(
  count: number,
  script: string,
  options: Omit<SpawnOptions, 'index' | 'args'> & { args?: (index: number) => string[] } = {},
): Promise<ChildResult[]> {
  const children = Array.from({ length: count }, (_, index) =>
    spawnChild(script, { ...options, index, args: options.args?.(index) ?? [String(index)] }),
  );
  return Promise.all(children.map((c) => c.done));
}
