"""Profiles through the real `dfs` console script against two real peers.

A profile saves where to connect (peer, CA certificate, token file) under a name. What users rely on:
the file is private to them (0600 in a 0700 directory), paths are kept absolute so the profile works
from any directory, the token itself is never written or shown, and each setting comes from the first
of flag, environment variable, profile and built-in default. The two peers answer `status` with
different node ids, which shows which layer chose the peer.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.sdk import DEFAULT_PEER
from tests.cluster import Cluster, PeerProc, shared_cluster
from tests.test_cli_integration import dfs, fails, json_out, ok

TOKEN = "dfs_profile-test-token-0123456789"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory, request, "cli-profiles", peers=2, replicas=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def a(cluster: Cluster) -> PeerProc:
    return cluster.peers[0]


@pytest.fixture(scope="module")
def b(cluster: Cluster) -> PeerProc:
    return cluster.peers[1]


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config directory of the test's own (not yet created): the user's real one is never touched."""
    directory = tmp_path / "config" / "dfs"
    monkeypatch.setenv("DFS_CONFIG_DIR", str(directory))
    monkeypatch.delenv("DFS_PROFILE", raising=False)
    monkeypatch.delenv("DFS_PEER", raising=False)
    return directory


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def answering(result: subprocess.CompletedProcess[bytes]) -> str:
    """The node id of the peer that answered `status --json`."""
    node_id = json_out(result)["node_id"]
    assert isinstance(node_id, str)
    return node_id


# ---------------------------------------------------------------------------------------- set, list


def test_set_then_list_keeps_absolute_paths_in_a_private_file(
    a: PeerProc, config: Path, tmp_path: Path, token_file: Path
) -> None:
    (tmp_path / "ca.pem").write_text("any file: checked when used\n")
    said = ok(
        dfs(None, "profile", "set", "work", "--peer", a.grpc_addr, "--tls-ca", "ca.pem", "--token-file", "token",
            cwd=tmp_path)
    ).decode()  # fmt: skip
    assert said.startswith(f"saved profile work (peer {a.grpc_addr}) in {config / 'profiles.json'}")
    ok(dfs(None, "profile", "set", "home", "--peer", "127.0.0.1:1"))

    path = config / "profiles.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert TOKEN not in path.read_text()

    listed = json_out(dfs(None, "profile", "list", "--json"))
    assert listed["profiles"] == [
        {"name": "home", "peer": "127.0.0.1:1", "tls_ca": None, "token_file": None},
        {"name": "work", "peer": a.grpc_addr, "tls_ca": str(tmp_path / "ca.pem"), "token_file": str(token_file)},
    ]
    assert listed["active"] is None

    text = ok(dfs(None, "--profile", "work", "profile", "list")).decode()
    rows = [line.split() for line in text.splitlines()]
    assert rows[0] == ["NAME", "PEER", "TLS", "CA", "TOKEN", "FILE"]
    assert rows[1] == ["home", "127.0.0.1:1", "-", "-"]
    assert rows[2] == ["work", "*", a.grpc_addr, str(tmp_path / "ca.pem"), str(token_file)]
    assert TOKEN not in text


def test_set_changes_only_what_is_given_and_delete_removes(a: PeerProc, b: PeerProc, token_file: Path) -> None:
    ok(dfs(None, "profile", "set", "p", "--peer", a.grpc_addr, "--token-file", str(token_file)))
    ok(dfs(None, "profile", "set", "p", "--peer", b.grpc_addr))
    shown = json_out(dfs(None, "profile", "show", "p", "--json"))
    assert shown == {"name": "p", "peer": b.grpc_addr, "tls_ca": None, "token_file": str(token_file)}
    ok(dfs(None, "profile", "set", "p", "--token-file", ""))  # "" removes a value
    assert json_out(dfs(None, "--json", "profile", "show", "p"))["token_file"] is None
    ok(dfs(None, "profile", "delete", "p"))
    assert json_out(dfs(None, "profile", "list", "--json"))["profiles"] == []
    assert "'p'" in fails(dfs(None, "profile", "show", "p"), 2)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("profile", "set", "fresh"), id="new-profile-without-peer"),
        pytest.param(("profile", "set", "bad name", "--peer", "h:1"), id="bad-name"),
        pytest.param(("profile", "set", "x", "--peer", "h:1", "--tls-ca", "/no/such/ca.pem"), id="missing-ca"),
        pytest.param(("profile", "set", "x", "--peer", "h:1", "--token-file", "/no/such/token"), id="missing-token"),
    ],
)
def test_set_refuses_what_could_never_work(config: Path, args: tuple[str, ...]) -> None:
    fails(dfs(None, *args), 2)
    assert not (config / "profiles.json").exists()


# -------------------------------------------------------------------------------------------- using


