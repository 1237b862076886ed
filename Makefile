.DEFAULT_GOAL := help
.PHONY: help run test lint bench bench-scale db-reset

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## set everything up (venv, Postgres, secrets, migrations, seed, first admin, local model; LOCAL_MODEL=off skips it) and serve on 127.0.0.1:8000
	bash scripts/run.sh

test: ## set up the same way and run the whole test suite
	bash scripts/test.sh

lint: ## ruff over the code
	.venv/bin/ruff check webapp tests scripts bench

bench: ## proxy overhead and throughput, Switchboard vs a bare pass-through (installs wrk, its load generator, when absent)
	bash scripts/setup.sh
	command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
	.venv/bin/python bench/proxy_bench.py

bench-scale: ## usage, logs and analytics routes timed at 20 million request-log rows (ROWS=200000 for a quick run)
	bash scripts/setup.sh
	.venv/bin/python bench/scale_bench.py $${ROWS:+--rows $$ROWS}

db-reset: ## stop and delete the private local Postgres cluster (all local data)
	-runuser -u postgres -- $$(ls -d /usr/lib/postgresql/*/bin | tail -1)/pg_ctl -D "$$(cat .local/pgdata.path)" stop -m fast
	rm -rf "$$(cat .local/pgdata.path)" .local/pg.env .local/pgdata.path .env.local

.PHONY: fuzz
fuzz: ## schemathesis vs /api/openapi.json, longer budget (FUZZ_EXAMPLES=500 per operation; see docs/api.md)
	bash scripts/setup.sh && TEST_DATABASE_NAME=$${TEST_DATABASE_NAME:-switchboard_test_fuzz} TIKTOKEN_CACHE_DIR="$(CURDIR)/.local/tiktoken" FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} FUZZ_STATEFUL_EXAMPLES=$${FUZZ_STATEFUL_EXAMPLES:-300} .venv/bin/pytest tests/fuzz -q
