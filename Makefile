# Overtime: developer entry points. Every target works on a fresh machine: the first one
# run creates .venv and installs the project (again whenever pyproject.toml changes).
#
#   make run     the whole stack in one terminal (Temporal + UI, mail, fake Stripe, worker,
#                API) with demo accounts; state in ./var (OVERTIME_DATA_DIR)
#   make test    the full suite, and beside it again on PostgreSQL if one answers on
#                127.0.0.1:5432 (without the slow process-level suites: reliability,
#                scale-out and the dev stack, which do not depend on the database)
#   make lint    ruff (lint and format check) and mypy (types); make test runs it first
#   make bench   every bench/*.py
#   make clean   caches and build leftovers (keeps .venv and ./var; distclean removes them)

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Touched after a successful install; older than pyproject.toml means reinstall.
VENV_STAMP := $(VENV)/.installed-from-pyproject

PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
PG_TEST_URL ?= postgresql+psycopg2://postgres@$(PG_HOST):$(PG_PORT)/test

# Connects exactly as the second test pass will; when it cannot, prints why on one line.
define PG_PROBE
import socket, sys
import sqlalchemy
url = sqlalchemy.engine.make_url(sys.argv[1])
try:
    socket.create_connection((url.host, url.port or 5432), timeout=3).close()
except OSError:
    print(f"no server on {url.host}:{url.port or 5432}")
    sys.exit(1)
try:
    sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3}).connect().close()
except Exception as err:
    detail = str(getattr(err, "orig", err)).strip().splitlines()
    print(f"{url.host}:{url.port or 5432} answers, but: {detail[0] if detail else err!r}")
    sys.exit(1)
endef
export PG_PROBE

# Browser tests need Debian's chromium; only pull it in once such tests exist.
BROWSER_DEP := $(if $(wildcard tests/test_web*.py),browser,)
# The compose proxy's nginx config is tested against a real nginx: Debian's package,
# unpacked into the virtualenv (installing it would start a system service on port 80).
# tests/test_compose.py finds it there.
NGINX_BIN := $(VENV)/nginx/usr/sbin/nginx

.DEFAULT_GOAL := help
.PHONY: help venv .venv run test test-sqlite test-sqlite-browser test-sqlite-rest test-postgres lint bench browser nginx clean distclean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

# `make .venv` / `make venv`: (re)create and install only when needed.
venv .venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: Overtime needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
		     "Run make PYTHON=python3.11 ..." >&2; exit 1; }
	@test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV) || { \
		echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; \
		exit 1; }
	$(VENV_PYTHON) -m pip install --upgrade pip
	$(VENV_PYTHON) -m pip install -e '.[test]'
	@touch $@

run: $(VENV_STAMP)
	$(VENV_PYTHON) -m devstack.run

# The passes run side by side: most of a pass is waiting on real timers (short billing
# periods, retries, a browser's page loads), so a pass uses about half a core (measured:
# 14 min of CPU in a 15-min run of two passes). The SQLite pass therefore runs as two
# processes, the browser tests apart, beside the PostgreSQL pass: three processes on two
# cores. Each prints its output whole when it ends (make -O); the PostgreSQL pass writes its
# screenshots under tests/artifacts so that no two write the same file.
BROWSER_TESTS := tests/test_web.py tests/test_web_money_safety.py tests/test_web_plan.py \
	tests/test_web_prices.py tests/test_web_polish.py tests/test_web_alerts.py \
	tests/test_customer_api.py
# Pages only (their database work is the same code the other tests run on PostgreSQL).
SQLITE_ONLY_FILES := tests/test_web_money_safety.py tests/test_web_plan.py \
	tests/test_web_prices.py tests/test_web_polish.py tests/test_web_alerts.py

test: $(VENV_STAMP) $(BROWSER_DEP) nginx lint
	@echo "running the SQLite pass (two processes) and the PostgreSQL pass side by side; each prints when it ends"
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-sqlite-browser test-sqlite-rest test-postgres

# The whole SQLite pass in one process (what the two targets below split).
test-sqlite: $(VENV_STAMP)
	$(VENV_PYTHON) -m pytest

test-sqlite-browser: $(VENV_STAMP)
	$(VENV_PYTHON) -m pytest $(BROWSER_TESTS)

test-sqlite-rest: $(VENV_STAMP)
	$(VENV_PYTHON) -m pytest $(addprefix --ignore=,$(BROWSER_TESTS))

test-postgres: $(VENV_STAMP)
	@if reason=$$($(VENV_PYTHON) -c "$$PG_PROBE" '$(PG_TEST_URL)' 2>&1); then \
		echo "PostgreSQL pass against $(PG_TEST_URL)"; \
		OVERTIME_TEST_DATABASE_URL='$(PG_TEST_URL)' \
		OVERTIME_SCREENSHOT_DIR=tests/artifacts/screenshots-postgres \
		$(VENV_PYTHON) -m pytest -m "not sqlite_only and not slow" \
			$(addprefix --ignore=,$(SQLITE_ONLY_FILES)) tests/; \
	else \
		echo "skipping PostgreSQL pass: $$reason"; \
	fi

lint: $(VENV_STAMP)
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m ruff format --check .
	$(VENV_PYTHON) -m mypy

bench: $(VENV_STAMP)
	@set -e; found=0; for script in bench/*.py; do \
		[ -e "$$script" ] || continue; found=1; \
		echo "== $$script"; $(VENV_PYTHON) "$$script"; \
	done; [ $$found = 1 ] || echo "no benchmarks in bench/"

# Debian's chromium for the browser tests. Without root (or apt) only a warning: the
# browser tests then say themselves what is missing.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "warning: chromium is not installed and this is not root; browser tests" \
		     "need it: sudo apt-get install -y chromium" >&2; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "warning: chromium is not installed and there is no apt-get to install it" >&2; \
	else \
		apt-get update && apt-get install -y chromium; \
	fi

# Without apt (or network) only a warning: the live proxy tests then skip and say why.
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x $(NGINX_BIN) ]; then \
		echo "nginx: $$(command -v nginx || echo $(NGINX_BIN))"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "warning: no nginx and no apt-get; the live proxy tests will skip" >&2; \
	else \
		tmp=$$(mktemp -d) && cd $$tmp && \
		{ apt-get download nginx >/dev/null 2>&1 || \
		  { apt-get update >/dev/null && apt-get download nginx; }; } && \
		dpkg -x nginx_*.deb $(abspath $(VENV))/nginx && rm -rf $$tmp && \
		echo "nginx: $(NGINX_BIN)" || \
		echo "warning: could not fetch Debian's nginx; the live proxy tests will skip" >&2; \
	fi

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist tests/artifacts bench/results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also the virtualenv and the dev stack's state (accounts, workflows, mail): a fresh start.
distclean: clean
	rm -rf $(VENV) var *.egg-info

# `make soak`: the long reliability soak in tests/test_reliability.py (OVERTIME_SOAK=1):
# a simulated month of traffic for many accounts with short periods, a worker SIGKILLed and
# Stripe failing on the way, ending in an exact reconciliation of every period. Knobs:
# OVERTIME_SOAK_SECONDS (240), OVERTIME_SOAK_ACCOUNTS (24), OVERTIME_SOAK_SEED (7).
#   make soak    the long reliability soak (minutes; not part of make test)
.PHONY: soak
soak: $(VENV_STAMP)
	OVERTIME_SOAK=1 $(VENV_PYTHON) -m pytest tests/test_reliability.py -k soak -v -s --durations=0
