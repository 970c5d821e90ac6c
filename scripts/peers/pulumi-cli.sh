#!/usr/bin/env bash
# Builds the stock Pulumi CLI from the Go module proxy (the npm `pulumi` package downloads the CLI from a host we
# cannot reach). `go install .../cmd/pulumi@vX` fails because pkg/go.mod has replace directives, so the CLI is added
# as a Go tool of a throwaway consumer module, which ignores dependency replaces (Go >= 1.24). Idempotent: a binary
# that already reports the pinned version is kept. Takes minutes on 2 cores the first time.
set -euo pipefail
VERSION="${PGSTATE_PULUMI_CLI_VERSION:-3.259.0}"
PEERS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}"
MOD="$PEERS/pulumi-cli-build"
BIN="$PEERS/bin/pulumi"

if [ -x "$BIN" ] && "$BIN" version 2>/dev/null | grep -qx "v$VERSION"; then
  echo "pulumi-cli: $BIN v$VERSION already built"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "pulumi-cli: no Go toolchain on PATH; the Pulumi CLI lane will not run" >&2
  exit 1
fi
mkdir -p "$MOD" "$PEERS/bin"
cd "$MOD"
[ -f go.mod ] || go mod init pgstate.local/pulumi-cli-build >/dev/null 2>&1
go get -tool "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$VERSION"
# The version string is normally stamped by Pulumi's release build; stamp it the same way so `pulumi version` and the
# Automation API's minimum-version check see the real number.
go build -trimpath \
  -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION" \
  -o "$BIN.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$BIN.tmp" "$BIN"
echo "pulumi-cli: built $BIN ($("$BIN" version))"
