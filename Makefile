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

# The first time: a virtualenv and every package, saying what it is doing (pip names each package it fetches).
$(STAMP): pyproject.toml
	@echo "==> Creating the virtualenv in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> Upgrading pip"
	$(BIN)/pip install --quiet --upgrade pip
	@echo "==> Installing the project and its Python packages into $(VENV): a few minutes the first time"
	$(BIN)/pip install --progress-bar off -e '.[test]'
	touch $(STAMP)
	@echo "==> Installed"

$(CHROMIUM):
	@echo "==> Installing Chromium for the browser tests"
	$(APT) install -y chromium || ($(APT) update && $(APT) install -y chromium)

run: $(STAMP)
	@echo "==> Starting the system (ccs run)"
	$(BIN)/ccs run

# The browser tests inject axe-core (npm) into each page they visit.
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json
	@echo "==> Installing axe-core (npm) for the browser tests"
	command -v npm >/dev/null || $(APT) install -y npm || ($(APT) update && $(APT) install -y npm)
	npm install --no-audit --no-fund --loglevel=error
	touch $(AXE)

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(BIN)/pytest $(PYTEST_ARGS)

# The candidate search at 10k, 100k and 1M volunteers on SQLite and PostgreSQL (BENCH_SIZES=10k,100k to choose),
# metrics' counts, intake beside a bare Flask app, and request -> offer SMS end to end (LATENCY_RATE, LATENCY_SECONDS).
bench: $(STAMP)
	$(BIN)/python -m bench.matching
	$(BIN)/python -m bench.metrics
	$(BIN)/python -m bench.intake
	$(BIN)/python -m bench.latency

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
