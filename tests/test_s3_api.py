"""The S3 API with boto3 at its defaults (default checksums, aws-chunked trailers over HTTPS) against
real peer processes: every served operation, presigned URLs driven with a plain HTTP client, ranges
and preconditions, the error codes, authentication by access keys and roles, and the cross-path
guarantee (an object PUT over S3 is the file `dfs` reads, and the other way round).

Three plain peers (HTTP, authentication off, R=2, virtual-hosted style under s3.test) carry most
tests; one peer with TLS and authentication on carries the key, role and trailer tests. The paged
listing property test runs against one in-process peer, where many examples stay quick.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.crt.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.sdk import DfsClient
from peer.metadata.sqlite import SqliteStore
from peer.security.certs import init_certs
from tests.cluster import TEST_SECRET, Cluster, PeerProc, wait_for
from tests.inproc import InProcCluster
from tests.test_s3_chunked import encode_signed, spec_key

DOMAIN = "s3.test"
REGION = "us-east-1"
ANY_KEY = ("AKIDANYTHING", "any-secret-works-without-auth")


def s3_client(endpoint: str, key: tuple[str, str] = ANY_KEY, **config: Any) -> Any:
    """boto3 at its defaults, path style, without retries (a refused request must fail at once)."""
    verify = config.pop("verify", None)
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=REGION,
        verify=verify, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status_of(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def raw(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP request (urllib): (status, headers with lower-case names, body), errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def new_bucket(s3: Any) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def put_empty_objects(endpoint: str, bucket: str, keys: list[str]) -> None:
    """Stores a zero-byte object under each of `keys`, 16 PUTs at a time."""
    s3 = s3_client(endpoint, max_pool_connections=16)
    with ThreadPoolExecutor(16) as pool:
        for answer in pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b""), keys):
            assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    failed_before = request.session.testsfailed
    cluster = Cluster(tmp_path_factory.mktemp("s3plain"), replicas=2, extra=("--s3-domain", DOMAIN))
    try:
        cluster.start(3)
        yield cluster
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


@pytest.fixture(scope="module")
def endpoint(plain: Cluster) -> str:
    return f"http://{plain.peers[0].s3_addr}"


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    return s3_client(endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    return new_bucket(s3)


class SecurePeer:
    """One peer with TLS and authentication on, and an access key of each role."""

    def __init__(self, peer: PeerProc, ca: str, keys: dict[str, tuple[str, str]]) -> None:
        self.peer = peer
        self.ca = ca
        self.keys = keys
        self.endpoint = f"https://{peer.s3_addr}"

    def client(self, role: str = "admin", **config: Any) -> Any:
        return s3_client(self.endpoint, self.keys[role], verify=self.ca, **config)


def create_key(metadata: str, role: str) -> tuple[str, str]:
    made = subprocess.run(
        [sys.executable, "-m", "peer", "s3-key", "create", "--role", role, "--metadata", metadata, "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DFS_CLUSTER_SECRET": TEST_SECRET},
    )
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    return doc["access_key_id"], doc["secret_access_key"]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[SecurePeer]:
    base = tmp_path_factory.mktemp("s3secure")
    certs = base / "certs"
    init_certs(certs, 1)
    tls = ["--tls-cert", str(certs / "peer-1.crt"), "--tls-key", str(certs / "peer-1.key"),
           "--tls-ca", str(certs / "ca.crt")]
    cluster = Cluster(base, replicas=1, extra=tls)
    keys = {role: create_key(cluster.metadata, role) for role in ("read", "write", "admin")}
    failed_before = request.session.testsfailed
    try:
        peer = cluster.add_peer(env={"DFS_NO_AUTH": ""})
        yield SecurePeer(peer, str(certs / "ca.crt"), keys)
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


# --------------------------------------------------------------------------------------- the listener


def test_the_s3_listener_can_be_off_and_a_taken_port_is_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=1)
    try:
        off = cluster.add_peer(env={"DFS_S3_ADDR": ""})
        assert off.s3_addr == "" and json.loads((off.data_dir / "ready.json").read_text())["s3_addr"] == ""
    finally:
        cluster.close()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "peer", "serve", "--data-dir", str(tmp_path / "other"), "--no-auth",
             "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--s3-addr", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    assert done.returncode != 0
    assert f"dfs-peer: error: cannot listen for S3 on 127.0.0.1:{port}: Address already in use" in done.stderr


# ------------------------------------------------------------------------------------------ buckets


def test_bucket_lifecycle(s3: Any) -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    listed = s3.list_buckets()
    assert name in [b["Name"] for b in listed["Buckets"]]
    assert listed["Owner"]["ID"]
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
    with pytest.raises(ClientError) as again:
        s3.create_bucket(Bucket=name)
    assert error_code(again) == "BucketAlreadyOwnedByYou" and status_of(again) == 409

    s3.put_object(Bucket=name, Key="dir/file", Body=b"x")
    with pytest.raises(ClientError) as not_empty:
        s3.delete_bucket(Bucket=name)
    assert error_code(not_empty) == "BucketNotEmpty" and status_of(not_empty) == 409
    s3.delete_object(Bucket=name, Key="dir/file")
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket=name)
    assert status_of(gone) == 404
    with pytest.raises(ClientError) as missing:
        s3.delete_bucket(Bucket=name)
    assert error_code(missing) == "NoSuchBucket"


@pytest.mark.parametrize("name", ["ab", "Upper-Case", "under_score", "-leading", "trailing.", "a..b",
                                  "192.168.5.4", "xn--punycode", "x" * 64])
def test_bucket_names_follow_s3_rules(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as refused:
        s3.create_bucket(Bucket=name)
    assert error_code(refused) == "InvalidBucketName" and status_of(refused) == 400


def test_bucket_versioning_state_is_stored(s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as refused:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Sometimes"})
    assert error_code(refused) == "IllegalVersioningConfigurationException"


def test_acls_name_the_owner_with_full_control(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"]["ID"]
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]


# ------------------------------------------------------------------------------------------ objects


def test_put_get_head_round_trip_every_header(s3: Any, bucket: str) -> None:
    body = os.urandom(70_000)
    put = s3.put_object(
        Bucket=bucket, Key="docs/report.pdf", Body=body, ContentType="application/pdf", ContentEncoding="gzip",
        ContentDisposition='attachment; filename="r.pdf"', CacheControl="max-age=60", ContentLanguage="fr",
        Expires=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC), Metadata={"owner": "ana", "Project": "x1"},
    )
    assert put["ETag"] == f'"{md5_hex(body)}"'
    assert len(put["VersionId"]) == 32
    for answer in (s3.get_object(Bucket=bucket, Key="docs/report.pdf"),
                   s3.head_object(Bucket=bucket, Key="docs/report.pdf")):
        assert answer["ETag"] == put["ETag"] and answer["VersionId"] == put["VersionId"]
        assert answer["ContentLength"] == len(body)
        assert answer["ContentType"] == "application/pdf"
        assert answer["ContentEncoding"] == "gzip"
        assert answer["ContentDisposition"] == 'attachment; filename="r.pdf"'
        assert answer["CacheControl"] == "max-age=60"
        assert answer["ContentLanguage"] == "fr"
        assert answer["Expires"] == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert answer["Metadata"] == {"owner": "ana", "project": "x1"}
        assert answer["AcceptRanges"] == "bytes"
        assert abs(answer["LastModified"].timestamp() - time.time()) < 120
    assert s3.get_object(Bucket=bucket, Key="docs/report.pdf")["Body"].read() == body


def test_object_without_content_type_reads_back_as_binary(s3: Any, endpoint: str, bucket: str) -> None:
    conn = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=10)
    try:
        conn.request("PUT", f"/{bucket}/plain", body=b"abc")  # http.client adds no Content-Type
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_checksums_are_verified_stored_and_returned(s3: Any, bucket: str, algorithm: str) -> None:
    body = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
    declared = put[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == declared  # and botocore checked the body against it
    assert got["Body"].read() == body
    head = s3.head_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == declared


def test_a_wrong_checksum_or_content_md5_stores_nothing(s3: Any, bucket: str) -> None:
    wrong_crc = base64.b64encode((zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as bad_crc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ChecksumCRC32=wrong_crc)
    assert error_code(bad_crc) == "BadDigest"
    wrong_md5 = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    with pytest.raises(ClientError) as bad_md5:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentMD5=wrong_md5)
    assert error_code(bad_md5) == "BadDigest" and status_of(bad_md5) == 400
    with pytest.raises(ClientError) as nothing:
        s3.head_object(Bucket=bucket, Key="k")
    assert status_of(nothing) == 404
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload",
                  ContentMD5=base64.b64encode(hashlib.md5(b"payload", usedforsecurity=False).digest()).decode())
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


@pytest.mark.parametrize("size", [1000, 2 * 1024 * 1024 + 5], ids=["one-short-chunk", "three-chunks"])
def test_every_digest_is_checked_before_the_commit(endpoint: str, s3: Any, bucket: str, size: int) -> None:
    """The body's digests are computed in the upload's own hashing pass, whether the object is one
    short chunk or several; a mismatch of any of them still stores nothing."""
    body = os.urandom(size)
    url = f"{endpoint}/{bucket}/digests-{size}"
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    crc = base64.b64encode((zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    wrong_sha = {"x-amz-content-sha256": hashlib.sha256(body[1:]).hexdigest()}
    for headers, code in [(wrong_sha, b"XAmzContentSHA256Mismatch"),
                          ({"Content-MD5": base64.b64encode(b"\0" * 16).decode()}, b"BadDigest"),
                          ({"x-amz-checksum-crc32": "AAAAAA=="}, b"BadDigest")]:
        status, _, answer = raw("PUT", url, body, headers)
        assert status == 400 and code in answer, (headers, answer)
        assert raw("HEAD", url)[0] == 404
    status, answer_headers, _ = raw("PUT", url, body, {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                                                       "Content-MD5": md5, "x-amz-checksum-crc32": crc})
    assert status == 200 and answer_headers["x-amz-checksum-crc32"] == crc
    assert answer_headers["etag"] == f'"{md5_hex(body)}"'
    assert s3.get_object(Bucket=bucket, Key=f"digests-{size}")["Body"].read() == body


def test_a_large_object_streams_through(s3: Any, bucket: str) -> None:
    body = os.urandom(9 * 1024 * 1024 + 123)
    put = s3.put_object(Bucket=bucket, Key="large.bin", Body=io.BytesIO(body))
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key="large.bin", ChecksumMode="ENABLED")
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()


def test_a_truncated_body_stores_nothing_and_the_peer_keeps_serving(s3: Any, endpoint: str, bucket: str) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"PUT /{bucket}/cut HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\n".encode()
                     + b"x" * 400)
    deadline = time.monotonic() + 1.5  # the peer saw the connection close; nothing may appear after it
    while time.monotonic() < deadline:
        with pytest.raises(ClientError) as nothing:
            s3.head_object(Bucket=bucket, Key="cut")
        assert status_of(nothing) == 404
        time.sleep(0.2)
    s3.put_object(Bucket=bucket, Key="cut", Body=b"whole")
    assert s3.get_object(Bucket=bucket, Key="cut")["Body"].read() == b"whole"


def test_ranges(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    cases = {"bytes=0-9": (0, 10), "bytes=100-": (100, len(body) - 100), "bytes=-5": (len(body) - 5, 5),
             "bytes=10000-99999": (10000, 240), "bytes=-999999": (0, len(body))}
    for header, (offset, length) in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert got["ContentRange"] == f"bytes {offset}-{offset + length - 1}/{len(body)}"
        assert got["ContentLength"] == length
        assert got["Body"].read() == body[offset:offset + length], header
    whole = s3.get_object(Bucket=bucket, Key="r", Range="bytes=9-3")  # invalid: S3 sends it all
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200 and whole["Body"].read() == body
    for header in ("bytes=10240-", "bytes=-0", "bytes=20000-30000"):
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert error_code(refused) == "InvalidRange" and status_of(refused) == 416
        assert refused.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == f"bytes */{len(body)}"
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    with pytest.raises(ClientError) as empty_range:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-")
    assert status_of(empty_range) == 416


def test_a_range_spanning_chunks(s3: Any, bucket: str) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)
    s3.put_object(Bucket=bucket, Key="multi", Body=body)
    start, end = 1024 * 1024 - 3, 2 * 1024 * 1024 + 7
    got = s3.get_object(Bucket=bucket, Key="multi", Range=f"bytes={start}-{end}")
    assert got["Body"].read() == body[start:end + 1]


def test_conditional_reads(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    etag = put["ETag"]
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)

    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"conditional"
    assert s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"other"')["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=future)["ETag"] == etag
    # If-Match holds, so If-Unmodified-Since is not asked (RFC 9110, as S3 does)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)["ETag"] == etag
    for call in (s3.get_object, s3.head_object):
        for kwargs, status in (({"IfMatch": '"0123"'}, 412), ({"IfUnmodifiedSince": past}, 412),
                               ({"IfNoneMatch": etag}, 304), ({"IfNoneMatch": "*"}, 304),
                               ({"IfModifiedSince": future}, 304)):
            with pytest.raises(ClientError) as failed:
                call(Bucket=bucket, Key="c", **kwargs)
            assert status_of(failed) == status, (call, kwargs)
            if status == 412 and call is s3.get_object:
                assert error_code(failed) == "PreconditionFailed"
            if status == 304:
                assert failed.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag


def test_versions_by_id(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert first != second
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    old = s3.get_object(Bucket=bucket, Key="v", VersionId=first)
    assert old["Body"].read() == b"one" and old["VersionId"] == first
    assert s3.head_object(Bucket=bucket, Key="v", VersionId=first)["ContentLength"] == 3
    deleted = s3.delete_object(Bucket=bucket, Key="v", VersionId=first)
    assert deleted["VersionId"] == first
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket=bucket, Key="v", VersionId=first)
    assert error_code(gone) == "NoSuchVersion"
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    with pytest.raises(ClientError) as malformed:
        s3.get_object(Bucket=bucket, Key="v", VersionId="not-a-version")
    assert status_of(malformed) == 400


def test_delete_object_answers_204_even_when_missing(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    s3.put_object(Bucket=bucket, Key="d", Body=b"y")
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket=bucket, Key="d")
    assert error_code(gone) == "NoSuchKey" and status_of(gone) == 404
    assert s3.delete_object(Bucket=bucket, Key="never-was")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_objects(s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["a", "c/d", "zz"] and "Errors" not in answer
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_takes_1000_keys_in_one_request(s3: Any, endpoint: str, bucket: str) -> None:
    """1000 keys, S3's most per request, are served in both modes: quiet deletes 1000 stored
    objects and reports nothing; verbose reports each of 1000 keys, here each as long as a key may be."""
    keys = [f"bulk/{i:04d}" for i in range(1000)]
    put_empty_objects(endpoint, bucket, keys)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1000
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    assert quiet["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    longest = 1024 - len(bucket) - 1  # the bucket, a slash and the key make a name of 1024 bytes
    long_keys = [f"{i:04d}".ljust(longest, "k") for i in range(1000)]
    verbose = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in long_keys]})
    assert "Errors" not in verbose
    assert sorted(d["Key"] for d in verbose["Deleted"]) == long_keys


# ------------------------------------------------------------------------------------------ listings


def test_list_objects_v2_and_v1(s3: Any, bucket: str) -> None:
    keys = ["a.txt", "b/1", "b/2", "b/c/3", "c+plus", "d d", "é/x", "日本", "z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    flat = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in flat["Contents"]] == sorted(keys, key=lambda k: k.encode())
    assert flat["KeyCount"] == len(keys) and not flat["IsTruncated"]
    first = flat["Contents"][0]
    assert first["ETag"] == f'"{md5_hex(b"a.txt")}"' and first["Size"] == 5 and first["StorageClass"] == "STANDARD"
    assert "Owner" not in first
    assert "Owner" in s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]

    rolled = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in rolled["Contents"]] == ["a.txt", "c+plus", "d d", "z", "日本"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["b/", "é/"]
    inner = s3.list_objects_v2(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in inner["Contents"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["b/c/"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="c+plus")
    assert [o["Key"] for o in after["Contents"]] == ["d d", "z", "é/x", "日本"]

    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == [o["Key"] for o in flat["Contents"]]
    assert all(p["KeyCount"] <= 2 for p in pages) and len(pages) == 5
    v1_pages = list(s3.get_paginator("list_objects").paginate(Bucket=bucket, Delimiter="/",
                                                                PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in v1_pages for o in p.get("Contents", [])] == [o["Key"] for o in rolled["Contents"]]
    assert [c["Prefix"] for p in v1_pages for c in p.get("CommonPrefixes", [])] == ["b/", "é/"]
    v1 = s3.list_objects(Bucket=bucket, Marker="b/2", MaxKeys=2)
    assert [o["Key"] for o in v1["Contents"]] == ["b/c/3", "c+plus"] and v1["IsTruncated"]
    assert "Owner" in v1["Contents"][0]
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0


def test_a_page_holds_at_most_1000_keys_whatever_max_keys_asks(s3: Any, endpoint: str) -> None:
    bucket = new_bucket(s3)
    keys = [f"many/{i:04d}" for i in range(1005)]
    put_empty_objects(endpoint, bucket, keys)
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert first["MaxKeys"] == 1000 and first["KeyCount"] == 1000 and first["IsTruncated"]
    assert [o["Key"] for o in first["Contents"]] == keys[:1000]
    rest = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000, ContinuationToken=first["NextContinuationToken"])
    assert rest["KeyCount"] == 5 and not rest["IsTruncated"]
    assert [o["Key"] for o in rest["Contents"]] == keys[1000:]
    unasked = s3.list_objects_v2(Bucket=bucket)
    assert unasked["MaxKeys"] == 1000 and unasked["KeyCount"] == 1000 and unasked["IsTruncated"]
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=5000)
    assert v1["MaxKeys"] == 1000 and len(v1["Contents"]) == 1000 and v1["IsTruncated"]
    assert [o["Key"] for o in v1["Contents"]] == keys[:1000]


def test_listing_encodes_keys_when_asked(s3: Any, endpoint: str, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="sp ace/ü+&", Body=b"x")
    status, _, body = raw("GET", f"{endpoint}/{bucket}?list-type=2&encoding-type=url&delimiter=/")
    assert status == 200
    assert b"<Prefix>sp%20ace/</Prefix>" in body and b"<EncodingType>url</EncodingType>" in body
    status, _, body = raw("GET", f"{endpoint}/{bucket}?list-type=2")
    assert "<Key>sp ace/ü+&amp;</Key>".encode() in body
    status, _, body = raw("GET", f"{endpoint}/{bucket}?list-type=2&max-keys=many")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body


# ------------------------------------------------------------------------------ errors, addressing


def test_errors_are_s3_xml_with_a_request_id(s3: Any, endpoint: str, bucket: str) -> None:
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert error_code(no_bucket) == "NoSuchBucket" and status_of(no_bucket) == 404
    with pytest.raises(ClientError) as no_key:
        s3.get_object(Bucket=bucket, Key="missing")
    assert error_code(no_key) == "NoSuchKey"
    with pytest.raises(ClientError):
        s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x")

    status, headers, body = raw("GET", f"{endpoint}/{bucket}/missing")
    assert status == 404 and headers["content-type"] == "application/xml"
    request_id = headers["x-amz-request-id"]
    assert f"<RequestId>{request_id}</RequestId>".encode() in body
    assert f"<Resource>/{bucket}/missing</Resource>".encode() in body
    _, ok_headers, _ = raw("GET", f"{endpoint}/")
    assert ok_headers["x-amz-request-id"] not in ("", request_id)


def test_the_request_id_returned_is_on_the_peers_log_line_of_the_request(plain: Cluster, s3: Any,
                                                                           bucket: str) -> None:
    """The peer logs one line per S3 request naming its request id, operation, resource and result,
    the id being the `x-amz-request-id` the client got, success or error."""
    peer = plain.peers[0]  # the peer behind `s3`
    put_id = s3.put_object(Bucket=bucket, Key="logged/k", Body=b"logged")["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="logged/missing")
    missing_id = missing.value.response["ResponseMetadata"]["RequestId"]
    assert len({put_id, missing_id}) == 2 and all(len(rid) == 16 for rid in (put_id, missing_id))
    expected = {put_id: f"s3 {put_id} PutObject /{bucket}/logged/k -> 200 (",
                missing_id: f"s3 {missing_id} GetObject /{bucket}/logged/missing -> 404 NoSuchKey ("}
    found: dict[str, list[str]] = {}

    def logged() -> bool:
        lines = peer.log_path.read_text(errors="replace").splitlines()
        for rid in expected:
            found[rid] = [line for line in lines if f" {rid}" in line and "peer.access:" in line]
        return all(found.values())

    wait_for(logged, 10, "the S3 requests' log lines", lambda: str(found))
    for rid, text in expected.items():
        assert len(found[rid]) == 1, found[rid]
        assert text in found[rid][0], found[rid][0]
        assert f"[{peer.node_id[:8]} {rid}]" in found[rid][0]  # the line is stamped with the request's id


@pytest.mark.parametrize("call", [
    lambda s3, b: s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}),
    lambda s3, b: s3.get_bucket_tagging(Bucket=b),
    lambda s3, b: s3.get_object(Bucket=b, Key="k", PartNumber=1),
    lambda s3, b: s3.put_object_tagging(Bucket=b, Key="k", Tagging={"TagSet": []}),
], ids=["PutBucketCors", "GetBucketTagging", "GetObjectPartNumber", "PutObjectTagging"])
def test_unsupported_calls_answer_not_implemented(s3: Any, bucket: str, call: Callable[[Any, str], Any]) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as refused:
        call(s3, bucket)
    assert error_code(refused) == "NotImplemented" and status_of(refused) == 501


def test_malformed_and_hostile_xml_is_refused(endpoint: str, bucket: str, s3: Any) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b"<VersioningConfiguration><Status>&lol2;</Status></VersioningConfiguration>")
    for body in (b"<VersioningConfiguration><Status>Enabled", bomb, b"<Other/>"):
        status, _, answer = raw("PUT", f"{endpoint}/{bucket}?versioning", body)
        assert status == 400 and b"<Code>MalformedXML</Code>" in answer
    status, _, answer = raw("POST", f"{endpoint}/{bucket}?delete", b"<Delete></Delete>")
    assert status == 400 and b"<Code>MalformedXML</Code>" in answer
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)  # nothing stored, still serving


def test_virtual_hosted_style(plain: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/vh.txt", Body=b"virtual")
    addr = plain.peers[1].s3_addr
    port = addr.split(":")[1]
    status, _, body = raw("GET", f"http://{addr}/dir/vh.txt", headers={"Host": f"{bucket}.{DOMAIN}:{port}"})
    assert status == 200 and body == b"virtual"
    status, _, body = raw("GET", f"http://{addr}/?list-type=2", headers={"Host": f"{bucket}.{DOMAIN}"})
    assert status == 200 and b"<Key>dir/vh.txt</Key>" in body
    status, _, body = raw("GET", f"http://{addr}/{bucket}/dir/vh.txt")  # path style still served
    assert status == 200 and body == b"virtual"


# -------------------------------------------------------------------------------------- cross-path


def test_s3_put_is_the_file_dfs_reads(plain: Cluster, s3: Any, bucket: str) -> None:
    body = os.urandom(2 * 1024 * 1024 + 99)
    put = s3.put_object(Bucket=bucket, Key="photos/a b.jpg", Body=body, Metadata={"owner": "ana"})
    with DfsClient(plain.peers[2].grpc_addr, timeout=30) as client:
        assert client.read(f"{bucket}/photos/a b.jpg") == body
        info = client.info(f"{bucket}/photos/a b.jpg")
    assert info.version_id == put["VersionId"]
    assert info.metadata["owner"] == "ana" and info.metadata["s3:etag"] == md5_hex(body)
    out = plain.base / "downloaded.bin"
    done = subprocess.run([sys.executable, "-m", "client.cli", "--peer", plain.peers[1].grpc_addr, "download",
                           f"{bucket}/photos/a b.jpg", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == body


def test_dfs_upload_is_the_object_s3_reads(plain: Cluster, s3: Any, bucket: str) -> None:
    body = os.urandom(1_500_000)
    with DfsClient(plain.peers[1].grpc_addr, timeout=30) as client:
        stored = client.upload(body, name=f"{bucket}/from-dfs/x.bin", content_type="image/png",
                               metadata={"owner": "bo"})
    got = s3.get_object(Bucket=bucket, Key="from-dfs/x.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png" and got["Metadata"] == {"owner": "bo"}
    assert got["ETag"] == f'"{stored.version.sha256}"'  # no MD5 was computed: the SHA-256 names it
    assert base64.b64decode(got["ChecksumSHA256"]) == hashlib.sha256(body).digest()  # botocore checked it
    source = plain.base / "to-upload.bin"
    source.write_bytes(os.urandom(700_000))
    done = subprocess.run([sys.executable, "-m", "client.cli", "--peer", plain.peers[0].grpc_addr, "upload",
                           str(source), "--name", f"{bucket}/from-dfs/cli.bin"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert s3.get_object(Bucket=bucket, Key="from-dfs/cli.bin")["Body"].read() == source.read_bytes()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="from-dfs/")
    assert [o["Key"] for o in listed["Contents"]] == ["from-dfs/cli.bin", "from-dfs/x.bin"]


# ----------------------------------------------------------------------------------- presigned URLs


def test_presigned_put_and_get_with_a_plain_http_client(endpoint: str, bucket: str) -> None:
    s3 = s3_client(endpoint, signature_version="s3v4")  # boto3 presigns with SigV2 unless told
    body = os.urandom(100_000)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/signed"}, ExpiresIn=300)
    status, headers, _ = raw("PUT", put_url, body)
    assert status == 200 and headers["etag"] == f'"{md5_hex(body)}"'
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/signed"}, ExpiresIn=300)
    status, _, got = raw("GET", get_url)
    assert status == 200 and got == body


# ------------------------------------------------------------------------- keys, roles, TLS, trailers


def test_keys_and_roles_over_https(secure: SecurePeer) -> None:
    admin, writer, reader = secure.client("admin"), secure.client("write"), secure.client("read")
    bucket = new_bucket(admin)
    writer.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert reader.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert [o["Key"] for o in reader.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    for call in (lambda: reader.put_object(Bucket=bucket, Key="k2", Body=b"x"),
                 lambda: reader.delete_object(Bucket=bucket, Key="k"),
                 lambda: writer.create_bucket(Bucket=f"{bucket}-w"),
                 lambda: writer.delete_bucket(Bucket=bucket),
                 lambda: writer.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})):
        with pytest.raises(ClientError) as denied:
            call()
        assert error_code(denied) == "AccessDenied" and status_of(denied) == 403

    unknown = s3_client(secure.endpoint, ("DKUNKNOWNKEY00000000", "x" * 40), verify=secure.ca)
    with pytest.raises(ClientError) as no_key:
        unknown.list_buckets()
    assert error_code(no_key) == "InvalidAccessKeyId" and status_of(no_key) == 403
    wrong = s3_client(secure.endpoint, (secure.keys["admin"][0], "y" * 40), verify=secure.ca)
    with pytest.raises(ClientError) as bad_signature:
        wrong.list_buckets()
    assert error_code(bad_signature) == "SignatureDoesNotMatch" and status_of(bad_signature) == 403
    context = ssl.create_default_context(cafile=secure.ca)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{secure.endpoint}/{bucket}/k", context=context, timeout=10)
    assert anonymous.value.code == 403 and b"<Code>AccessDenied</Code>" in anonymous.value.read()


def test_boto3_defaults_send_an_aws_chunked_body_with_a_trailer_over_https(secure: SecurePeer) -> None:
    sent: list[dict[str, str]] = []
    admin = secure.client()
    admin.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers)))
    bucket = new_bucket(admin)
    body = os.urandom(2 * 1024 * 1024 + 7)
    admin.put_object(Bucket=bucket, Key="trailer", Body=io.BytesIO(body))
    headers = {name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in sent[-1].items()}
    assert headers["x-amz-content-sha256"].startswith("STREAMING-") and "x-amz-trailer" in headers
    got = admin.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # the framing never reached the object
    assert got["ChecksumCRC32"]


class _StreamingSigner(botocore.auth.S3SigV4Auth):
    """botocore's S3 signer declaring a signed aws-chunked payload, as a chunk-signing client does."""

    def __init__(self, key: tuple[str, str], mode: str) -> None:
        super().__init__(Credentials(*key), "s3", REGION)
        self._mode = mode

    def payload(self, request: AWSRequest) -> str:
        return self._mode


