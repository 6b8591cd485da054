"""`dfs-peer serve` refuses bad settings and busy ports with one line and a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "data"), "--no-auth", *args],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfs-peer: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_grpc_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = serve(tmp_path, "--grpc-addr", f"127.0.0.1:{port}", "--gossip-addr", "127.0.0.1:0")
    assert_one_line_error(result, "cannot listen for gRPC", str(port))


def test_gossip_port_in_use(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = serve(tmp_path, "--grpc-addr", "127.0.0.1:0", "--gossip-addr", f"127.0.0.1:{port}")
    assert_one_line_error(result, "cannot listen for gossip", str(port))


def test_invalid_settings(tmp_path: Path) -> None:
    assert_one_line_error(serve(tmp_path, "--replicas", "0"), "DFS_REPLICAS")
    assert_one_line_error(serve(tmp_path, "--grpc-addr", "nonsense"), "HOST:PORT")
    assert_one_line_error(serve(tmp_path, "--metadata", "postgres://x"), "DFS_METADATA")
