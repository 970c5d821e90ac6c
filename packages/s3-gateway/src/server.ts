/**
 * Server lifecycle: an S3-compatible HTTP endpoint whose buckets are served by `BucketHandler`s (the adapters' view of
 * their tables). This module owns the listener, per-request bookkeeping (request ids, logs, the body budget, in-flight
 * count), the probes and graceful close; what a request means is decided in ./routing.ts and ./operations/. The
 * gateway keeps no state of its own in memory, so any number of gateways may serve one database.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { PgStateError } from '@pgstate/core';
import { BodyBudget } from './body-budget.js';
import { createGatewayContext } from './context.js';
import { toS3Error } from './errors.js';
import { jsonStderrLogger, type Logger, silentLogger } from './logger.js';
import { dispatch } from './operations/index.js';
import type { S3Gateway, S3GatewayOptions } from './options.js';
import { send } from './responses.js';
import { BUCKET_NAME, operationOf, PROBE_PATHS, type Route, route } from './routing.js';
import { verifyRequest } from './sigv4.js';
import { s3Xml } from './xml.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/** Whether a listen address is reachable only from this machine (the only place an open gateway may listen). */
export const isLoopbackHost = (host: string): boolean => LOOPBACK.test(host);

export async function createS3Gateway(options: S3GatewayOptions): Promise<S3Gateway> {
  const host = options.host ?? '127.0.0.1';
  const log: Logger = options.logger === false ? silentLogger : (options.logger ?? jsonStderrLogger);
  const now = options.now ?? (() => new Date());
  /** Per request: the budget it holds (given back when it ends) and whether its client went away. */
  const held = new WeakMap<IncomingMessage, { releases: Array<() => void>; gone: AbortController }>();
  const ctx = createGatewayContext({
    buckets: options.buckets,
    credentials: options.credentials,
    limits: options.limits,
    uploads: options.uploads,
    reserveFor: (req) => async (bytes) => {
      const state = held.get(req);
      if (!state) return;
      state.releases.push(await budget.acquire(bytes, limits.bodyWaitMs, state.gone.signal));
    },
  });
  const limits = ctx.limits;
  if (ctx.credentials.size === 0 && !isLoopbackHost(host)) {
    throw new PgStateError('BAD_SETTING', `Refusing to listen on ${host} without access keys.`, {
      fix: 'Give the gateway credentials (an access key id and its secret), or listen on a loopback address.',
    });
  }
  for (const name of Object.keys(options.buckets)) {
    if (PROBE_PATHS.has(`/${name}`)) {
      throw new PgStateError('BAD_SETTING', `"${name}" is reserved: /${name} is the gateway's own probe endpoint.`, {
        fix: 'Give the bucket another name.',
      });
    }
    if (!BUCKET_NAME.test(name) || name.includes('..')) {
      throw new PgStateError('BAD_SETTING', `"${name}" is not a valid S3 bucket name.`, {
        fix: 'Use 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit.',
      });
    }
  }
  const budget = new BodyBudget(limits.maxBodyBytesInFlight);
  let inFlight = 0;
  /** Set by close(): new requests are refused (503) and /ready reports not ready while in-flight ones finish. */
  let closingNow = false;
  let idleWaiters: Array<() => void> = [];

  /**
   * Bytes the request's connection moved since the previous request on it ended (headers included: Node reads them,
   * often with the whole body, before the handler runs).
   */
  const accounted = new WeakMap<object, { read: number; written: number }>();
  function socketBytes(req: IncomingMessage): { bytesIn: number; bytesOut: number } {
    // Node detaches the socket from a request whose connection was destroyed.
    const socket = req.socket as IncomingMessage['socket'] | null;
    if (!socket) return { bytesIn: 0, bytesOut: 0 };
    const before = accounted.get(socket) ?? { read: 0, written: 0 };
    const now = { read: socket.bytesRead, written: socket.bytesWritten };
    accounted.set(socket, now);
    return { bytesIn: now.read - before.read, bytesOut: now.written - before.written };
  }

  /** `/health`: the process answers. `/ready`: `options.readiness` says it can serve. Bodies say nothing more. */
  async function probe(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    req.resume();
    let ok = true;
    if (path === '/ready') {
      ok = !closingNow && (await (options.readiness?.() ?? Promise.resolve(true)).catch(() => false));
    }
    res.setHeader('Cache-Control', 'no-store');
    send(res, ok ? 200 : 503, req.method === 'HEAD' ? undefined : Buffer.from(ok ? 'ok\n' : 'not ready\n'), {
      'Content-Type': 'text/plain',
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if ((req.method === 'GET' || req.method === 'HEAD') && PROBE_PATHS.has(req.url ?? '')) {
      return probe(req, res, req.url!);
    }
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const started = process.hrtime.bigint();
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', requestId);
    res.setHeader('Server', 'pgstate');
    if (closingNow) {
      // Shutting down: refuse new work so a load balancer moves on; in-flight requests still finish.
      res.setHeader('Connection', 'close');
      req.resume();
      send(
        res,
        503,
        s3Xml(
          'Error',
          { Code: 'ServiceUnavailable', Message: 'The server is shutting down.', RequestId: requestId },
          false,
        ),
      );
      return;
    }
    inFlight++;
    const state = { releases: [] as Array<() => void>, gone: new AbortController() };
    held.set(req, state);
    res.once('close', () => state.gone.abort());
    let r: Route | undefined;
    let accessKeyId: string | undefined;
    let payload: string | undefined;
    let errorCode: string | undefined;
    let operation = 'Other';
    try {
      r = route(req, (name) => ctx.buckets.has(name));
      operation = operationOf(r, req.headers['x-amz-copy-source'] !== undefined);
      const auth = verifyRequest(
        { method: r.method, rawPath: r.rawPath, query: r.queryList, headers: req.headers },
        { credentials: ctx.credentials, now: now(), maxSkewMs: limits.maxClockSkewMs },
      );
      accessKeyId = auth.accessKeyId;
      // Which body framing the client chose (aws-chunked variants) helps when a client misbehaves.
      if (auth.payloadHash.startsWith('STREAMING-')) payload = auth.payloadHash;
      await dispatch(ctx, req, res, r, auth);
    } catch (error) {
      const e = toS3Error(error, r?.key);
      if (e.status >= 500 && e.status !== 501) {
        log({
          level: 'error',
          msg: 'request failed',
          requestId,
          error: error instanceof Error ? error.message : String(error),
          code: (error as { code?: unknown })?.code,
        });
      }
      if (!res.headersSent && !res.destroyed) {
        // A body we did not read may still be on the wire: close the connection rather than drain it. SlowDown is
        // the exception: the client did nothing wrong and should read this answer, so its body is discarded unread.
        if (e.code === 'SlowDown') req.resume();
        else if (!req.complete) res.setHeader('Connection', 'close');
        const document =
          r?.method === 'HEAD'
            ? undefined
            : s3Xml(
                'Error',
                {
                  Code: e.code,
                  Message: e.message,
                  ...e.details,
                  Resource: r ? `/${r.bucket ?? ''}${r.key ? `/${r.key}` : ''}` : undefined,
                  RequestId: requestId,
                },
                false,
              );
        send(res, e.status, document);
      } else if (!res.writableEnded) {
        res.destroy();
      }
      errorCode = e.code;
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log({
        level: res.statusCode >= 500 ? 'error' : 'info',
        msg: 'request',
        requestId,
        operation,
        method: req.method,
        bucket: r?.bucket,
        key: r?.key,
        status: res.statusCode,
        code: errorCode,
        accessKeyId,
        payload,
        ms: Math.round(ms * 10) / 10,
        ...socketBytes(req),
      });
      for (const release of state.releases) release();
      inFlight--;
      if (inFlight === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  const serverOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: 5_000,
  };
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      // A bug must cost one request, never the process (an unhandled rejection would end it).
      log({
        level: 'error',
        msg: 'request handler failed',
        error: error instanceof Error ? error.message : String(error),
      });
      if (!res.headersSent && !res.destroyed) send(res, 500, undefined);
      else res.destroy();
    });
  };
  const server = options.tls
    ? https.createServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key }, listener)
    : http.createServer(serverOptions, listener);
  // Answer `Expect: 100-continue` only once auth and size checks passed (readBody calls writeContinue).
  server.on('checkContinue', listener);
  server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
  server.on('clientError', (error, socket) => {
    const code = (error as { code?: string }).code;
    if (socket.writable && !socket.destroyed) {
      const status =
        code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(error, host, options.port ?? 0)));
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `${options.tls ? 'https' : 'http'}://${urlHost}:${port}`;
  log({
    level: 'info',
    msg: 'listening',
    url,
    buckets: [...ctx.buckets.keys()],
    authentication: ctx.credentials.size ? 'sigv4' : 'open',
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    stats: () => ({
      inFlightRequests: inFlight,
      bodyBytesHeld: budget.inUse,
      bodyBytesBudget: budget.limit,
      requestsWaitingForBudget: budget.waiting,
    }),
    close() {
      closingNow = true;
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (inFlight > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise<void>((resolve) => idleWaiters.push(resolve)),
            new Promise<void>((resolve) => {
              timer = setTimeout(resolve, limits.shutdownGraceMs);
            }),
          ]);
          clearTimeout(timer);
        }
        server.closeAllConnections();
        await closed;
        log({ level: 'info', msg: 'closed', url });
      })();
      return closing;
    },
  };
}

/** A listen failure users can act on: the port is taken, or not ours to take. */
function listenError(error: NodeJS.ErrnoException, host: string, port: number): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (error.code === 'EADDRINUSE') {
    return new PgStateError('BAD_SETTING', `Cannot listen on ${where}: the port is already in use.`, {
      fix: 'Stop the process using it, or choose another port (port 0 takes any free one).',
    });
  }
  if (error.code === 'EACCES') {
    return new PgStateError(
      'BAD_SETTING',
      `Cannot listen on ${where}: permission denied (ports below 1024 need privileges).`,
      {
        fix: 'Choose a port above 1023.',
      },
    );
  }
  if (error.code === 'EADDRNOTAVAIL') {
    return new PgStateError('BAD_SETTING', `Cannot listen on ${where}: no such address on this machine.`, {
      fix: 'Listen on an address of this machine, e.g. 127.0.0.1 or 0.0.0.0.',
    });
  }
  return error;
}
