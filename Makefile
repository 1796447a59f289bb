# mailmigrate: one entry point for install, demo, tests and benchmarks.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Mail and DNS servers for the tests; PostgreSQL and Redis for the distributed (Celery) end-to-end
# test; Chromium for the browser test (Playwright drives Debian's build: it cannot download its own).
DEBIAN_PACKAGES := dovecot-imapd dnsmasq-base isync postgresql redis-server chromium
PYTEST_ARGS ?=

.PHONY: install servers test lint format demo demo-flip-mx demo-late-mail bench bench-quick clean

install: $(STAMP) debian-packages servers

# Cyrus IMAP for the server matrix, unpacked into .cache/servers (it conflicts with Dovecot).
servers: debian-packages
	@bash tests/harness/fetch_servers.sh

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-test.txt
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m demo.run run

demo-flip-mx: install
	$(BIN)/python -m demo.run flip-mx

demo-late-mail: install
	$(BIN)/python -m demo.run late-mail

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
