import { redactSecrets } from '@pgstate/core';
import type { Logger } from './types.js';

// The storage logs what the official module logs (activation, flush retries, lost locks, evaluation errors,
// migrations). A module constructed without the service's logger must still print them: a silent default hid
// replication errors (issue 14).

type Level = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

function formatMeta(meta: unknown[]): string {
  if (meta.length === 0) return '';
  const parts = meta.map((m) => {
    if (m instanceof Error) return m.stack ?? `${m.name}: ${m.message}`;
    if (typeof m === 'string') return m;
    try {
      return JSON.stringify(m, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
    } catch {
      return String(m);
    }
  });
  return ` ${parts.join(' ')}`;
}

export interface ConsoleLoggerOptions {
  /** Lowest level printed (default `info`, like the service's default log level). */
  level?: Level;
  /** Put before every message, e.g. `[powersync_1_ab12] `. */
  prefix?: string;
  /** Where lines go (default: error/warn to stderr, info/debug to stdout). */
  write?: (level: Level, line: string) => void;
}

const defaultWrite = (level: Level, line: string) => {
  (level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(`${line}\n`);
};

/**
 * A logger that prints `level: [prefix]message meta` lines, used when the module gets no logger from the service.
 * Connection strings in messages are redacted.
 */
export function consoleLogger(
  options: ConsoleLoggerOptions = {},
): Logger & { child(meta: { prefix?: string }): Logger } {
  const threshold = RANK[options.level ?? 'info'];
  const prefix = options.prefix ?? '';
  const write = options.write ?? defaultWrite;
  const log =
    (level: Level) =>
    (message: string, ...meta: unknown[]) => {
      if (RANK[level] > threshold) return;
      write(level, redactSecrets(`${level}: ${prefix}${message}${formatMeta(meta)}`));
    };
  return {
    error: log('error'),
    warn: log('warn'),
    info: log('info'),
    debug: log('debug'),
    child: (meta) => consoleLogger({ ...options, prefix: `${prefix}${meta.prefix ?? ''}` }),
  };
}

/** `logger` with `prefix` before every message: winston's `child({prefix})` when the logger has one. */
export function prefixedLogger(logger: Logger, prefix: string): Logger {
  if (typeof logger.child === 'function') return logger.child({ prefix });
  const wrap =
    (fn: (message: string, ...meta: unknown[]) => unknown) =>
    (message: string, ...meta: unknown[]) =>
      fn.call(logger, `${prefix}${message}`, ...meta);
  return { error: wrap(logger.error), warn: wrap(logger.warn), info: wrap(logger.info), debug: wrap(logger.debug) };
}

/** The process-wide default: prints at `info` and above. */
export const defaultLogger: Logger = consoleLogger();
