# The task runner. `make dev` and `make test` each do their own set-up first.
BENCHES := bench-ingest bench-deliveries bench-realtime bench-campaigns bench-pipeline bench-retention bench-workflows bench-rendering bench-operations bench-outgoing bench-replies
.PHONY: setup dev test check lint format typecheck schema clients migrate bench $(BENCHES)

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
	$(VENV)/ruff check backend tests clients/python bench
	$(VENV)/ruff format --check backend tests clients/python bench

format:
	$(VENV)/ruff format backend tests clients/python bench
	$(VENV)/ruff check --fix backend tests clients/python bench

typecheck:
	$(VENV)/mypy
	$(VENV)/mypy --strict clients/python/herald_client/clients.py clients/python/herald_client/retries.py

clients:  # regenerate the typed clients from schema.graphql
	$(VENV)/python clients/python/codegen/generate.py
	cd clients/typescript && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } \
		&& npm run --silent generate >/dev/null

schema:
	$(VENV)/python -c "from backend.schema.root import build_schema; print(build_schema().as_str())" > schema.graphql

migrate:
	$(VENV)/herald migrate

# Benchmarks (not tests): each prints a table and writes JSON to bench/results/.
bench: $(BENCHES)

bench-ingest:
	scripts/setup.sh bench
	$(VENV)/herald migrate
	$(VENV)/python -m bench.ingest

# Every other benchmark: bench-NAME runs bench/NAME.py.
$(filter-out bench-ingest,$(BENCHES)): bench-%:
	scripts/setup.sh bench
	$(VENV)/python -m bench.$*
