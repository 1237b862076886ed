#!/usr/bin/env bash
# The first README command: set up, migrate, seed, create the first admin, serve on 127.0.0.1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
set -a; . ./.env.local; set +a
export FLASK_APP=wsgi.py
.venv/bin/flask db upgrade
.venv/bin/flask db seed
.venv/bin/flask users create-admin "${ADMIN_EMAIL:-admin@switchboard.local}" --if-none
PORT="${PORT:-8000}"
echo "Switchboard: http://127.0.0.1:${PORT}/  (sign in with the admin above; the password is printed only once)"
exec .venv/bin/gunicorn -c gunicorn.conf.py --bind "127.0.0.1:${PORT}" wsgi:app
