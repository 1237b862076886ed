#!/usr/bin/env bash
# The first README command: set up, migrate, seed, create the first admin, start the local model engine (a child
# it supervises; LOCAL_MODEL=off to skip it), serve on 127.0.0.1.
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
export PORT
if [[ "${LOCAL_MODEL:-on}" != "off" ]]; then
  LOCAL_MODEL_PORT="${LOCAL_MODEL_PORT:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  export LOCAL_MODEL_PORT
  if .venv/bin/python -m webapp.local_engine setup; then
    # The supervisor's parent is this shell, which becomes gunicorn below: when gunicorn exits, the supervisor
    # notices, stops the engine and exits (Ctrl-C and SIGTERM to the group stop it directly).
    .venv/bin/python -m webapp.local_engine serve &
  else
    echo "local model: could not be registered (see above); serving without it"
  fi
else
  echo "local model: off (LOCAL_MODEL=off)"
fi
# Email (issue 16): without SMTP_URL, a local SMTP sink keeps every message in .local/mail/*.eml (listed for admins
# at /admin/dev/mail) and nothing leaves the machine. The notification worker delivers email and webhooks from the
# event outbox; both exit when gunicorn (this shell, after exec) does.
if [[ -z "${SMTP_URL:-}" ]]; then
  MAIL_SINK_PORT="${MAIL_SINK_PORT:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  export SMTP_URL="smtp://127.0.0.1:${MAIL_SINK_PORT}?starttls=false" MAIL_SINK_DIR="${ROOT}/.local/mail"
  .venv/bin/python -m webapp.notify.sink --dir "$MAIL_SINK_DIR" --port "$MAIL_SINK_PORT" &
  echo "email: local sink, nothing leaves this machine (${MAIL_SINK_DIR}; admins: /admin/dev/mail)"
else
  echo "email: sent through SMTP_URL"
fi
.venv/bin/python -m webapp.notify.worker --exit-with-parent &
echo "Switchboard: http://127.0.0.1:${PORT}/  (sign in with the admin above; the password is printed only once)"
exec .venv/bin/gunicorn -c gunicorn.conf.py --bind "127.0.0.1:${PORT}" wsgi:app
