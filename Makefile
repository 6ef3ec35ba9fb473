# ticker-monitor — the two commands are `make run` and `make test`; both set up .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/monitor.toml

.PHONY: run demo test lint typecheck unit reliability bench bench-growth soak soak-memory docker-test schema clean help

help:
	@echo "make demo   - set up .venv and watch a simulated ticker (offline, no configuration)"
	@echo "make run    - set up .venv and run the daemon on $(CONFIG)"
	@echo "make test   - set up .venv, then ruff, mypy and pytest"
	@echo "make reliability - the real daemon under faults: tests/reliability (~4 min); figures in var/reliability.jsonl"
	@echo "make docker-test - lint the Dockerfile, build the image with podman, run it (as root)"
	@echo "make schema - regenerate config/monitor.schema.json and the tables of docs/configuration.md from the settings models"
	@echo "make bench  - the benchmarks (parse, the daemon at 100/1000/5000 targets vs a reference, run --once vs urlwatch, scheduler, start-up; ~9 min): a table and bench/results.json; see docs/performance.md"
	@echo "make bench-growth - the daemon on a fresh state file vs one with 10 million history rows (fills var/bench-growth-10m.db, ~7 GB, once: ~3.5 min; then ~1.5 min): bench/growth.json"
	@echo "make soak   - the daemon soak: 50 targets every second, a flaky Slack, 10 minutes (SOAK_SECONDS=600)"
	@echo "make soak-memory - the in-process memory soak (~80 s; SOAK_ROUNDS=300 SOAK_TRACEMALLOC=0 for longer)"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "ticker-monitor needs Python >= 3.11 (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ticker-monitor run --config $(CONFIG)

demo: $(STAMP)
	$(BIN)/ticker-monitor demo

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

reliability: $(STAMP)
	@mkdir -p var && rm -f var/reliability.jsonl
	RELIABILITY_REPORT=var/reliability.jsonl $(BIN)/pytest -p no:cacheprovider --durations=0 tests/reliability

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-growth: $(STAMP)
	BENCH_SECTIONS=growth BENCH_OUT=bench/growth.json $(BIN)/python bench/run.py

soak: $(STAMP)
	$(BIN)/python bench/daemon_soak.py

soak-memory: $(STAMP)
	$(BIN)/python bench/soak.py

docker-test: $(STAMP)
	bash .ci/docker-test

schema: $(STAMP)
	$(BIN)/ticker-monitor config schema > config/monitor.schema.json
	$(BIN)/python -m monitor.config_doc docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts
