// Faults only a container gives, on a private container server of each version: `docker pause` (every server
// process frozen while its sockets stay open, as in a network partition) and `docker kill` + start with the data
// volume kept (a crash). Where this version does not come from a container, these lanes are NOT RUN.
import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createPool, parseConnectionSettings } from '@pgstate/core';
import { MeltanoStateStore } from '@pgstate/meltano';
import { createPulumiBucketHandler, PulumiStateStore } from '@pgstate/pulumi';
import { startPulumiBackend } from '@pgstate/s3-gateway';
import { migrate } from '@pgstate/schema';
import type pg from 'pg';
import { expect } from 'vitest';
import { defineConformance, type LaneTarget } from '../../src/kit.js';

const LANES = [{ name: 'container-faults', via: 'direct' as const }];
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same URL with a libpq connect_timeout: a client must give up on a frozen server by itself. */
function withConnectTimeout(lane: LaneTarget, seconds: number): string {
  const url = new URL(lane.url);
  url.searchParams.set('connect_timeout', String(seconds));
  return url.toString();
}

/** Runs `write(i)` for i = 0, 1, ... until stopped; returns the indexes the adapter acknowledged. */
function writer(write: (i: number) => Promise<unknown>) {
  const acked: number[] = [];
  const failed: string[] = [];
  let stop = false;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await write(i);
        acked.push(i);
      } catch (error) {
        failed.push((error as Error).message);
        await sleep(50);
      }
    }
  })();
  return {
    acked,
    failed,
    async until(n: number) {
      while (acked.length < n) await sleep(20);
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

defineConformance({
  adapter: '@pgstate/pulumi',
  lanes: LANES,
  setup: (admin) => migrate(admin, { adapter: 'pulumi' }),
  create: (lane) => new PulumiStateStore(lane.url),
  close: (store) => store.close(),
  probes: (admin: pg.Pool) => ({
    /** The checkpoint as stored, and its MD5 side row (both written by one statement, or neither). */
    async checkpoint(key: string) {
      const { rows } = await admin.query<{ md5: string; side: string | null }>(
        `SELECT md5(t.data) AS md5, o.md5 AS side FROM pulumi_state t LEFT JOIN pulumi_state_objects o USING (key)
          WHERE t.key = $1`,
        [key],
      );
      return rows[0];
    },
  }),
  tests({ test }) {
    test(
      'docker pause during a save through the S3 gateway: the client times out, nothing half-written, saves resume after unpause',
      async ({ lane, faults, probes, onCleanup }) => {
        const pool = createPool(parseConnectionSettings(lane.url));
        const backend = await startPulumiBackend({ handler: createPulumiBucketHandler({ pool }) });
        onCleanup(async () => {
          await backend.close();
          await pool.end();
        });
        const endpoint = new URL(backend.backendUrl).searchParams.get('endpoint') ?? '';
        const s3 = new S3Client({
          endpoint,
          region: backend.envVars.AWS_REGION ?? 'us-east-1',
          forcePathStyle: true,
          maxAttempts: 1,
          credentials: {
            accessKeyId: backend.envVars.AWS_ACCESS_KEY_ID ?? '',
            secretAccessKey: backend.envVars.AWS_SECRET_ACCESS_KEY ?? '',
          },
        });
        onCleanup(() => s3.destroy());
        const key = '.pulumi/stacks/app/dev.json';
        const checkpoint = (n: number) =>
          Buffer.from(JSON.stringify({ version: 3, deployment: { n, pad: 'x'.repeat(n * 1000) } }));
        const put = (body: Buffer, timeoutMs: number) =>
          s3.send(new PutObjectCommand({ Bucket: 'pulumi-state', Key: key, Body: body }), {
            abortSignal: AbortSignal.timeout(timeoutMs),
          });
        const [v1, v2, v3] = [checkpoint(1), checkpoint(2), checkpoint(3)];
        await put(v1, 30_000);

        await faults.pauseServer();
        let unpaused = false;
        try {
          // The save reaches the gateway, whose statement waits on the frozen server: the client's timeout fires.
          const error = await put(v2, 3000).then(
            () => undefined,
            (e: Error) => e,
          );
          expect(error?.name).toMatch(/AbortError|TimeoutError/);
        } finally {
          await faults.unpauseServer();
          unpaused = true;
        }
        expect(unpaused).toBe(true);
        // The abandoned save may still land once the server thaws, but only whole: the old or the new checkpoint.
        const stored = await probes.checkpoint(key);
        expect([md5(v1), md5(v2)]).toContain(stored?.md5);
        expect(stored?.side).toBe(stored?.md5);
        await put(v3, 30_000);
        const got = await s3.send(new GetObjectCommand({ Bucket: 'pulumi-state', Key: key }));
        expect(md5(Buffer.from(await got.Body!.transformToByteArray()))).toBe(md5(v3));
        expect(await probes.checkpoint(key)).toEqual({ md5: md5(v3), side: md5(v3) });
      },
      { privateServer: 'container', timeout: 180_000 },
    );

    test(
      'docker kill while saving, then start with the data volume: every acknowledged save is there',
      async ({ adapter, faults, probes }) => {
        const body = (i: number) => Buffer.from(`checkpoint ${i} `.repeat(200));
        const saves = writer((i) => adapter.blobs.put(`.pulumi/stacks/app/s${i}.json`, body(i)));
        await saves.until(10);
        await faults.restartServer('kill');
        const beforeRestart = saves.acked.length;
        await saves.until(beforeRestart + 5); // saves resume on the restarted server
        await saves.stop();
        for (const i of saves.acked) {
          expect(await probes.checkpoint(`.pulumi/stacks/app/s${i}.json`), `save ${i}`).toEqual({
            md5: md5(body(i)),
            side: md5(body(i)),
          });
        }
      },
      { privateServer: 'container', timeout: 180_000 },
    );
  },
});

defineConformance({
  adapter: '@pgstate/meltano',
  lanes: LANES,
  setup: (admin) => migrate(admin, { adapter: 'meltano', layout: 'seed' }),
  create: (lane) => new MeltanoStateStore({ url: lane.url, layout: 'seed' }),
  close: (store) => store.close(),
  probes: (admin: pg.Pool) => ({
    async bookmarks(stateId: string): Promise<Record<string, unknown>> {
      const store = new MeltanoStateStore({ pool: admin, layout: 'seed' });
      const view = await store.get(stateId);
      return ((view?.merged as { singer_state?: { bookmarks?: Record<string, unknown> } })?.singer_state?.bookmarks ??
        {}) as Record<string, unknown>;
    },
  }),
  tests({ test }) {
    test(
      'docker pause during a merge: a new connection times out cleanly, the merge in flight completes after unpause',
      async ({ adapter, lane, faults, probes }) => {
        const S = (bookmarks: Record<string, number>) => ({ singer_state: { bookmarks } });
        await adapter.merge('job', S({ a: 1 }));
        await faults.pauseServer();
        const inFlight = adapter.merge('job', S({ b: 2 }));
        const fresh = new MeltanoStateStore({ url: withConnectTimeout(lane, 2), layout: 'seed' });
        let error: Error | undefined;
        try {
          error = await fresh.merge('job', S({ c: 3 })).then(
            () => undefined,
            (e: Error) => e,
          );
        } finally {
          await faults.unpauseServer();
        }
        expect(error, 'a merge against a frozen server must fail by its own timeout').toBeDefined();
        expect(String(error)).not.toContain(new URL(lane.url).password);
        await inFlight;
        await fresh.merge('job', S({ c: 3 }));
        await fresh.close();
        // The failed merge wrote nothing; the one that waited out the freeze landed whole.
        expect(await probes.bookmarks('job')).toEqual({ a: 1, b: 2, c: 3 });
      },
      { privateServer: 'container', timeout: 180_000 },
    );

    test(
      'docker kill while merging, then start with the data volume: every acknowledged merge is there',
      async ({ adapter, faults, probes }) => {
        const merges = writer((i) => adapter.merge('job', { singer_state: { bookmarks: { [`k${i}`]: i } } }));
        await merges.until(10);
        await faults.restartServer('kill');
        const beforeRestart = merges.acked.length;
        await merges.until(beforeRestart + 5);
        await merges.stop();
        const bookmarks = await probes.bookmarks('job');
        for (const i of merges.acked) expect(bookmarks[`k${i}`], `merge ${i}`).toBe(i);
      },
      { privateServer: 'container', timeout: 180_000 },
    );
  },
});
