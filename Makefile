# The two set-up commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast demo lint fmt bench system-deps dashboards schema golden clean

$(STAMP): pyproject.toml sandbox/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	$(PY) -m pip install --quiet -e '.[test,helm]'
	$(PY) -m pip install --quiet -e ./sandbox  # the development sandbox: its own distribution
	@touch $(STAMP)

# Real Prometheus (promtool) and Chromium are Debian packages; install them when missing and possible.
system-deps:
	@bash scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# Unit tests only (no servers, no subprocess fleets): seconds, for the edit-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/test_compute.py tests/test_config.py tests/test_store.py tests/test_http.py \
		tests/exporters/test_prometheus.py tests/exporters/test_cardinality.py tests/exporters/test_metrics_doc.py \
		tests/exporters/test_golden.py tests/sources/test_github_refs.py tests/delivery/test_rules.py

# Rewrite the golden exposition after a reviewed change to what /metrics shows.
golden: $(STAMP)
	$(PY) tests/exporters/golden.py

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

# The container image, built with whichever OCI builder is installed: docker (when its engine answers),
# then podman, then buildah; OCI_BUILDER=podman chooses one. The tag defaults to the chart's appVersion,
# the tag the chart deploys. Push it to your own registry (README: "Building and pushing the image").
IMAGE ?= cycletime-collector
IMAGE_TAG ?= $(patsubst appVersion:%,%,$(filter appVersion:%,$(subst ",,$(subst appVersion: ,appVersion:,$(file < helm/cycletime-collector/Chart.yaml)))))
OCI_BUILDER ?=

.PHONY: image
image:
	@builder='$(OCI_BUILDER)'; \
	if [ -z "$$builder" ]; then \
	  for candidate in docker podman buildah; do \
	    command -v "$$candidate" >/dev/null 2>&1 || continue; \
	    if [ "$$candidate" = docker ] && ! docker info >/dev/null 2>&1; then \
	      echo "make image: docker is installed but its engine does not answer (docker info); trying podman, buildah" >&2; \
	      continue; \
	    fi; \
	    builder=$$candidate; break; \
	  done; \
	elif ! command -v "$$builder" >/dev/null 2>&1; then \
	  echo "make image: OCI_BUILDER=$$builder is not installed" >&2; exit 1; \
	fi; \
	if [ -z "$$builder" ]; then \
	  echo "make image: no OCI image builder found: install docker, podman or buildah (or set OCI_BUILDER)" >&2; \
	  exit 1; \
	fi; \
	case "$$builder" in *buildah) build=bud ;; *) build=build ;; esac; \
	echo "$$builder $$build --file Dockerfile --tag $(IMAGE):$(IMAGE_TAG) ."; \
	"$$builder" "$$build" --file Dockerfile --tag '$(IMAGE):$(IMAGE_TAG)' .