def test_unknown_profile_is_one_line_exit_2(a: PeerProc) -> None:
    ok(dfs(None, "profile", "set", "known", "--peer", a.grpc_addr))
    line = fails(dfs(None, "--profile", "nope", "status"), 2)
    assert "unknown profile 'nope'" in line and "known" in line
    fails(dfs(None, "status", env={"DFS_PROFILE": "nope"}), 2)
    error = json.loads(dfs(None, "status", "--profile", "nope", "--json").stderr)["error"]
    assert error["type"] == "usage" and error["exit_code"] == 2
    # The profile commands still work, so a missing profile can be created under that very name.
    ok(dfs(None, "profile", "set", "nope", "--peer", a.grpc_addr, env={"DFS_PROFILE": "nope"}))
    assert answering(dfs(None, "--json", "status", env={"DFS_PROFILE": "nope"})) == a.node_id


def test_peer_precedence_flag_environment_profile_default(a: PeerProc, b: PeerProc) -> None:
    ok(dfs(None, "profile", "set", "to-a", "--peer", a.grpc_addr))
    ok(dfs(None, "profile", "set", "to-b", "--peer", b.grpc_addr))

    default = json_out(dfs(None, "--json", "profile", "current"))
    assert (default["peer"], default["sources"]["peer"]) == (DEFAULT_PEER, "default")

    # The profile beats the default, --profile beats DFS_PROFILE.
    assert answering(dfs(None, "--profile", "to-a", "--json", "status")) == a.node_id
    assert answering(dfs(None, "--json", "status", env={"DFS_PROFILE": "to-a"})) == a.node_id
    assert answering(dfs(None, "status", "--json", "--profile", "to-b", env={"DFS_PROFILE": "to-a"})) == b.node_id
    # The environment beats the profile, the flag beats the environment.
    assert answering(dfs(None, "--profile", "to-a", "--json", "status", env={"DFS_PEER": b.grpc_addr})) == b.node_id
    flag = dfs(a, "--profile", "to-b", "--json", "status", env={"DFS_PEER": b.grpc_addr})
    assert answering(flag) == a.node_id

    current = json_out(dfs(None, "--profile", "to-a", "--json", "profile", "current", env={"DFS_PEER": b.grpc_addr}))
    assert (current["profile"], current["peer"], current["sources"]["peer"]) == ("to-a", b.grpc_addr, "environment")


def test_tls_ca_precedence(a: PeerProc, tmp_path: Path) -> None:
    """A profile's CA means TLS; the environment's CA replaces it, and `--tls-ca ''` asks for plain text."""
    profile_ca = tmp_path / "profile-ca.pem"
    profile_ca.write_text("not a certificate\n")
    env_ca = tmp_path / "env-ca.pem"
    env_ca.write_text("not one either\n")
    ok(dfs(None, "profile", "set", "tls", "--peer", a.grpc_addr, "--tls-ca", str(profile_ca)))

    assert str(profile_ca) in fails(dfs(None, "--profile", "tls", "status"), 2)
    line = fails(dfs(None, "--profile", "tls", "status", env={"DFS_TLS_CA": str(env_ca)}), 2)
    assert str(env_ca) in line and str(profile_ca) not in line
    plain = dfs(None, "--profile", "tls", "--tls-ca", "", "--json", "status", env={"DFS_TLS_CA": str(env_ca)})
    assert answering(plain) == a.node_id


def test_token_file_precedence_and_errors(a: PeerProc, tmp_path: Path) -> None:
    """The token file is read when a command connects: the environment's or the flag's token replace it.

    The test peers accept any well-formed token; one with a space in it is refused by the client
    itself, which shows which token a command would have sent.
    """
    bad = tmp_path / "bad-token"
    bad.write_text("not a token\n")
    ok(dfs(None, "profile", "set", "auth", "--peer", a.grpc_addr, "--token-file", str(bad)))

    assert "token contains spaces" in fails(dfs(None, "--profile", "auth", "status"), 2)
    assert answering(dfs(None, "--profile", "auth", "--json", "status", env={"DFS_TOKEN": TOKEN})) == a.node_id
    assert answering(dfs(None, "--profile", "auth", "--json", "status", "--token", TOKEN)) == a.node_id
    assert "token contains spaces" in fails(dfs(None, "--profile", "auth", "status", "--token", "still bad"), 2)

    bad.write_text(TOKEN)
    assert answering(dfs(None, "--profile", "auth", "--json", "status")) == a.node_id
    bad.unlink()
    line = fails(dfs(None, "--profile", "auth", "status"), 2)
    assert f"cannot read the token file {bad}" in line
    # Commands that do not connect never read it.
    assert json_out(dfs(None, "--profile", "auth", "--json", "profile", "show", "auth"))["token_file"] == str(bad)
