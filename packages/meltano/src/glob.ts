/**
 * `meltano state list --pattern` globs, matched as each layout's host matches them: the host turns the glob into a
 * `LIKE` pattern by replacing characters, escaping nothing.
 * - `pgstate` (formerly `seed`), `plugin` (the Python plugin, both versions): `*` -> `%`, `?` -> `_`.
 * - `systemdb` (Meltano's own): `*` -> `%` only; `?` is a literal question mark.
 * So `_` and `%` in a pattern are `LIKE` wildcards there too (`dev:tap_a*` also matches `dev:tapXa-to-t`), and `\`
 * escapes the next character (`LIKE`'s default escape): `dev:tap\_a*` matches a literal underscore.
 */
import { PgStateError } from '@pgstate/core';
import type { MeltanoLayoutInput } from './config.js';

export interface LikePattern {
  /** For `LIKE $1 ESCAPE '\'` (the default escape, as the hosts use it). */
  like: string;
  /** The literal text before the first wildcard or escape: the planner turns it into an index range under COLLATE "C". */
  prefix: string;
  /** True for no pattern, or one that matches every id: no filter needed. */
  matchesAll: boolean;
}

export function globToLike(pattern: string | undefined, layout: MeltanoLayoutInput = 'pgstate'): LikePattern {
  if (pattern === undefined || pattern === '') return { like: '%', prefix: '', matchesAll: true };
  let like = pattern.replaceAll('*', '%');
  if (layout !== 'systemdb') like = like.replaceAll('?', '_');
  const trailingEscapes = /\\*$/.exec(like)?.[0].length ?? 0;
  if (trailingEscapes % 2 === 1) {
    throw new PgStateError('INVALID_INPUT', 'A state id pattern must not end with a lone backslash.', {
      fix: "Backslash escapes the next character (as in the host's LIKE): write \\\\ for a literal backslash.",
    });
  }
  const prefix = /^[^%_\\]*/.exec(like)?.[0] ?? '';
  return { like, prefix, matchesAll: /^%+$/.test(like) };
}
