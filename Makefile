# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

COMPAT_VENV := .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed
LITELLM_VENV := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
JS := tests/compat/js
JS_STAMP := $(JS)/node_modules/.installed

.PHONY: run test test-unit test-live lint format bench bench-scale soak bench-litellm clean compat compat-env

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## run: migrate, print a demo key and start the gateway (simulated vLLM if no upstream is set)
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bin/dev-run

## test: the whole suite (PostgreSQL/Redis parts run when TEST_DATABASE_URL/TEST_REDIS_URL are set)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-unit: tests/unit only: Flask's test client and pure code, no process started
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## test-live: tests/live only: the real gateway and the simulated vLLM on 127.0.0.1
test-live: $(STAMP)
	$(BIN)/python -m pytest tests/live $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The clients live apart from the app: LlamaIndex needs marshmallow<4, the gateway marshmallow 4.
$(COMPAT_STAMP): requirements-compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install --quiet -r requirements-compat.txt
	touch $(COMPAT_STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

## compat-env: install the third-party clients (LangChain, LlamaIndex, openai-node) for tests/compat
compat-env: $(COMPAT_STAMP) $(JS_STAMP)

## compat: the API page's LangChain, LlamaIndex and JavaScript examples against the live gateway
compat: $(STAMP) compat-env
	$(BIN)/python -m pytest tests/compat $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

SCALE_STAMP := $(VENV)/.scale-installed
$(SCALE_STAMP): $(STAMP) bench/requirements-scale.txt
	$(BIN)/pip install --quiet -r bench/requirements-scale.txt
	touch $(SCALE_STAMP)

## bench-scale: how the gateway's cost grows with keys, endpoints, messages, body size, usage rows (tables + PNGs)
bench-scale: $(SCALE_STAMP)
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

## soak: 5 minutes of mixed traffic on 127.0.0.1, then every usage row checked (not in CI)
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# LiteLLM, the peer, lives apart too: ~120 packages the gateway never needs (and CI never installs).
$(LITELLM_STAMP): bench/requirements-litellm.txt
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet -r bench/requirements-litellm.txt
	touch $(LITELLM_STAMP)

## bench-litellm: `make bench` plus the LiteLLM proxy (from PyPI, own venv) as a fourth column
bench-litellm: $(STAMP) $(LITELLM_STAMP)
	$(BIN)/python -m bench.run --litellm $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(LITELLM_VENV) $(JS)/node_modules instance .pytest_cache .ruff_cache
