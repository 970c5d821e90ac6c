#!/usr/bin/env bash
# `npm run pgstate -- <command>` from a clone: the pgstate CLI built from this checkout, i.e. what `npx pgstate` runs
# once the package is installed from a registry. Installs the workspace (without peers) and builds the CLI on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$root/.tools/node_modules/.bin/pnpm" ] && export PATH="$root/.tools/node_modules/.bin:$PATH"
if [ ! -d "$root/node_modules/.pnpm" ] || ! command -v pnpm >/dev/null 2>&1; then
  PGSTATE_SKIP_PEERS=1 bash "$root/scripts/setup.sh" >&2
  [ -x "$root/.tools/node_modules/.bin/pnpm" ] && export PATH="$root/.tools/node_modules/.bin:$PATH"
fi
# Build the CLI and the packages it uses when it has never been built or a source changed since (e.g. after git pull).
bin="$root/packages/cli/dist/bin.js"
if [ ! -f "$bin" ] || [ -n "$(find "$root"/packages/*/src "$root"/packages/*/package.json -newer "$bin" -print -quit)" ]; then
  (cd "$root" && node_modules/.bin/turbo run build --filter=pgstate... --output-logs=errors-only >/dev/null) || {
    echo "pgstate: building the CLI failed; run 'pnpm build' in $root to see why" >&2
    exit 1
  }
  touch "$bin"
fi
# npm runs scripts from the repository root; relative paths in arguments are the user's, so run from where they were.
cd "${INIT_CWD:-$PWD}"
exec node "$bin" "$@"
