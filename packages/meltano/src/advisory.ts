/**
 * The upstream meltano-state-backend-postgresql plugin's advisory-lock key: the first 8 bytes of MD5(state_id, UTF-8)
 * read as a big-endian signed 64-bit integer. Using the same key makes TypeScript and Python writers exclude each
 * other. (Kept here until `@pgstate/core` ships a shared helper.)
 */
import { createHash } from 'node:crypto';

export function meltanoAdvisoryKey(stateId: string): bigint {
  return createHash('md5').update(stateId, 'utf8').digest().readBigInt64BE(0);
}
