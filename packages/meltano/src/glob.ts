/**
 * `meltano state list --pattern` globs: `*` is any run, `?` one character; everything else, including SQL's own
 * `_`, `%` and `\`, is literal. (The upstream plugin forgets to escape `_`/`%`; Meltano's file backends use fnmatch.)
 */
export interface LikePattern {
  /** For `LIKE $1 ESCAPE '\'`. */
  like: string;
  /** The literal text before the first wildcard: the planner turns it into an index range under COLLATE "C". */
  prefix: string;
  /** True for no pattern or a pattern of only `*`: no filter needed. */
  matchesAll: boolean;
}

export function globToLike(pattern: string | undefined): LikePattern {
  if (pattern === undefined || pattern === '' || /^\*+$/.test(pattern))
    return { like: '%', prefix: '', matchesAll: true };
  let like = '';
  let prefix = '';
  let literal = true;
  for (const ch of pattern) {
    if (ch === '*') {
      like += '%';
      literal = false;
    } else if (ch === '?') {
      like += '_';
      literal = false;
    } else {
      like += ch === '%' || ch === '_' || ch === '\\' ? `\\${ch}` : ch;
      if (literal) prefix += ch;
    }
  }
  return { like, prefix, matchesAll: false };
}

/** The same glob as a JS test, for lists that do not come from SQL (the S3 bucket view). */
export function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (const ch of pattern) {
    if (ch === '*') source += '[\\s\\S]*';
    else if (ch === '?') source += '[\\s\\S]';
    else source += ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 'u');
}
