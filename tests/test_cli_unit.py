"""The SDK and the `dfs` CLI without a running peer.

Wire behaviour is exercised against FakeFileStore: an in-memory FileStore servicer on a real gRPC
server bound to 127.0.0.1 port 0, which can also abort with any status code and `dfs-error-kind`,
lie about a hash or corrupt the bytes it sends. Nothing here mocks grpc itself.
"""

from __future__ import annotations

import hashlib
import json
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import click
import grpc
import pytest
from click.testing import CliRunner, Result

import client
from client import (
    AuthenticationError,
    ClusterUnavailable,
    DfsClient,
    DfsClientError,
    IntegrityError,
    InvalidArgument,
    NotFoundError,
    PeerUnreachable,
    PermissionDeniedError,
    ServerError,
    from_rpc_error,
    profiles,
)
from client.cli import cli, hoist_global_options
from client.cli_settings import FROM_ENV, FROM_FLAG, Given, resolve
from client.errors import ERROR_KIND_KEY
from client.format import human_size
from client.profiles import Profile
from client.refs import file_ref_candidates, version_selector
from client.sdk import DEFAULT_PEER
from proto import dfs_pb2, dfs_pb2_grpc

COMMANDS = [
    "upload", "download", "list", "ls", "cat", "rm", "info", "versions", "delete", "status", "token", "whoami",
    "profile", "bucket",
]  # fmt: skip
SUBCOMMANDS = [
    ["token", "create"], ["token", "list"], ["token", "revoke"],
    ["profile", "set"], ["profile", "list"], ["profile", "show"], ["profile", "delete"], ["profile", "current"],
    ["bucket", "list"], ["bucket", "set-policy"],
]  # fmt: skip
NODES = ["node-a0000000000000", "node-b0000000000000"]


def _fail(context: grpc.ServicerContext, code: grpc.StatusCode, kind: str | None, details: str) -> NoReturn:
    if kind:
        context.set_trailing_metadata(((ERROR_KIND_KEY, kind),))
    context.abort(code, details)
    raise AssertionError("abort returned")


class FakeFileStore(dfs_pb2_grpc.FileStoreServicer):
    """A FileStore that keeps versions in memory. Names "abort:CODE:KIND" and "slow" misbehave on purpose."""

    def __init__(self) -> None:
        self.files: dict[str, list[tuple[dfs_pb2.VersionInfo, bytes]]] = {}
        self.seen_refs: list[str] = []
        self.list_calls = 0
        self.lie_about_sha = False
        self.corrupt_data = False

    def _lookup(self, ref: dfs_pb2.FileRef, context: grpc.ServicerContext) -> str:
        which = ref.WhichOneof("ref") or "none"
        value = getattr(ref, which, "")
        self.seen_refs.append(f"{which}={value}")
        if which == "name" and value.startswith("abort:"):
            _, code, kind = value.split(":")
            _fail(context, grpc.StatusCode[code], None if kind == "-" else kind, f"boom {code}\n  on purpose")
        if value == "slow":
            time.sleep(1.0)
        for name, versions in self.files.items():
            if value == (name if which == "name" else versions[0][0].file_id):
                return name
        _fail(context, grpc.StatusCode.NOT_FOUND, "not_found", f"file not found: {value}")

    def _select(
        self, name: str, request: Any, context: grpc.ServicerContext
    ) -> tuple[dfs_pb2.VersionInfo, bytes]:
        versions = self.files[name]
        if not request.HasField("version"):
            return versions[-1]
        sel = request.version
        for info, data in versions:
            if sel.WhichOneof("selector") == "number" and info.version == sel.number:
                return info, data
            if sel.WhichOneof("selector") == "version_id" and info.version_id == sel.version_id:
                return info, data
        _fail(context, grpc.StatusCode.NOT_FOUND, "not_found", f"version not found in {name}")

    def Upload(self, request_iterator: Iterator[dfs_pb2.UploadRequest], context: Any) -> dfs_pb2.UploadReply:
        header = next(request_iterator).header
        messages = list(request_iterator)
        if not messages or messages[-1].WhichOneof("msg") != "trailer":  # as a peer: a cut stream stores nothing
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the upload ended without a trailer")
        data = b"".join(r.data for r in messages)
        versions = self.files.setdefault(header.name, [])
        for old, _ in versions:
            old.latest = False
        chunks = [
            dfs_pb2.ChunkPlacement(
                chunk_id=hashlib.sha256(data[i : i + 4096]).hexdigest(), size=4096, peers=NODES
            )
            for i in range(0, len(data), 4096)
        ]
        info = dfs_pb2.VersionInfo(
            file_id=versions[0][0].file_id if versions else uuid.uuid4().hex,
            version_id=uuid.uuid4().hex,
            version=versions[-1][0].version + 1 if versions else 1,
            name=header.name,
            size=len(data),
            sha256="0" * 64 if self.lie_about_sha else hashlib.sha256(data).hexdigest(),
            chunk_count=len(chunks),
            content_type=header.content_type,
            metadata=header.metadata,
            created_at=time.time(),
            latest=True,
            chunks=chunks,
        )
        versions.append((info, data))
        return dfs_pb2.UploadReply(version=info, peers=NODES)

    def Download(self, request: dfs_pb2.DownloadRequest, context: Any) -> Iterator[dfs_pb2.DownloadReply]:
        info, data = self._select(self._lookup(request.file, context), request, context)
        if request.offset > len(data):
            _fail(context, grpc.StatusCode.OUT_OF_RANGE, "invalid_request", "offset beyond the end")
        end = len(data) if request.length == 0 else min(len(data), request.offset + request.length)
        part = data[request.offset : end]
        if self.corrupt_data and part:
            part = bytes([part[0] ^ 1]) + part[1:]
        bare = dfs_pb2.VersionInfo()
        bare.CopyFrom(info)
        del bare.chunks[:]
        yield dfs_pb2.DownloadReply(
            header=dfs_pb2.DownloadHeader(version=bare, offset=request.offset, length=len(part))
        )
        for i in range(0, len(part), 1000):
            yield dfs_pb2.DownloadReply(data=part[i : i + 1000])

    def Stat(self, request: dfs_pb2.StatRequest, context: Any) -> dfs_pb2.VersionInfo:
        return self._select(self._lookup(request.file, context), request, context)[0]

    def List(self, request: dfs_pb2.ListRequest, context: Any) -> dfs_pb2.ListReply:
        self.list_calls += 1
        names = sorted(n for n in self.files if n.startswith(request.prefix) and n > request.page_token)
        page = names[: request.page_size or 2]
        token = page[-1] if len(names) > len(page) else ""
        return dfs_pb2.ListReply(files=[self.files[n][-1][0] for n in page], next_page_token=token)

    def ListVersions(self, request: dfs_pb2.ListVersionsRequest, context: Any) -> dfs_pb2.ListVersionsReply:
        versions = self.files[self._lookup(request.file, context)]
        return dfs_pb2.ListVersionsReply(versions=[info for info, _ in reversed(versions)])

    def Delete(self, request: dfs_pb2.DeleteRequest, context: Any) -> dfs_pb2.DeleteReply:
        name = self._lookup(request.file, context)
        if not request.HasField("version"):
            return dfs_pb2.DeleteReply(deleted=[info for info, _ in self.files.pop(name)])
        victim = self._select(name, request, context)
        self.files[name].remove(victim)
        return dfs_pb2.DeleteReply(deleted=[victim[0]])

    def ClusterStatus(
        self, request: dfs_pb2.ClusterStatusRequest, context: Any
    ) -> dfs_pb2.ClusterStatusReply:
        members = [
            dfs_pb2.MemberStatus(node_id=n, state="alive", grpc_addr=f"127.0.0.1:{5000 + i}", on_ring=True)
            for i, n in enumerate(NODES)
        ]
        return dfs_pb2.ClusterStatusReply(
            node_id=NODES[0], ring_digest="d1g3st", replicas=2, vnodes=8, chunk_size=4096,
            members=members, metadata_backend="sqlite", metadata_healthy=True,
        )  # fmt: skip



@pytest.fixture
def store() -> FakeFileStore:
    return FakeFileStore()


@pytest.fixture
def peer(store: FakeFileStore) -> Iterator[str]:
    executor = futures.ThreadPoolExecutor(max_workers=8)
    server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
    dfs_pb2_grpc.add_FileStoreServicer_to_server(store, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait()
    executor.shutdown(wait=True)


@pytest.fixture
def sdk(peer: str) -> Iterator[DfsClient]:
    with DfsClient(peer, timeout=10) as c:
        yield c


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dfs(*args: str, peer: str = "127.0.0.1:1", stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--peer", peer, "--timeout", "10", *args], input=stdin)


def assert_one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfs: error: "), result.stderr
    return lines[0]


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1_572_864, "1.5 MiB"),
     (1_048_575, "1.0 MiB"), (5 * 1024**3, "5.0 GiB"), (3 * 1024**4, "3.0 TiB")],
)  # fmt: skip
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_an_id_shaped_ref_is_tried_as_a_file_id_then_as_a_name() -> None:
    ref = uuid.uuid4().hex
    assert [c.WhichOneof("ref") for c in file_ref_candidates(ref)] == ["file_id", "name"]
    assert all(ref in (c.file_id, c.name) for c in file_ref_candidates(ref))
    for name in ["report.pdf", ref.upper(), ref[:-1], ref + "0", "dir/" + ref]:
        assert [(c.WhichOneof("ref"), c.name) for c in file_ref_candidates(name)] == [("name", name)]
    with pytest.raises(InvalidArgument):
        file_ref_candidates("")


@pytest.mark.parametrize(
    ("version", "field", "value"),
    [(None, None, None), (3, "number", 3), ("3", "number", 3), (" 12 ", "number", 12),
     ("ab" * 16, "version_id", "ab" * 16)],
)  # fmt: skip
def test_version_selector(version: int | str | None, field: str | None, value: object) -> None:
    selector = version_selector(version)
    if field is None:
        assert selector is None
    else:
        assert selector is not None and selector.WhichOneof("selector") == field
        assert getattr(selector, field) == value


@pytest.mark.parametrize("bad", [0, -2, "0", "", "  ", True, "v3", "AB" * 16, "ab" * 15])
def test_version_selector_rejects_nonsense(bad: int | str) -> None:
    with pytest.raises(InvalidArgument):
        version_selector(bad)


def test_public_surface_matches_all() -> None:
    public = {
        n for n in dir(client) if not n.startswith("_") and not isinstance(getattr(client, n), type(client))
    }
    assert public == set(client.__all__) == set(client._HOMES)


# ------------------------------------------------------------ errors on the wire


MAPPING = [
    ("NOT_FOUND", "not_found", NotFoundError, 4),
    ("NOT_FOUND", "-", NotFoundError, 4),
    ("INVALID_ARGUMENT", "invalid_request", InvalidArgument, 2),
    ("OUT_OF_RANGE", "invalid_request", InvalidArgument, 2),
    ("DATA_LOSS", "data_loss", IntegrityError, 5),
    ("INTERNAL", "integrity", IntegrityError, 5),
    ("UNAVAILABLE", "insufficient_replicas", ClusterUnavailable, 6),
    ("UNAVAILABLE", "metadata_unavailable", ClusterUnavailable, 6),
    ("DEADLINE_EXCEEDED", "peer_unavailable", ClusterUnavailable, 6),
    ("UNAVAILABLE", "-", PeerUnreachable, 3),
    ("DEADLINE_EXCEEDED", "-", PeerUnreachable, 3),
    ("INTERNAL", "-", ServerError, 1),
    ("RESOURCE_EXHAUSTED", "storage_full", ServerError, 1),
    ("UNAUTHENTICATED", "unauthenticated", AuthenticationError, 7),
    ("UNAUTHENTICATED", "-", AuthenticationError, 7),
    ("INTERNAL", "unauthenticated", AuthenticationError, 7),
    ("PERMISSION_DENIED", "permission_denied", PermissionDeniedError, 8),
    ("PERMISSION_DENIED", "-", PermissionDeniedError, 8),
]


@pytest.mark.parametrize(("code", "kind", "cls", "exit_code"), MAPPING)
def test_from_rpc_error_maps_status_and_kind(
    peer: str, code: str, kind: str, cls: type[DfsClientError], exit_code: int
) -> None:
    with grpc.insecure_channel(peer) as channel:
        stub = dfs_pb2_grpc.FileStoreStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Stat(dfs_pb2.StatRequest(file=dfs_pb2.FileRef(name=f"abort:{code}:{kind}")), timeout=10)
    error = from_rpc_error(caught.value, peer=peer)
    assert type(error) is cls and error.exit_code == exit_code
    assert error.code == code and error.kind == (None if kind == "-" else kind)
    if cls is PeerUnreachable:
        assert str(error).startswith(f"cannot reach peer {peer}: ")
    elif cls is AuthenticationError:
        assert str(error) == f"authentication failed: boom {code} on purpose; pass --token or set DFS_TOKEN"
    elif cls is PermissionDeniedError:
        assert str(error) == f"permission denied: boom {code} on purpose"
    else:
        assert str(error) == f"boom {code} on purpose"


@pytest.mark.parametrize(("code", "kind", "cls", "exit_code"), MAPPING)
def test_cli_exit_code_follows_the_error(peer: str, code: str, kind: str, cls: type, exit_code: int) -> None:
    line = assert_one_error_line(dfs("info", f"abort:{code}:{kind}", peer=peer), exit_code)
    assert ("cannot reach" in line) == (cls is PeerUnreachable)


def test_an_rpc_error_without_status_is_a_server_error() -> None:
    error = from_rpc_error(grpc.RpcError("no call attached"))
    assert type(error) is ServerError and error.exit_code == 1 and error.code is None


def test_sdk_rejects_bad_arguments_before_any_rpc(closed_port: int) -> None:
    with pytest.raises(InvalidArgument):
        DfsClient(" ")
    with DfsClient(f"127.0.0.1:{closed_port}") as unreachable:
        with pytest.raises(InvalidArgument):
            unreachable.list(page_size=-1)
        with pytest.raises(InvalidArgument):
            unreachable.iter_download("x", offset=-1)
        with pytest.raises(InvalidArgument):
            unreachable.stat("x", version=0)


def test_sdk_raises_only_sdk_errors(sdk: DfsClient) -> None:
    with pytest.raises(ClusterUnavailable) as caught:
        sdk.stat("abort:UNAVAILABLE:insufficient_replicas")
    assert caught.value.retriable and not isinstance(caught.value, grpc.RpcError)


def test_a_peer_that_does_not_answer_in_time_is_unreachable(peer: str) -> None:
    with DfsClient(peer, timeout=0.2) as slow, pytest.raises(PeerUnreachable, match="deadline"):
        slow.stat("slow")


def test_closed_port_exits_3_quickly(closed_port: int) -> None:
    for args in (["status"], ["list"], ["info", "x"], ["download", "x", "-"]):
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--peer", f"127.0.0.1:{closed_port}", "--timeout", "3", *args])
        assert time.monotonic() - started < 5
        assert f"cannot reach peer 127.0.0.1:{closed_port}: connection refused" in assert_one_error_line(
            result, 3
        )


# ------------------------------------------------------------------ SDK behaviour


def test_ref_resolution_tries_id_then_name(sdk: DfsClient, store: FakeFileStore) -> None:
    by_name = sdk.upload(b"one", name="notes.txt").version
    id_like_name = uuid.uuid4().hex
    sdk.upload(b"two", name=id_like_name)
    store.seen_refs.clear()
    assert sdk.stat(by_name.file_id).name == "notes.txt"
    assert sdk.stat(id_like_name).name == id_like_name
    assert store.seen_refs == [
        f"file_id={by_name.file_id}",
        f"file_id={id_like_name}",
        f"name={id_like_name}",
    ]
    with pytest.raises(NotFoundError):
        sdk.stat(uuid.uuid4().hex)


