#!/bin/bash
# Entrypoint of the pgstate-conformance/postgres:<major> images that scripts/peers/postgres-containers.sh builds from
# the embedded-postgres binaries. Same contract as the official postgres image, on which testcontainers' PostgreSQL
# module relies: on first start POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB create the cluster in $PGDATA (a
# volume, so it survives a restart); `postgres [args]` then runs the server as the postgres user with those args.
# Written with bash builtins and the few binaries the image carries (initdb, postgres, chown, chmod, setpriv).
set -euo pipefail

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

if [ "$EUID" = 0 ]; then
  # A fresh volume belongs to root: hand it to postgres, then run this script again as postgres.
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint: POSTGRES_PASSWORD is required (the server accepts password logins from outside)" >&2
    exit 1
  fi
  # The password goes through a pipe, never a file in the image or the volume.
  initdb --pgdata="$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C >/dev/null
  printf '%s\n' 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  printf '%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "${db//\"/\"\"}" | postgres --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "entrypoint: initialized $PGDATA (user $user, database $db)"
fi
exec "$@"
