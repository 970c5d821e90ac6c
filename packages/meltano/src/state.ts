/** Meltano's value rules (`meltano.core.state_store.base.MeltanoState`, `meltano.core.utils.merge`). */
import { PgStateError } from '@pgstate/core';
import { dumpJson, isJsonObject, type JsonObject, type JsonValue, parseJson, setOwn } from './json.js';

/** One state row. Empty parts are `{}` (Meltano reads SQL NULL, `'{}'` and `'null'` all as empty). */
export interface MeltanoState {
  stateId: string;
  completed: JsonObject;
  partial: JsonObject;
}

/** What `get` returns: the merged view Meltano hands to taps, plus the raw parts. */
export interface MeltanoStateView extends MeltanoState {
  /** `partial` deep-merged over `completed` (`MeltanoState.json_merged`). */
  merged: JsonObject;
  updatedAt: Date | null;
}

export const MAX_STATE_ID_LENGTH = 900;
export const SINGER_STATE_KEY = 'singer_state';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** State ids: non-empty, at most 900 characters (VARCHAR(900)), storable as PostgreSQL text. */
export function validateStateId(stateId: unknown, what = 'state id'): string {
  if (typeof stateId !== 'string' || stateId.length === 0) {
    throw new PgStateError('INVALID_INPUT', `The ${what} is empty.`, {
      fix: 'Use an id like "dev:tap-github-to-target-postgres".',
    });
  }
  if (stateId.length > MAX_STATE_ID_LENGTH) {
    throw new PgStateError(
      'INVALID_INPUT',
      `The ${what} is ${stateId.length} characters long; Meltano state ids hold at most ${MAX_STATE_ID_LENGTH}.`,
      { fix: 'Use a shorter state id (Meltano builds them as {environment}:{tap}-to-{target}[:{suffix}]).' },
    );
  }
  if (stateId.includes('\u0000') || LONE_SURROGATE.test(stateId)) {
    throw new PgStateError('INVALID_INPUT', `The ${what} contains a NUL character or a lone surrogate.`, {
      fix: 'Use printable characters only; PostgreSQL text cannot store these.',
    });
  }
  return stateId;
}

/** Deep merge like `meltano.core.utils.merge(src, dest)`: dicts merge key by key, newer wins, lists are replaced. */
export function deepMerge(src: JsonObject, dest: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const key of Object.keys(dest)) setOwn(out, key, dest[key] as JsonValue);
  for (const key of Object.keys(src)) {
    const value = src[key] as JsonValue;
    const current = Object.hasOwn(out, key) ? out[key] : undefined;
    // Where Python would raise (a dict merged onto a non-dict), the newer value simply replaces the old one.
    if (isJsonObject(value)) setOwn(out, key, deepMerge(value, isJsonObject(current) ? current : {}));
    else setOwn(out, key, value);
  }
  return out;
}

/** The merged view Meltano reads: partial over completed. */
export function mergedView(state: Pick<MeltanoState, 'completed' | 'partial'>): JsonObject {
  return deepMerge(state.partial, state.completed);
}

export function isEmpty(value: JsonObject): boolean {
  return Object.keys(value).length === 0;
}

/** Reads a stored column: NULL, '{}' and 'null' are empty. Anything else must be a JSON object. */
export function readStoredPart(text: string | null, stateId: string, column: string): JsonObject {
  if (text === null) return {};
  let value: JsonValue;
  try {
    value = parseJson(text, `stored ${column} of "${stateId}"`);
  } catch (error) {
    throw new PgStateError('INVALID_INPUT', `The stored ${column} of state "${stateId}" is not valid JSON.`, {
      fix: `Repair it with \`pgstate meltano state set ${stateId} '<json>'\` or clear it.`,
      cause: error,
    });
  }
  if (value === null) return {};
  if (!isJsonObject(value)) {
    throw new PgStateError('INVALID_INPUT', `The stored ${column} of state "${stateId}" is not a JSON object.`, {
      fix: `Repair it with \`pgstate meltano state set ${stateId} '<json>'\` or clear it.`,
    });
  }
  return value;
}

/** How a part is written: empty becomes NULL (the plugins) or '{}' (Meltano's systemdb writes json.dumps({})). */
export function writePart(value: JsonObject, emptyAs: 'null' | 'braces'): string | null {
  if (isEmpty(value)) return emptyAs === 'null' ? null : '{}';
  return dumpJson(value);
}

export interface StateInputOptions {
  /** Require a top-level `singer_state` key, as `meltano state set` does (default true for set). */
  requireSingerState?: boolean;
  what?: string;
}

/** Accepts JSON text or an object; rejects anything but a JSON object, before anything is written. */
export function parseStateInput(input: string | JsonObject, options: StateInputOptions = {}): JsonObject {
  const what = options.what ?? 'state';
  const value = typeof input === 'string' ? parseJson(input, what) : input;
  if (!isJsonObject(value)) {
    throw new PgStateError('INVALID_INPUT', `The ${what} must be a JSON object, not ${describe(value)}.`, {
      fix: 'Pass a JSON object, e.g. {"singer_state": {"bookmarks": {}}}.',
    });
  }
  if (options.requireSingerState && !Object.hasOwn(value, SINGER_STATE_KEY)) {
    throw new PgStateError('INVALID_INPUT', `${SINGER_STATE_KEY} not found in top level of provided ${what}.`, {
      fix: `State must be a JSON object with a top-level '${SINGER_STATE_KEY}' key; pass validate: false (--no-validate) to bypass this check.`,
    });
  }
  return value;
}

function describe(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** One entry of `meltano state export`: `{"completed": ..., "partial": ...}`. */
export interface ExportedState {
  completed: JsonObject | null;
  partial: JsonObject | null;
}

export function parseExportEntry(stateId: string, entry: unknown): MeltanoState {
  if (!isJsonObject(entry as JsonValue)) {
    throw new PgStateError('INVALID_INPUT', `The import entry for "${stateId}" is not an object.`, {
      fix: 'Use the format `meltano state export` writes: {"<state id>": {"completed": {...}, "partial": {...}}}.',
    });
  }
  const e = entry as JsonObject;
  const part = (name: 'completed' | 'partial'): JsonObject => {
    const v = e[name];
    if (v === undefined || v === null) return {};
    if (!isJsonObject(v)) {
      throw new PgStateError('INVALID_INPUT', `The "${name}" part of import entry "${stateId}" is not an object.`, {
        fix: 'Each part must be a JSON object or null.',
      });
    }
    return v;
  };
  return { stateId: validateStateId(stateId), completed: part('completed'), partial: part('partial') };
}
