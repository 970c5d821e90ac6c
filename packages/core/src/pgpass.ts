/**
 * `.pgpass` lookup with libpq's rules: `hostname:port:database:username:password` lines, first match wins, a field
 * that is exactly `*` matches anything, `\:` and `\\` escape, `#` starts a comment line, and the file is ignored when
 * it is not a plain file or is readable by group/others (libpq prints a warning and does the same).
 */
import fs from 'node:fs';

/** Socket directories libpq builds use by default; connecting through them counts as `localhost` in .pgpass. */
const DEFAULT_SOCKET_DIRS = ['/tmp', '/var/run/postgresql', '/run/postgresql'];

export interface PgpassQuery {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface PgpassResult {
  password?: string;
  /** Set when the file exists but was ignored (never contains a password). */
  warning?: string;
}

interface Entry {
  fields: Array<string | null>; // null = wildcard
  password: string;
}

/** Splits one line into four match fields and the password, undoing backslash escapes. */
function parseLine(line: string): Entry | undefined {
  const fields: Array<string | null> = [];
  let current = '';
  let escapedAny = false;
  let i = 0;
  for (; i < line.length && fields.length < 4; i++) {
    const ch = line[i] as string;
    if (ch === '\\' && i + 1 < line.length) {
      current += line[++i];
      escapedAny = true;
    } else if (ch === ':') {
      fields.push(current === '*' && !escapedAny ? null : current);
      current = '';
      escapedAny = false;
    } else {
      current += ch;
    }
  }
  if (fields.length < 4) return undefined;
  const password = line.slice(i).replace(/\\(.)/g, '$1');
  return { fields, password };
}

export function lookupPgpass(file: string, query: PgpassQuery): PgpassResult {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    return {};
  }
  if (!stat.isFile()) {
    return { warning: `Password file "${file}" is not a plain file; it was ignored.` };
  }
  if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
    return {
      warning: `Password file "${file}" has group or world access; it was ignored (run: chmod 0600 "${file}").`,
    };
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { warning: `Password file "${file}" could not be read; it was ignored.` };
  }
  const host = query.host === '' || DEFAULT_SOCKET_DIRS.includes(query.host) ? 'localhost' : query.host;
  const wanted = [host, String(query.port), query.database, query.user];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const entry = parseLine(line);
    if (!entry) continue;
    if (entry.fields.every((field, index) => field === null || field === wanted[index])) {
      return { password: entry.password };
    }
  }
  return {};
}
