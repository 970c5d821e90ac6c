#!/usr/bin/env bash
# Installs stock Meltano (S3 extra for the gateway lane, postgres extra = psycopg 3 for the systemdb lane) in a
# throwaway venv outside the repository, for the Meltano conformance lanes. Idempotent: an existing venv with a 4.4.x meltano is kept as it is.
set -euo pipefail
PEERS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}"
VENV="$PEERS/meltano-venv"
SPEC='meltano[s3,postgres]==4.4.*'
mkdir -p "$PEERS"

if [ -x "$VENV/bin/meltano" ] && "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("meltano").startswith("4.4.") else 1)' 2>/dev/null \
  && "$VENV/bin/python" -c 'import boto3, psycopg' 2>/dev/null; then
  echo "meltano peer: $("$VENV/bin/meltano" --version) already in $VENV"
  exit 0
fi

PY="${PGSTATE_PYTHON:-$(command -v python3 || true)}"
if [ -z "$PY" ]; then
  echo "meltano peer: no python3 on PATH" >&2
  exit 1
fi
# Meltano 4.x needs Python >= 3.10.
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "meltano peer: $PY is older than 3.10" >&2
  exit 1
}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$SPEC"
echo "meltano peer: $("$VENV/bin/meltano" --version) installed in $VENV"
