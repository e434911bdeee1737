PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint typecheck pytest coverage mutation demo run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy
	$(BIN)/lint-imports

# `make test` (CI, .ci/run): everything, the long variants included (--long: 31 SIGKILL
# steps), under coverage; child processes (the service run by tests/test_process.py and
# tests/reliability/) count too ([tool.coverage.run] patch = ["subprocess"]).
test: lint typecheck coverage

# The developer's loop: lint, types, and every test but the reliability suite and the
# benchmark smoke runs (under a minute).
test-fast: lint typecheck
	$(BIN)/pytest -q -m "not reliability and not bench_smoke"

pytest: install
	$(BIN)/pytest --long

coverage: install
	@rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest --long
	@$(BIN)/coverage combine -q
	$(BIN)/coverage report

# Mutation testing of the modules in [tool.mutmut] only_mutate; `make mutation
# MUTANTS='bot.core.diff*'` runs one module's mutants. Prints the score; docs/testing.md.
MUTANTS ?=
mutation: install
	HYPOTHESIS_PROFILE=ci nice -n 10 $(BIN)/mutmut run $(MUTANTS)
	@$(BIN)/python -m tests.mutation_score $(MUTANTS)

demo: install
	$(BIN)/mathfi-bot demo

run: install
	$(BIN)/mathfi-bot run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants .coverage .coverage.*
