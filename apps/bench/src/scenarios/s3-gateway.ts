/**
 * @pgstate/s3-gateway (issue 6): PutObject / GetObject through the gateway (AWS SDK v3 client, SigV4, the Pulumi
 * bucket handler, in this process) against the raw table insert / select of the same bytes on a bare connection.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createPulumiBucketHandler } from '@pgstate/pulumi';
import { createS3Gateway } from '@pgstate/s3-gateway';
import { checkpointBytes, MB, rawClient, rawGet, rawPut } from '../fixtures.js';
import type { Prepared, Scenario } from '../harness.js';

const BUCKET = 'pulumi-state';
const KEY = '.pulumi/stacks/bench/dev.json';
const CREDENTIALS = { accessKeyId: 'PGSTATEBENCH', secretAccessKey: 'bench-secret-not-a-real-one' };

/** A gateway over the Pulumi handler plus an SDK client for it; what both directions of the scenario need. */
export async function startGateway(url: string) {
  const handler = createPulumiBucketHandler(url);
  const gateway = await createS3Gateway({
    buckets: { [BUCKET]: handler },
    credentials: [CREDENTIALS],
    logger: false,
  });
  const s3 = new S3Client({
    endpoint: gateway.url,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: CREDENTIALS,
  });
  return {
    s3,
    async close() {
      s3.destroy();
      await gateway.close();
      await handler.close?.();
    },
  };
}

function objectScenario(direction: 'PutObject' | 'GetObject', megabytes: number, quickBytes: number): Scenario {
  return {
    suite: 's3-gateway',
    name: `${direction} ${megabytes} MB`,
    goal: {
      text: `within 1.5x of the raw table ${direction === 'PutObject' ? 'insert' : 'select'} of the same bytes`,
      maxRatio: 1.5,
    },
    runs: megabytes >= 50 ? 5 : 7,
    warmups: megabytes >= 50 ? 1 : 2,
    async prepare({ url, quick }): Promise<Prepared> {
      const body = checkpointBytes('bench', 'dev', quick ? quickBytes : megabytes * MB);
      const gw = await startGateway(url);
      const raw = await rawClient(url);
      const put = () => gw.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: KEY, Body: body }));
      await put();
      await rawPut(raw, KEY, body);
      const common = {
        units: { objectBytes: 'bytes' as const },
        extras: async () => ({ objectBytes: body.byteLength }),
        async teardown() {
          await gw.close();
          await raw.end();
        },
      };
      if (direction === 'PutObject') {
        return {
          candidate: {
            label: 'S3 PutObject via gateway (SDK, SigV4)',
            run: async () => {
              await put();
            },
          },
          baseline: { label: 'bare INSERT ... ON CONFLICT (pg.Client)', run: () => rawPut(raw, KEY, body) },
          ...common,
        };
      }
      return {
        candidate: {
          label: 'S3 GetObject via gateway (SDK, SigV4)',
          run: async () => {
            const res = await gw.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: KEY }));
            const got = await res.Body!.transformToByteArray();
            if (got.byteLength !== body.byteLength) throw new Error(`GetObject returned ${got.byteLength} bytes`);
          },
        },
        baseline: {
          label: 'bare SELECT data (pg.Client)',
          run: async () => {
            await rawGet(raw, KEY);
          },
        },
        ...common,
      };
    },
  };
}

export const s3GatewayScenarios: Scenario[] = [
  objectScenario('PutObject', 1, 64 * 1024),
  objectScenario('PutObject', 50, 256 * 1024),
  objectScenario('GetObject', 1, 64 * 1024),
  objectScenario('GetObject', 50, 256 * 1024),
];
