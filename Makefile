# make run  : set up .venv (once) and run the whole pipeline locally on the embedded sample
# make test : set up .venv (once) and run the test suite (make test-fast: the in-process part only)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench clean

setup: $(STAMP)

# Re-installs only when the dependency files change, so `make setup` is idempotent.
$(STAMP): pyproject.toml requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

run: setup
	$(BIN)/katib-digits pipeline run --local --data data/sample --out runs/make-run \
		--max-trials 3 --trial-max-rows 1000 --trial-epochs 2 --retrain-epochs 5

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile

# seconds, not minutes: no real training, no kfp.local run, no extra processes
test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow and not process"

lint: setup
	$(BIN)/katib-digits lint experiments/*.yaml

bench: setup
	$(BIN)/python bench/benchmark.py

clean:
	rm -rf runs local_outputs .pytest_cache
