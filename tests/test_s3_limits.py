"""What one S3 client may cost a peer, tried against a real peer process: 50 concurrent boto3 uploads
stay within the peer's upload memory budget, and an oversized head, a malformed request document, a
bad Range or a truncated body each get their error, store nothing and leave the peer serving.

What tests/test_s3_api.py already covers is not repeated here: a plain PUT cut short, unsatisfiable
ranges and a Range with B < A, an unterminated VersioningConfiguration, an entity bomb, an empty Delete.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from peer.http.server import MAX_FIELD_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from tests.cluster import Cluster, PeerProc

pytestmark = pytest.mark.timeout(180)

MIB = 1024 * 1024
UPLOADS = 50
UPLOAD_BYTES = 3 * MIB
INFLIGHT_CHUNKS = 4
"""The peer's upload memory budget in 1 MiB chunks: 4 MiB for every upload together."""
RSS_GROWTH_LIMIT_MIB = 160
"""How far 50 concurrent 3 MiB uploads (150 MiB in all) may raise the peer's peak RSS (VmHWM) above
what it reached while starting: the budget's 4 MiB of chunks, plus per connection what the HTTP
layer buffers and the piece being decoded (up to about 1.5 MiB each while it waits for the budget),
plus the allocator's slack. Holding every body whole would need at least 150 MiB more than that."""


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerProc]:
    cluster = Cluster(tmp_path_factory.mktemp("s3limits"), replicas=1, extra=[
        "--inflight-chunks", str(INFLIGHT_CHUNKS), "--upload-window", "2",
    ])
    try:
        cluster.start(1)
        yield cluster.peers[0]
    finally:
        cluster.close()


def s3_client(peer: PeerProc, pool: int = 10) -> Any:
    """boto3 at its defaults, path style, no retries: a refusal must show at once."""
    return boto3.client(
        "s3", endpoint_url=f"http://{peer.s3_addr}", region_name="us-east-1",
        aws_access_key_id="AKIDANYTHING", aws_secret_access_key="any-secret-works-without-auth",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, max_pool_connections=pool,
                      read_timeout=120),
    )


@pytest.fixture(scope="module")
def s3(peer: PeerProc) -> Any:
    return s3_client(peer)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"lim-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def request(peer: PeerProc, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request on a connection of its own: (status, lower-case headers, body)."""
    host, port = peer.s3_addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def send_and_close(peer: PeerProc, head: str, body: bytes) -> None:
    """Sends a request head and part of its body on a raw socket, then closes the connection."""
    host, port = peer.s3_addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + body)


def still_serves(s3: Any, bucket: str) -> None:
    key = f"alive-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"still serving")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"still serving"


def absent(s3: Any, bucket: str, key: str, for_s: float = 0.0) -> None:
    """`key` is not stored, and (with `for_s`) does not appear for that long."""
    deadline = time.monotonic() + for_s
    while True:
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket=bucket, Key=key)
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def s3_error(status: int, body: bytes, code: str, expected_status: int = 400) -> None:
    assert status == expected_status, body[:300]
    assert body.startswith(b"<?xml") and f"<Code>{code}</Code>".encode() in body, body[:300]


# ----------------------------------------------------------------------------------- memory budget


def test_50_concurrent_uploads_stay_within_the_memory_budget(peer: PeerProc) -> None:
    assert peer.proc is not None
    pid = peer.proc.pid
    s3 = s3_client(peer, pool=UPLOADS)
    s3.create_bucket(Bucket="budget")
    started_hwm = vm_kib(pid, "VmHWM")
    bodies = [os.urandom(UPLOAD_BYTES) for _ in range(UPLOADS)]

    def put(i: int) -> str:
        return str(s3.put_object(Bucket="budget", Key=f"u{i:02d}", Body=bodies[i])["ETag"])

    with ThreadPoolExecutor(UPLOADS) as pool:
        etags = list(pool.map(put, range(UPLOADS)))
    peak_hwm = vm_kib(pid, "VmHWM")
    for i, body in enumerate(bodies):
        assert etags[i] == f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        got = s3.get_object(Bucket="budget", Key=f"u{i:02d}")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), f"u{i:02d} differs"
    growth_mib = (peak_hwm - started_hwm) / 1024
    assert growth_mib <= RSS_GROWTH_LIMIT_MIB, (
        f"peak RSS rose by {growth_mib:.0f} MiB (from {started_hwm / 1024:.0f} to {peak_hwm / 1024:.0f} MiB)")


# ------------------------------------------------------------------- heads the HTTP layer refuses


def test_a_header_over_the_field_limit_gets_a_4xx_and_stores_nothing(peer: PeerProc, s3: Any, bucket: str) -> None:
    status, _, _ = request(peer, "PUT", f"/{bucket}/big-header", b"data",
                           {"x-amz-meta-big": "v" * (MAX_FIELD_BYTES + 1)})
    assert 400 <= status < 500
    absent(s3, bucket, "big-header")
    still_serves(s3, bucket)


def test_too_many_headers_get_a_4xx_and_store_nothing(peer: PeerProc, s3: Any, bucket: str) -> None:
    many = {f"x-amz-meta-h{i}": "v" for i in range(MAX_HEADERS + 10)}
    status, _, _ = request(peer, "PUT", f"/{bucket}/many-headers", b"data", many)
    assert 400 <= status < 500
    absent(s3, bucket, "many-headers")
    still_serves(s3, bucket)


def test_a_request_line_over_the_limit_gets_a_4xx(peer: PeerProc, s3: Any, bucket: str) -> None:
    status, _, _ = request(peer, "PUT", f"/{bucket}/{'k' * (MAX_LINE_BYTES + 1)}", b"data")
    assert 400 <= status < 500
    still_serves(s3, bucket)


