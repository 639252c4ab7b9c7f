# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench load demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(CHROMIUM):
	$(APT) install -y chromium || ($(APT) update && $(APT) install -y chromium)

run: $(STAMP)
	$(BIN)/ccs run

test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest $(PYTEST_ARGS)

# The candidate search at 10k, 100k and 1M volunteers on SQLite and PostgreSQL (BENCH_SIZES=10k,100k to choose).
bench: $(STAMP)
	$(BIN)/python -c 'import numpy' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.matching
	$(BIN)/python -m bench.metrics

# The whole system on PostgreSQL + RabbitMQ under Locust, two workers of every service, volunteers answering by SMS;
# then a reconciliation of every database that fails on a lost request, a duplicate or a double acceptance
# (LOAD_RATE=200 requests/s and LOAD_SECONDS=60 by default).
load: $(STAMP)
	$(BIN)/python -c 'import locust' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,load]'
	$(BIN)/python -m bench.load

demo: $(STAMP)
	$(BIN)/ccs demo

clean:
	rm -rf var .pytest_cache
