/**
 * Checksums, replica-id keys and row encoding. Values here are part of the sync protocol (clients verify
 * checksums), so they follow PowerSync's definitions exactly.
 */
import { hash } from 'node:crypto';
import * as bson from 'bson';
import type { ReplicaId, SyncRuleState } from './types.js';

/** Namespace PowerSync uses for v5 UUIDs of row subkeys and replica identities. */
export const ID_NAMESPACE = 'a396dd91-09fc-4017-a28d-3df722f651e9';

/** PUT checksum: first 4 bytes (LE uint32) of sha256("put.<table>.<id>.<json>"). */
export function hashData(table: string, id: string, data: string): number {
  // One-shot hash(): no Hash object per op (the writer hashes every PUT).
  return hash('sha256', `put.${table}.${id}.${data}`, 'buffer').readUInt32LE(0);
}

/** REMOVE checksum: first 4 bytes (LE uint32) of sha256("delete.<subkey>"). */
export function hashDelete(subkey: string): number {
  return hash('sha256', `delete.${subkey}`, 'buffer').readUInt32LE(0);
}

/** Additive 32-bit checksum, in the signed representation upstream returns. */
export function addChecksums(a: number, b: number): number {
  return (a + b) & 0xffffffff;
}

const ID_NAMESPACE_BYTES = Buffer.from(ID_NAMESPACE.replace(/-/g, ''), 'hex');

/** The 16 bytes of the RFC 4122 version-5 UUID of `name` in `namespace`. */
function uuidV5Bytes(name: Uint8Array | string, namespace: string): Buffer {
  const ns = namespace === ID_NAMESPACE ? ID_NAMESPACE_BYTES : Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
  const digest = hash('sha1', Buffer.concat([ns, bytes]), 'buffer');
  digest[6] = (digest[6]! & 0x0f) | 0x50;
  digest[8] = (digest[8]! & 0x3f) | 0x80;
  return digest.subarray(0, 16);
}

/** RFC 4122 version-5 UUID of `name` in `namespace`. */
export function uuidV5(name: Uint8Array | string, namespace: string = ID_NAMESPACE): string {
  const hex = uuidV5Bytes(name, namespace).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** bson returns a Buffer on Node; wrap (never copy) whatever Uint8Array it gives. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** True for a BSON UUID, even from another copy of the bson package. */
export function isUUID(value: unknown): value is bson.UUID {
  if (value == null || typeof value !== 'object') return false;
  const v = value as { _bsontype?: string; sub_type?: number };
  return v._bsontype === 'Binary' && v.sub_type === bson.Binary.SUBTYPE_UUID;
}

function uuidHex(value: bson.UUID): string {
  const v = value as unknown as { toHexString?: () => string; buffer: Uint8Array };
  return typeof v.toHexString === 'function' ? v.toHexString() : Buffer.from(v.buffer).toString('hex');
}

/** Stored form of a replica id: BSON of `{id}`, so any BSON value (UUID, document, string) works. */
export function serializeReplicaId(id: ReplicaId): Buffer {
  return asBuffer(bson.serialize({ id }));
}

export function deserializeReplicaId(stored: Uint8Array): ReplicaId {
  return bson.deserialize(stored, { useBigInt64: true }).id;
}

export function replicaIdEquals(a: ReplicaId, b: ReplicaId): boolean {
  if (a === b) return true;
  if (typeof a === 'string' && typeof b === 'string') return a === b;
  if (a == null || b == null) return a == null && b == null;
  return serializeReplicaId(a).equals(serializeReplicaId(b));
}

/** The op subkey clients use to tell apart two source rows mapping to one (table, id). */
export function replicaIdToSubkey(tableId: string, id: ReplicaId): string {
  if (isUUID(id)) return `${tableId}/${uuidHex(id)}`;
  return uuidV5(bson.serialize({ table: tableId, id }));
}

/** Prefix of the stored form of `{id: <UUID>}`: size 30, binary element "id", length 16, subtype 4. */
const STORED_UUID_PREFIX = Buffer.from('1e000000056964001000000004', 'hex');

/**
 * `replicaIdToSubkey` of a stored replica id. UUID ids (what PowerSync's Postgres replicator produces) are read
 * straight from their fixed BSON layout; anything else is decoded.
 */
export function subkeyOfStoredKey(tableId: string, stored: Buffer): string {
  if (stored.byteLength === 30 && stored[29] === 0 && stored.subarray(0, 13).equals(STORED_UUID_PREFIX)) {
    const hex = stored.toString('hex', 13, 29);
    return `${tableId}/${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  return replicaIdToSubkey(tableId, deserializeReplicaId(stored));
}

/** The replica id PowerSync's Postgres replicator derives from a row's identity columns. */
export function uuidForRow(identity: Record<string, unknown>): bson.UUID {
  return new bson.UUID(uuidV5Bytes(bson.serialize(identity), ID_NAMESPACE));
}

/**
 * Row data for TOAST merges: BSON keeps bigint / double / bytes apart, which JSON would not. TOASTed (undefined)
 * columns are left out, so they stay unknown after a round trip instead of turning into NULL.
 */
export function serializeRow(row: Record<string, unknown>): Buffer {
  return asBuffer(bson.serialize(row));
}

export function deserializeRow(stored: Uint8Array): Record<string, unknown> {
  const doc = bson.deserialize(stored, { useBigInt64: true, promoteBuffers: true });
  for (const [key, value] of Object.entries(doc)) {
    // bson returns Buffers for binary; sync rules want plain Uint8Array-compatible values, which Buffer is.
    if (value instanceof bson.Binary) doc[key] = Buffer.from(value.buffer);
  }
  return doc;
}

export const EMPTY_ROW = serializeRow({});

/** Lookup keys: JSONBig text of the normalized values (number-agnostic, as lookups must be). */
export function lookupKey(lookup: { serializedRepresentation: string }): Buffer {
  return Buffer.from(lookup.serializedRepresentation, 'utf8');
}

/** Merge TOASTed (`undefined`) columns of `record` from the persisted row. */
export function mergeToast<V>(
  record: Record<string, V | undefined>,
  persisted: Record<string, V | undefined>,
): Record<string, V | undefined> {
  const merged: Record<string, V | undefined> = {};
  for (const key in record) merged[key] = record[key] === undefined ? persisted[key] : record[key];
  return merged;
}

export function hasToastedValues(row: Record<string, unknown>): boolean {
  for (const key in row) if (row[key] === undefined) return true;
  return false;
}

/** Rough in-memory size of a row, for batch limits. */
export function estimateRowSize(row: Record<string, unknown> | undefined): number {
  if (row == null) return 12;
  let size = 0;
  for (const key in row) {
    const value = row[key];
    size += 12 + key.length;
    if (value == null) size += 4;
    else if (typeof value === 'string') size += value.length;
    else if (value instanceof Uint8Array) size += value.byteLength;
    else size += 8;
  }
  return size;
}

/** LSNs compare as byte strings, the same way upstream's varchar comparison does for its fixed-width LSNs. */
export function maxLsn(a: string | null | undefined, b: string | null | undefined): string | null {
  if (a == null) return b ?? null;
  if (b == null) return a;
  return a > b ? a : b;
}

export function isServingState(state: SyncRuleState | string): boolean {
  return state === 'ACTIVE' || state === 'ERRORED';
}
