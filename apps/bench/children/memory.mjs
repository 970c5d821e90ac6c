// A child process whose peak RSS is measured: it writes one large object, through pgstate or as a bare INSERT,
// and reports its idle RSS (after start-up and one small warm-up write), its peak RSS and the write's duration.
// Plain JavaScript importing the packages' built dist, so no loader or compiler sits in the measured process.
//
//   node --expose-gc children/memory.mjs save-pgstate|save-raw URL FILE      -> one JSON line, then exits
//   node --expose-gc children/memory.mjs gateway URL                         -> line protocol on stdin/stdout:
//        prints {"url"}; "idle" -> {"idleRss"}; "exit" -> {"maxRss"} and exits. The parent does the PUTs.
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import { createPulumiBucketHandler, PulumiStateStore } from '@pgstate/pulumi';
import { createS3Gateway } from '@pgstate/s3-gateway';
import pg from 'pg';

const [mode, url, file] = process.argv.slice(2);
// Peak RSS of this process image. On Linux getrusage's maxRSS survives exec, so a child forked from a parent that
// holds large buffers would report the parent's size: read the memory map's own high-water mark (VmHWM) instead.
const maxRss = () => {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
};
const idleRss = () => {
  globalThis.gc?.();
  return process.memoryUsage().rss;
};
const say = (doc) => process.stdout.write(`${JSON.stringify(doc)}\n`);

if (mode === 'save-pgstate' || mode === 'save-raw') {
  let write;
  let close;
  if (mode === 'save-pgstate') {
    const store = new PulumiStateStore(url);
    await store.ensureMeta();
    write = (bytes) => store.saveCheckpoint('mem', 'dev', bytes);
    close = () => store.close();
  } else {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(
      'CREATE TABLE IF NOT EXISTS bench_raw_blobs (key text PRIMARY KEY, data bytea NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())',
    );
    write = (bytes) =>
      client.query(
        `INSERT INTO bench_raw_blobs (key, data, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at`,
        ['.pulumi/stacks/mem/dev.json', bytes],
      );
    close = () => client.end();
  }
  await write(Buffer.from('{"version":3,"checkpoint":{"stack":"organization/mem/dev","latest":{"resources":[]}}}'));
  const idle = idleRss();
  const bytes = fs.readFileSync(file);
  const start = performance.now();
  await write(bytes);
  const ms = performance.now() - start;
  await close();
  say({ idleRss: idle, maxRss: maxRss(), ms, objectBytes: bytes.byteLength });
} else if (mode === 'gateway') {
  const handler = createPulumiBucketHandler(url);
  const gateway = await createS3Gateway({
    buckets: { 'pulumi-state': handler },
    credentials: [{ accessKeyId: 'PGSTATEBENCH', secretAccessKey: 'bench-secret-not-a-real-one' }],
    logger: false,
  });
  say({ url: gateway.url });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'idle') say({ idleRss: idleRss() });
    if (line === 'peak') say({ maxRss: maxRss() });
    if (line === 'exit') break;
  }
  // The peak is behind us: report it before the graceful close, which waits for the client's idle connections.
  say({ maxRss: maxRss() });
  await gateway.close();
  await handler.close();
  process.exit(0); // stdin may still be open
} else {
  console.error(`memory.mjs: unknown mode ${mode}`);
  process.exit(2);
}
