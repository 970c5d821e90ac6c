import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';

export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bin.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /**
   * With `--json`: the envelope checked against docs/json (envelope + the command's schema), then its `data`, or the
   * whole `{ok: false, error}` document when a failure has no data. Throws when stdout is not one valid document.
   */
  json<T = Record<string, unknown>>(): T;
  /** stdout parsed as one JSON document, as printed. */
  document<T = Record<string, unknown>>(): T;
}

/** An environment with nothing that names a server: what a fresh machine has. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^PG/.test(k) || k === 'NO_COLOR' || k === 'FORCE_COLOR') continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs the BUILT binary as a user would. */
export function runCli(args: string[], env: Record<string, string> = cleanEnv()): Promise<CliResult> {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: build the package first (pnpm build)`);
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({
        code,
        stdout,
        stderr,
        json<T>() {
          return jsonData(args, stdout) as T;
        },
        document<T>() {
          return JSON.parse(stdout) as T;
        },
      });
    });
  });
}

export function tempHome(prefix = 'pgstate-cli-home-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Replaces the password of a URL. */
export function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

export function withUser(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = password;
  return u.toString();
}

const SCHEMAS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'json');
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validators = new Map<string, ReturnType<typeof ajv.compile>>();
function validator(name: string) {
  let v = validators.get(name);
  if (!v) {
    v = ajv.compile(JSON.parse(fs.readFileSync(path.join(SCHEMAS, `${name}.schema.json`), 'utf8')));
    validators.set(name, v);
  }
  return v;
}

/** Every command that has a schema in docs/json, as its words (`meltano-state-list` -> meltano state list). */
export function documentedCommands(): string[][] {
  return fs
    .readdirSync(SCHEMAS)
    .filter((f) => f.endsWith('.schema.json') && f !== 'envelope.schema.json')
    .map((f) => f.slice(0, -'.schema.json'.length))
    .map((name) => (name.startsWith('pulumi-migrate-') ? ['pulumi', name.slice('pulumi-'.length)] : name.split('-')));
}

/** The documented command an argument list runs: the longest command path found in order among its words. */
function commandOf(args: string[]): string | undefined {
  const words = args.filter((a) => !a.startsWith('-'));
  const inOrder = (path: string[]) => {
    let i = 0;
    for (const w of words) if (w === path[i]) i++;
    return i === path.length;
  };
  const found = documentedCommands()
    .filter(inOrder)
    .sort((a, b) => b.length - a.length)[0];
  return found?.join('-');
}

/** Checks a `--json` document against the envelope and the command's schema; returns what tests look at. */
export function jsonData(args: string[], stdout: string): unknown {
  const doc = JSON.parse(stdout) as { ok: boolean; data?: unknown; error?: unknown };
  const envelope = validator('envelope');
  if (!envelope(doc))
    throw new Error(`--json output is not the envelope: ${ajv.errorsText(envelope.errors)}\n${stdout}`);
  const command = commandOf(args);
  if (doc.data !== undefined && command) {
    const check = validator(command);
    if (!check(doc.data)) throw new Error(`pgstate ${command} --json: ${ajv.errorsText(check.errors)}\n${stdout}`);
  }
  return doc.ok || doc.data !== undefined ? doc.data : doc;
}

/** `pgstate --json serve`'s start document (its `data`), once the text holds all of it; throws until then. */
export function serveDocument<T = { url: string }>(text: string): T {
  JSON.parse(text);
  return jsonData(['serve'], text) as T;
}

export interface ServeProcess<T> {
  child: ChildProcess;
  /** The start document's data (checked against its schema); rejects when serve exits before printing it. */
  doc: Promise<T>;
  exited: Promise<number | null>;
  /** Everything the process printed so far, stdout then stderr. */
  output(): string;
  stderr(): string;
}

/** Runs the built `pgstate --json serve <args>` as a user would, collecting its output. */
export function spawnServe<T = { url: string }>(args: string[], env: Record<string, string>): ServeProcess<T> {
  const child = spawn(process.execPath, [BIN, '--json', 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const doc = new Promise<T>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      stdout += `${line}\n`;
      try {
        resolve(serveDocument<T>(stdout));
      } catch {}
    });
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { child, doc, exited, output: () => stdout + stderr, stderr: () => stderr };
}
