import { PgStateError } from './errors.js';

// Unquoted-style names only: users type them in URLs and YAML, and they end up in index names too.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_IDENTIFIER_BYTES = 63;

/** Checks a schema/table name a user configured; throws INVALID_IDENTIFIER with the reason. */
export function validateIdentifier(name: string, what = 'identifier'): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new PgStateError('INVALID_IDENTIFIER', `The ${what} is empty.`, { fix: `Set a ${what} such as "pgstate".` });
  }
  if (!IDENTIFIER.test(name)) {
    throw new PgStateError('INVALID_IDENTIFIER', `The ${what} ${JSON.stringify(name.slice(0, 80))} is not allowed.`, {
      fix: `Use letters, digits and underscores only, starting with a letter or underscore.`,
    });
  }
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw new PgStateError(
      'INVALID_IDENTIFIER',
      `The ${what} "${name}" is longer than ${MAX_IDENTIFIER_BYTES} bytes.`,
      {
        fix: 'Use a shorter name; PostgreSQL would silently truncate it.',
      },
    );
  }
  return name;
}

/** Quotes an identifier for SQL after validating it. */
export function quoteIdentifier(name: string, what?: string): string {
  return `"${validateIdentifier(name, what)}"`;
}

/** `"schema"."table"`, both validated. */
export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdentifier(schema, 'schema name')}.${quoteIdentifier(table, 'table name')}`;
}
