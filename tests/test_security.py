"""Attacks on a running cluster, each of which must fail without harm.

Real peer processes on 127.0.0.1: tokens and roles on the client API, TLS for clients and mutual
TLS between peers, signed internal calls without TLS, and the limits on what one client may cost.
Every test tries the attack, asserts the refusal (status code, exit code), and asserts that nothing
was stored, deleted or changed and that the peer still serves honest requests.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.errors import AuthenticationError, InvalidArgument, PeerUnreachable, PermissionDeniedError
from client.sdk import DfsClient
from peer.rpc.auth import PEER_AUTH_KEY
from peer.security.certs import PEER_TLS_NAME, init_certs
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import TEST_SECRET, Cluster, PeerProc, wait_for

pytestmark = pytest.mark.timeout(120)


def dfs_peer(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peer", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


# ------------------------------------------------------------------ tokens and roles


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """Two peers with client authentication on, and one token of each role made with the CLI."""
    base = tmp_path_factory.mktemp("auth")
    metadata = f"sqlite:///{base / 'metadata.db'}"
    tokens = {}
    for role in ("read", "write", "admin"):
        made = subprocess.run(
            [sys.executable, "-m", "peer", "token", "create", "--role", role, "--name", f"{role}-test",
             "--metadata", metadata],
            capture_output=True, text=True, timeout=30, check=True,
        )
        tokens[role] = made.stdout.strip()
    cluster = Cluster(base, metadata=metadata, extra=["--token-cache", "0"],
                      client_kwargs={"token": tokens["admin"]})
    try:
        for _ in range(2):
            cluster.add_peer(env={"DFS_NO_AUTH": ""})
        cluster.wait_converged()
        yield cluster, tokens
    finally:
        cluster.close()


def client(cluster: Cluster, token: str | None) -> DfsClient:
    return DfsClient(cluster.peers[0].grpc_addr, timeout=10, token=token)


def test_token_is_printed_once_and_only_its_hash_is_stored(auth_cluster: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_cluster
    rows = sqlite3.connect(cluster.metadata.removeprefix("sqlite:///")).execute("SELECT * FROM tokens").fetchall()
    dump = repr(rows)
    for token in tokens.values():
        token_id, secret = token.removeprefix("dfs_").split("_", 1)
        assert token_id in dump
        assert secret not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() in dump


@pytest.mark.parametrize("token", [None, "", "dfs_0123456789abcdef_" + "A" * 43, "not-a-token"])
def test_missing_or_bad_token_is_unauthenticated(auth_cluster: tuple[Cluster, dict[str, str]],
                                                  token: str | None, tmp_path: Path) -> None:
    cluster, _ = auth_cluster
    sample = tmp_path / "f"
    sample.write_bytes(b"x" * 1000)
    with client(cluster, token) as c:
        with pytest.raises(AuthenticationError) as err:
            c.upload(sample, name="unauth/f")
        assert err.value.exit_code == 7
        with pytest.raises(AuthenticationError):
            c.status()
    with client(cluster, cluster.client_kwargs["token"]) as admin:
        assert [v.name for v in admin.list("unauth/")] == []


def test_a_forged_secret_for_a_real_token_id_is_refused(auth_cluster: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_cluster
    token_id = tokens["admin"].removeprefix("dfs_").split("_", 1)[0]
    with client(cluster, f"dfs_{token_id}_{'B' * 43}") as c, pytest.raises(AuthenticationError):
        c.list_tokens()


def test_read_token_reads_but_cannot_write_or_delete(auth_cluster: tuple[Cluster, dict[str, str]],
                                                     tmp_path: Path) -> None:
    cluster, tokens = auth_cluster
    sample = tmp_path / "f"
    sample.write_bytes(b"read-only test " * 100)
    with client(cluster, tokens["write"]) as writer:
        writer.upload(sample, name="roles/existing")
    with client(cluster, tokens["read"]) as reader:
        assert reader.read("roles/existing") == sample.read_bytes()
        assert reader.whoami().role == "read"
        with pytest.raises(PermissionDeniedError) as err:
            reader.upload(sample, name="roles/new")
        assert err.value.exit_code == 8
        with pytest.raises(PermissionDeniedError):
            reader.delete("roles/existing")
        with pytest.raises(PermissionDeniedError):
            reader.create_token("admin")
        assert [v.name for v in reader.list("roles/")] == ["roles/existing"]


def test_write_token_cannot_manage_tokens(auth_cluster: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_cluster
    with client(cluster, tokens["write"]) as writer:
        with pytest.raises(PermissionDeniedError):
            writer.create_token("admin", "escalation")
        with pytest.raises(PermissionDeniedError):
            writer.list_tokens()
    with client(cluster, tokens["admin"]) as admin:
        assert "escalation" not in {t.name for t in admin.list_tokens()}


def test_admin_creates_and_revokes_tokens_through_any_peer(auth_cluster: tuple[Cluster, dict[str, str]],
                                                           tmp_path: Path) -> None:
    cluster, tokens = auth_cluster
    with client(cluster, tokens["admin"]) as admin:
        secret, info = admin.create_token("write", "ci")
        assert info.role == "write" and info.name == "ci"
    other = DfsClient(cluster.peers[1].grpc_addr, timeout=10, token=secret)
    with other:
        assert other.whoami().token_id == info.token_id
        with client(cluster, tokens["admin"]) as admin:
            revoked = admin.revoke_token(info.token_id)
        assert revoked.revoked_at
        with pytest.raises(AuthenticationError):  # the other peer (token cache 0) refuses it too
            other.whoami()


def test_cli_exit_codes_for_auth_failures(auth_cluster: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_cluster
    addr = cluster.peers[0].grpc_addr
    base = [sys.executable, "-m", "client.cli", "--peer", addr]
    no_token = subprocess.run([*base, "list"], capture_output=True, text=True, timeout=30, env={"PATH": ""})
    assert no_token.returncode == 7 and "Traceback" not in no_token.stderr
    assert len(no_token.stderr.strip().splitlines()) == 1
    denied = subprocess.run([*base, "--token", tokens["read"], "delete", "roles/existing"],
                            capture_output=True, text=True, timeout=30)
    assert denied.returncode == 8 and "Traceback" not in denied.stderr


# ------------------------------------------------------------------ signed peer traffic without TLS


def test_internal_calls_without_a_peer_credential_are_refused(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path).start(2)
    try:
        peer = cluster.peers[0]
        sample = tmp_path / "f"
        sample.write_bytes(b"keep me" * 1000)
        with peer.client() as c:
            up = c.upload(sample, name="victim")
        chunk_id = up.version.chunks[0].chunk_id
        holder = next(p for p in cluster.peers if p.chunk_path(chunk_id).exists())
        with grpc.insecure_channel(holder.peer_addr) as channel:
            stub = pb_grpc.PeerChunksStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.DeleteChunks(pb.ChunkIds(ids=[chunk_id]), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            data = b"planted"
            with pytest.raises(grpc.RpcError) as err:
                stub.PutChunk(pb.Chunk(chunk_id=hashlib.sha256(data).hexdigest(), data=data), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            forged = "v1.1700000000000." + "0" * 32 + "." + "f" * 64
            with pytest.raises(grpc.RpcError) as err:
                stub.DeleteChunks(pb.ChunkIds(ids=[chunk_id]), timeout=5, metadata=((PEER_AUTH_KEY, forged),))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert holder.chunk_path(chunk_id).exists()
        assert not holder.chunk_path(hashlib.sha256(b"planted").hexdigest()).exists()
        with peer.client() as c:
            assert c.read("victim") == sample.read_bytes()
    finally:
        cluster.close()


def test_a_replayed_internal_call_is_refused(tmp_path: Path) -> None:
    from peer.security.peerauth import PeerSigner

    cluster = Cluster(tmp_path).start(1)
    try:
        signer = PeerSigner(TEST_SECRET)
        request = pb.StatsRequest()
        method = "/dfs.v1.PeerChunks/Stats"
        credential = signer.sign(method, request.SerializeToString())
        with grpc.insecure_channel(cluster.peers[0].peer_addr) as channel:
            stub = pb_grpc.PeerChunksStub(channel)
            assert stub.Stats(request, timeout=5, metadata=((PEER_AUTH_KEY, credential),)).node_id
            with pytest.raises(grpc.RpcError) as err:
                stub.Stats(request, timeout=5, metadata=((PEER_AUTH_KEY, credential),))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        cluster.close()


def test_a_peer_with_another_secret_cannot_join(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path).start(2)
    try:
        intruder = PeerProc(tmp_path, 9, cluster.metadata, 2, list(cluster.extra))
        intruder.start([cluster.peers[0].gossip_addr], env={"DFS_CLUSTER_SECRET": "another-secret-0123456789"})
        seed_log = cluster.peers[0].log_path
        wait_for(lambda: "refused gossip" in seed_log.read_text(), 20, "the intruder's gossip to be refused")
        with cluster.peers[0].client() as c:
            members = {m.node_id for m in c.status().members}
        assert intruder.node_id not in members
        intruder.kill()
    finally:
        cluster.close()


# ------------------------------------------------------------------ TLS and mutual TLS


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    base = tmp_path_factory.mktemp("tls")
    certs = base / "certs"
    init_certs(certs, 3)

    def per_peer(i: int) -> list[str]:
        return ["--tls-cert", str(certs / f"peer-{i + 1}.crt"), "--tls-key", str(certs / f"peer-{i + 1}.key"),
                "--tls-ca", str(certs / "ca.crt"), "--peer-grpc-addr", "127.0.0.1:0"]

    cluster = Cluster(base, per_peer=per_peer, client_kwargs={"tls_ca": str(certs / "ca.crt")})
    try:
        cluster.start(3)
        yield cluster, certs
    finally:
        cluster.close()


def test_tls_cluster_serves_verified_clients(tls_cluster: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, _ = tls_cluster
    sample = tmp_path / "f"
    sample.write_bytes(b"over tls " * 300_000)
    with cluster.peers[0].client() as c:
        c.upload(sample, name="tls/f")
    with cluster.peers[2].client() as c:
        assert c.read("tls/f") == sample.read_bytes()
    assert "TLS is off" not in cluster.peers[0].log_path.read_text()


def test_plaintext_and_wrong_ca_clients_are_refused(tls_cluster: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, _ = tls_cluster
    addr = cluster.peers[0].grpc_addr
    with DfsClient(addr, timeout=5) as plain, pytest.raises(PeerUnreachable):
        plain.status()
    other = tmp_path / "other"
    init_certs(other, 1)
    with DfsClient(addr, timeout=5, tls_ca=other / "ca.crt") as wrong, pytest.raises(PeerUnreachable):
        wrong.status()


def test_internal_port_demands_a_cluster_certificate(tls_cluster: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, certs = tls_cluster
    target = cluster.peers[0].peer_addr
    assert target != cluster.peers[0].grpc_addr
    name = (("grpc.ssl_target_name_override", PEER_TLS_NAME),)
    ca = (certs / "ca.crt").read_bytes()
    other = tmp_path / "other"
    init_certs(other, 1)
    attempts = {
        "no client certificate": grpc.ssl_channel_credentials(root_certificates=ca),
        "certificate from another CA": grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=(other / "peer-1.key").read_bytes(),
            certificate_chain=(other / "peer-1.crt").read_bytes()),
    }
    for what, creds in attempts.items():
        with grpc.secure_channel(target, creds, options=name) as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.PeerChunksStub(channel).DeleteChunks(pb.ChunkIds(ids=["0" * 64]), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, what
    good = grpc.ssl_channel_credentials(root_certificates=ca, private_key=(certs / "peer-3.key").read_bytes(),
                                        certificate_chain=(certs / "peer-3.crt").read_bytes())
    with grpc.secure_channel(target, good, options=name) as channel:
        assert pb_grpc.PeerChunksStub(channel).Stats(pb.StatsRequest(), timeout=5).node_id


def test_chunk_service_is_not_routable_on_the_client_port(tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, certs = tls_cluster
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes())
    with grpc.secure_channel(cluster.peers[0].grpc_addr, creds) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.PeerChunksStub(channel).Stats(pb.StatsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_peer_with_a_foreign_certificate_cannot_join(tls_cluster: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, certs = tls_cluster
    other = tmp_path / "other"
    init_certs(other, 1)
    intruder = PeerProc(tmp_path, 0, cluster.metadata, 2, [
        *cluster.extra, "--tls-cert", str(other / "peer-1.crt"), "--tls-key", str(other / "peer-1.key"),
        "--tls-ca", str(certs / "ca.crt"), "--peer-grpc-addr", "127.0.0.1:0"])
    try:
        intruder.start([cluster.peers[0].gossip_addr])
        with cluster.peers[0].client() as c:
            assert intruder.node_id not in {m.node_id for m in c.status().members}
    finally:
        intruder.kill()


# ------------------------------------------------------------------ configuration refusals


@pytest.mark.parametrize(("args", "words"), [
    (["--tls-cert", "x.crt"], "go together"),
    (["--cluster-secret", "short"], "at least 16"),
    ([], "DFS_CLUSTER_SECRET"),
])
def test_unsafe_settings_refuse_to_start(tmp_path: Path, args: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "d"), "--grpc-addr", "127.0.0.1:0",
         "--gossip-addr", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={"PATH": "", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_certificate_is_one_line(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certs(certs, 1)
    result = subprocess.run(
        [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "d"), "--grpc-addr", "127.0.0.1:0",
         "--gossip-addr", "127.0.0.1:0", "--tls-cert", str(certs / "peer-1.crt"),
         "--tls-key", str(certs / "missing.key"), "--tls-ca", str(certs / "ca.crt")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "DFS_TLS_KEY" in result.stderr and "missing.key" in result.stderr


def test_peer_without_tls_warns_at_start(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path).start(1)
    try:
        log = cluster.peers[0].log_path.read_text()
        assert "TLS is off" in log and "client authentication is off" in log
    finally:
        cluster.close()


def test_invalid_role_is_refused_locally(auth_cluster: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_cluster
    with client(cluster, tokens["admin"]) as admin, pytest.raises(InvalidArgument):
        admin.create_token("root")
