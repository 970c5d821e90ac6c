/**
 * Everything a command prints goes through here, so that `--json`, `--no-color`, TTY detection and
 * the progress bar behave the same in every command.
 */
import type { Writable } from 'node:stream';

export type Status = 'pass' | 'warn' | 'fail' | 'skip';

/** What `--json` says about an error (never a password: messages are redacted before they get here). */
export interface JsonError {
  code: string;
  message: string;
  fix?: string;
}

export interface OutputOptions {
  json: boolean;
  color: boolean | undefined;
  debug: boolean;
  stdout?: Writable & { isTTY?: boolean; columns?: number };
  stderr?: Writable & { isTTY?: boolean; columns?: number };
  env?: Record<string, string | undefined>;
}

export interface Progress {
  /** Advance by `n` (default 1); `label` replaces the current step's text. */
  tick(n?: number, label?: string): void;
  /** Remove the bar (it never stays on screen). */
  done(): void;
}

const CODES = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
  dim: [2, 22],
  bold: [1, 22],
} as const;
type Style = keyof typeof CODES;

export class Output {
  readonly json: boolean;
  readonly debugEnabled: boolean;
  readonly stdout: NonNullable<OutputOptions['stdout']>;
  readonly stderr: NonNullable<OutputOptions['stderr']>;
  private readonly colorOut: boolean;
  private readonly colorErr: boolean;

  constructor(options: OutputOptions) {
    const env = options.env ?? process.env;
    this.json = options.json;
    this.debugEnabled = options.debug;
    this.stdout = options.stdout ?? process.stdout;
    this.stderr = options.stderr ?? process.stderr;
    // Colours only on a TTY, unless forced; NO_COLOR (https://no-color.org) and --no-color always win.
    const allowed = options.color !== false && !env.NO_COLOR;
    const forced = allowed && !!env.FORCE_COLOR && env.FORCE_COLOR !== '0';
    this.colorOut = allowed && !this.json && (forced || !!this.stdout.isTTY);
    this.colorErr = allowed && (forced || !!this.stderr.isTTY);
  }

  /** Styles text for stdout (no-op without colours). */
  style(text: string, ...styles: Style[]): string {
    return this.colorOut ? paint(text, styles) : text;
  }

  /** Styles text for stderr. */
  styleErr(text: string, ...styles: Style[]): string {
    return this.colorErr ? paint(text, styles) : text;
  }

  /** A line of human output on stdout; silent in JSON mode (the command prints its JSON document instead). */
  line(text = ''): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** Raw text on stdout in every mode (for values meant to be captured, like `pgstate db url`). */
  value(text: string): void {
    this.stdout.write(`${text}\n`);
  }

  /** A status note on stderr (never pollutes captured stdout or the JSON document). */
  note(text: string): void {
    this.stderr.write(`${this.styleErr(text, 'dim')}\n`);
  }

  /** Warning on stderr (also in JSON mode: stdout stays one JSON document). */
  warn(text: string): void {
    this.stderr.write(`${this.styleErr('warning', 'yellow', 'bold')}: ${text}\n`);
  }

  debug(text: string): void {
    if (this.debugEnabled) this.stderr.write(`${this.styleErr(`debug: ${text}`, 'dim')}\n`);
  }

  /**
   * The one JSON document of a command in `--json` mode, in the envelope every command shares (docs/json-output.md):
   * `{"ok": true, "data": ...}`.
   */
  emitJson(data: unknown): void {
    this.stdout.write(`${JSON.stringify({ ok: true, data }, null, 2)}\n`);
  }

  /**
   * The envelope of a failed command: `{"ok": false, "error": {code, message, fix?}}`, plus `data` when the command
   * ran and has a report to give (doctor with failed checks, migrate --check with pending migrations).
   */
  emitJsonFailure(error: JsonError, data?: unknown): void {
    this.stdout.write(`${JSON.stringify({ ok: false, error, ...(data === undefined ? {} : { data }) }, null, 2)}\n`);
  }

  /** `pass`/`warn`/`fail` marker as doctor prints it. */
  status(status: Status): string {
    switch (status) {
      case 'pass':
        return this.style('pass', 'green');
      case 'warn':
        return this.style('warn', 'yellow');
      case 'fail':
        return this.style('FAIL', 'red', 'bold');
      default:
        return this.style('skip', 'dim');
    }
  }

  /** A progress bar on stderr when it is a TTY (and not JSON mode); otherwise a no-op: quiet by default. */
  progress(label: string, total: number): Progress {
    if (this.json || !this.stderr.isTTY || total <= 0) return { tick() {}, done() {} };
    let current = 0;
    let text = label;
    const render = () => {
      const width = Math.max(10, Math.min(30, (this.stderr.columns ?? 80) - text.length - 20));
      const filled = Math.round((current / total) * width);
      this.stderr.write(`\r\x1b[2K${'#'.repeat(filled)}${'-'.repeat(width - filled)} ${current}/${total} ${text}`);
    };
    render();
    return {
      tick(n = 1, next?: string) {
        current = Math.min(total, current + n);
        if (next !== undefined) text = next;
        render();
      },
      done: () => this.stderr.write('\r\x1b[2K'),
    };
  }
}

function paint(text: string, styles: Style[]): string {
  return styles.reduce((acc, s) => `\x1b[${CODES[s][0]}m${acc}\x1b[${CODES[s][1]}m`, text);
}
