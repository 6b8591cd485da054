# Every target sets up what it needs: a fresh machine with Python 3.11+ and make is enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv run test test-long partition lint typecheck proto bench chaos fuzz clean settings-table console-screenshot

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: start a local 3-peer cluster (gRPC 127.0.0.1:50051-50053, S3 http://127.0.0.1:50243-50245), run a
## demo, print a ready-to-paste `aws --endpoint-url ... s3 ls` line, serve until Ctrl-C
run: $(STAMP)
	$(BIN)/dfs-peer cluster up --peers 3 --dir .dfs-cluster --demo --foreground

## test: lint, type-check, layer contracts, then the test suite (the PostgreSQL failure run on servers it
## starts from Debian's postgresql package, and the bounded partition run with 5 peers in network
## namespaces, included), all but the minute-long fault runs, which `make test-long` runs
test: lint typecheck
	$(BIN)/python -m pytest -q -m "not long" --durations=15

## test-long: the minute-long fault runs (the bounded chaos runs with rep:2, rep:3 and ec:4+2, both cores
## saturated for 60 s); CI runs them after `make test`
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -m long

## partition: the long partition run: 5+ peers in network namespaces, 10 minutes of random network and
## process faults under load (needs root); prints the figures the README quotes
partition: $(STAMP)
	$(BIN)/python -m tests.netns_run --long

lint: $(STAMP)
	$(BIN)/ruff check peer client tests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## proto: regenerate proto/dfs_pb2*.py from proto/dfs.proto
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. proto/dfs.proto

## settings-table: print the README's table of peer settings from their one declaration (peer/config.py)
settings-table: $(STAMP)
	@$(BIN)/python -c 'from peer.config import PeerConfig; from peer.settings import settings_table; print(settings_table(PeerConfig))'

bench: $(STAMP)
	$(BIN)/python -m tests.bench

## console-screenshot: docs/console.png and docs/console-files.png, the README's pictures of the web
## console, taken in headless Chromium (/usr/bin/chromium) from a 3-peer cluster holding a few files
console-screenshot: $(STAMP)
	$(BIN)/python -m tests.console_screenshot

## chaos: the long chaos run (8 peers, R=3, 7 minutes of faults under load); not part of `make test`
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --long

## fuzz: the long fuzz run (docs/FUZZING.md): each atheris harness for FUZZ_SECONDS; without atheris
## (no wheel for this Python, or FUZZ_ENGINE=hypothesis) the hypothesis fuzz tests with many examples.
## Not part of `make test`, which runs the bounded hypothesis fuzz tests only.
FUZZ_SECONDS   ?= 300
FUZZ_ENGINE    ?= atheris
FUZZ_HARNESSES := gossip_decode names upload_header
FUZZ_DIR       := build/fuzz
# About 3 x FUZZ_SECONDS in all, the time the three atheris harnesses take (1000 examples take ~65 s).
FUZZ_EXAMPLES  ?= $(shell echo $$(( $(FUZZ_SECONDS) * 45 )))

fuzz: $(STAMP)
	@if [ "$(FUZZ_ENGINE)" = atheris ] && { $(BIN)/python -c 'import atheris' 2>/dev/null \
	        || $(BIN)/python -m pip install --quiet --only-binary=:all: atheris; }; then \
	    mkdir -p $(FUZZ_DIR)/crashes; \
	    for h in $(FUZZ_HARNESSES); do \
	        echo "== atheris: $$h for $(FUZZ_SECONDS) s (corpus $(FUZZ_DIR)/corpus/$$h)"; \
	        $(BIN)/python -m tests.fuzz.fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	            -artifact_prefix=$(FUZZ_DIR)/crashes/$$h- -print_final_stats=1 $(FUZZ_DIR)/corpus/$$h || exit 1; \
	    done; \
	else \
	    echo "== atheris unavailable or not chosen: hypothesis fuzz tests, $(FUZZ_EXAMPLES) examples each"; \
	    DFS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q --timeout=0 tests/test_fuzz_inputs.py tests/test_chunk_frames_fuzz.py; \
	fi

clean:
	rm -rf $(VENV) .dfs-cluster .pytest_cache .mypy_cache .ruff_cache
