export * from './adapter.js';
export * from './advisory.js';
export * from './bucket-handler.js';
export {
  clientClassFor,
  clientConfig,
  connectClient,
  connectedHost,
  createPool,
  isFailoverError,
  poolConfig,
  type RetryOptions,
  settingsForHost,
  settingsOf,
  tlsAttempts,
  tlsOptions,
  withClient,
  withRetry,
} from './client.js';
export * from './cluster.js';
export {
  isConnectionLoss,
  isConnectionProblem,
  redactSecrets,
  sanitizeError,
  toPgStateError,
} from './connection-errors.js';
export * from './errors.js';
export * from './health.js';
export * from './identifiers.js';
export * from './lease.js';
export { parseConnectionSettings } from './parse.js';
export * from './pg-errors.js';
export { lookupPgpass, type PgpassQuery, type PgpassResult } from './pgpass.js';
export * from './settings.js';
export { withoutSqlAlchemyDriver } from './sqlalchemy.js';
export * from './transaction.js';
