import util from 'node:util';
import { expect } from 'vitest';

/** Everything a user or a log could see of an error: message, stack, toString, JSON, inspect, the whole cause chain. */
export function everyRendering(error: unknown): string[] {
  const out: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    const e = current as Error & { fix?: string };
    out.push(String(e), e.message ?? '', e.stack ?? '', e.fix ?? '', JSON.stringify(e) ?? '');
    out.push(util.inspect(e, { depth: 10, showHidden: true }));
    current = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** Asserts the secret (raw or percent-encoded) shows up nowhere in the error. */
export function expectNoSecret(error: unknown, secret: string): void {
  for (const text of everyRendering(error)) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(encodeURIComponent(secret));
  }
}

export async function rejectionOf(promise: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got success');
}
