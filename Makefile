# Callvault — `make demo` and `make test` work on a fresh Debian 12 box (as root).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CALLVAULT_CONFIG ?= $(CURDIR)/config/callvault.dev.toml

.PHONY: help install demo test lint typecheck unit integration bench lock clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## apt packages, Asterisk sandbox (sid rootfs), venv — cached, idempotent
	@scripts/install

demo: install ## start Asterisk + the appliance and place a scripted call to the AI line
	@$(VENV)/bin/callvault demo

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check appliance tests bench
	$(VENV)/bin/ruff format --check appliance tests bench

typecheck: install ## mypy --strict on appliance/
	$(VENV)/bin/mypy

# Unit and integration tests run as two processes: pjsua2 allows one endpoint per process, and
# each suite owns its runtime.
test: install lint typecheck ## the whole suite: lint, types, unit and integration tests
	$(VENV)/bin/pytest -q -m "not integration"
	$(VENV)/bin/pytest -q -m integration

unit: install ## tests that need no Asterisk
	$(VENV)/bin/pytest -q -m "not integration"

integration: install ## tests through the real Asterisk sandbox
	$(VENV)/bin/pytest -q -m integration

bench: install ## benchmarks → bench/results/latest.{json,md}
	$(PY) -m bench.run

lock: ## re-pin constraints.txt from the current venv
	$(VENV)/bin/pip freeze --exclude-editable | sort -f > constraints.txt

clean: ## stop the sandbox and remove the venv (the cache in /var/cache/callvault stays)
	-asterisk/sandbox down
	rm -rf $(VENV) var