def signed_streaming_put(secure: SecurePeer, path: str, chunks: list[bytes], *, tamper: bool = False) -> int:
    """PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: every chunk and the CRC32 trailer signed."""
    data = b"".join(chunks)
    crc = base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": "x-amz-checksum-crc32"}
    request = AWSRequest(method="PUT", url=f"{secure.endpoint}{path}", headers=headers)
    _StreamingSigner(secure.keys["write"], "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER").add_auth(request)
    sent = {name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()}
    amz_date = sent["X-Amz-Date"]
    seed = sent["Authorization"].rpartition("Signature=")[2]
    frames, _ = encode_signed(chunks, key=spec_key(secure.keys["write"][1], amz_date[:8]), seed=seed,
                              amz_date=amz_date, scope=f"{amz_date[:8]}/{REGION}/s3/aws4_request",
                              trailers=[("x-amz-checksum-crc32", crc)])
    if tamper:  # the second chunk's data, one byte changed: its signature no longer matches
        frames[1] = frames[1][:-3] + bytes([frames[1][-3] ^ 1]) + frames[1][-2:]
    body = b"".join(frames)
    host = secure.endpoint.removeprefix("https://")
    conn = http.client.HTTPSConnection(host, timeout=30, context=ssl.create_default_context(cafile=secure.ca))
    try:
        conn.request("PUT", path, body=body, headers={**sent, "Content-Length": str(len(body))})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_signed_chunks_and_trailer_end_to_end(secure: SecurePeer) -> None:
    admin = secure.client()
    bucket = new_bucket(admin)
    chunks = [os.urandom(65536), os.urandom(65536), os.urandom(1000)]
    assert signed_streaming_put(secure, f"/{bucket}/chunked", chunks) == 200
    got = admin.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(chunks) and got["ChecksumCRC32"]
    assert signed_streaming_put(secure, f"/{bucket}/tampered", chunks, tamper=True) == 403
    with pytest.raises(ClientError) as nothing:
        admin.head_object(Bucket=bucket, Key="tampered")
    assert status_of(nothing) == 404


