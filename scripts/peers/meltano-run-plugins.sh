#!/usr/bin/env bash
# Installs the extractor and loader of the `meltano run` lane from PyPI, each in its own venv outside the repository
# (what `meltano install` would do, without Meltano Hub): MeltanoLabs' tap-postgres (reads a table of the lane's
# database incrementally) and target-jsonl. Idempotent. Needs python3 >= 3.10 and PyPI.
set -euo pipefail
PLUGINS="${PGSTATE_PEERS_DIR:-$HOME/.cache/pgstate-peers}/meltano-plugins"
PY="${PGSTATE_PYTHON:-$(command -v python3 || true)}"
[ -n "$PY" ] || { echo "meltano plugins: no python3 on PATH" >&2; exit 1; }
mkdir -p "$PLUGINS"
install() { # name executable spec
  if [ -x "$PLUGINS/$1/bin/$2" ]; then echo "meltano plugins: $1 already in $PLUGINS/$1"; return; fi
  rm -rf "$PLUGINS/$1"
  "$PY" -m venv "$PLUGINS/$1"
  "$PLUGINS/$1/bin/python" -m pip install --quiet --upgrade pip
  "$PLUGINS/$1/bin/python" -m pip install --quiet "$3"
  echo "meltano plugins: $3 installed in $PLUGINS/$1"
}
install tap-postgres tap-postgres 'meltanolabs-tap-postgres==0.10.0'
install target-jsonl target-jsonl 'target-jsonl==0.1.4'
