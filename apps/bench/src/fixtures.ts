/**
 * Data shared by scenarios: Pulumi checkpoints of a chosen size that look like real ones (URNs, ids and hashes that
 * do not compress away), and the bare `pg` table every raw-SQL baseline writes to.
 */
import pg from 'pg';

export const MB = 1024 * 1024;

/** Deterministic pseudo-random hex (mulberry32), so every run writes the same bytes. */
function hexStream(seed: number): (chars: number) => string {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0).toString(16).padStart(8, '0');
  };
  return (chars) => {
    let out = '';
    while (out.length < chars) out += next();
    return out.slice(0, chars);
  };
}

/**
 * A versioned Pulumi checkpoint (`{version: 3, checkpoint: {stack, latest: {manifest, resources}}}`) of about
 * `bytes` bytes: resources with inputs/outputs like a cloud provider's (names, tags, ARNs, hashes).
 */
export function checkpointBytes(project: string, stack: string, bytes: number, seed = 1): Buffer {
  const hex = hexStream(seed);
  const resources: unknown[] = [];
  const stackUrn = `urn:pulumi:${stack}::${project}::pulumi:pulumi:Stack::${project}-${stack}`;
  resources.push({ urn: stackUrn, custom: false, type: 'pulumi:pulumi:Stack', outputs: {} });
  let size = 400;
  for (let i = 0; size < bytes; i++) {
    const name = `bucket-${i}`;
    const id = `${name}-${hex(7)}`;
    const r = {
      urn: `urn:pulumi:${stack}::${project}::aws:s3/bucketV2:BucketV2::${name}`,
      custom: true,
      id,
      type: 'aws:s3/bucketV2:BucketV2',
      inputs: {
        __defaults: ['bucket', 'forceDestroy'],
        bucket: id,
        forceDestroy: false,
        tags: { owner: 'platform-team', environment: stack, costCenter: `cc-${i % 17}`, commit: hex(40) },
      },
      outputs: {
        arn: `arn:aws:s3:::${id}`,
        bucket: id,
        bucketDomainName: `${id}.s3.amazonaws.com`,
        bucketRegionalDomainName: `${id}.s3.eu-west-1.amazonaws.com`,
        hostedZoneId: 'Z1BKCTXD74EZPE',
        id,
        region: 'eu-west-1',
        requestPayer: 'BucketOwner',
        serverSideEncryptionConfigurations: [
          { rules: [{ applyServerSideEncryptionByDefaults: [{ kmsMasterKeyId: '', sseAlgorithm: 'AES256' }] }] },
        ],
        tags: { owner: 'platform-team', environment: stack, costCenter: `cc-${i % 17}`, commit: hex(40) },
        versionings: [{ enabled: false, mfaDelete: false }],
        etag: hex(32),
      },
      parent: stackUrn,
      provider: `urn:pulumi:${stack}::${project}::pulumi:providers:aws::default_6_66_2::${hex(8)}-${hex(4)}-${hex(4)}-${hex(4)}-${hex(12)}`,
      propertyDependencies: { bucket: [], forceDestroy: [], tags: [] },
      created: '2026-01-02T03:04:05.678Z',
      modified: '2026-01-02T03:04:05.678Z',
    };
    resources.push(r);
    size += JSON.stringify(r).length + 1;
  }
  const doc = {
    version: 3,
    checkpoint: {
      stack: `organization/${project}/${stack}`,
      latest: {
        manifest: { time: '2026-01-02T03:04:05.678901Z', magic: hex(64), version: 'v3.259.0' },
        secrets_providers: { type: 'passphrase', state: { salt: `v1:${hex(16)}:v1:${hex(24)}:${hex(32)}` } },
        resources,
      },
    },
  };
  return Buffer.from(JSON.stringify(doc));
}

/** The seed's blob table, written by the bare baselines (same DDL as `@pgstate/pulumi`'s seed layout). */
export const RAW_TABLE = 'bench_raw_blobs';

export async function rawClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`CREATE TABLE IF NOT EXISTS ${RAW_TABLE} (
    key text PRIMARY KEY,
    data bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
  )`);
  return client;
}

/** The floor for writing one object: a single `INSERT ... ON CONFLICT` on a bare connection. */
export async function rawPut(client: pg.Client, key: string, body: Uint8Array): Promise<void> {
  await client.query(
    `INSERT INTO ${RAW_TABLE} (key, data, updated_at) VALUES ($1, $2, now())
     ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at`,
    [key, body],
  );
}

export async function rawGet(client: pg.Client, key: string): Promise<Buffer> {
  const { rows } = await client.query<{ data: Buffer }>(`SELECT data FROM ${RAW_TABLE} WHERE key = $1`, [key]);
  if (!rows[0]) throw new Error(`bench: ${key} is missing from ${RAW_TABLE}`);
  return rows[0].data;
}

export const sizeLabel = (bytes: number) =>
  bytes >= MB ? `${Math.round(bytes / MB)} MB` : `${Math.round(bytes / 1024)} KB`;
