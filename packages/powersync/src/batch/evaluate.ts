// Row evaluation through the sync rules: what a complete row stores in current_data and which bucket ops and
// parameter rows it produces. Pure with respect to storage, so `save()` runs it before the flush needs it.
import { PgStateError } from '@pgstate/core';
import { JSONBig } from '@powersync/service-jsonbig';
import { CustomSqliteValue, type HydratedSyncConfig, type SqliteRow } from '@powersync/service-sync-rules';
import { EMPTY_ROW, hashData, hasToastedValues, lookupKey, serializeRow } from '../encoding.js';
import type { SourceTable } from '../source-table.js';
import type { Logger } from '../types.js';
import type { EvaluatedAfter, ParameterOp, PutOp } from './record-operation.js';

/** Rows larger than this are replaced by an all-TOAST placeholder (upstream's limit, matching MongoDB's). */
const MAX_ROW_SIZE = 15 * 1024 * 1024;

/**
 * A row value the sync rules could not convert because another copy of @powersync/service-sync-rules made it (the
 * service's replicator builds timestamps and custom types with its own copy): it would be missing from every synced
 * row, silently. Refuse it instead (seen in the real service when the package had its own copy).
 */
export function assertOwnRowValues(table: SourceTable, row: Record<string, unknown> | undefined): void {
  if (row == null) return;
  for (const key in row) {
    const value = row[key] as { toSqliteValue?: unknown } | null | undefined;
    if (typeof value !== 'object' || value == null || typeof value.toSqliteValue !== 'function') continue;
    if (value instanceof CustomSqliteValue) continue;
    throw new PgStateError(
      'BAD_SETTING',
      `Column ${key} of ${table.qualifiedName} holds a value made by another copy of @powersync/service-sync-rules ` +
        'than the one @pgstate/powersync evaluates rows with; it would be missing from synced rows.',
      {
        fix: "Load one copy in the service: point @pgstate/powersync's @powersync/service-sync-rules (and service-jsonbig) at the service's own (see the package README, Docker).",
      },
    );
  }
}

/** Evaluates a complete (or to-be-stored-as-incomplete) row: its stored form, PUTs and parameter rows. */
export function evaluateRow(
  syncRules: HydratedSyncConfig,
  logger: Logger,
  table: SourceTable,
  after: Record<string, unknown>,
  storeCurrentData: boolean,
): EvaluatedAfter {
  let data: Buffer;
  if (!storeCurrentData) {
    data = EMPTY_ROW;
  } else {
    // BSON refuses a document past 16 MiB by throwing before the size check; like upstream, any row that cannot
    // be stored is kept as TOAST (all columns unknown) until a later change brings it back within limits.
    let serialized: Buffer | undefined;
    let tooLarge: string | undefined;
    try {
      serialized = serializeRow(after);
      if (serialized.byteLength > MAX_ROW_SIZE) tooLarge = `${serialized.byteLength} bytes`;
    } catch (error) {
      tooLarge = (error as Error).message;
    }
    if (serialized === undefined || tooLarge !== undefined) {
      logger.warn(`Row too large on ${table.qualifiedName} (${tooLarge}); stored as TOAST`);
      const placeholder = Object.fromEntries(Object.keys(after).map((k) => [k, undefined]));
      return { data: serializeRow(placeholder), complete: false, puts: [], parameters: [] };
    }
    data = serialized;
    // A re-applied transaction can leave a partial (TOASTed) row: keep current data, emit no ops until complete.
    if (hasToastedValues(after)) return { data, complete: false, puts: [], parameters: [] };
  }
  const row = after as SqliteRow;
  const puts: PutOp[] = [];
  const parameters: ParameterOp[] = [];
  if (table.syncData) {
    const { results, errors } = syncRules.evaluateRowWithErrors({
      record: row,
      sourceTable: table.ref,
      bucketDataSources: table.bucketDataSources,
    });
    for (const error of errors) {
      logger.error(`Failed to evaluate data query on ${table.qualifiedName}: ${error.error}`);
    }
    for (const e of results) {
      const json = JSONBig.stringify(e.data);
      puts.push({ bucket: e.bucket, table: e.table, id: e.id, data: json, checksum: hashData(e.table, e.id, json) });
    }
  }
  if (table.syncParameters) {
    const { results, errors } = syncRules.evaluateParameterRowWithErrors(table.ref, row, {
      parameterLookupSources: table.parameterLookupSources,
    });
    for (const error of errors) {
      logger.error(`Failed to evaluate parameter query on ${table.qualifiedName}: ${error.error}`);
    }
    for (const p of results) {
      parameters.push({ lookup: lookupKey(p.lookup), parameters: JSONBig.stringify(p.bucketParameters) });
    }
  }
  return { data, complete: true, puts, parameters };
}
