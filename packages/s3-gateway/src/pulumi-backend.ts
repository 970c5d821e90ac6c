/**
 * For Pulumi Automation API programs: an in-process S3 endpoint over a Pulumi bucket handler, plus the backend URL
 * and environment a `LocalWorkspace` needs to use it. It lives here, not in `@pgstate/pulumi`, because adapters do
 * not import the gateway; the caller passes the handler (e.g. `createPulumiBucketHandler` from `@pgstate/pulumi`).
 */
import { randomBytes } from 'node:crypto';
import type { BucketHandler } from '@pgstate/core';
import type pg from 'pg';
import type { Logger } from './logger.js';
import type { S3Gateway } from './options.js';
import { createS3Gateway } from './server.js';

export interface PulumiBackendOptions {
  /** The handler, or a factory whose handler the backend owns and closes on dispose. */
  handler: BucketHandler | (() => BucketHandler | Promise<BucketHandler>);
  /** Where multipart parts of large checkpoints (> 8 MiB) wait; without it such saves fail. */
  uploads?: { pool: pg.Pool; schema?: string };
  /** Bucket name in the backend URL. Default `pulumi-state`. */
  bucket?: string;
  /** Default: silent. */
  logger?: Logger | false;
}

export interface PulumiBackend {
  /** `s3://BUCKET?endpoint=http://127.0.0.1:PORT&s3ForcePathStyle=true` for `pulumi login` / `PULUMI_BACKEND_URL`. */
  readonly backendUrl: string;
  /**
   * Environment for the Pulumi CLI (`LocalWorkspace` `envVars`): the backend URL, per-run random access keys that
   * only this endpoint accepts, and the region.
   */
  readonly envVars: Record<string, string>;
  readonly gateway: S3Gateway;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startPulumiBackend(options: PulumiBackendOptions): Promise<PulumiBackend> {
  const bucket = options.bucket ?? 'pulumi-state';
  const owned = typeof options.handler === 'function';
  const handler = typeof options.handler === 'function' ? await options.handler() : options.handler;
  const accessKeyId = `PGSTATE${randomBytes(8).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(30).toString('base64url');
  let gateway: S3Gateway;
  try {
    gateway = await createS3Gateway({
      buckets: { [bucket]: handler },
      credentials: [{ accessKeyId, secretAccessKey }],
      uploads: options.uploads,
      logger: options.logger ?? false,
    });
  } catch (error) {
    if (owned) await handler.close?.();
    throw error;
  }
  const backendUrl = `s3://${bucket}?endpoint=${gateway.url}&s3ForcePathStyle=true`;
  const envVars = {
    PULUMI_BACKEND_URL: backendUrl,
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    // Static keys are given; never wait on an instance metadata endpoint.
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await gateway.close();
      if (owned) await handler.close?.();
    })();
    return closing;
  };
  return { backendUrl, envVars, gateway, close, [Symbol.asyncDispose]: close };
}
