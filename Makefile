# Every target sets up what it needs: a fresh machine with Python 3.11+ and make is enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv run test lint typecheck proto bench chaos clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: start a local 3-peer cluster (gRPC 127.0.0.1:50051-50053), run a demo, serve until Ctrl-C
run: $(STAMP)
	$(BIN)/dfs-peer cluster up --peers 3 --dir .dfs-cluster --demo

## test: lint, type-check, layer contracts, then the whole test suite
test: lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check peer client tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## proto: regenerate proto/dfs_pb2*.py from proto/dfs.proto
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. proto/dfs.proto

bench: $(STAMP)
	$(BIN)/python -m tests.bench

## chaos: the long chaos run (8 peers, R=3, 7 minutes of faults under load); not part of `make test`
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --long

clean:
	rm -rf $(VENV) .dfs-cluster .pytest_cache .mypy_cache .ruff_cache
