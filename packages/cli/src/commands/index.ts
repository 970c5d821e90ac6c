// The command registry: ONE line per command, in the order `pgstate --help` lists them.
// Each module exports `register(program, context)` (see ../../README.md, "Adding a command").

export { register as db } from './db.js';
export { register as doctor } from './doctor.js';
export { register as meltano } from './meltano.js';
export { register as migrate } from './migrate.js';
export { register as powersync } from './powersync.js';
export { register as pulumi } from './pulumi.js';
export { register as serve } from './serve.js';
