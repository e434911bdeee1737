PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock test test-fast lint typecheck pytest coverage mutation soak demo run clean

# Dependencies come from the hashed lock files (pip-tools), never straight from PyPI's newest:
# requirements.lock (runtime, used by the Dockerfile) and requirements-dev.lock (runtime + dev,
# used here and by CI). Both are generated from pyproject.toml by `make lock`.
DEV_LOCK := requirements-dev.lock
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	--no-emit-index-url --no-emit-find-links
# `make lock UPGRADE=aiohttp` moves one package (or several, space-separated) to its newest
# allowed release; `make lock UPGRADE=all` moves every package; plain `make lock` only follows
# pyproject.toml and keeps every other pin. The dev lock is constrained by the runtime lock, so
# the image runs the very versions the tests ran with.
UPGRADE ?=
ifeq ($(UPGRADE),all)
LOCK_UPGRADE := --upgrade
else
LOCK_UPGRADE := $(foreach p,$(UPGRADE),--upgrade-package $(p))
endif

install: $(STAMP)

# The venv's own pip installs the locked set (pip, setuptools and wheel are pinned there too);
# the project itself goes in last, editable, without deps and without an unpinned build env.
$(STAMP): $(DEV_LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

lock: $(STAMP)
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_UPGRADE) --output-file=requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_UPGRADE) --extra=dev --constraint=requirements.lock \
		--output-file=$(DEV_LOCK) pyproject.toml
	$(MAKE) install

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy
	$(BIN)/lint-imports

# Tests run in two parts. PARALLEL: every test but SERIAL_TESTS, spread over JOBS
# pytest-xdist workers (`auto`: one per core; `make test JOBS=0` runs it in one process);
# the reliability tests that only need their own processes and ports run here too.
# SERIAL: the reliability tests that time the service (p99 latencies while the database is
# locked, acks in time, SIGKILL at random moments, a standby's take-over within seconds),
# one at a time without xdist, after the parallel part, so the cores are theirs.
JOBS ?= auto
SERIAL_TESTS := tests/reliability/test_locked_database_latency.py \
	tests/reliability/test_crash.py tests/reliability/test_single_instance.py
PARALLEL := -n $(JOBS) $(foreach t,$(SERIAL_TESTS),--ignore=$(t))
SERIAL := -p no:xdist $(SERIAL_TESTS)

# `make test` (CI, .ci/run): everything, the long variants included (--long: 31 SIGKILL
# steps), under coverage; child processes (xdist's workers, the service run by
# tests/test_process.py and tests/reliability/) count too ([tool.coverage.run] patch =
# ["subprocess"]), and the two parts' data are combined into one report.
test: lint typecheck coverage

# The developer's loop: lint, types, and every test but the reliability suite and the
# benchmark smoke runs, on JOBS workers.
test-fast: lint typecheck
	$(BIN)/pytest -q -n $(JOBS) -m "not reliability and not bench_smoke"

pytest: install
	$(BIN)/pytest --long $(PARALLEL)
	$(BIN)/pytest --long $(SERIAL)

# Issue #20's flakiness check, on demand (not in `make test`): the whole suite (`make pytest`)
# RUNS times in a row beside HOGS busy processes; one JSON line per run, exit 1 on a failure.
RUNS ?= 5
HOGS ?= 1
soak: install
	$(BIN)/python -m tests.soak --runs $(RUNS) --hogs $(HOGS) --make $(MAKE)

coverage: install
	@rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest --long $(PARALLEL)
	$(BIN)/coverage run -m pytest --long $(SERIAL)
	@$(BIN)/coverage combine -q
	$(BIN)/coverage report

# Mutation testing of the mutants in tests/mutation_score.py SCOPE (the modules of [tool.mutmut]
# only_mutate; of the sender's, the deciding functions); `make mutation
# MUTANTS='bot.core.diff*'` runs one module's mutants. Prints the score; docs/testing.md.
MUTANTS ?= $(shell $(BIN)/python -m tests.mutation_score --scope)
mutation: install
	HYPOTHESIS_PROFILE=ci nice -n 10 $(BIN)/mutmut run $(MUTANTS)
	@$(BIN)/python -m tests.mutation_score $(MUTANTS)

demo: install
	$(BIN)/mathfi-bot demo

run: install
	$(BIN)/mathfi-bot run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants .coverage .coverage.*
