# 小庆帮办 — every task a newcomer needs, from a fresh clone.
#   make run    the service on the embedded default (SQLite + in-process Redis + WeChat stub),
#               demo data loaded, on http://127.0.0.1:8000 (OpenAPI at /docs)
#   make test   everything CI checks
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
WORKERS ?= 1

.PHONY: run test quick lint typecheck migrate migration check-migrations seed journeys fuzz bench clean \
	ts-client docs-check

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP) migrate seed
	$(BIN)/sanic api.app:create_app --factory --host $(HOST) --port $(PORT) \
		$(if $(filter 1,$(WORKERS)),--single-process,--workers $(WORKERS))

migrate: $(STAMP)
	$(BIN)/python manage.py migrate

seed: $(STAMP)
	$(BIN)/python manage.py seed

# After changing models: write the next migration, then commit it with the change.
migration: $(STAMP)
	$(BIN)/tortoise -c services.db.TORTOISE_ORM makemigrations

check-migrations: $(STAMP)
	$(BIN)/python manage.py check-migrations

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy .

# The suite on whatever is reachable (MariaDB + Redis if they answer, else embedded).
quick: $(STAMP)
	$(BIN)/python -m pytest -q

journeys: $(STAMP)
	$(BIN)/python -m miniprogram_stub.live

fuzz: $(STAMP)
	$(BIN)/python -m miniprogram_stub.live --fuzz

bench: $(STAMP)
	$(BIN)/python -m bench.search_bench
	$(BIN)/python -m bench.booking_bench
	$(BIN)/python -m bench.scan_bench

# Everything CI checks: lint, types, migrations, the suite on both backends, the journeys
# against live servers (embedded; MariaDB + Redis with two workers) and the OpenAPI fuzz.
test: $(STAMP)
	bash scripts/test.sh

# After changing any request or response model: regenerate the mini program's TypeScript
# types from the OpenAPI document (and compile its client against them); commit the result.
ts-client: $(STAMP)
	bash scripts/ts_client.sh generate

# /docs in headless Chromium with no network but loopback: every operation must be drawn.
docs-check: $(STAMP)
	$(BIN)/python scripts/docs_browser_check.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache miniprogram_stub/ts/node_modules
