# violet-refunds. Everything a fresh machine needs is installed from these targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck lint-imports mypy-baseline worker beat bench install install-dev migrate seed clean browser lock

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The lock files pin every package, direct and indirect, with hashes (regenerate: `make lock`).
$(VENV)/.installed: requirements.lock | $(PY)
	$(PIP) install --quiet --require-hashes -r requirements.lock
	touch $@

$(VENV)/.installed-dev: requirements.lock requirements-dev.lock | $(PY)
	$(PIP) install --quiet --require-hashes -r requirements-dev.lock
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

## The portal with embedded defaults: SQLite, in-process tasks, Stripe sandbox, demo data.
run: seed
	@$(PY) manage.py demo_banner --host $(HOST) --port $(PORT)
	$(PY) manage.py runserver $(HOST):$(PORT)

## The whole test suite (SQLite by default; CI exports DATABASE_URL/REDIS_URL/REQUIRE_SERVICES), with the
## line coverage of the project's packages printed at the end (reported, no threshold).
test: install-dev browser
	$(PY) -m pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

## Regenerate requirements.lock / requirements-dev.lock from requirements*.txt (pip-tools in a throw-away venv).
lock:
	bash scripts/lock.sh

## Debian's chromium for the Playwright browser tests (installed once, if missing).
browser:
	bash scripts/ensure-chromium.sh

## ruff (check and format), migrations in step with the models, mypy (typecheck) and the layering contracts (lint-imports).
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m mypy $(MYPY_PACKAGES)
	$(VENV)/bin/lint-imports

## mypy with django-stubs and djangorestframework-stubs (config and baseline in pyproject.toml).
MYPY_PACKAGES := violet_refunds platforms stripe_events refunds payments notifications stripe_sandbox portal observability
typecheck: install-dev
	$(PY) -m mypy $(MYPY_PACKAGES)

## Print the modules that still have mypy errors, as the baseline block for pyproject.toml.
mypy-baseline: install-dev
	@PY=$(PY) bash scripts/mypy-baseline.sh --toml $(MYPY_PACKAGES)

## The layering contracts (import-linter, [tool.importlinter] in pyproject.toml).
lint-imports: install-dev
	$(VENV)/bin/lint-imports

## A worker on every queue (development); QUEUE=refunds (platforms, notifications, periodic) for one
## role's worker as in production (Procfile).
QUEUE ?= refunds,platforms,notifications,periodic
worker: install
	$(VENV)/bin/celery -A violet_refunds worker -Q $(QUEUE) --loglevel=INFO

beat: install
	$(VENV)/bin/celery -A violet_refunds beat --loglevel=INFO

## The production shape on loopback, once (scripts/prod_smoke.py): gunicorn.conf.py, a worker per queue and
## beat with DEBUG=false on a fresh PostgreSQL database and its own redis-server; one signed Shopify webhook to
## a COMPLETED refund, a channel API read, /readyz and /metrics checked; everything stopped at the end.
.PHONY: prod-smoke
prod-smoke: install-dev
	$(PY) scripts/prod_smoke.py

## Benchmarks: the product against the bare stack in one run (PostgreSQL + Redis on 127.0.0.1).
## QUICK=1: fewer rows, shorter runs.
bench: install-dev
	bash scripts/ensure-wrk.sh
	$(PY) bench/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache .coverage

## Chaos soak (issue #13, soak/README.md): 1,000 refunds through gunicorn, 2 worker nodes and beat with
## Stripe faults, kill -9, a Redis kill and database backend terminations; the invariant table at the
## end, exit 1 if one fails. Needs PostgreSQL on 127.0.0.1:5432 and redis-server. SHORT=1: 150 refunds.
.PHONY: soak
soak: install-dev
	$(PY) soak/run.py $(if $(SHORT),--refunds 150) $(SOAK_ARGS)
