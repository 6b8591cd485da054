"""`cluster up --demo`: one upload through the first peer and its download through the last, compared."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from client.sdk import DfsClient
from peer.errors import DfsError

DEMO_NAME = "demo/sample.bin"


def run_demo(base: Path, connect: Callable[[str], DfsClient], addrs: list[str], say: Callable[[str], None]) -> None:
    """Leaves both files in `base` for the user to look at."""
    sample = base / "demo-sample.bin"
    out = base / "demo-download.bin"
    with open(sample, "wb") as fh:
        fh.write(os.urandom(5 * 1024 * 1024 + 12345))
    with connect(addrs[0]) as c:
        up = c.upload(sample, name=DEMO_NAME, content_type="application/octet-stream")
    say(f"demo: uploaded {DEMO_NAME} through {addrs[0]}: v{up.version.version}, {up.version.size} bytes in "
        f"{up.version.chunk_count} chunks on peers {', '.join(p[:8] for p in up.peers)}")
    with connect(addrs[-1]) as c, open(out, "wb") as fh:
        info = c.download(DEMO_NAME, fh)
    same = _same_bytes(sample, out)
    say(f"demo: downloaded it back through {addrs[-1]}: sha256 {info.sha256[:16]}..., "
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

