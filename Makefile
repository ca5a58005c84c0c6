# `make run`: set up everything and start the app with the demo agent.
# `make test`: set up and run the whole suite (ruff, then pytest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export WEB_PORT ?= 8000
export DEMO_AGENT_PORT ?= 8001
export MLFLOW_MODEL_CATALOG_URI :=
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

# A per-checkout secret key, generated once, unless SECRET_KEY is given.
ifeq ($(origin SECRET_KEY),undefined)
export SECRET_KEY_FILE ?= $(CURDIR)/var/secret-key
SECRET_KEY_TARGET := var/secret-key
endif

.PHONY: run test setup lint chromium clean

run: setup
	$(BIN)/python scripts/run_all.py

setup: $(VENV)/.installed $(SECRET_KEY_TARGET)
	$(BIN)/python manage.py migrate --noinput -v 1
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py bootstrap_demo

test: $(VENV)/.installed $(SECRET_KEY_TARGET) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

var/secret-key:
	mkdir -p var
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

# Browser tests drive Debian's chromium; install it when missing and we may (root).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed (apt-get install chromium); browser tests will skip."; fi; \
	fi

clean:
	rm -rf var $(VENV)