def test_what_reaches_the_app_gets_an_s3_error(peer: PeerProc, s3: Any, bucket: str) -> None:
    """Within the HTTP layer's limits, a key past S3's 1024 bytes is the app's XML error, and a fully
    percent-encoded key of 1024 bytes (three times as long on the request line) is served."""
    status, _, body = request(peer, "PUT", f"/{bucket}/{'k' * 2000}", b"data")
    s3_error(status, body, "KeyTooLongError")
    key = "é" * ((1024 - len(bucket) - 1) // 2)  # two UTF-8 bytes each, six once percent-encoded
    s3.put_object(Bucket=bucket, Key=key, Body=b"long key")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long key"


# ------------------------------------------------------------------------- malformed XML documents


def test_a_malformed_create_bucket_configuration_creates_no_bucket(peer: PeerProc, s3: Any) -> None:
    for document in (b"<CreateBucketConfiguration><LocationConstraint>eu-west-1",
                     b"not xml at all", b"<CreateBucketConfiguration><LocationConstraint>x</Other>"):
        name = f"lim-{uuid.uuid4().hex[:12]}"
        status, _, body = request(peer, "PUT", f"/{name}", document)
        s3_error(status, body, "MalformedXML")
        with pytest.raises(ClientError) as missing:
            s3.head_bucket(Bucket=name)
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_malformed_delete_document_deletes_nothing(peer: PeerProc, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    for document in (b"<Delete><Object><Key>keep</Key></Object>", b"<Delete><Object><Key>keep</Delete>",
                     b"\x00\xff<Delete/>"):
        status, _, body = request(peer, "POST", f"/{bucket}?delete", document)
        s3_error(status, body, "MalformedXML")
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"kept"


def test_a_malformed_completion_commits_nothing_and_the_upload_stays_open(peer: PeerProc, s3: Any,
                                                                          bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"only part")["ETag"]
    for document in (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>",
                     "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></Oops>"):
        status, _, body = request(peer, "POST", f"/{bucket}/mp?uploadId={upload_id}", document.encode())
        s3_error(status, body, "MalformedXML")
    absent(s3, bucket, "mp")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"only part"


# -------------------------------------------------------------------------------------- bad ranges


def test_a_range_s3_ignores_sends_the_whole_object(peer: PeerProc, s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for header in ("bytes=abc", "bytes=0-1,5-9", "items=0-9", "bytes=", "bytes=--1", "bytes=1-2-3"):
        status, headers, got = request(peer, "GET", f"/{bucket}/r", headers={"Range": header})
        assert status == 200 and got == body, header
        assert "content-range" not in headers, header
    status, _, got = request(peer, "GET", f"/{bucket}/r", headers={"Range": f"bytes={len(body) + 5}-"})
    s3_error(status, got, "InvalidRange", 416)
    still_serves(s3, bucket)


# --------------------------------------------------------------------------------- truncated bodies


def test_a_truncated_aws_chunked_body_stores_nothing(peer: PeerProc, s3: Any, bucket: str) -> None:
    payload = b"x" * 5000
    crc = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    framed = b"%x\r\n" % len(payload) + payload + f"\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    headers = {"Content-Encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
               "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": str(len(payload))}
    head = (f"PUT /{bucket}/chunked-cut HTTP/1.1\r\nHost: {peer.s3_addr}\r\nContent-Length: {len(framed)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n")
    send_and_close(peer, head, framed[:2000])
    absent(s3, bucket, "chunked-cut", for_s=1.0)
    still_serves(s3, bucket)
    # The same request sent whole is stored: only the cut kept it out.
    status, _, answer = request(peer, "PUT", f"/{bucket}/chunked-cut", framed, headers)
    assert status == 200, answer[:300]
    assert s3.get_object(Bucket=bucket, Key="chunked-cut")["Body"].read() == payload


def test_a_body_shorter_than_its_framing_declares_is_incomplete(peer: PeerProc, s3: Any, bucket: str) -> None:
    """The connection stays open, the bytes end early: the framing's end arrives before the chunk."""
    framed = b"1000\r\n" + b"y" * 100 + b"\r\n0\r\n\r\n"
    status, _, body = request(peer, "PUT", f"/{bucket}/short", framed, {
        "Content-Encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": "4096"})
    assert status == 400 and body.startswith(b"<?xml"), body[:300]
    assert b"<Code>IncompleteBody</Code>" in body or b"<Code>InvalidRequest</Code>" in body, body[:300]
    absent(s3, bucket, "short")
    still_serves(s3, bucket)


def test_a_truncated_part_records_no_part(peer: PeerProc, s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="cut-part")["UploadId"]
    head = (f"PUT /{bucket}/cut-part?partNumber=1&uploadId={upload_id} HTTP/1.1\r\nHost: {peer.s3_addr}\r\n"
            "Content-Length: 100000\r\n\r\n")
    send_and_close(peer, head, b"z" * 30000)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert s3.list_parts(Bucket=bucket, Key="cut-part", UploadId=upload_id).get("Parts", []) == []
        time.sleep(0.2)
    s3.abort_multipart_upload(Bucket=bucket, Key="cut-part", UploadId=upload_id)
    still_serves(s3, bucket)


def test_the_peer_is_healthy_after_everything(peer: PeerProc, s3: Any, bucket: str, tmp_path: Path) -> None:
    assert peer.running
    still_serves(s3, bucket)
    with peer.client(timeout=10) as client:
        assert client.status().members
