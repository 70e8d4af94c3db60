# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv, installs the locked set, runs the whole DAG on the embedded default
#   make test   same set-up, then the test suite (`make test-quick` skips the slow tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run tiny test test-quick bench lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	# torch first, from the local CPU wheel: a bare `torch` requirement can pull a multi-GB CUDA build.
	$(BIN)/pip install -q --no-cache-dir torch==2.13.0
	# No wheel cache: the venv is 3.5 GB, and a cache of the same wheels beside it can fill a small disk.
	$(BIN)/pip install -q --no-cache-dir -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/starflow init
	$(BIN)/starflow run

# A first look: the whole DAG on the tiny configuration (about 35 s on 2 cores).
tiny: setup
	$(BIN)/starflow init
	$(BIN)/starflow run --params params.tiny.yaml

test: setup
	$(BIN)/pytest -q -ra --durations=25

test-quick: setup
	$(BIN)/pytest -q -ra -m "not slow"

bench: setup
	$(BIN)/python benchmarks/eval.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/dedup.py

# Re-resolve the lock after changing pyproject dependencies.
lock:
	$(BIN)/pip freeze --all --exclude-editable | grep -v -i '^starflow' > constraints.txt

clean:
	rm -rf data metrics/*.json .starflow mlflow.db mlartifacts .dvc_remote
