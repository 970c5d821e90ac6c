import fs from 'node:fs';

/**
 * The migration names committed in drizzle/<set>/ (journal order). Tests expect exactly these to be applied, once
 * each, so adding a migration to a set does not break them while a skipped or repeated migration still does.
 */
export function committedMigrations(set: string): string[] {
  const journal = JSON.parse(
    fs.readFileSync(new URL(`../drizzle/${set}/meta/_journal.json`, import.meta.url), 'utf8'),
  ) as { entries: Array<{ idx: number; tag: string }> };
  const tags = [...journal.entries].sort((a, b) => a.idx - b.idx).map((e) => e.tag);
  if (tags.length === 0) throw new Error(`drizzle/${set} has no committed migrations`);
  return tags;
}
