# Two entry points: `make demo` and `make test`. Each bootstraps .venv from the lock file first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9
AZURITE := tools/node_modules/.bin/azurite-blob
PLAYWRIGHT := tools/browser/node_modules/playwright-core/package.json

export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := False
export SCARF_ANALYTICS := false

.PHONY: demo up demo-tickets test test-fast lint docs venv tools browser prometheus lock build clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --quiet -c constraints.txt -e ".[test]"
	# setuptools leaves src/*.egg-info behind; with src/ on sys.path (editable) Airflow would then see the
	# distribution twice and load our plugin entry point twice ("already registered" import error)
	rm -rf src/airflow_mlops.egg-info
	touch $(STAMP)

tools: $(AZURITE)

$(AZURITE): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

# Browser test: Debian's Chromium (never a Playwright browser download) + playwright-core from npm.
browser: $(PLAYWRIGHT)
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

$(PLAYWRIGHT): tools/browser/package.json tools/browser/package-lock.json
	npm ci --prefix tools/browser --no-audit --no-fund --loglevel=error
	touch $(PLAYWRIGHT)

# Compose-stack checks: Debian's Prometheus (prometheus + promtool). policy-rc.d keeps the package from
# starting its own daemon on :9090; the tests start theirs on free loopback ports.
prometheus:
	command -v promtool >/dev/null || ( \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus); \
	  status=$$?; rm -f /usr/sbin/policy-rc.d; exit $$status)

demo: $(STAMP)
	$(BIN)/airflow-mlops demo --home .demo

# The live stack on loopback (Airflow UI, MLflow UI, gateway, traffic) until Ctrl-C; state kept in .up/.
up: $(STAMP)
	$(BIN)/airflow-mlops up --home .up

# The multiclass example (dags/configs/tickets.yaml: string labels, time split) through its real train DAG.
demo-tickets: $(STAMP)
	$(BIN)/airflow-mlops demo-tickets --home .demo-tickets

lint: $(STAMP)
	$(BIN)/ruff check src tests dags benchmarks plugins
	$(BIN)/mypy

# The documentation site (mkdocs.yml): --strict turns every warning (broken link, missing snippet) into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: $(STAMP) tools browser prometheus lint docs
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not emulator and not postgres and not slow"

# Wheel + sdist into dist/ (isolated build; uv installs the backend, held to the lock). setuptools writes
# src/*.egg-info while building: dropped again, for the same reason as in the venv target.
build: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" UV_CONSTRAINT=constraints.txt $(BIN)/python -m build --wheel --sdist --installer uv --outdir dist .
	rm -rf src/airflow_mlops.egg-info

lock: $(STAMP)
	$(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable | grep -v '^uv==' > constraints.new && \
	  echo "constraints.new written; review the diff and keep the header of constraints.txt"

clean:
	rm -rf .demo .demo-tickets .pytest_cache .mypy_cache .ruff_cache dist build
