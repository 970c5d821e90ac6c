#!/usr/bin/env bash
# Installs the real peers the conformance lanes drive, outside the repository and idempotently. Every step may fail
# on a machine without the registry or the rights it needs; the suite then reports that lane as not run, with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PEERS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}"
mkdir -p "$PEERS"

# Debian packages: PgBouncer (transaction pooling lanes), S3 clients (gateway lanes), Chromium (report screenshots).
want=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || want+=(pgbouncer)
command -v s3cmd >/dev/null 2>&1 || want+=(s3cmd)
command -v rclone >/dev/null 2>&1 || want+=(rclone)
if [ ${#want[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-peers: apt-get install ${want[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}") >/dev/null 2>&1 \
      || echo "setup-peers: apt-get install ${want[*]} failed"
  else
    echo "setup-peers: missing ${want[*]} (not root or no apt-get); those lanes will not run"
  fi
fi
# Debian's pgbouncer package starts a system service on 6432; the suite runs its own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer >/dev/null 2>&1 || true; fi
pkill -x pgbouncer -u postgres >/dev/null 2>&1 || true

for f in scripts/peers/*.sh; do
  [ -e "$f" ] || continue
  PGSTATE_PEERS_DIR="$PEERS" bash "$f" || echo "setup-peers: $(basename "$f") failed"
done
exit 0
