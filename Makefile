# ducksheet: `make run` serves, `make test` runs the whole suite. Both bootstrap .venv.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
# pytest-xdist workers for make test: the suite mostly waits on servers, so 3 beat 2
# on two cores (measured: 1 worker 655 s, 2 workers 369 s, 3 workers 284 s)
TEST_WORKERS ?= 3
XDIST  := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: run test test-slow mutation-check lint format seed check bench clean

$(STAMP): pyproject.toml
	@echo "ducksheet: creating $(VENV) (first run, or pyproject.toml changed)"
	$(PYTHON) -m venv $(VENV)
	@echo "ducksheet: installing ducksheet and its dependencies into $(VENV) (about 20 s)"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
	@echo "ducksheet: $(VENV) is ready"
	touch $@

run: $(STAMP)  ## serve on http://127.0.0.1:8000 (seeds ./data and starts Redis on first run)
	$(VENV)/bin/ducksheet serve $(ARGS)

# newman (the Postman collection's runner) comes from npm when npm is there
NODE_STAMP := $(if $(shell command -v npm),node_modules/.installed)
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Coverage includes the server processes the tests start ([tool.coverage.run] patch);
# `coverage report` fails below [tool.coverage.report] fail_under.
test: $(STAMP) $(NODE_STAMP)  ## the whole test suite (real Redis, real DuckDB), with coverage; SLOW=1 adds the slow set
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest $(XDIST) $(ARGS)
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

test-slow: $(STAMP) $(NODE_STAMP)  ## the suite plus the slow set (20 kill -9 / SIGTERM cycles per Redis mode)
	SLOW=1 $(PY) -m pytest $(XDIST) $(ARGS)

mutation-check: $(STAMP)  ## break each behaviour in scripts/mutations.toml, expect its tests to fail
	$(PY) scripts/mutation_check.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

seed: $(STAMP)  ## e.g. make seed ARGS="--sales 1000000 --force"
	$(VENV)/bin/ducksheet seed $(ARGS)

check: $(STAMP)
	$(VENV)/bin/ducksheet check $(ARGS)

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)  ## e.g. make bench ARGS="leaf --sales 1000000 --rate 1000"
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .coverage .coverage.* htmlcov
