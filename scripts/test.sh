#!/usr/bin/env bash
# The second README command: set up the same way, then run the whole suite against a fresh test database.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
if [ "${SWITCHBOARD_SKIP_LLAMA:-0}" != 1 ]; then
  bash scripts/build_llama.sh .venv
  export SWITCHBOARD_REQUIRE_LLAMA=1
fi
export TIKTOKEN_CACHE_DIR="$ROOT/.local/tiktoken"
exec .venv/bin/pytest "$@"
