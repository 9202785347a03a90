# chatmesh developer and CI entry points. `make test` is THE test command (CI runs it via .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Steps print headers and share one venv: never run them in parallel.
.NOTPARALLEL:

VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
# Re-install whenever pyproject.toml or the pins change; otherwise `install` is a no-op.
STAMP := $(VENV)/.installed
# Exact versions of every Python package `install` brings in (tools included), so gen/, lint and
# typecheck give the same result everywhere. `make constraints` regenerates it.
CONSTRAINTS := constraints.txt
# `uv` (bootstrapped into the venv by pip, at its pinned version) installs in seconds where pip
# takes minutes; INSTALLER=pip uses plain pip with the same pins.
INSTALLER ?= uv
# Debian packages the tests need (servers started by tests/servers/*.py).
SYSTEM_DEPS := redis-server chromium
# Only the dirs that exist: mypy errors out on missing paths.
TYPED_DIRS := $(wildcard chatmesh_launcher chatmesh_common chat_service gateway_ws presence_service \
                         notify_service media_service tests bench scripts search_service)
# Extra pytest flags, e.g. `make pytest PYTEST_ARGS='-k nats -x'`.
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

header = @printf '\n==> %s\n' '$(1)'

.PHONY: help venv install constraints check-constraints system-deps tools cql-jars solr-jars gen \
        lint lint-py lint-format lint-proto lint-imports breaking check-gen typecheck pytest test run \
        fmt cluster

help:
	@echo "make help              this list"
	@echo "make install           create .venv, install -e '.[dev,cluster]' pinned by $(CONSTRAINTS)"
	@echo "                       (no-op when up to date; INSTALLER=pip to skip uv)"
	@echo "make venv              same as install"
	@echo "make constraints       pin what pyproject.toml added, keep the other pins (UPGRADE=1: newest of all)"
	@echo "make check-constraints fail if $(CONSTRAINTS) does not match pyproject.toml's dependencies"
	@echo "make system-deps       apt-get install missing Debian packages: $(SYSTEM_DEPS)"
	@echo "make tools             build the Go tools the tests drive (grpcurl, helm) into .tools/bin"
	@echo "make cql-jars          fetch the CQL test server's jars"
	@echo "make solr-jars         fetch the Solr test server's jars and compile its starter"
	@echo "make gen               regenerate gen/ from protos/"
	@echo "make lint              lint-py + lint-format + lint-proto + lint-imports"
	@echo "make lint-py           ruff check"
	@echo "make lint-format       ruff format --check (make fmt fixes it)"
	@echo "make lint-proto        buf lint"
	@echo "make lint-imports      import-linter contracts (pyproject.toml) + no import cycle"
	@echo "make breaking          buf breaking against the merge base with main (AGAINST_REF=...)"
	@echo "make check-gen         fail if gen/ is stale w.r.t. protos/"
	@echo "make typecheck         mypy (strict, config in pyproject.toml)"
	@echo "make pytest            pytest only (PYTEST_ARGS=...); selecting no test fails"
	@echo "make test              every step ($(TEST_STEPS)): the one test command"
	@echo "make run               install what running needs, then chatmesh dev (ARGS='...' passes flags)"
	@echo "make cluster           install everything, then chatmesh cluster up (a local cluster; ARGS='--dir D')"
	@echo "make fmt               ruff format + ruff check --fix"

venv install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# Order-only on $(PY): creating the venv must not by itself force a reinstall.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(call header,install ($(INSTALLER)))
ifeq ($(INSTALLER),uv)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) uv
	$(BIN)/uv pip install --quiet --python $(PY) -c $(CONSTRAINTS) -e '.[dev,cluster]'
else
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev,cluster]'
endif
	touch $@

# Resolution for this interpreter (the venv's) and platform, like the install it pins.
UV_COMPILE = $(BIN)/uv pip compile --quiet --python $(PY) --extra dev --extra cluster \
             --custom-compile-command 'make constraints' pyproject.toml

# Existing pins are kept (uv prefers the versions already in its output file) unless UPGRADE=1.
constraints: $(STAMP)
	$(call header,constraints)
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -o $(CONSTRAINTS)

# Re-resolves with the current pins as preferences: any difference means pyproject.toml gained,
# lost or re-ranged a dependency without `make constraints`. Reads the package index.
check-constraints: $(STAMP)
	$(call header,check-constraints)
	@tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; cp $(CONSTRAINTS) "$$tmp"; \
	$(UV_COMPILE) -o "$$tmp"; \
	if ! diff -u $(CONSTRAINTS) "$$tmp"; then \
	  echo "check-constraints: $(CONSTRAINTS) is stale w.r.t. pyproject.toml; run 'make constraints'." >&2; \
	  exit 1; \
	fi; echo "check-constraints: $(CONSTRAINTS) matches pyproject.toml."