def test_presigned_urls_expire_and_cannot_be_altered(secure: SecurePeer, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = secure.client()
    bucket = new_bucket(admin)
    admin.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    context = ssl.create_default_context(cafile=secure.ca)

    def fetch(url: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, context=context, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    v2 = admin.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    status, body = fetch(v2)
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body and b"version 2" in body
    admin = secure.client(signature_version="s3v4")
    url = admin.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    assert fetch(url) == (200, b"presigned")
    status, body = fetch(url.replace("/p?", "/q?"))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=2)
    for signers in (botocore.auth, botocore.crt.auth):  # botocore's own signers, and the CRT's it may pick
        monkeypatch.setattr(signers, "get_current_datetime", lambda remove_tzinfo=True: past)
    expired = admin.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    status, body = fetch(expired)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"expired" in body
    with pytest.raises(ClientError) as skewed:
        admin.list_buckets()
    assert error_code(skewed) == "RequestTimeTooSkewed"


# -------------------------------------------------------------------------- paged listing property


@pytest.fixture(scope="module")
def inproc_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("s3inproc")
    cluster = InProcCluster(base, SqliteStore(base / "metadata.db"), replicas=1)
    try:
        peer = cluster.start(1).peers[0]
        addr = json.loads((peer.data_dir / "ready.json").read_text())["s3_addr"]
        yield s3_client(f"http://{addr}")
    finally:
        cluster.close()


def model_listing(keys: set[str], prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
    """What S3 lists: keys under the prefix in UTF-8 binary order, those with the delimiter after the
    prefix rolled up into their common prefix, each listed once."""
    contents: list[str] = []
    prefixes: list[str] = []
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            contents.append(key)
        elif key[: cut + len(delimiter)] not in prefixes:
            prefixes.append(key[: cut + len(delimiter)])
    return contents, prefixes


KEY_TEXT = st.text(alphabet=["a", "b", "/", "é", "日", "-"], min_size=1, max_size=6)


@settings(max_examples=int(os.environ.get("DFS_S3_LIST_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(keys=st.sets(KEY_TEXT, min_size=0, max_size=25), prefix=st.sampled_from(["", "a", "b/", "/", "é"]),
       delimiter=st.sampled_from(["", "/", "b", "a/"]), page=st.integers(min_value=1, max_value=1000),
       small=st.integers(min_value=1, max_value=4), v1=st.booleans())
def test_paged_listings_never_drop_or_repeat_a_key(inproc_s3: Any, keys: set[str], prefix: str, delimiter: str,
                                                    page: int, small: int, v1: bool) -> None:
    s3 = inproc_s3
    bucket = new_bucket(s3)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    size = small if page % 3 else page  # mostly small pages, where keys get lost in practice
    contents: list[str] = []
    prefixes: list[str] = []
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": delimiter, "MaxKeys": size}
    for _ in range(len(keys) + 2):
        answer = s3.list_objects(**params) if v1 else s3.list_objects_v2(**params)
        got = [o["Key"] for o in answer.get("Contents", [])]
        rolled = [p["Prefix"] for p in answer.get("CommonPrefixes", [])]
        assert len(got) + len(rolled) <= size
        contents += got
        prefixes += rolled
        if not answer["IsTruncated"]:
            break
        if v1:
            params["Marker"] = answer.get("NextMarker") or got[-1]
        else:
            params["ContinuationToken"] = answer["NextContinuationToken"]
    else:
        raise AssertionError("the listing did not end")
    assert (contents, prefixes) == model_listing(keys, prefix, delimiter)


def _s3_requests(peer: Any) -> dict[tuple[str, str], float]:
    """dfs_requests_total of the S3 API on `peer`, by (operation, code), read from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = raw("GET", f"http://{peer.gossip_addr}/metrics")
    assert status == 200, body
    return {
        (s.labels["operation"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "dfs_requests_total" and s.labels.get("api") == "s3"
    }


def test_s3_requests_count_into_the_peers_request_metrics(plain: Cluster, s3: Any, bucket: str) -> None:
    before = _s3_requests(plain.peers[0])
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"counted-{i}", Body=b"x" * 100)
    for i in range(2):
        assert s3.get_object(Bucket=bucket, Key=f"counted-{i}")["Body"].read() == b"x" * 100
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="never-written")
    after = _s3_requests(plain.peers[0])

    def moved(operation: str, code: str) -> float:
        return after.get((operation, code), 0) - before.get((operation, code), 0)

    assert moved("PutObject", "200") == 3
    assert moved("GetObject", "200") == 2
    assert moved("GetObject", "404") == 1
