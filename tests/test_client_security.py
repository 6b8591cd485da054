"""Client security without a running peer: TLS channels, bearer tokens, auth errors and token commands.

AuthFileStore is an in-memory FileStore servicer on a real gRPC server bound to 127.0.0.1 port 0 (plain
text or TLS) that checks the `authorization` metadata of every call like a secured peer would, and
records what each call carried. Certificates are made here with `cryptography`: a CA, a second CA
that signed nothing the server uses, a server certificate for localhost/127.0.0.1/peer-1, and one that
names only peer-9.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client import (
    AuthenticationError,
    DfsClient,
    InvalidArgument,
    PeerUnreachable,
    PermissionDeniedError,
    TokenInfo,
)
from client.cli import cli
from proto import dfs_pb2, dfs_pb2_grpc

RANK = {"read": 0, "write": 1, "admin": 2}
NEEDS = {
    "Upload": "write", "Download": "read", "Stat": "read", "List": "read", "ClusterStatus": "read",
    "WhoAmI": "read", "CreateToken": "admin", "ListTokens": "admin", "RevokeToken": "admin",
}  # fmt: skip


def _new_token(role: str, name: str = "") -> tuple[str, dfs_pb2.TokenInfo]:
    token_id = secrets.token_hex(8)
    info = dfs_pb2.TokenInfo(token_id=token_id, role=role, name=name, created_at=time.time())
    return f"dfs_{token_id}_{secrets.token_urlsafe(24)}", info


class AuthFileStore(dfs_pb2_grpc.FileStoreServicer):
    """Keeps files and tokens in memory; with `require_auth` every call needs a valid token of enough rank."""

    def __init__(self, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        self.files: dict[str, tuple[dfs_pb2.VersionInfo, bytes]] = {}
        self.tokens: dict[str, tuple[str, dfs_pb2.TokenInfo]] = {}
        self.seen: list[tuple[str, str | None]] = []
        """(method, authorization metadata or None) of every call, in order."""

    def add_token(self, role: str, name: str = "") -> str:
        token, info = _new_token(role, name)
        self.tokens[info.token_id] = (token, info)
        return token

    def _caller(self, method: str, context: grpc.ServicerContext) -> dfs_pb2.TokenInfo:
        header = dict(context.invocation_metadata()).get("authorization")
        value = header.decode() if isinstance(header, bytes) else header
        self.seen.append((method, value))
        if not self.require_auth:
            return dfs_pb2.TokenInfo(role="admin")
        found = [
            info
            for token, info in self.tokens.values()
            if value == f"Bearer {token}" and not info.revoked_at
        ]
        if not found:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing, unknown or revoked token")
        if RANK[found[0].role] < RANK[NEEDS[method]]:
            _abort(context, grpc.StatusCode.PERMISSION_DENIED, f"role {found[0].role} may not call {method}")
        return found[0]

    def Upload(self, request_iterator: Iterator[dfs_pb2.UploadRequest], context: Any) -> dfs_pb2.UploadReply:
        self._caller("Upload", context)
        header = next(request_iterator).header
        data = b"".join(r.data for r in request_iterator)
        info = dfs_pb2.VersionInfo(
            file_id=uuid.uuid4().hex, version_id=uuid.uuid4().hex, version=1, name=header.name,
            size=len(data), sha256=hashlib.sha256(data).hexdigest(), created_at=time.time(), latest=True,
        )  # fmt: skip
        self.files[header.name] = (info, data)
        return dfs_pb2.UploadReply(version=info, peers=["node-a"])

    def Download(self, request: dfs_pb2.DownloadRequest, context: Any) -> Iterator[dfs_pb2.DownloadReply]:
        self._caller("Download", context)
        info, data = self._lookup(request.file, context)
        yield dfs_pb2.DownloadReply(header=dfs_pb2.DownloadHeader(version=info, offset=0, length=len(data)))
        for start in range(0, len(data), 1000):
            yield dfs_pb2.DownloadReply(data=data[start : start + 1000])

    def Stat(self, request: dfs_pb2.StatRequest, context: Any) -> dfs_pb2.VersionInfo:
        self._caller("Stat", context)
        return self._lookup(request.file, context)[0]

    def List(self, request: dfs_pb2.ListRequest, context: Any) -> dfs_pb2.ListReply:
        self._caller("List", context)
        return dfs_pb2.ListReply(files=[info for info, _ in self.files.values()])

    def ClusterStatus(self, request: dfs_pb2.ClusterStatusRequest, context: Any) -> dfs_pb2.ClusterStatusReply:
        self._caller("ClusterStatus", context)
        return dfs_pb2.ClusterStatusReply(node_id="node-a", replicas=1, metadata_healthy=True)

    def CreateToken(self, request: dfs_pb2.CreateTokenRequest, context: Any) -> dfs_pb2.CreateTokenReply:
        self._caller("CreateToken", context)
        token, info = _new_token(request.role, request.name)
        self.tokens[info.token_id] = (token, info)
        return dfs_pb2.CreateTokenReply(token=token, info=info)

    def ListTokens(self, request: dfs_pb2.ListTokensRequest, context: Any) -> dfs_pb2.ListTokensReply:
        self._caller("ListTokens", context)
        return dfs_pb2.ListTokensReply(tokens=[info for _, info in self.tokens.values()])

    def RevokeToken(self, request: dfs_pb2.RevokeTokenRequest, context: Any) -> dfs_pb2.TokenInfo:
        self._caller("RevokeToken", context)
        if request.token_id not in self.tokens:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"token not found: {request.token_id}")
        info = self.tokens[request.token_id][1]
        info.revoked_at = time.time()
        return info

    def WhoAmI(self, request: dfs_pb2.WhoAmIRequest, context: Any) -> dfs_pb2.TokenInfo:
        return self._caller("WhoAmI", context)

    def _lookup(self, ref: dfs_pb2.FileRef, context: grpc.ServicerContext) -> tuple[dfs_pb2.VersionInfo, bytes]:
        if ref.name not in self.files:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"file not found: {ref.name}")
        return self.files[ref.name]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("abort returned")


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    ca: Path
    """The CA that signed both server certificates."""
    other_ca: Path
    """A CA that signed nothing the servers use."""
    server: tuple[bytes, bytes]
    """(key PEM, certificate PEM) naming localhost, 127.0.0.1 and peer-1."""
    misnamed: tuple[bytes, bytes]
    """(key PEM, certificate PEM) naming only peer-9."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], names: list[x509.GeneralName]
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("dfs peer"))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca[0], hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, other = _make_ca("dfs test CA"), _make_ca("another CA")
    paths = []
    for filename, (_, cert) in (("ca.crt", ca), ("other-ca.crt", other)):
        path = base / filename
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths.append(path)
    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("peer-1")]
    return Pki(paths[0], paths[1], _make_leaf(ca, local), _make_leaf(ca, [x509.DNSName("peer-9")]))


# ---------------------------------------------------------------------- servers

Serve = Callable[..., int]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """serve(servicer, key_and_cert=None) -> port: a plain-text or TLS server on 127.0.0.1, stopped at teardown."""
    running: list[tuple[grpc.Server, futures.ThreadPoolExecutor]] = []

    def start(servicer: AuthFileStore, key_and_cert: tuple[bytes, bytes] | None = None) -> int:
        executor = futures.ThreadPoolExecutor(max_workers=4)
        server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
        dfs_pb2_grpc.add_FileStoreServicer_to_server(servicer, server)
        if key_and_cert is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([key_and_cert]))
        server.start()
        running.append((server, executor))
        return port

    yield start
    for server, executor in running:
        server.stop(None).wait()
        executor.shutdown(wait=True)


@pytest.fixture
def store() -> AuthFileStore:
    return AuthFileStore()


@pytest.fixture
def admin(store: AuthFileStore) -> str:
    return store.add_token("admin", "root")


@pytest.fixture
def peer(store: AuthFileStore, serve: Serve) -> str:
    return f"127.0.0.1:{serve(store)}"


def dfs(peer: str, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--peer", peer, "--timeout", "10", *args], input=stdin, env=env)


def assert_one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfs: error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------------ tokens


def test_the_token_rides_on_every_unary_and_streaming_call(store: AuthFileStore, admin: str, peer: str) -> None:
    with DfsClient(peer, timeout=10, token=admin) as sdk:
        sdk.upload(b"x" * 2500, name="a.bin")  # client stream
        assert sdk.read("a.bin") == b"x" * 2500  # server stream
        sdk.stat("a.bin")
        assert [f.name for f in sdk.list()] == ["a.bin"]
        sdk.status()
        sdk.create_token("read")
        sdk.list_tokens()
        assert sdk.whoami().role == "admin"
    assert {method for method, _ in store.seen} == set(NEEDS) - {"RevokeToken"}
    assert {value for _, value in store.seen} == {f"Bearer {admin}"}


def test_without_a_token_no_authorization_is_sent(serve: Serve) -> None:
    open_store = AuthFileStore(require_auth=False)
    with DfsClient(f"127.0.0.1:{serve(open_store)}", timeout=10) as sdk:
        me = sdk.whoami()
        sdk.upload(b"data", name="f")
        assert sdk.read("f") == b"data"
    assert me == TokenInfo(token_id="", role="admin") and not me.revoked
    assert [value for _, value in open_store.seen] == [None, None, None]


def test_the_token_comes_from_the_environment(
    store: AuthFileStore, admin: str, peer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DFS_TOKEN", admin)
    with DfsClient(peer, timeout=10) as sdk:
        assert sdk.has_token and sdk.whoami().name == "root"
    with DfsClient(peer, timeout=10, token="") as anonymous, pytest.raises(AuthenticationError):
        anonymous.whoami()
    monkeypatch.delenv("DFS_TOKEN")
    result = dfs(peer, "whoami", env={"DFS_TOKEN": admin})
    assert result.exit_code == 0 and "root" in result.stdout and admin not in result.output


def test_a_missing_or_wrong_token_exits_7(store: AuthFileStore, admin: str, peer: str) -> None:
    line = assert_one_error_line(dfs(peer, "list"), 7)
    assert "authentication failed: missing, unknown or revoked token" in line and "DFS_TOKEN" in line
    forged = admin[:-4] + "AAAA"
    result = dfs(peer, "--token", forged, "upload", "-", "--name", "x", stdin=b"data")
    assert forged not in assert_one_error_line(result, 7)
    with DfsClient(peer, timeout=10, token=forged) as sdk, pytest.raises(AuthenticationError) as caught:
        list(sdk.list())
    assert caught.value.exit_code == 7 and caught.value.code == "UNAUTHENTICATED" and forged not in str(caught.value)


def test_a_role_too_weak_exits_8(store: AuthFileStore, peer: str) -> None:
    reader = store.add_token("read", "ci")
    result = dfs(peer, "--token", reader, "upload", "-", "--name", "x", stdin=b"data")
    line = assert_one_error_line(result, 8)
    assert line == "dfs: error: permission denied: role read may not call Upload" and reader not in line
    assert_one_error_line(dfs(peer, "--token", reader, "token", "create", "--role", "admin"), 8)
    with DfsClient(peer, timeout=10, token=reader) as sdk, pytest.raises(PermissionDeniedError) as caught:
        sdk.list_tokens()
    assert caught.value.exit_code == 8 and caught.value.code == "PERMISSION_DENIED"


def test_token_create_list_whoami_revoke(store: AuthFileStore, admin: str, peer: str) -> None:
    created = dfs(peer, "--token", admin, "token", "create", "--role", "read", "--name", "backup job")
    assert created.exit_code == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("dfs_")
    assert "shown only once" in created.stderr and token not in created.stderr
    token_id = token.split("_")[1]

    me = dfs(peer, "--token", token, "whoami")
    assert me.exit_code == 0 and token_id in me.stdout and "backup job" in me.stdout and "read" in me.stdout
    assert json.loads(dfs(peer, "--token", token, "--json", "whoami").stdout)["role"] == "read"

    listing = dfs(peer, "--token", admin, "token", "list")
    assert listing.exit_code == 0 and listing.stdout.split("\n")[0].split() == [
        "ID", "ROLE", "NAME", "CREATED", "REVOKED",
    ]  # fmt: skip
    row = next(line for line in listing.stdout.splitlines() if line.startswith(token_id))
    assert "read" in row and "backup job" in row and row.endswith("-") and token not in listing.stdout

    revoked = dfs(peer, "--token", admin, "token", "revoke", token_id)
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked read token {token_id} (backup job)"
    assert_one_error_line(dfs(peer, "--token", token, "whoami"), 7)
    documents = json.loads(dfs(peer, "--token", admin, "--json", "token", "list").stdout)["tokens"]
    mine = next(d for d in documents if d["token_id"] == token_id)
    assert mine["role"] == "read" and mine["revoked_at"] > 0
    assert next(d for d in documents if d["name"] == "root")["revoked_at"] is None
    assert_one_error_line(dfs(peer, "--token", admin, "token", "revoke", "0" * 16), 4)


def test_token_create_json_and_quiet(admin: str, peer: str) -> None:
    result = dfs(peer, "--token", admin, "--json", "-q", "token", "create", "--role", "write")
    document = json.loads(result.stdout)
    assert result.exit_code == 0 and result.stderr == ""
    assert document["token"].startswith(f"dfs_{document['info']['token_id']}_")
    assert document["info"]["role"] == "write" and document["info"]["revoked_at"] is None


def test_sdk_token_methods(store: AuthFileStore, admin: str, peer: str) -> None:
    with DfsClient(peer, timeout=10, token=admin) as sdk:
        secret, info = sdk.create_token("write", name="uploader")
        assert isinstance(secret, str) and info.token_id in secret and info.created_at > 0
        assert not info.revoked and info.revoked_at is None
        assert info in sdk.list_tokens()
        gone = sdk.revoke_token(info.token_id)
        assert gone.revoked and gone.revoked_at is not None and gone.token_id == info.token_id


def test_token_arguments_are_checked_before_any_rpc(store: AuthFileStore, peer: str) -> None:
    with DfsClient(peer, timeout=10, token="dfs_x_y") as sdk:
        with pytest.raises(InvalidArgument, match="read, write, admin"):
            sdk.create_token("root")
        with pytest.raises(InvalidArgument):
            sdk.revoke_token("  ")
    assert store.seen == []
    assert dfs(peer, "token", "create", "--role", "root").exit_code == 2


@pytest.mark.parametrize("bad", ["dfs_a b", "dfs_ab\ncd", "dfs_é"])
def test_a_token_that_cannot_be_sent_is_refused_without_echoing_it(bad: str, peer: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        DfsClient(peer, token=bad)
    assert "dfs_" not in str(caught.value)
    assert "dfs_" not in assert_one_error_line(dfs(peer, "--token", bad, "list"), 2)


def test_the_token_is_never_shown_by_repr(peer: str) -> None:
    token = "dfs_0123456789abcdef_s3cr3t"
    with DfsClient(peer, token=f" {token}\n") as sdk:  # a trailing newline from a file is forgiven
        assert token not in repr(sdk) and "token=True" in repr(sdk)
    from client.cli import Settings

    assert token not in repr(Settings(peer=peer, json=False, quiet=False, timeout=None, token=token))


# --------------------------------------------------------------------------- TLS


def test_tls_with_the_right_ca(pki: Pki, serve: Serve, store: AuthFileStore, admin: str) -> None:
    port = serve(store, pki.server)
    for host in ("127.0.0.1", "localhost"):
        with DfsClient(f"{host}:{port}", timeout=10, tls_ca=pki.ca, token=admin) as sdk:
            assert sdk.tls
            sdk.upload(b"secret bytes" * 100, name=f"{host}.bin")
            assert sdk.read(f"{host}.bin") == b"secret bytes" * 100
    result = dfs(f"127.0.0.1:{port}", "--tls-ca", str(pki.ca), "--token", admin, "whoami")
    assert result.exit_code == 0 and "root" in result.stdout
    from_env = dfs(f"localhost:{port}", "list", env={"DFS_TLS_CA": str(pki.ca), "DFS_TOKEN": admin})
    assert from_env.exit_code == 0 and "localhost.bin" in from_env.stdout


def test_tls_ca_from_the_environment_in_the_sdk(
    pki: Pki, serve: Serve, store: AuthFileStore, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = serve(store, pki.server)
    monkeypatch.setenv("DFS_TLS_CA", str(pki.ca))
    with DfsClient(f"127.0.0.1:{port}", timeout=10, token=admin) as sdk:
        assert sdk.tls and sdk.whoami().role == "admin"
    with DfsClient(f"127.0.0.1:{port}", timeout=10, tls_ca="", token=admin) as plain:
        assert not plain.tls
        with pytest.raises(PeerUnreachable):
            plain.whoami()


def test_a_certificate_from_another_ca_fails_in_one_line(pki: Pki, serve: Serve, store: AuthFileStore) -> None:
    peer = f"127.0.0.1:{serve(store, pki.server)}"
    line = assert_one_error_line(dfs(peer, "--tls-ca", str(pki.other_ca), "status"), 3)
    assert f"cannot reach peer {peer}: TLS handshake failed" in line and "not signed by the CA" in line
    with DfsClient(peer, timeout=10, tls_ca=pki.other_ca) as sdk, pytest.raises(PeerUnreachable, match="TLS"):
        sdk.read("x")  # a streaming call fails the same way
    assert store.seen == []


def test_the_real_cli_writes_nothing_but_the_error_line(pki: Pki, serve: Serve, store: AuthFileStore) -> None:
    """grpc's C core logs failed handshakes to the process's stderr, which CliRunner cannot see."""
    peer = f"127.0.0.1:{serve(store, pki.server)}"
    env = {k: v for k, v in os.environ.items() if k not in ("GRPC_VERBOSITY", "DFS_TLS_CA", "DFS_TOKEN")}
    command = [sys.executable, "-m", "client.cli", "--peer", peer, "--tls-ca", str(pki.other_ca), "--timeout", "10"]
    done = subprocess.run([*command, "whoami"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("dfs: error: ") and done.stderr.count("\n") == 1 and "TLS" in done.stderr


def test_a_certificate_for_another_name_fails_in_one_line(pki: Pki, serve: Serve, store: AuthFileStore) -> None:
    peer = f"127.0.0.1:{serve(store, pki.misnamed)}"
    line = assert_one_error_line(dfs(peer, "--tls-ca", str(pki.ca), "list"), 3)
    assert "TLS handshake failed: the peer's certificate does not name the address dialed" in line


def test_a_tls_client_against_a_plain_text_peer(pki: Pki, peer: str) -> None:
    line = assert_one_error_line(dfs(peer, "--tls-ca", str(pki.ca), "whoami"), 3)
    assert "TLS handshake failed: the peer does not speak TLS" in line


def test_a_plain_text_client_against_a_tls_peer_gets_a_hint(pki: Pki, serve: Serve, store: AuthFileStore) -> None:
    peer = f"127.0.0.1:{serve(store, pki.server)}"
    line = assert_one_error_line(dfs(peer, "whoami"), 3)
    assert f"cannot reach peer {peer}" in line and "--tls-ca" in line


def test_a_missing_or_unusable_ca_file_is_a_local_error(tmp_path: Path, peer: str) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    cases = [(tmp_path / "missing.crt", "No such file"), (tmp_path, "Is a directory"), (not_pem, "no PEM")]
    for path, reason in cases:
        line = assert_one_error_line(dfs(peer, "--tls-ca", str(path), "list"), 2)
        assert str(path) in line and reason in line
        with pytest.raises(InvalidArgument, match=reason):
            DfsClient(peer, tls_ca=path)


def test_unreachable_over_tls_is_still_unreachable(pki: Pki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    line = assert_one_error_line(dfs(f"127.0.0.1:{port}", "--tls-ca", str(pki.ca), "list"), 3)
    assert "connection refused" in line.lower()
