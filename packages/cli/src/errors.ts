import { describeConnection, LayoutMismatchError, PgStateError, redactSecrets, toPgStateError } from '@pgstate/core';
import { EXIT, exitCodeFor } from './exit-codes.js';
import type { Output } from './output.js';

/** A usage error (bad flag combination, bad argument): exit code 2. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  readonly fix: string | undefined;
  constructor(message: string, fix?: string) {
    super(message);
    this.name = 'UsageError';
    this.fix = fix;
  }
}

type Where = Parameters<typeof toPgStateError>[1];

/** Last line of defence: no password or `scheme://user:password@` ever reaches the terminal. */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  return redactSecrets(text, secrets);
}

/**
 * Library errors name settings, never flags: a command pointed at another layout's tables gets the flag to use.
 * Anything else is returned unchanged.
 */
export function withFlagHint(error: unknown): unknown {
  if (!(error instanceof LayoutMismatchError)) return error;
  return new PgStateError('BAD_SETTING', error.message, {
    fix: `Add --layout ${error.found} (or ?layout=${error.found} in the URL) to work on ${error.table}; \`pgstate migrate --adapter ${error.adapter} --layout ${error.found}\` adopts it.`,
    cause: error,
  });
}

/** Prints an error as one line (`error [CODE]: message` + `fix: ...`) and returns the exit code. */
export function reportError(
  error: unknown,
  output: Output,
  options: { where?: Where; secrets?: readonly (string | undefined)[] } = {},
): number {
  const usage = error instanceof UsageError;
  const err = usage ? error : toPgStateError(withFlagHint(error), options.where);
  const code = err.code;
  const message = redact(err.message, options.secrets);
  const fix = err.fix ? redact(err.fix, options.secrets) : undefined;
  if (output.json) {
    output.emitJsonFailure({ code, message, ...(fix ? { fix } : {}) });
  } else {
    output.stderr.write(`${output.styleErr('error', 'red', 'bold')} [${code}]: ${message}\n`);
    if (fix) output.stderr.write(`${output.styleErr('fix', 'cyan')}: ${fix}\n`);
  }
  if (output.debugEnabled) {
    let current: unknown = error;
    for (let depth = 0; current && depth < 5; depth++) {
      const stack = (current as Error).stack ?? String(current);
      output.stderr.write(`${output.styleErr(redact(stack, options.secrets), 'dim')}\n`);
      current = (current as { cause?: unknown }).cause;
    }
  }
  return usage ? EXIT.USAGE : exitCodeFor(code);
}

export { describeConnection, toPgStateError };
