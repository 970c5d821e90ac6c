#!/usr/bin/env bash
# Installs the real peers the conformance lanes drive, outside the repository and idempotently. Every step may fail
# on a machine without the registry or the rights it needs; the suite then reports that lane as not run, with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PEERS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}"
mkdir -p "$PEERS"

# Debian packages: PgBouncer (transaction pooling lanes) and S3 clients (gateway lanes). System packages are installed
# only in CI or when the user opts in (PGSTATE_INSTALL_PEERS=1); otherwise setup says what it would run.
want=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || want+=(pgbouncer)
command -v s3cmd >/dev/null 2>&1 || want+=(s3cmd)
command -v rclone >/dev/null 2>&1 || want+=(rclone)
if [ ${#want[@]} -gt 0 ]; then
  if [ "${CI:-}" != "true" ] && [ "${PGSTATE_INSTALL_PEERS:-}" != "1" ]; then
    echo "setup-peers: missing ${want[*]}; their conformance lanes will be reported NOT RUN."
    echo "setup-peers: to install them: sudo apt-get install ${want[*]}   (or rerun with PGSTATE_INSTALL_PEERS=1 as root)"
  elif [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-peers: apt-get install ${want[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}") >/dev/null 2>&1 \
      || echo "setup-peers: apt-get install ${want[*]} failed"
  else
    echo "setup-peers: missing ${want[*]} (not root or no apt-get); those lanes will not run"
  fi
fi
# The suite runs its own PgBouncer instances on free ports, so a system PgBouncer (Debian's package starts one on
# 6432) is left alone: setup never stops or kills what it did not start.

for f in scripts/peers/*.sh; do
  [ -e "$f" ] || continue
  PGSTATE_PEERS_DIR="$PEERS" bash "$f" || echo "setup-peers: $(basename "$f") failed"
done
exit 0
