# The two commands: `make demo` runs the product on embedded defaults, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)

.PHONY: install demo test lint typecheck migrations-check clean

# The settings refuse to start without SECRET_KEY (DEBUG off, as in production). The demo and the
# tests use a key of their own, made once in var/secret-key, unless SECRET_KEY is set already.
LOCAL_SECRET_KEY = $(shell mkdir -p var && { test -s var/secret-key || (umask 077; $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret-key); } && cat var/secret-key)
demo test: export SECRET_KEY ?= $(LOCAL_SECRET_KEY)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	scripts/system-packages.sh
	mkdir -p var
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py create_demo_users
	$(PY) manage.py create_signing_cert
	$(PY) manage.py load_demo_data
	$(PY) -m config.demo

test: install
	scripts/system-packages.sh
	$(PY) manage.py makemigrations --check --dry-run
	PYTHONUNBUFFERED=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy compliance sync config reports workbench

clean:
	rm -rf $(VENV) var/*.sqlite3* var/cache var/static
