/**
 * A minimal PowerSync sync endpoint, for the conformance lane only: enough of the sync protocol for a real
 * `@powersync/node` client, driven entirely by @pgstate/powersync's reads (watchCheckpointChanges, getChecksums,
 * getBucketDataBatch, checkpoint.getParameterSets) and write checkpoints. Not a PowerSync service: no BSON, no
 * sync streams subscriptions, no priorities beyond what buckets declare.
 *
 *   POST /sync/stream          NDJSON lines: checkpoint, checkpoint_diff, data, checkpoint_complete, token_expires_in
 *   GET  /write-checkpoint2.json  {data: {write_checkpoint}}
 * Auth: `Authorization: Token <HS256 JWT>` with sub, iat, exp, aud.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  BucketDataRequest,
  PgStateSyncRulesStorage,
  ReplicationCheckpoint,
  SyncBucketData,
} from '@pgstate/powersync';
import { BaseJwtPayload, RequestParameters, type ResolvedBucket } from '@powersync/service-sync-rules';
import { jwtVerify, SignJWT } from 'jose';

export const AUDIENCE = 'pgstate-conformance';

export interface SyncEndpointOptions {
  /** The serving stream's storage (all reads go through it). */
  storage: () => PgStateSyncRulesStorage;
  /** The source database's current replication head, recorded with managed write checkpoints. */
  currentHead: () => Promise<string> | string;
  /** Ops per getBucketDataBatch call (small values make clients sync in many steps). */
  batchLimit?: number;
  /** Called after each data line is written; awaited before the next read (lets a test act mid-sync). */
  afterDataLine?: (info: { user: string; bucket: string; ops: number; checkpoint: bigint }) => Promise<void> | void;
}

export interface SyncEndpointStats {
  streams: number;
  dataLines: number;
  checkpointsCompleted: number;
  /** Checkpoints not completed because compaction moved ops beyond them (targetOp > checkpoint). */
  checkpointsInvalidated: number;
  writeCheckpoints: number;
}

export interface SyncEndpoint {
  url: string;
  stats: SyncEndpointStats;
  token(userId: string): Promise<string>;
  close(): Promise<void>;
}

