# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(CHROMIUM):
	$(APT) install -y chromium || ($(APT) update && $(APT) install -y chromium)

run: $(STAMP)
	$(BIN)/ccs run

# The browser tests inject axe-core (npm) into each page they visit.
AXE := node_modules/axe-core/axe.min.js
$(AXE): package.json
	command -v npm >/dev/null || $(APT) install -y npm || ($(APT) update && $(APT) install -y npm)
	npm install --no-audit --no-fund --loglevel=error
	touch $(AXE)

test: $(STAMP) $(CHROMIUM) $(AXE)
	$(BIN)/pytest $(PYTEST_ARGS)

# The candidate search at 10k, 100k and 1M volunteers on SQLite and PostgreSQL (BENCH_SIZES=10k,100k to choose).
bench: $(STAMP)
	$(BIN)/python -c 'import numpy' 2>/dev/null || $(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.matching
	$(BIN)/python -m bench.metrics

demo: $(STAMP)
	$(BIN)/ccs demo

clean:
	rm -rf var .pytest_cache
