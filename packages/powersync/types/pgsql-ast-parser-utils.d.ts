// @powersync/service-sync-rules' .d.ts files import a type from pgsql-ast-parser's TypeScript sources, which this
// repo's strict settings reject; this stands in for that one type.
export type nil = null | undefined;
