#!/usr/bin/env bash
# Runs the CLI tests that depend on where the checkout lives (pgstate's own server, the README quick start) from a copy
# under a private (0700) directory -- as a clone under root's home or in `mktemp -d` is -- so that passing does not
# depend on where CI happened to clone. As root, the postgres OS user cannot enter such a directory.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f packages/cli/dist/bin.js ] || { echo "check-private-dir: build first (pnpm build)" >&2; exit 1; }
dir=$(mktemp -d) # mode 0700
trap 'rm -rf "$dir"' EXIT
# Hard links when on the same file system (fast, nothing rebuilt), a full copy otherwise.
cp -al . "$dir/repo" 2>/dev/null || { rm -rf "$dir/repo"; cp -a . "$dir/repo"; }
echo "check-private-dir: CLI tests from $dir/repo (mode $(stat -c %a "$dir"))"
cd "$dir/repo/packages/cli"
pnpm exec vitest run test/embedded.test.ts test/quickstart.test.ts
