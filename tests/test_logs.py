"""Logs: JSON lines with the node and request id, request ids returned to clients, and the access log.

The formats are checked in-process on single records; the request ids end to end, on real
`dfs-peer serve` processes: the id a client reads in the trailing metadata (`x-request-id`) must be
the one on the access-log line of its call, and on every other line logged while handling it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from peer.logs import REQUEST_ID, ContextFilter, JsonFormatter, LogWriter, TextFormatter
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc
from tests.cluster import Cluster, PeerProc, wait_for

pytestmark = pytest.mark.timeout(120)

FIELDS = {"time", "level", "node_id", "request_id", "logger", "message"}


# ------------------------------------------------------------------ the formats, in-process


def record(message: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    args = args or (("world",) if "%s" in message else ())
    rec = logging.LogRecord("peer.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_has_every_field_and_the_request_id_of_the_call() -> None:
    stamp = ContextFilter("0123456789abcdef0123456789abcdef")
    outside = record()
    stamp.filter(outside)
    token = REQUEST_ID.set("feedface00000001")
    try:
        inside = record()
        stamp.filter(inside)
    finally:
        REQUEST_ID.reset(token)
    doc = json.loads(JsonFormatter().format(inside))
    assert FIELDS <= set(doc)
    assert doc["level"] == "WARNING" and doc["logger"] == "peer.test" and doc["message"] == "hello world"
    assert doc["node_id"] == "0123456789abcdef0123456789abcdef"
    assert doc["request_id"] == "feedface00000001"
    assert doc["time"].endswith("Z") and doc["time"][10] == "T"
    assert json.loads(JsonFormatter().format(outside))["request_id"] is None


def test_access_fields_become_keys_and_a_traceback_stays_on_one_line() -> None:
    rec = record("grpc Put", fields={"method": "Put", "code": "OK", "level": "not this"})
    ContextFilter("n1").filter(rec)
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["method"] == "Put" and doc["code"] == "OK"
    assert doc["level"] == "WARNING"  # a field never overwrites the standard keys
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failing = logging.LogRecord("peer.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(failing)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["message"]


def test_a_text_line_shows_the_request_id_only_inside_a_call() -> None:
    stamp = ContextFilter("0123456789abcdef")
    outside = record()
    stamp.filter(outside)
    assert "[01234567] peer.test: hello world" in TextFormatter().format(outside)
    token = REQUEST_ID.set("feedface00000001")
    try:
        inside = record()
        stamp.filter(inside)
    finally:
        REQUEST_ID.reset(token)
    assert "[01234567 feedface00000001] peer.test: hello world" in TextFormatter().format(inside)


@pytest.fixture
def writer_logger() -> Iterator[tuple[logging.Logger, LogWriter, io.StringIO]]:
    """A logger whose only handler is a LogWriter into a string, with an interval long enough that
    only a WARNING or stop() can make it write."""
    stream = io.StringIO()
    writer = LogWriter(stream, TextFormatter(), interval_s=300)
    logger = logging.getLogger("peer.test.writer")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(writer)
    writer.start()
    try:
        yield logger, writer, stream
    finally:
        writer.stop()
        logger.removeHandler(writer)


def test_lines_wait_in_memory_until_a_warning_and_keep_the_message_of_the_call(
    writer_logger: tuple[logging.Logger, LogWriter, io.StringIO],
) -> None:
    logger, _, stream = writer_logger
    values = ["as logged"]
    logger.info("access %s", values)
    values[0] = "changed later"
    assert stream.getvalue() == ""  # an INFO line wakes nobody
    logger.warning("urgent")
    wait_for(lambda: "urgent" in stream.getvalue(), 10, "the warning written")
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["access ['as logged']", "urgent"]  # in order, one write


def test_stopping_the_writer_writes_what_is_pending_with_its_traceback(
    writer_logger: tuple[logging.Logger, LogWriter, io.StringIO],
) -> None:
    logger, writer, stream = writer_logger
    logger.info("first")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.info("second", exc_info=True)
    writer.stop()
    text = stream.getvalue()
    assert "peer.test.writer: first\n" in text and "ValueError: boom" in text
    assert text.index("first") < text.index("second") < text.index("ValueError")


# ------------------------------------------------------------------ real peers


def make_token(metadata: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "peer", "token", "create", "--role", "admin", "--metadata", metadata],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return made.stdout.strip()


@pytest.fixture(scope="module")
def json_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PeerProc, str]]:
    """One peer logging JSON at DEBUG with client authentication on, and an admin token."""
    base = tmp_path_factory.mktemp("jsonlogs")
    cluster = Cluster(base, replicas=1, extra=["--log-format", "json", "--log-level", "DEBUG"])
    token = make_token(cluster.metadata)
    try:
        yield cluster.add_peer(env={"DFS_NO_AUTH": ""}), token
    finally:
        cluster.close()


def stub(peer: PeerProc) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(peer.grpc_addr)
    return channel, pb_grpc.FileStoreStub(channel)


def request_id(metadata: Any) -> str:
    ids = [value for key, value in metadata or () if key == "x-request-id"]
    assert len(ids) == 1, metadata
    return str(ids[0])


def lines_of(peer: PeerProc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in peer.log_path.read_text().splitlines() if line.strip()]


def logged(peer: PeerProc, rid: str, logger: str = "peer.access") -> dict[str, Any]:
    """The one line of `logger` carrying request id `rid`, once the peer has written it."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        found[:] = [doc for doc in lines_of(peer) if doc["request_id"] == rid and doc["logger"] == logger]
        return bool(found)

    wait_for(written, 10, f"a {logger} line with request id {rid}")
    assert len(found) == 1, found
    return found[0]


