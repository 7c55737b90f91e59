# The two set-up commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint fmt bench system-deps dashboards schema clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,helm]'
	@touch $(STAMP)

# Real Prometheus (promtool) and Chromium are Debian packages; install them when missing and possible.
system-deps:
	@bash scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

dashboards: $(STAMP)
	$(PY) scripts/gen_dashboards.py

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

schema: $(STAMP)
	$(PY) -c 'import json; from collector.config import json_schema; print(json.dumps(json_schema(), indent=2, sort_keys=True))' > config/schema.json
