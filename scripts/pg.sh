#!/usr/bin/env bash
# Start (or reuse) a private PostgreSQL cluster inside the project folder.
# initdb/postgres refuse to run as root, so the cluster belongs to the `postgres` OS user.
# Prints nothing on success; writes .local/pg.env with PG_PORT and PG_SUPERPASS.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.local"
DATA="$STATE/pgdata"
mkdir -p "$STATE"

find_bin() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return; }
  return 1
}
if ! BIN="$(find_bin)"; then
  echo "PostgreSQL not found; installing Debian's postgresql" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || \
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
  BIN="$(find_bin)"
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

if [ ! -f "$STATE/pg.env" ]; then
  PASS="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  printf 'PG_PORT=%s\nPG_SUPERPASS=%s\n' "$PORT" "$PASS" > "$STATE/pg.env"
  chmod 600 "$STATE/pg.env"
fi
# shellcheck disable=SC1091
. "$STATE/pg.env"

if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE"; then
  # A parent folder (e.g. /root) is closed to the postgres user: keep the cluster in a folder it can reach,
  # named after this project's path so two checkouts never share one.
  DATA="/var/tmp/switchboard-pg-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
  echo "note: $STATE is not reachable by the postgres user; the cluster lives in $DATA" >&2
fi
echo "$DATA" > "$STATE/pgdata.path"
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"; mkdir -p "$DATA"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DATA"; fi
  PWFILE="$(mktemp)"; printf '%s\n' "$PG_SUPERPASS" > "$PWFILE"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PWFILE"; fi
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$PWFILE" --auth-local=scram-sha-256 \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$PWFILE"
  cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
synchronous_commit = off
CONF
fi

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 30 start >/dev/null
fi