def test_upload_sources_roundtrip(sdk: DfsClient, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    sent: list[int] = []
    first = sdk.upload(path, metadata={"k": "v"}, progress=sent.append, piece_size=1000)
    assert first.version.name == "blob.bin" and sum(sent) == len(payload) and len(sent) == 11
    assert first.peers == NODES and first.version.metadata == {"k": "v"}
    assert first.version.sha256 == hashlib.sha256(payload).hexdigest()
    second = sdk.upload(iter([payload[:5000], payload[5000:]]), name="blob.bin", piece_size=700)
    assert second.version.version == 2 and second.version.file_id == first.version.file_id
    assert sdk.read("blob.bin") == payload
    assert sdk.read(first.version.file_id, version=1, offset=100, length=50) == payload[100:150]
    assert sdk.read("blob.bin", version=first.version.version_id, offset=10_000) == payload[10_000:]
    assert [v.version for v in sdk.versions("blob.bin")] == [2, 1]
    assert json.loads(json.dumps(sdk.stat("blob.bin").to_dict()))["chunks"][0]["peers"] == NODES


def test_upload_of_a_stream_needs_a_name(sdk: DfsClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        sdk.upload(iter([b"x"]))
    assert isinstance(caught.value, ValueError)


def test_a_failing_source_cancels_the_upload(sdk: DfsClient, store: FakeFileStore) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"partial"
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        sdk.upload(pieces(), name="broken")
    assert store.files.get("broken", []) == []


def test_upload_detects_a_peer_storing_other_bytes(sdk: DfsClient, store: FakeFileStore) -> None:
    store.lie_about_sha = True
    with pytest.raises(IntegrityError, match="sha256"):
        sdk.upload(b"payload", name="lie")


def test_download_detects_corruption(sdk: DfsClient, store: FakeFileStore) -> None:
    sdk.upload(b"abcdef" * 1000, name="c")
    store.corrupt_data = True
    with pytest.raises(IntegrityError, match="sha256"):
        sdk.read("c")


def test_list_follows_every_page(sdk: DfsClient, store: FakeFileStore) -> None:
    for name in ["a1", "a2", "a3", "a4", "a5", "b1"]:
        sdk.upload(b"x", name=name)
    assert [f.name for f in sdk.list(prefix="a")] == ["a1", "a2", "a3", "a4", "a5"]
    assert store.list_calls == 3
    assert [f.name for f in sdk.list(page_size=10)] == ["a1", "a2", "a3", "a4", "a5", "b1"]


def test_delete_and_status(sdk: DfsClient) -> None:
    sdk.upload(b"1", name="d")
    sdk.upload(b"2", name="d")
    assert [v.version for v in sdk.delete("d", version="1")] == [1]
    assert [v.version for v in sdk.delete("d")] == [2]
    with pytest.raises(NotFoundError):
        sdk.stat("d")
    status = sdk.status()
    assert status.node_id == NODES[0] and [m.node_id for m in status.members] == NODES
    assert status.to_dict()["members"][1]["grpc_addr"] == "127.0.0.1:5001"


# ------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS], *SUBCOMMANDS])
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_help_lists_every_exit_code() -> None:
    text = CliRunner().invoke(cli, ["--help"]).stdout
    codes = {int(line.split()[0]) for line in text.split("Exit codes:")[1].splitlines() if line.strip()}
    classes = [PeerUnreachable, NotFoundError, IntegrityError, InvalidArgument, ClusterUnavailable,
               AuthenticationError, PermissionDeniedError, ServerError]  # fmt: skip
    assert {c.exit_code for c in classes} | {0, 130} == codes
    assert "--tls-ca" in text and "DFS_TLS_CA" in text and "--token" in text and "DFS_TOKEN" in text


def test_upload_of_a_missing_file(tmp_path: Path) -> None:
    line = assert_one_error_line(dfs("upload", str(tmp_path / "missing.txt")), 2)
    assert "missing.txt" in line and "No such file" in line


def test_upload_from_stdin_needs_a_name() -> None:
    result = dfs("upload", "-", stdin=b"data")
    assert result.exit_code == 2 and "--name" in result.stderr and "Traceback" not in result.output


def test_bad_meta_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert dfs("upload", str(tmp_path / "f"), "--meta", "novalue").exit_code == 2


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: DfsClient) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setattr(DfsClient, "status", interrupted)
    result = dfs("status")
    assert result.exit_code == 130 and result.stderr == ""


def test_cli_roundtrip(peer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "report.txt"
    src.parent.mkdir()
    src.write_bytes(b"hello world\n" * 300)
    up = dfs("--json", "upload", str(src), "--meta", "team=ops", "--content-type", "text/plain", peer=peer)
    assert up.exit_code == 0, up.stderr
    version = json.loads(up.stdout)["version"]
    assert version["metadata"] == {"team": "ops"} and version["size"] == 3600
    assert dfs("upload", "-", "--name", "dir/piped.bin", peer=peer, stdin=b"\x00\xff").exit_code == 0

    listing = dfs("list", peer=peer)
    assert (
        "report.txt" in listing.stdout and "3.5 KiB" in listing.stdout and "dir/piped.bin" in listing.stdout
    )
    assert len(json.loads(dfs("--json", "list", peer=peer).stdout)["files"]) == 2
    info = dfs("info", version["file_id"], peer=peer)
    assert version["sha256"] in info.stdout and "team=ops" in info.stdout and "text/plain" in info.stdout

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert dfs("download", "dir/piped.bin", peer=peer).exit_code == 0
    assert (cwd / "piped.bin").read_bytes() == b"\x00\xff"
    out = dfs("--json", "download", "report.txt", "-", "--offset", "6", "--length", "5", peer=peer)
    assert out.exit_code == 0 and out.stdout_bytes == b"world"
    assert json.loads(out.stderr)["bytes_written"] == 5
    saved = dfs("--json", "download", "report.txt", str(tmp_path), peer=peer)
    assert json.loads(saved.stdout)["path"] == str(tmp_path / "report.txt")
    assert (tmp_path / "report.txt").read_bytes() == src.read_bytes()

    assert "report.txt version 1" in dfs("delete", "report.txt", peer=peer).stdout
    assert_one_error_line(dfs("versions", "report.txt", peer=peer), 4)
    status = dfs("status", peer=peer)
    assert (
        "d1g3st" in status.stdout and "node-a000000 *" in status.stdout and "sqlite: healthy" in status.stdout
    )


def test_failed_download_leaves_no_file(peer: str, store: FakeFileStore, tmp_path: Path) -> None:
    assert dfs("upload", "-", "--name", "doc", peer=peer, stdin=b"content" * 500).exit_code == 0
    store.corrupt_data = True
    target = tmp_path / "doc"
    assert "sha256" in assert_one_error_line(dfs("download", "doc", str(target), peer=peer), 5)
    assert list(tmp_path.iterdir()) == []
    assert_one_error_line(dfs("download", "doc", str(tmp_path / "no" / "such" / "dir"), peer=peer), 2)


def test_every_json_output_is_one_document(peer: str) -> None:
    assert dfs("upload", "-", "--name", "j", peer=peer, stdin=b"j").exit_code == 0
    for args in (
        ["list"],
        ["info", "j"],
        ["versions", "j"],
        ["status"],
        ["download", "j", "-"],
        ["delete", "j"],
    ):
        result = dfs("--json", *args, peer=peer)
        assert result.exit_code == 0, result.stderr
        document = result.stderr if args[0] == "download" else result.stdout
        assert isinstance(json.loads(document), dict)


def test_click_is_the_entry_point() -> None:
    assert isinstance(cli, click.Group) and set(COMMANDS) <= set(cli.commands)


# ------------------------------------------------------------ command-line shape


UNCHANGED: list[str] = []


@pytest.mark.parametrize(
    ("args", "expected", "json_errors"),
    [
        (["upload", "f", "--json"], ["--json", "upload", "f"], True),
        (["--peer", "h:1", "download", "x", "-", "--quiet"], ["--peer", "h:1", "--quiet", "download", "x", "-"], False),
        (["list", "--peer=h:2", "--timeout", "3"], ["--peer=h:2", "--timeout", "3", "list"], False),
        (["token", "create", "--role", "read", "--json"], ["--json", "token", "create", "--role", "read"], True),
        (["token", "--json", "list"], ["--json", "token", "list"], True),
        # `profile set` has a --peer and a --tls-ca of its own: only -q is global there.
        (["profile", "set", "w", "--peer", "h:1", "--tls-ca", "c", "-q"],
         ["-q", "profile", "set", "w", "--peer", "h:1", "--tls-ca", "c"], False),
        (["upload", "f", "--name", "--json"], UNCHANGED, False),  # the value of --name, not the flag
        (["upload", "-", "--name", "n", "--", "--json"], UNCHANGED, False),  # after --, only arguments
        (["--json", "status"], UNCHANGED, True),
        (["nosuch", "--json"], ["--json", "nosuch", "--json"], True),  # so even that mistake reports JSON
    ],
)  # fmt: skip
def test_global_options_after_the_command_move_before_it(
    args: list[str], expected: list[str], json_errors: bool
) -> None:
    """`dfs download x - --quiet` must mean what `dfs --quiet download x -` means, as users expect."""
    assert hoist_global_options(cli, click.Context(cli), args) == (expected or args, json_errors)


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["upload", "f", "--bogus"], "dfs upload"),
        (["uplod"], "dfs"),
        ([], "dfs"),
        (["--timeout", "soon", "status"], "dfs"),
        (["download"], "dfs download"),
        (["download", "x", "-", "--offset", "-1"], "dfs download"),
        (["token"], "dfs token"),
        (["token", "create"], "dfs token create"),
        (["token", "create", "--role", "root"], "dfs token create"),
        (["profile", "set", "w", "--bogus"], "dfs profile set"),
        (["rm"], "dfs rm"),
        (["rm", "--recursive", ""], "dfs rm"),
        (["upload", "f", "--peer"], "dfs"),
    ],
)
def test_every_mistake_is_one_line_with_a_help_hint(args: list[str], command: str) -> None:
    line = assert_one_error_line(CliRunner().invoke(cli, args), 2)
    assert line.endswith(f"(see '{command} --help')"), line


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "upload", "f", "--bogus"],
        ["upload", "f", "--bogus", "--json"],
        ["token", "create", "--json"],
        ["--json", "nosuch"],
        ["--json", "--profile", "nowhere", "status"],
        ["status", "--profile", "nowhere", "--json"],
    ],
)
def test_with_json_a_mistake_is_one_json_object_on_stderr(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "usage" and error["exit_code"] == 2 and error["message"]
    assert set(error) == {"type", "message", "exit_code"}


@pytest.mark.parametrize("where", ["before", "after"])
def test_with_json_a_failure_of_the_peer_is_one_json_object(peer: str, where: str) -> None:
    args = ["info", "abort:NOT_FOUND:not_found"]
    args = ["--json", *args] if where == "before" else [*args, "--json"]
    result = dfs(*args, peer=peer)
    assert result.exit_code == 4 and result.stdout == ""
    assert json.loads(result.stderr) == {
        "error": {"type": "not_found", "message": "boom NOT_FOUND on purpose", "exit_code": 4}
    }


def test_an_empty_name_is_refused_before_reading_the_file(tmp_path: Path) -> None:
    line = assert_one_error_line(dfs("upload", str(tmp_path / "not-even-there"), "--name", ""), 2)
    assert "--name" in line and "empty" in line


# ------------------------------------------------------------------ profiles


def test_each_setting_takes_the_first_layer_that_has_it() -> None:
    saved = Profile("work", "profile:1", tls_ca="/p/ca.pem", token_file="/p/token")
    unset = Given(None)
    from_profile = resolve(peer=unset, tls_ca=unset, token=unset, profile=saved, profile_source=FROM_ENV)
    assert (from_profile.peer, from_profile.tls_ca, from_profile.token, from_profile.token_file) == (
        "profile:1", "/p/ca.pem", None, "/p/token"
    )
    assert from_profile.sources == {"peer": "profile", "tls_ca": "profile", "token": "profile", "profile": FROM_ENV}

    env = resolve(
        peer=Given("env:1", FROM_ENV), tls_ca=Given("/e/ca.pem", FROM_ENV), token=Given("t-env", FROM_ENV),
        profile=saved,
    )  # fmt: skip
    assert (env.peer, env.tls_ca, env.token, env.token_file) == ("env:1", "/e/ca.pem", "t-env", None)
    assert {env.sources[k] for k in ("peer", "tls_ca", "token")} == {FROM_ENV}

    flag = resolve(peer=Given("flag:1"), tls_ca=Given(""), token=Given("t-flag"), profile=saved)
    assert (flag.peer, flag.tls_ca, flag.token) == ("flag:1", "", "t-flag")  # "" : plain text, whatever the profile
    assert {flag.sources[k] for k in ("peer", "tls_ca", "token")} == {FROM_FLAG}

    default = resolve(peer=unset, tls_ca=unset, token=unset, profile=None)
    assert (default.peer, default.tls_ca, default.token, default.token_file) == (DEFAULT_PEER, None, None, None)
    assert set(default.sources.values()) == {"default"}


def test_a_token_file_is_read_only_when_a_client_opens(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    settings = resolve(
        peer=Given("127.0.0.1:1"), tls_ca=Given(None), token=Given(None),
        profile=Profile("p", "x:1", token_file=str(token_file)),
    )  # fmt: skip
    with pytest.raises(InvalidArgument, match="cannot read the token file"):
        settings.resolved_token()
    token_file.write_text("  dfs_secret-token \n")
    assert settings.resolved_token() == "dfs_secret-token"
    token_file.write_text("\n")
    with pytest.raises(InvalidArgument, match="is empty"):
        settings.resolved_token()
    assert "dfs_secret" not in repr(settings)


def test_profiles_file_is_private_and_replaced_whole(private_config: Path) -> None:
    path = profiles.save_profile(Profile("a", "h:1"))
    assert path == private_config / "profiles.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_config.stat().st_mode) == 0o700
    profiles.save_profile(Profile("b", "h:2", tls_ca="/ca.pem"))
    profiles.save_profile(Profile("a", "h:3"))
    assert profiles.load_profiles() == {"a": Profile("a", "h:3"), "b": Profile("b", "h:2", tls_ca="/ca.pem")}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(private_config.iterdir()) == [path], "a temporary file was left behind"
    assert profiles.remove_profile("a") == Profile("a", "h:3")
    with pytest.raises(profiles.UnknownProfile, match="the profiles are b"):
        profiles.get_profile("a")


def test_the_config_directory_follows_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DFS_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert profiles.config_dir() == tmp_path / "xdg" / "dfs"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profiles.config_dir() == tmp_path / "home" / ".config" / "dfs"


@pytest.mark.parametrize("content", ["{not json", '{"profiles": []}', '{"profiles": {"a": {"tls_ca": "/x"}}}'])
def test_a_damaged_profiles_file_is_one_line(private_config: Path, content: str) -> None:
    private_config.mkdir()
    (private_config / "profiles.json").write_text(content)
    line = assert_one_error_line(CliRunner().invoke(cli, ["profile", "list"]), 2)
    assert str(private_config / "profiles.json") in line
    assert_one_error_line(CliRunner().invoke(cli, ["--profile", "a", "status"]), 2)
