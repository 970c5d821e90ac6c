#!/usr/bin/env bash
# Idempotent setup for a machine that has only Node.js and npm: the pinned pnpm (installed with npm, because
# corepack cannot verify signatures on this registry), the workspace's dependencies, then the real peers the
# conformance lanes use (each optional: a peer that cannot be installed is reported as "not run" by the suite).
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm $PNPM_VERSION with npm"
  if ! npm install -g "pnpm@$PNPM_VERSION" >/dev/null 2>&1; then
    # No write access to the global prefix: keep pnpm inside the checkout instead.
    npm install --prefix .tools "pnpm@$PNPM_VERSION" >/dev/null
    export PATH="$PWD/.tools/node_modules/.bin:$PATH"
  fi
fi
[ -x .tools/node_modules/.bin/pnpm ] && export PATH="$PWD/.tools/node_modules/.bin:$PATH"

if [ "${CI:-}" = "true" ]; then
  pnpm install --frozen-lockfile --reporter=append-only
else
  pnpm install --reporter=append-only
fi

if [ "${PGSTATE_SKIP_PEERS:-}" != "1" ]; then
  bash scripts/setup-peers.sh || echo "setup: some peers could not be installed; their lanes will be reported as not run"
fi