def put(stub_: Any, token: str, name: str, data: bytes) -> tuple[Any, Any]:
    request = pb.PutRequest(header=pb.UploadHeader(name=name), data=data, trailer=pb.UploadTrailer(size=len(data)))
    return stub_.Put.with_call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=10)


def test_every_line_is_json_with_the_fields(json_peer: tuple[PeerProc, str]) -> None:
    peer, token = json_peer
    channel, files = stub(peer)
    with channel:
        put(files, token, "logs/every-line", b"x" * 100)
    docs = lines_of(peer)
    assert len(docs) > 5
    for doc in docs:
        assert FIELDS <= set(doc), doc
        assert doc["node_id"] == peer.node_id


def test_the_request_id_returned_is_on_the_access_line_and_every_line_of_the_call(
    json_peer: tuple[PeerProc, str],
) -> None:
    peer, token = json_peer
    data = b"request ids " * 1000
    channel, files = stub(peer)
    with channel:
        _, call = put(files, token, "logs/put", data)
    rid = request_id(call.trailing_metadata())
    access = logged(peer, rid)
    assert access["level"] == "INFO"
    assert (access["api"], access["method"], access["name"], access["code"]) == ("grpc", "Put", "logs/put", "OK")
    assert access["received_bytes"] >= len(data)
    assert access["sent_bytes"] > 0 and access["duration_s"] > 0
    assert "logs/put" in access["message"] and "OK" in access["message"]
    stored = logged(peer, rid, "peer.transfer.upload")  # the upload service's own line, same id
    assert "logs/put" in stored["message"]
    other_calls = {doc["request_id"] for doc in lines_of(peer) if doc["logger"] == "peer.access"} - {rid}
    assert rid not in other_calls and len(rid) == 16


def test_a_failed_call_returns_its_request_id_with_the_error(json_peer: tuple[PeerProc, str]) -> None:
    peer, token = json_peer
    channel, files = stub(peer)
    with channel, pytest.raises(grpc.RpcError) as caught:
        files.Stat(pb.StatRequest(file=pb.FileRef(name="logs/missing")),
                   metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    trailing = caught.value.trailing_metadata()
    assert ("dfs-error-kind", "not_found") in [(k, v) for k, v in trailing]
    access = logged(peer, request_id(trailing))
    assert (access["method"], access["name"], access["code"]) == ("Stat", "logs/missing", "NOT_FOUND")


def test_a_refused_call_has_a_request_id_on_its_refusal_and_access_lines(json_peer: tuple[PeerProc, str]) -> None:
    peer, _ = json_peer
    channel, files = stub(peer)
    with channel, pytest.raises(grpc.RpcError) as caught:
        files.Stat(pb.StatRequest(file=pb.FileRef(name="logs/secret")), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    rid = request_id(caught.value.trailing_metadata())
    assert logged(peer, rid)["code"] == "UNAUTHENTICATED"
    refusal = logged(peer, rid, "peer.rpc.auth")  # logged by the auth check, before any handler
    assert refusal["level"] == "DEBUG" and "refused" in refusal["message"]


@pytest.mark.parametrize("flags", [["--no-access-log"], ["--no-access-log", "--no-metrics"]],
                         ids=["metrics-on", "nothing-measured"])
def test_without_the_access_log_there_are_no_access_lines(
    tmp_path_factory: pytest.TempPathFactory, flags: list[str]
) -> None:
    """The request id is returned and on the call's own lines whatever else is switched off."""
    cluster = Cluster(tmp_path_factory.mktemp("noaccess"), replicas=1, extra=[*flags, "--s3-addr", "127.0.0.1:0"])
    try:
        peer = cluster.add_peer()
        channel, files = stub(peer)
        with channel:
            _, call = put(files, "", "logs/quiet", b"quiet")
        rid = request_id(call.trailing_metadata())
        # The text format: the upload's own line carries the node and the request id.
        wait_for(lambda: f"[{peer.node_id[:8]} {rid}] peer.transfer.upload:" in peer.log_path.read_text(), 10,
                 "the upload's log line")
        # S3 requests follow the same switch: bucket and key names stay out of the log too.
        with urllib.request.urlopen(f"http://{peer.s3_addr}/", timeout=10) as reply:
            assert reply.status == 200
        assert "peer.access" not in peer.log_path.read_text()
    finally:
        cluster.close()


def test_the_access_log_is_on_by_default_in_text(tmp_path_factory: pytest.TempPathFactory) -> None:
    cluster = Cluster(tmp_path_factory.mktemp("access"), replicas=1)
    try:
        peer = cluster.add_peer()
        channel, files = stub(peer)
        with channel:
            _, call = put(files, "", "logs/loud", b"loud")
        rid = request_id(call.trailing_metadata())
        marker = f"[{peer.node_id[:8]} {rid}] peer.access: grpc Put name=\"logs/loud\" OK"
        wait_for(lambda: marker in peer.log_path.read_text(), 10, "the access line")
        (line,) = [ln for ln in peer.log_path.read_text().splitlines() if marker in ln]
        # One line per call, with what it moved and how long it took.
        assert re.search(r" received=\d+ sent=\d+ \d+\.\d ms$", line), line
        assert int(re.search(r"received=(\d+)", line).group(1)) >= len(b"loud")  # type: ignore[union-attr]
    finally:
        cluster.close()
