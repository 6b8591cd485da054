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
    assert_one_line_error(serve(tmp_path, "--metadata", "redis://x"), "DFS_METADATA")


def test_node_id_is_validated(tmp_path: Path) -> None:
    assert_one_line_error(serve(tmp_path, "--node-id", "has space"), "DFS_NODE_ID", "invalid")
    assert_one_line_error(serve(tmp_path, "--node-id", "x" * 65), "DFS_NODE_ID")


def test_explicit_node_id_is_kept_and_a_foreign_data_dir_refused(tmp_path: Path) -> None:
    """The id comes from --node-id or DFS_NODE_ID; a data directory keeps the id it was first given."""
    import json
    import os
    import signal

    from tests.waiting import wait_until_sync

    data = tmp_path / "data"
    env = {**os.environ, "DFS_NODE_ID": "rack1-peer.a"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(data), "--no-auth",
         "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        wait_until_sync(lambda: (data / "ready.json").exists() or proc.poll() is not None, 30)
        assert json.loads((data / "ready.json").read_text())["node_id"] == "rack1-peer.a"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    result = serve(tmp_path, "--node-id", "another", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0")
    assert_one_line_error(result, "belongs to node rack1-peer.a", "--node-id another")


def test_default_policy_is_checked_at_start(tmp_path: Path) -> None:
    for policy in ("rep:x", "rep:0", "mirror"):
        result = serve(tmp_path, "--default-policy", policy)
        assert_one_line_error(result, "DFS_DEFAULT_POLICY", repr(policy))
        assert result.returncode == 2  # a configuration error, as for every other bad setting
