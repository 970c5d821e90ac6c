export type { ChecksumAlgorithm } from './checksums.js';
export { S3Error } from './errors.js';
export { jsonStderrLogger, type Logger, type LogRecord, silentLogger } from './logger.js';
export { createGatewayMetrics, type GatewayMetrics, type MetricsListener, startMetricsListener } from './metrics.js';
export {
  DEFAULT_LIMITS,
  type GatewayLimits,
  type GatewayStats,
  type S3Gateway,
  type S3GatewayOptions,
} from './options.js';
export { type PulumiBackend, type PulumiBackendOptions, startPulumiBackend } from './pulumi-backend.js';
export { createS3Gateway, isLoopbackHost } from './server.js';
export type { BucketAccess, Credential } from './sigv4.js';