export async function startSyncEndpoint(options: SyncEndpointOptions): Promise<SyncEndpoint> {
  const secret = new TextEncoder().encode(`conformance-secret-${process.pid}-${Math.random()}`);
  const stats: SyncEndpointStats = {
    streams: 0,
    dataLines: 0,
    checkpointsCompleted: 0,
    checkpointsInvalidated: 0,
    writeCheckpoints: 0,
  };
  const open = new Set<AbortController>();

  async function authenticate(req: IncomingMessage): Promise<Record<string, unknown> | null> {
    const header = req.headers.authorization ?? '';
    const match = /^Token (.+)$/.exec(header);
    if (!match) return null;
    try {
      const { payload } = await jwtVerify(match[1]!, secret, { audience: AUDIENCE });
      return typeof payload.sub === 'string' ? (payload as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: String(error?.message ?? error) }));
      } else {
        res.destroy(error);
      }
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const payload = await authenticate(req);
    if (payload == null) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'PSYNC_S2101', description: 'Authentication required' } }));
      return;
    }
    const user = payload.sub as string;
    if (req.method === 'GET' && url.pathname === '/write-checkpoint2.json') {
      const head = await options.currentHead();
      const created = await options.storage().createManagedWriteCheckpoints([{ user_id: user, heads: { '1': head } }]);
      stats.writeCheckpoints++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: { write_checkpoint: String(created.get(user)) } }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/sync/stream') {
      const body = JSON.parse(await readBody(req)) as SyncRequest;
      await streamSync(user, payload, body, req, res);
      return;
    }
    res.writeHead(404).end();
  }

  async function streamSync(
    user: string,
    payload: Record<string, unknown>,
    body: SyncRequest,
    req: IncomingMessage,
    res: ServerResponse,
  ) {
    stats.streams++;
    const abort = new AbortController();
    open.add(abort);
    res.on('close', () => abort.abort());
    req.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    const send = (line: unknown) => {
      if (!abort.signal.aborted) res.write(`${JSON.stringify(line)}\n`);
    };
    const storage = options.storage();
    const syncRules = storage.getParsedSyncRules({ defaultSchema: 'public' });
    const { querier } = syncRules.getBucketParameterQuerier({
      globalParameters: new RequestParameters(new BaseJwtPayload(payload), body.parameters ?? {}),
      hasDefaultStreams: body.streams?.include_defaults ?? true,
      streams: {},
    });
    // The client says where it is per bucket; everything else starts at 0.
    const positions = new Map<string, bigint>((body.buckets ?? []).map((b) => [b.name, BigInt(b.after)]));
    let sent: Map<string, { checksum: number; count: number }> | null = null;
    send({ token_expires_in: 3600 });
    try {
      for await (const update of storage.watchCheckpointChanges({ user_id: user, signal: abort.signal })) {
        const base = update.base;
        const buckets = await resolveBuckets(querier, base);
        const checksums = await storage.getChecksums(
          base,
          buckets.map((b) => ({ bucket: b.bucket, source: undefined as never })),
        );
        const described = buckets.map((b) => ({
          bucket: b.bucket,
          checksum: checksums.get(b.bucket)?.checksum ?? 0,
          count: checksums.get(b.bucket)?.count ?? 0,
          priority: b.priority,
        }));
        const writeCheckpoint = update.writeCheckpoint == null ? undefined : String(update.writeCheckpoint);
        if (sent == null) {
          send({
            checkpoint: { last_op_id: String(base.checkpoint), write_checkpoint: writeCheckpoint, buckets: described },
          });
        } else {
          const previous = sent;
          const updated = described.filter((d) => {
            const old = previous.get(d.bucket);
            return old == null || old.checksum !== d.checksum || old.count !== d.count;
          });
          const removed = [...previous.keys()].filter((name) => !described.some((d) => d.bucket === name));
          for (const name of removed) positions.delete(name);
          send({
            checkpoint_diff: {
              last_op_id: String(base.checkpoint),
              write_checkpoint: writeCheckpoint,
              updated_buckets: updated,
              removed_buckets: removed,
            },
          });
        }
        sent = new Map(described.map((d) => [d.bucket, { checksum: d.checksum, count: d.count }]));
        const complete = await sendData(user, storage, base, buckets, positions, send, abort.signal);
        if (abort.signal.aborted) return;
        if (complete) {
          stats.checkpointsCompleted++;
          send({ checkpoint_complete: { last_op_id: String(base.checkpoint) } });
        } else {
          // Compaction moved ops past this checkpoint: a newer one already exists and will follow.
          stats.checkpointsInvalidated++;
        }
      }
    } finally {
      open.delete(abort);
      if (!res.writableEnded) res.end();
    }
  }

  /** Sends every op up to the checkpoint; false when a chunk's targetOp is beyond it (do not complete it). */
  async function sendData(
    user: string,
    storage: PgStateSyncRulesStorage,
    base: ReplicationCheckpoint,
    buckets: ResolvedBucket[],
    positions: Map<string, bigint>,
    send: (line: unknown) => void,
    signal: AbortSignal,
  ): Promise<boolean> {
    let valid = true;
    for (;;) {
      const requests: BucketDataRequest[] = buckets.map((b) => ({
        bucket: b.bucket,
        start: positions.get(b.bucket) ?? 0n,
        source: undefined as never,
      }));
      let hasMore = false;
      for await (const { chunkData, targetOp } of storage.getBucketDataBatch(base, requests, {
        limit: options.batchLimit ?? 1000,
      })) {
        if (signal.aborted) return false;
        if (targetOp != null && targetOp > base.checkpoint) valid = false;
        positions.set(chunkData.bucket, BigInt(chunkData.next_after));
        if (chunkData.has_more) hasMore = true;
        if (chunkData.data.length === 0) continue;
        send({ data: asProtocol(chunkData) });
        stats.dataLines++;
        await options.afterDataLine?.({
          user,
          bucket: chunkData.bucket,
          ops: chunkData.data.length,
          checkpoint: base.checkpoint,
        });
      }
      if (!hasMore) return valid;
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    token: (userId) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(userId)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(secret),
    async close() {
      for (const abort of open) abort.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface SyncRequest {
  buckets?: { name: string; after: string }[];
  parameters?: Record<string, unknown>;
  streams?: { include_defaults?: boolean };
}

async function resolveBuckets(
  querier: ReturnType<
    ReturnType<PgStateSyncRulesStorage['getParsedSyncRules']>['getBucketParameterQuerier']
  >['querier'],
  base: ReplicationCheckpoint,
): Promise<ResolvedBucket[]> {
  const all = [...querier.staticBuckets];
  if (querier.hasDynamicBuckets) {
    all.push(
      ...(await querier.queryDynamicBucketDescriptions({ getParameterSets: (l) => base.getParameterSets(l, 1000) })),
    );
  }
  const unique = new Map(all.map((b) => [b.bucket, b]));
  return [...unique.values()];
}

/** Op ids and checksums exactly as the protocol carries them (data stays a JSON string: raw_data). */
function asProtocol(chunk: SyncBucketData) {
  return {
    bucket: chunk.bucket,
    after: chunk.after,
    next_after: chunk.next_after,
    has_more: chunk.has_more,
    data: chunk.data.map((op) => ({ ...op, checksum: Number(op.checksum) })),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}
