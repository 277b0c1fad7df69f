# The task runner. `make dev` and `make test` each do their own set-up first.
.PHONY: setup dev test check lint format typecheck schema migrate bench bench-ingest bench-deliveries bench-realtime bench-campaigns bench-pipeline bench-retention bench-workflows

VENV := .venv/bin

setup:
	scripts/setup.sh dev

dev: setup
	$(VENV)/herald dev

test:
	scripts/setup.sh test
	$(MAKE) --no-print-directory check
	$(VENV)/pytest

check: lint typecheck

lint:
	$(VENV)/ruff check backend tests
	$(VENV)/ruff format --check backend tests

format:
	$(VENV)/ruff format backend tests
	$(VENV)/ruff check --fix backend tests

typecheck:
	$(VENV)/mypy

schema:
	$(VENV)/python -c "from backend.schema.root import build_schema; print(build_schema().as_str())" > schema.graphql

migrate:
	$(VENV)/herald migrate

# Benchmarks (not tests): each prints a table and writes JSON to bench/results/.
bench: bench-ingest bench-deliveries bench-realtime bench-campaigns bench-pipeline bench-retention bench-workflows

bench-ingest:
	scripts/setup.sh bench
	$(VENV)/herald migrate
	$(VENV)/python -m bench.ingest

bench-deliveries:
	scripts/setup.sh bench
	$(VENV)/python -m bench.deliveries

bench-realtime:
	scripts/setup.sh bench
	$(VENV)/python -m bench.realtime

bench-campaigns:
	scripts/setup.sh bench
	$(VENV)/python -m bench.campaigns

bench-pipeline:
	scripts/setup.sh bench
	$(VENV)/python -m bench.pipeline

bench-retention:
	scripts/setup.sh bench
	$(VENV)/python -m bench.retention

bench-workflows:
	scripts/setup.sh bench
	$(VENV)/python -m bench.workflows
