#!/usr/bin/env bash
# The one test command (`make test`, and CI's .ci/run). Stops at the first red step.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

step() { printf '\n== %s\n' "$*"; }

step "lint (ruff) and types (mypy)"
$BIN/ruff check .
$BIN/mypy .

step "models and migrations agree"
$BIN/python manage.py check-migrations

step "tests on the embedded default (SQLite + fakeredis)"
XQ_TEST_BACKEND=embedded $BIN/python -m pytest -q

if reachable 3306 && reachable 6379; then
  step "tests on MariaDB + Redis (concurrency proofs included)"
  XQ_TEST_BACKEND=real $BIN/python -m pytest -q
else
  echo "MariaDB or Redis not reachable on 127.0.0.1: skipping the real-backend run"
fi

step "fault tests: their own redis-server and MariaDB, frozen and killed (docs/reliability.md)"
XQ_FAULT_TESTS=1 XQ_TEST_BACKEND=embedded $BIN/python -m pytest -q tests/faults

step "journeys against a live server (embedded default), then the OpenAPI fuzz"
$BIN/python -m miniprogram_stub.live --fuzz

if reachable 3306 && reachable 6379; then
  step "journeys against a live server on MariaDB + Redis with two workers"
  $BIN/python -m miniprogram_stub.live --real --workers 2
fi

step "the docs page renders offline in headless Chromium (every operation drawn)"
if ! command -v chromium >/dev/null 2>&1; then
  # CI starts with nothing installed; Debian's chromium is the browser the check is written for.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
$BIN/python scripts/docs_browser_check.py

step "the mini program's TypeScript types match the OpenAPI document; its client compiles and runs"
bash scripts/ts_client.sh check
