"""`cluster up --demo`: one upload through the first peer and its download through the last, compared.

Both go through the `dfs` command (see dfscli), as a user would run them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from peer.errors import DfsError
from peer.localcluster.dfscli import DfsCommand

DEMO_NAME = "demo/sample.bin"
DEMO_BYTES = 5 * 1024 * 1024 + 12345  # several chunks, the last one short


def run_demo(base: Path, connect: Callable[[str], DfsCommand], addrs: list[str], say: Callable[[str], None]) -> None:
    """Leaves both files in `base` for the user to look at."""
    sample = base / "demo-sample.bin"
    out = base / "demo-download.bin"
    with open(sample, "wb") as fh:
        fh.write(os.urandom(DEMO_BYTES))
    up = connect(addrs[0]).upload(sample, DEMO_NAME, "application/octet-stream")
    version = up["version"]
    say(f"demo: uploaded {DEMO_NAME} through {addrs[0]}: v{version['version']}, {version['size']} bytes in "
        f"{version['chunk_count']} chunks on peers {', '.join(p[:8] for p in up['peers'])}")
    info = connect(addrs[-1]).download(DEMO_NAME, out)["version"]
    same = _same_bytes(sample, out)
    say(f"demo: downloaded it back through {addrs[-1]}: sha256 {info['sha256'][:16]}..., "
        f"{'byte-identical' if same else 'MISMATCH'}")
    if not same:
        raise DfsError("demo download differs from the upload")


def _same_bytes(a: os.PathLike[str], b: os.PathLike[str]) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
