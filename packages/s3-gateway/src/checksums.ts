import { createHash, type Hash } from 'node:crypto';
import zlib from 'node:zlib';

/** The flexible-checksum algorithms S3 clients send (`x-amz-checksum-<name>`) that the gateway verifies. */
export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'sha1' | 'sha256';
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['crc32', 'crc32c', 'sha1', 'sha256'];

// CRC-32C (Castagnoli) has no Node built-in; a table-driven version is plenty for state-sized objects.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

function crc32c(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

function uint32Base64(value: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b.toString('base64');
}

/** Incremental checksum in the base64 form S3 uses in `x-amz-checksum-*` headers. */
export interface Checksummer {
  update(data: Uint8Array): void;
  digest(): string;
}

export function createChecksummer(algorithm: ChecksumAlgorithm): Checksummer {
  if (algorithm === 'crc32' || algorithm === 'crc32c') {
    let value = 0;
    const step = algorithm === 'crc32' ? (d: Uint8Array, p: number) => zlib.crc32(d, p) : crc32c;
    return {
      update: (data) => {
        value = step(data, value);
      },
      digest: () => uint32Base64(value),
    };
  }
  const hash: Hash = createHash(algorithm);
  return {
    update: (data) => {
      hash.update(data);
    },
    digest: () => hash.digest('base64'),
  };
}

export function checksum(algorithm: ChecksumAlgorithm, data: Uint8Array): string {
  const c = createChecksummer(algorithm);
  c.update(data);
  return c.digest();
}

export function md5Hex(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
