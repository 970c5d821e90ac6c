export * from './bucket-handler.js';
export * from './cluster.js';
export * from './errors.js';
export * from './identifiers.js';
export { createPool, parseConnectionSettings, poolConfig } from './parse.js';
export * from './settings.js';
