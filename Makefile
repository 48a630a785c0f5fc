# Everything runs in .venv, created here with uv (installed with pip first if missing).
PY ?= python3
VENV := .venv
AIRFLOW_VERSION ?= 3.3.2
UV := $(shell command -v uv 2>/dev/null || echo "$(PY) -m uv")
PYTEST_ARGS ?=

.PHONY: test-matrix system-deps venv demo test e2e docs distributed-deps e2e-distributed unit lint typecheck fake-server clean ui-deps ui-test ui-screenshots

$(VENV)/.installed: pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	$(UV) venv --quiet --allow-existing -p $(PY) $(VENV)
	UV_COMPILE_BYTECODE=1 $(UV) pip install --quiet -p $(VENV)/bin/python -e ".[dev]" "apache-airflow==$(AIRFLOW_VERSION)"
	@touch $@

venv: $(VENV)/.installed

## The main job: the example DAG against the fake Jogg server on loopback
demo: venv
	$(VENV)/bin/python scripts/demo.py

## Lint, type check and the whole test suite
test: venv lint typecheck
	$(VENV)/bin/python -m pytest -n auto -q -m "not ui and not e2e and not e2e_distributed" $(PYTEST_ARGS)
	$(MAKE) --no-print-directory e2e

## End to end: a real Airflow deployment + fake Jogg servers on loopback ports (~6-8 min)
e2e: venv
	$(VENV)/bin/python -m pytest -m e2e -v tests/e2e $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

## Every Debian package a suite uses: ui-deps + distributed-deps (idempotent; apt-get needs root).
## make test needs none (the media tests' ffmpeg/ffprobe come with the dev extra)
system-deps: venv
	scripts/install_system_deps.sh $(VENV)/bin/python

## Debian's chromium + Playwright for the UI tests (idempotent; apt-get needs root)
ui-deps: venv
	scripts/install_ui_deps.sh $(VENV)/bin/python

## The Jogg connection form in a real Airflow UI (api-server + fake Jogg + headless Chromium)
ui-test: venv
	$(VENV)/bin/python -m pytest -p no:xdist -m ui -q -rs tests/ui $(PYTEST_ARGS)

## Regenerate docs/images/*.png
ui-screenshots: venv
	JOGG_UI_SCREENSHOT_DIR=docs/images $(VENV)/bin/python -m pytest -p no:xdist -m ui -q tests/ui

## The unit and dag.test() suites on the newest patch of Airflow 3.0, 3.1 and 3.2 (3.3: make test)
test-matrix:
	scripts/test_matrix.sh

## Debian's redis-server + postgresql for the distributed e2e test (idempotent; apt-get needs root)
distributed-deps:
	scripts/install_distributed_deps.sh

## Distributed e2e: CeleryExecutor, Redis, PostgreSQL, 2 workers, 2 triggerers: a user-like batch with a
## SIGKILLed triggerer, then PostgreSQL restarted under deferred waits (~4-7 min)
e2e-distributed: venv
	$(VENV)/bin/python -m pytest -m e2e_distributed -v tests/e2e_distributed $(PYTEST_ARGS)

## The documentation site (docs/, mkdocs.yml) in site/; strict: a broken link, reference or snippet fails
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean -d site

## Start the fake Jogg server in the foreground (Ctrl-C stops it)
fake-server: venv
	$(VENV)/bin/python -m airflow_provider_jogg.testing --port 8765 --api-key local-test-key

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
BENCH_VENV := bench/.venv
BENCH_PY := $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.installed: bench/requirements.txt pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet uv
	$(UV) venv --quiet --allow-existing -p $(PY) $(BENCH_VENV)
	UV_COMPILE_BYTECODE=1 $(UV) pip install --quiet -p $(BENCH_PY) -e . -r bench/requirements.txt
	@touch $@

.PHONY: bench bench-quick bench-venv

bench-venv: $(BENCH_VENV)/.installed

## N = 1,000 at a 5 s poll interval for every kind; prints the table (under 2 minutes)
bench-quick: bench-venv
	$(BENCH_PY) bench/run.py --quick

## The whole matrix (about 35 minutes): bench/results/full.json, bench/RESULTS.md, bench/plot.png,
## then the import cost of the trigger module (bench/results/import_cost.json) and of the operator and
## sensor modules at DAG parse time (bench/results/import_cost_parse.json)
bench: bench-venv
	$(BENCH_PY) bench/run.py --full
	$(BENCH_PY) bench/import_cost.py --part trigger --json bench/results/import_cost.json
	$(BENCH_PY) bench/import_cost.py --part parse --json bench/results/import_cost_parse.json
