"""The committed generated modules must match proto/dfs.proto (`make proto` regenerates them)."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["dfs_pb2.py", "dfs_pb2.pyi", "dfs_pb2_grpc.py"]


def test_generated_modules_are_current(tmp_path: Path) -> None:
    (tmp_path / "proto").mkdir()
    shutil.copy(ROOT / "proto" / "dfs.proto", tmp_path / "proto" / "dfs.proto")
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}", str(tmp_path / "proto" / "dfs.proto"),
    ])
    assert rc == 0
    stale = [
        name for name in GENERATED
        if (tmp_path / "proto" / name).read_text() != (ROOT / "proto" / name).read_text()
    ]
    assert not stale, f"generated modules are stale, run `make proto`: {stale}"
