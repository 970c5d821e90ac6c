/** The pgstate command line as a library: for tests, wrappers and the packages that add subcommands. */
export type { CommandContext, GlobalOptions, Pool } from './context.js';
export {
  destroyEmbeddedServer,
  type EmbeddedStatus,
  embeddedPaths,
  embeddedStatus,
  ensureEmbeddedServer,
  stopEmbeddedServer,
} from './embedded.js';
export { redact, toPgStateError, UsageError } from './errors.js';
export { EXIT, type ExitCode, exitCodeFor } from './exit-codes.js';
export { Output, type Progress, type Status } from './output.js';
export { createProgram, main, type RegisterCommand, withExamples } from './program.js';

export const packageName = 'pgstate';
