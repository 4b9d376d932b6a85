# `make test` and `make run` are the two entry points (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test run bench fuzz clean

venv: $(STAMP)

# Re-installs only when the dependency list changes; otherwise a no-op.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest

run: venv
	$(BIN)/p2pnode simulate examples/quickstart.toml --out runs/quickstart

# Coverage-guided fuzzing of every decoder (fuzz/targets.py), FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: venv
	$(BIN)/python benchmarks/fuzz.py --seconds $(FUZZ_SECONDS)

bench: venv
	$(BIN)/python benchmarks/ledger.py --quick --json benchmarks/results/ledger.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
