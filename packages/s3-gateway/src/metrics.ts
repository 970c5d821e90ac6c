/**
 * Prometheus metrics for a gateway, kept by prom-client on a registry of their own and served on a separate,
 * opt-in listener (never on the S3 port, so it needs no S3 credentials and can stay on an internal address).
 * Request figures come from the gateway's per-request log records; gauges are read when scraped.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PgStateError } from '@pgstate/core';
import type pg from 'pg';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './logger.js';
import type { S3Gateway } from './options.js';

export interface GatewayMetrics {
  readonly registry: Registry;
  /** A logger that counts each request record, then passes every record on to `next`. */
  logger(next: Logger): Logger;
  /** Reads the gateway's body budget and in-flight figures at each scrape. */
  observe(gateway: S3Gateway): void;
}

export function createGatewayMetrics(options: { pool?: pg.Pool; prefix?: string } = {}): GatewayMetrics {
  const prefix = options.prefix ?? 'pgstate_s3_';
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}process_` });
  const labelNames = ['operation', 'status'] as const;
  const requests = new Counter({
    name: `${prefix}requests_total`,
    help: 'S3 requests by operation and HTTP status',
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: `${prefix}request_duration_seconds`,
    help: 'S3 request latency by operation and HTTP status',
    labelNames,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const bytesIn = new Counter({
    name: `${prefix}received_bytes_total`,
    help: 'Bytes received on S3 requests (headers and bodies)',
    labelNames: ['operation'],
    registers: [registry],
  });
  const bytesOut = new Counter({
    name: `${prefix}sent_bytes_total`,
    help: 'Bytes sent in S3 responses (headers and bodies)',
    labelNames: ['operation'],
    registers: [registry],
  });
  let gateway: S3Gateway | undefined;
  const gauge = (name: string, help: string, read: () => number | undefined) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      registers: [registry],
      collect() {
        const value = read();
        if (value !== undefined) this.set(value);
      },
    });
  gauge('requests_in_flight', 'S3 requests being served', () => gateway?.stats().inFlightRequests);
  gauge(
    'body_budget_bytes',
    'Request-body bytes all requests may hold at once',
    () => gateway?.stats().bodyBytesBudget,
  );
  gauge('body_budget_used_bytes', 'Request-body bytes held now', () => gateway?.stats().bodyBytesHeld);
  gauge(
    'body_budget_waiting_requests',
    'Requests waiting for room in the body budget',
    () => gateway?.stats().requestsWaitingForBudget,
  );
  const pool = options.pool;
  if (pool) {
    gauge('pool_connections', 'PostgreSQL connections open in the pool', () => pool.totalCount);
    gauge('pool_connections_idle', 'PostgreSQL connections idle in the pool', () => pool.idleCount);
    gauge('pool_connections_in_use', 'PostgreSQL connections checked out', () => pool.totalCount - pool.idleCount);
    gauge('pool_waiting_requests', 'Callers waiting for a PostgreSQL connection', () => pool.waitingCount);
  }
  return {
    registry,
    logger(next) {
      return (record) => {
        if (record.msg === 'request' && typeof record.operation === 'string') {
          const labels = { operation: record.operation, status: String(record.status) };
          requests.inc(labels);
          if (typeof record.ms === 'number') duration.observe(labels, record.ms / 1000);
          if (typeof record.bytesIn === 'number') bytesIn.inc({ operation: record.operation }, record.bytesIn);
          if (typeof record.bytesOut === 'number') bytesOut.inc({ operation: record.operation }, record.bytesOut);
        }
        next(record);
      };
    },
    observe(g) {
      gateway = g;
    },
  };
}

export interface MetricsListener {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `GET /metrics` (Prometheus text format) on its own address; everything else is 404. */
export async function startMetricsListener(
  metrics: GatewayMetrics,
  listen: { host?: string; port?: number } = {},
): Promise<MetricsListener> {
  const host = listen.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new PgStateError('BAD_SETTING', `Cannot serve metrics on ${host}:${listen.port}: the port is in use.`, {
              fix: 'Choose another metrics port.',
            })
          : error,
      ),
    );
    server.listen(listen.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