# Installs only what is missing, so it is instant on a prepared machine.
system-deps:
	@missing=(); for p in $(SYSTEM_DEPS); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Status}' "$$p" 2>/dev/null)" = installed ] || missing+=("$$p"); \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  printf '\n==> system-deps: installing %s\n' "$${missing[*]}"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi

gen: $(STAMP)
	$(call header,gen)
	bash scripts/gen_protos.sh
	@# The TypeScript SDK's types come from the same protos (tests/sdk checks they are fresh).
	@if [ -d clients/ts/node_modules ]; then (cd clients/ts && npm run --silent generate); \
	else echo "gen: clients/ts/src/gen not regenerated (run npm ci in clients/ts first)"; fi

# Split so that `make -k` (used by `test`) reports every linter even if the first fails.
lint: lint-py lint-format lint-proto lint-imports

lint-py: $(STAMP)
	$(call header,lint: ruff)
	$(BIN)/ruff check .

lint-format: $(STAMP)
	$(call header,lint: ruff format --check)
	$(BIN)/ruff format --check .

lint-proto: $(STAMP)
	$(call header,lint: buf)
	$(BIN)/buf lint

# The layering of pyproject.toml's [tool.importlinter], then module-level cycles, which the
# `acyclic` contract (siblings only) cannot see through a package's __init__.
lint-imports: $(STAMP)
	$(call header,lint: import contracts)
	$(BIN)/lint-imports --no-logo --no-cache
	$(PY) scripts/check_import_cycles.py

breaking: $(STAMP)
	$(call header,breaking)
	bash scripts/buf_breaking.sh

check-gen: $(STAMP)
	$(call header,check-gen)
	bash scripts/check_generated.sh

typecheck: $(STAMP)
	$(call header,typecheck)
	$(BIN)/mypy $(TYPED_DIRS)

# Go tools the tests drive, built from the Go module proxy into .tools/bin.
GRPCURL := .tools/bin/grpcurl
HELM := .tools/bin/helm
tools: $(GRPCURL) $(HELM)

$(GRPCURL):
	$(call header,tools: grpcurl)
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

$(HELM):
	$(call header,tools: helm)
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@v3.21.4

# The CQL test server's jars (Cassandra from Maven Central), fetched before any test's clock runs.
cql-jars: $(STAMP)
	$(call header,cql-jars)
	$(PY) -m chatmesh_launcher.cluster.cassandra --resolve

# The Solr test server's jars (SolrCloud from Maven Central) and its compiled starter, likewise.
solr-jars: $(STAMP)
	$(call header,solr-jars)
	$(PY) -m tests.servers.solr --resolve

# pytest's own exit status: 5 ("no tests collected", also when -k/-m deselect them all) fails
# like any other, so a selection that matches nothing cannot pass.
pytest: $(STAMP) system-deps tools cql-jars solr-jars
	$(call header,pytest)
	$(BIN)/pytest $(PYTEST_ARGS)

# Runs every step even after one fails, so one run shows all problems, then lists the failed
# steps and exits non-zero.
TEST_STEPS := check-constraints lint breaking check-gen typecheck pytest
test: $(STAMP) system-deps tools cql-jars solr-jars
	@failed=(); for step in $(TEST_STEPS); do \
	  $(MAKE) --no-print-directory -k $$step || failed+=("$$step"); \
	done; \
	if [ $${#failed[@]} -gt 0 ]; then printf '\n==> test FAILED in: %s\n' "$${failed[*]}"; exit 1; fi; \
	printf '\n==> test: all steps passed (%s)\n' '$(TEST_STEPS)'

# What running needs and nothing else (no linters, stubs, test servers or cluster drivers), with
# the installer's own progress shown; `make test` adds the dev and cluster extras. Either stamp
# up to date makes the other install unnecessary for running.
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] && [ $(STAMP) -nt $(CONSTRAINTS) ]; then \
	  touch $@; exit 0; fi; \
	printf '\n==> install for running (%s): the packages `chatmesh dev` needs\n' '$(INSTALLER)'; \
	if [ '$(INSTALLER)' = uv ]; then \
	  $(PY) -m pip install --disable-pip-version-check --progress-bar on -c $(CONSTRAINTS) uv && \
	  $(BIN)/uv pip install --python $(PY) -c $(CONSTRAINTS) -e .; \
	else \
	  $(PY) -m pip install --disable-pip-version-check -c $(CONSTRAINTS) -e .; \
	fi
	touch $@

# `make run ARGS='--ws 127.0.0.1:9090'` passes flags to `chatmesh dev` (see `chatmesh dev --help`).
ARGS ?=
run: $(RUN_STAMP)
	$(call header,chatmesh dev $(ARGS))
	$(BIN)/chatmesh dev $(ARGS)

# Every dependency and service as its own process behind Envoy (`chatmesh cluster --help`); the
# servers come from the dev extra, Debian and Maven Central like the tests' servers.
cluster: $(STAMP) system-deps cql-jars
	$(call header,chatmesh cluster up $(ARGS))
	$(BIN)/chatmesh cluster up $(ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
