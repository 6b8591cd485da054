"""Starts one atheris harness: seeds its corpus directory, then hands over to libFuzzer.

`python -m tests.fuzz.fuzz_NAME [libFuzzer flags] [CORPUS_DIR... | CRASH_FILE...]`; without a path
the harness uses build/fuzz/corpus/NAME (build/ is git-ignored), seeded with valid inputs on first
use, so a long run resumes from everything earlier runs found. A file path replays that one input.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

DEFAULT_CORPUS = Path("build/fuzz/corpus")


def main(name: str, test_one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    import atheris  # only here: importing this module must not need atheris

    args = list(sys.argv)
    paths = [Path(a) for a in args[1:] if not a.startswith("-")]
    if not paths:
        paths = [DEFAULT_CORPUS / name]
        args.append(str(paths[0]))
    for corpus in paths:
        if corpus.is_file():  # a crash file to replay, not a corpus
            continue
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for seed in seeds:
                (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
