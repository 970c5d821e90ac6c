/**
 * Moves a whole DIY store between a `file://` directory (what `pulumi login file://...` writes) and PostgreSQL.
 * Keys are the paths below the directory; file modification times order the writes so "newest variant" choices
 * (plain vs .gz checkpoint) come out the same on both sides.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PgStateError } from '@pgstate/core';
import type { PulumiBlobStore } from './blob-store.js';
import { validateKey } from './keys.js';
import type { TransferProgress } from './state-store.js';

export interface TransferOptions {
  onProgress?: (progress: TransferProgress) => void;
}

export interface TransferResult {
  files: number;
  bytes: number;
}

function directoryOf(location: string): string {
  return location.startsWith('file://') ? fileURLToPath(location) : path.resolve(location);
}

async function walk(dir: string, base: string, out: { key: string; file: string; mtime: number }[]): Promise<void> {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) await walk(file, base, out);
    else if (entry.isFile() && !entry.name.endsWith('.attrs')) {
      // `.attrs` files are gocloud fileblob's metadata sidecars, never Pulumi keys.
      const stat = await fs.stat(file);
      out.push({ key: path.relative(base, file).split(path.sep).join('/'), file, mtime: stat.mtimeMs });
    }
  }
}

/** Copies every file under `<dir>/.pulumi/` into the store (overwriting keys that exist). */
export async function importDiyDirectory(
  store: PulumiBlobStore,
  location: string,
  options: TransferOptions = {},
): Promise<TransferResult> {
  const dir = directoryOf(location);
  const root = path.join(dir, '.pulumi');
  try {
    await fs.access(path.join(root, 'meta.yaml')).catch(() => fs.access(path.join(root, 'stacks')));
  } catch {
    throw new PgStateError('NOT_FOUND', `${dir} is not a Pulumi DIY store (no .pulumi/meta.yaml or .pulumi/stacks).`, {
      fix: 'Point at the directory you passed to `pulumi login file://...`.',
    });
  }
  const files: { key: string; file: string; mtime: number }[] = [];
  await walk(root, dir, files);
  files.sort((a, b) => a.mtime - b.mtime);
  for (const f of files) validateKey(f.key); // all or nothing: refuse before writing anything
  let bytes = 0;
  let done = 0;
  for (const f of files) {
    const body = await fs.readFile(f.file);
    await store.put(f.key, body);
    bytes += body.byteLength;
    done++;
    options.onProgress?.({ done, total: files.length, key: f.key, bytes });
  }
  return { files: files.length, bytes };
}

/** Writes every `.pulumi/` key of the store into `<dir>/.pulumi/...`, keeping modification times. */
export async function exportDiyDirectory(
  store: PulumiBlobStore,
  location: string,
  options: TransferOptions = {},
): Promise<TransferResult> {
  const dir = directoryOf(location);
  const objects = await store.listAll('.pulumi/');
  let bytes = 0;
  let done = 0;
  for (const o of objects) {
    const target = path.resolve(dir, ...o.key.split('/'));
    if (!target.startsWith(dir + path.sep)) {
      throw new PgStateError('INVALID_INPUT', `The key ${JSON.stringify(o.key)} would leave ${dir}.`, {
        fix: 'Remove the key from the store.',
      });
    }
    const body = await store.read(o.key);
    if (!body) continue; // deleted meanwhile
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, body);
    await fs.utimes(target, o.lastModified, o.lastModified);
    bytes += body.byteLength;
    done++;
    options.onProgress?.({ done, total: objects.length, key: o.key, bytes });
  }
  return { files: done, bytes };
}
