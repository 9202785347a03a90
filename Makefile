# chatmesh developer and CI entry points. `make test` is THE test command (CI runs it via .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Steps print headers and share one venv: never run them in parallel.
.NOTPARALLEL:

VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
# Re-install whenever pyproject.toml changes; otherwise `install` is a no-op.
STAMP := $(VENV)/.installed
# Debian packages the tests need (servers started by tests/servers/*.py).
SYSTEM_DEPS := redis-server
# Only the dirs that exist: mypy errors out on missing paths.
TYPED_DIRS := $(wildcard chatmesh_common chatmesh_launcher chat_service gateway_ws presence_service \
                         notify_service media_service tests bench)
# Extra pytest flags, e.g. `make pytest PYTEST_ARGS='-k nats -x'`.
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

header = @printf '\n==> %s\n' '$(1)'

.PHONY: help venv install system-deps tools cql-jars gen lint lint-py lint-proto breaking check-gen \
        typecheck pytest test run fmt

help:
	@echo "make install     create .venv and install -e '.[dev,cluster]' (no-op when up to date)"
	@echo "make system-deps apt-get install missing Debian packages: $(SYSTEM_DEPS)"
	@echo "make gen         regenerate gen/ from protos/"
	@echo "make lint        ruff check + buf lint"
	@echo "make breaking    buf breaking for protos/ against HEAD~1"
	@echo "make check-gen   fail if gen/ is stale w.r.t. protos/"
	@echo "make typecheck   mypy (strict, config in pyproject.toml)"
	@echo "make pytest      pytest only (PYTEST_ARGS=...)"
	@echo "make test        all of the above, then pytest: the one test command"
	@echo "make run         chatmesh dev"
	@echo "make fmt         ruff format + ruff check --fix"

venv install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

# Order-only on $(PY): creating the venv must not by itself force a reinstall.
$(STAMP): pyproject.toml | $(PY)
	$(call header,install)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	touch $@

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

# Split so that `make -k` (used by `test`) reports both linters even if the first fails.
lint: lint-py lint-proto

lint-py: $(STAMP)
	$(call header,lint: ruff)
	$(BIN)/ruff check .

lint-proto: $(STAMP)
	$(call header,lint: buf)
	$(BIN)/buf lint

breaking: $(STAMP)
	$(call header,breaking)
	bash scripts/buf_breaking.sh

check-gen: $(STAMP)
	$(call header,check-gen)
	bash scripts/check_generated.sh

# MYPYPATH=tests: pytest imports tests/servers as `servers` (tests/ has no __init__.py and
# its conftest puts tests/ on sys.path); give mypy the same module names.
typecheck: $(STAMP)
	$(call header,typecheck)
	MYPYPATH=tests $(BIN)/mypy $(TYPED_DIRS)

# Exit 5 means "no tests collected": not a failure here (see .ci/run). All other codes pass through.
# Go tools the tests drive, built from the Go module proxy into .tools/bin.
GRPCURL := .tools/bin/grpcurl
tools: $(GRPCURL)

$(GRPCURL):
	$(call header,tools: grpcurl)
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

# The CQL test server's jars (Cassandra from Maven Central), fetched before any test's clock runs.
cql-jars: $(STAMP)
	$(call header,cql-jars)
	$(PY) -m tests.servers.cassandra --resolve

pytest: $(STAMP) system-deps tools cql-jars
	$(call header,pytest)
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "NOTE: pytest collected no tests (exit 5); treated as success"; rc=0; fi; \
	exit $$rc

# Runs every step even after one fails, so one run shows all problems, then lists the failed
# steps and exits non-zero.
TEST_STEPS := lint breaking check-gen typecheck pytest
test: $(STAMP) system-deps tools cql-jars
	@failed=(); for step in $(TEST_STEPS); do \
	  $(MAKE) --no-print-directory -k $$step || failed+=("$$step"); \
	done; \
	if [ $${#failed[@]} -gt 0 ]; then printf '\n==> test FAILED in: %s\n' "$${failed[*]}"; exit 1; fi; \
	printf '\n==> test: all steps passed (%s)\n' '$(TEST_STEPS)'

run: $(STAMP)
	$(BIN)/chatmesh dev

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
