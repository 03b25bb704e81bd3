# costeff: two commands set everything up on a machine with only Python 3.11:
#   make run    creates .venv, installs, runs the whole programme on the embedded default policy
#   make test   same install, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lint prometheus focus-validator chromium kubectl triton run test bench cost-prof quantize idle-reaper cost-pack clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; nothing may resolve a CUDA build here.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,openvino]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's prometheus, for the reaper's PromQL tests (apt-get, as root or with sudo).
prometheus:
	./scripts/install-prometheus.sh

# The FinOps Foundation's focus-validator, in its own venv (it needs numpy<2), for the FOCUS tests.
focus-validator:
	PYTHON=$(PYTHON) ./scripts/install-focus-validator.sh

# Debian's chromium, for the test that renders report.html in a headless browser.
chromium:
	./scripts/install-chromium.sh

# kubectl v1.35 (with Kustomize) into .tools/bin, for the tests that render and validate deploy/kubernetes.
kubectl:
	./scripts/install-kubectl.sh

# The real Triton 2.51 server, its python backend and perf_analyzer, in their own numpy<2 environment
# (~/.cache/costeff/triton/...), for the tests that serve through Triton. `costeff triton serve` creates it on first use.
triton: setup
	$(BIN)/costeff triton env

run: setup
	$(BIN)/costeff run

# ruff (E, F, W, B) and mypy, as configured in pyproject.toml; `make test` runs it before the suite.
lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

test: setup lint prometheus focus-validator chromium kubectl triton
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks

cost-prof: setup
	$(BIN)/costeff profile

quantize: setup
	$(BIN)/costeff quantize

idle-reaper: setup
	$(BIN)/costeff reap --sample

cost-pack: setup
	$(BIN)/costeff pack

clean:
	rm -rf $(VENV) build dist src/*.egg-info
