"""Fuzzing of untrusted input: the gossip decoder, name and header validation, the upload stream.

`targets.py` holds the invariants, shared by the bounded hypothesis run (tests/test_fuzz_inputs.py,
part of `make test`) and the atheris harnesses `fuzz_*.py` (`make fuzz`, see docs/FUZZING.md).
Nothing here is collected by pytest, and only the `fuzz_*.py` harnesses import atheris.

This module stays import-light on purpose: `python -m tests.fuzz.fuzz_x` imports it before the
harness starts instrumenting, and a peer module imported here would escape the instrumentation.
"""

from __future__ import annotations

import os

#: Set by `make fuzz` when atheris is unavailable: every hypothesis fuzz test runs this many examples.
EXAMPLES_ENV = "DFS_FUZZ_EXAMPLES"


def examples(default: int) -> int:
    """`default` for the bounded run in `make test`; $DFS_FUZZ_EXAMPLES for a long run."""
    value = os.environ.get(EXAMPLES_ENV, "").strip()
    return int(value) if value else default
