#!/usr/bin/env bash
# The second README command: set up the same way, then run the whole suite against a fresh test database.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
if [ ! -x /usr/bin/chromium ] && [ "${SWITCHBOARD_NO_CHROMIUM:-0}" != 1 ]; then
  echo "installing Debian's chromium for the browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi

if [ "${SWITCHBOARD_SKIP_LLAMA:-0}" != 1 ]; then
  bash scripts/build_llama.sh .venv
  export SWITCHBOARD_REQUIRE_LLAMA=1
fi
export TIKTOKEN_CACHE_DIR="$ROOT/.local/tiktoken"
exec .venv/bin/pytest "$@"
