import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { PgStateError } from '@pgstate/core';
import { MAX_IDENTIFIER_BYTES } from './names.js';
import type { ResolvedTarget } from './targets.js';

/** One committed migration, still with placeholder names. */
export interface MigrationFile {
  /** drizzle-kit tag, e.g. `0000_init`: the journal's migration name. */
  name: string;
  /** sha256 of the committed SQL file, recorded in the journal. */
  hash: string;
  statements: string[];
}

// Same relative path from src/*.ts (pgstate-source) and from dist/*.js (published): the package root's drizzle/.
const DRIZZLE_DIR = new URL('../drizzle/', import.meta.url);
const cache = new Map<string, MigrationFile[]>();

/** Reads drizzle/<set>/ in journal order. A set without a folder has no migrations yet. */
export function loadMigrationSet(set: string): MigrationFile[] {
  const cached = cache.get(set);
  if (cached) return cached;
  const folder = new URL(`${set}/`, DRIZZLE_DIR);
  const journalFile = new URL('meta/_journal.json', folder);
  if (!fs.existsSync(journalFile)) {
    cache.set(set, []);
    return [];
  }
  const journal = JSON.parse(fs.readFileSync(journalFile, 'utf8')) as { entries: Array<{ idx: number; tag: string }> };
  const files = [...journal.entries]
    .sort((a, b) => a.idx - b.idx)
    .map(({ tag }) => {
      const text = fs.readFileSync(new URL(`${tag}.sql`, folder), 'utf8');
      return {
        name: tag,
        hash: createHash('sha256').update(text).digest('hex'),
        statements: text
          .split('--> statement-breakpoint')
          .map((s) => s.trim())
          .filter(Boolean),
      };
    });
  cache.set(set, files);
  return files;
}

const QUOTED_IDENTIFIER = /"((?:[^"]|"")*)"/g;
// Migrations are journaled, so these only matter when the objects already exist: a Meltano `state` table that the
// Python side created, or a Pulumi table its seed backend created. Adopt them instead of failing.
const CREATE_IF_NOT_EXISTS = /^CREATE (UNIQUE INDEX|INDEX|TABLE|SEQUENCE|SCHEMA) (?!IF NOT EXISTS)/;
// PostgreSQL has no `ADD CONSTRAINT IF NOT EXISTS`: a constraint an adopted table already has (the S3 gateway's
// multipart tables, created by its own DDL before they were a migration set) is skipped by name instead.
const ADD_CONSTRAINT = /^ALTER TABLE ("[^"]+"\."[^"]+") ADD CONSTRAINT "([^"]+)" /;

function addConstraintIfMissing(statement: string): string {
  const match = ADD_CONSTRAINT.exec(statement);
  if (!match) return statement;
  // Both names are validated identifiers by now (letters, digits, underscores): safe inside string literals.
  const [, table, constraint] = match;
  return (
    `DO $pgstate$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '${table}'::regclass ` +
    `AND conname = '${constraint}') THEN ${statement.replace(/;\s*$/, '')}; END IF; END $pgstate$`
  );
}

/**
 * The statements of one migration for one configuration: placeholder names swapped inside quoted identifiers
 * (so index and constraint names derive from the configured table name), CREATE made idempotent.
 */
export function renderMigration(file: MigrationFile, target: ResolvedTarget): string[] {
  return file.statements.map((statement) => {
    const rendered = statement
      .replace(QUOTED_IDENTIFIER, (_match, inner: string) => {
        let name = inner;
        for (const [placeholder, value] of target.substitutions) name = name.split(placeholder).join(value);
        if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
          throw new PgStateError(
            'INVALID_IDENTIFIER',
            `The name "${name}" derived for ${target.config} is longer than ${MAX_IDENTIFIER_BYTES} bytes.`,
            { fix: 'Use a shorter table name; PostgreSQL would truncate the derived index name.' },
          );
        }
        return `"${name}"`;
      })
      .replace(CREATE_IF_NOT_EXISTS, 'CREATE $1 IF NOT EXISTS ');
    if (rendered.includes('__PGSTATE_')) {
      throw new PgStateError(
        'QUERY_FAILED',
        `Migration ${file.name} for ${target.config} has an unquoted placeholder.`,
        {
          fix: 'This is a packaging bug in @pgstate/schema; please report it.',
        },
      );
    }
    return addConstraintIfMissing(rendered);
  });
}
