"""Multipart uploads with boto3 at its defaults against real peer processes: the whole cycle with
byte-identical and ranged reads across part boundaries, boto3's managed transfers, the ETag, every
refusal of a part list, abort, ListParts and ListMultipartUploads paging, UploadPartCopy with a
range, the SDK's and `dfs download`'s verified read of a completed object, conditional
completions (`If-None-Match: *`, `If-Match`, judged at the commit), the expiry that collects an
abandoned upload's chunks, and the collection of an aborted upload's chunks from every peer.

Sizes stay small: 5 MiB parts (S3's minimum for every part but the last), two or three of them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from client.sdk import DfsClient
from tests.cluster import Cluster, shared_cluster, wait_for
from tests.test_s3_api import (
    SecurePeer,
    bucket,
    endpoint,
    error_code,
    md5_hex,
    new_bucket,
    plain,
    s3,
    s3_client,
    secure,
    status_of,
)

__all__ = ["bucket", "endpoint", "plain", "s3", "secure"]  # the fixtures this module shares with test_s3_api

MIB = 1024 * 1024
PART = 5 * MIB


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"


def upload_parts(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any
                 ) -> tuple[str, list[dict[str, Any]]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = []
    for number, data in enumerate(parts, 1):
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        assert answer["ETag"] == f'"{md5_hex(data)}"'
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    return upload_id, done


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts}))


# ------------------------------------------------------------------------------------ the cycle


def test_the_whole_cycle_reads_back_byte_for_byte_and_by_ranges(s3: Any, bucket: str) -> None:
    # the first part is no multiple of the chunk size, so a short chunk sits inside the object
    parts = [os.urandom(PART + 300_000), os.urandom(PART), os.urandom(MIB + 123)]
    upload_id, done = upload_parts(s3, bucket, "big/object.bin", parts, ContentType="application/x-test",
                                   Metadata={"owner": "ana"}, CacheControl="no-cache")
    listed = s3.list_parts(Bucket=bucket, Key="big/object.bin", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
        (n, len(data), f'"{md5_hex(data)}"') for n, data in enumerate(parts, 1)]
    finished = complete(s3, bucket, "big/object.bin", upload_id, done)
    etag = multipart_etag(parts)
    assert finished["ETag"] == f'"{etag}"' and finished["Key"] == "big/object.bin" and finished["VersionId"]
    data = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="big/object.bin")
    assert got["Body"].read() == data
    assert (got["ETag"], got["ContentLength"], got["ContentType"]) == (f'"{etag}"', len(data), "application/x-test")
    assert got["Metadata"] == {"owner": "ana"} and got["CacheControl"] == "no-cache"
    assert got["VersionId"] == finished["VersionId"]
    first, second = len(parts[0]), len(parts[0]) + len(parts[1])
    for start, end in [(first - 5, first + 5), (MIB - 1, second + 1), (second - 1, second), (0, len(data) - 1),
                       (len(data) - 10, len(data) - 1), (5 * MIB - 3, 5 * MIB + 300_003)]:
        ranged = s3.get_object(Bucket=bucket, Key="big/object.bin", Range=f"bytes={start}-{end}")
        assert ranged["Body"].read() == data[start : end + 1]
        assert ranged["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    with pytest.raises(ClientError) as gone:  # the upload is over
        s3.list_parts(Bucket=bucket, Key="big/object.bin", UploadId=upload_id)
    assert error_code(gone) == "NoSuchUpload" and status_of(gone) == 404
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="big/")["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listing] == [("big/object.bin", len(data), f'"{etag}"')]


def test_a_multipart_object_carries_a_composite_sha256_that_boto3_accepts(s3: Any, bucket: str) -> None:
    parts = [os.urandom(PART), b"tail"]
    upload_id, done = upload_parts(s3, bucket, "composite", parts)
    complete(s3, bucket, "composite", upload_id, done)
    got = s3.get_object(Bucket=bucket, Key="composite", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)  # boto3 skips a checksum of checksums, as with S3
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert got["ChecksumSHA256"] == base64.b64encode(composite).decode() + "-2"
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "COMPOSITE"


def test_boto3_managed_transfers_use_multipart_both_ways(s3: Any, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(2 * PART + 777))
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=3)
    s3.upload_file(str(source), bucket, "managed.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="managed.bin")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == source.stat().st_size
    ranged_copy, whole_copy = tmp_path / "ranged.bin", tmp_path / "whole.bin"
    s3.download_file(bucket, "managed.bin", str(ranged_copy), Config=config)  # ranged GETs, in parallel
    s3.download_file(bucket, "managed.bin", str(whole_copy), Config=TransferConfig(multipart_threshold=64 * MIB))
    assert ranged_copy.read_bytes() == source.read_bytes() == whole_copy.read_bytes()


def test_a_completed_object_is_the_file_the_sdk_and_dfs_download_verify(plain: Cluster, s3: Any, bucket: str) -> None:
    parts = [os.urandom(PART + 5000), os.urandom(2 * MIB + 1)]
    upload_id, done = upload_parts(s3, bucket, "sdk.bin", parts)
    version_id = complete(s3, bucket, "sdk.bin", upload_id, done)["VersionId"]
    data = b"".join(parts)
    with DfsClient(plain.peers[2].grpc_addr, timeout=30) as client:
        with client.download(f"{bucket}/sdk.bin") as stream:
            assert stream.chunk_checked  # every chunk checked against its id before it is yielded
            assert b"".join(stream) == data
        info = stream.info
        assert info.version_id == version_id and info.chunk_count == 6 + 3
        assert info.sha256.endswith("-2") and len(info.sha256) == 64 + 2  # a composite, not the content's hash
        assert client.read(f"{bucket}/sdk.bin", offset=PART, length=10_000) == data[PART : PART + 10_000]
    out = plain.base / f"sdk-{uuid.uuid4().hex[:8]}.bin"
    done_cli = subprocess.run([sys.executable, "-m", "client.cli", "--peer", plain.peers[1].grpc_addr, "download",
                               f"{bucket}/sdk.bin", str(out)], capture_output=True, text=True, timeout=60)
    assert done_cli.returncode == 0, done_cli.stderr
    assert out.read_bytes() == data


def test_parts_sent_with_aws_chunked_trailers_over_https_and_the_roles(secure: SecurePeer) -> None:
    sent: list[dict[str, str]] = []
    admin = secure.client()
    admin.meta.events.register("before-send.s3.UploadPart", lambda request, **_: sent.append(dict(request.headers)))
    bucket = new_bucket(admin)
    writer = secure.client("write")
    parts = [os.urandom(PART), os.urandom(1000)]
    upload_id, done = upload_parts(writer, bucket, "trailers", parts)
    upload_id2 = admin.create_multipart_upload(Bucket=bucket, Key="admin")["UploadId"]
    admin.upload_part(Bucket=bucket, Key="admin", UploadId=upload_id2, PartNumber=1, Body=io.BytesIO(b"framed"))
    headers = {name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in sent[-1].items()}
    assert headers["x-amz-content-sha256"].startswith("STREAMING-") and "x-amz-trailer" in headers
    complete(writer, bucket, "trailers", upload_id, done)
    assert writer.get_object(Bucket=bucket, Key="trailers")["Body"].read() == b"".join(parts)  # no framing inside
    reader = secure.client("read")
    assert [u["Key"] for u in reader.list_multipart_uploads(Bucket=bucket)["Uploads"]] == ["admin"]
    assert [p["Size"] for p in reader.list_parts(Bucket=bucket, Key="admin", UploadId=upload_id2)["Parts"]] == [6]
    for call in (lambda: reader.create_multipart_upload(Bucket=bucket, Key="no"),
                 lambda: reader.upload_part(Bucket=bucket, Key="admin", UploadId=upload_id2, PartNumber=2, Body=b"x"),
                 lambda: reader.abort_multipart_upload(Bucket=bucket, Key="admin", UploadId=upload_id2)):
        with pytest.raises(ClientError) as denied:
            call()
        assert error_code(denied) == "AccessDenied"
    admin.abort_multipart_upload(Bucket=bucket, Key="admin", UploadId=upload_id2)


# -------------------------------------------------------------------------------------- refusals


def test_every_refusal_of_a_part_list(s3: Any, bucket: str) -> None:
    parts = [b"x" * 1000, os.urandom(PART), b"end"]
    upload_id, done = upload_parts(s3, bucket, "refused", parts)

    def refused(listed: list[dict[str, Any]]) -> tuple[str, int]:
        with pytest.raises(ClientError) as caught:
            complete(s3, bucket, "refused", upload_id, listed)
        return error_code(caught), status_of(caught)

    assert refused([done[1], {"PartNumber": 7, "ETag": done[2]["ETag"]}]) == ("InvalidPart", 400)
    assert refused([done[1], {"PartNumber": 3, "ETag": f'"{md5_hex(b"other")}"'}]) == ("InvalidPart", 400)
    assert refused([done[1], done[0]]) == ("InvalidPartOrder", 400)
    assert refused([done[0], done[1], done[2]]) == ("EntityTooSmall", 400)
    with pytest.raises(ClientError) as missing:  # a refused completion committed nothing
        s3.head_object(Bucket=bucket, Key="refused")
    assert status_of(missing) == 404
    for number in (0, 10_001):
        with pytest.raises(ClientError) as bad_number:
            s3.upload_part(Bucket=bucket, Key="refused", UploadId=upload_id, PartNumber=number, Body=b"x")
        assert error_code(bad_number) == "InvalidArgument"
    with pytest.raises(ClientError) as other_key:
        s3.upload_part(Bucket=bucket, Key="another", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(other_key) == "NoSuchUpload"
    finished = complete(s3, bucket, "refused", upload_id, done[1:])  # the upload is still open
    assert finished["ETag"] == f'"{multipart_etag(parts[1:])}"'
    assert s3.get_object(Bucket=bucket, Key="refused")["Body"].read() == b"".join(parts[1:])


def test_abort_removes_the_upload_and_its_parts(s3: Any, bucket: str) -> None:
    upload_id, done = upload_parts(s3, bucket, "aborted", [os.urandom(PART), b"more"])
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [upload_id]
    assert s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    for call in (
        lambda: s3.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id),
        lambda: s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=3, Body=b"late"),
        lambda: complete(s3, bucket, "aborted", upload_id, done),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id),
        lambda: s3.list_parts(Bucket=bucket, Key="aborted", UploadId="0" * 32),
        lambda: s3.list_parts(Bucket=bucket, Key="aborted", UploadId="not-an-upload-id"),
    ):
        with pytest.raises(ClientError) as gone:
            call()
        assert error_code(gone) == "NoSuchUpload" and status_of(gone) == 404


# ------------------------------------------------------------------------ conditional completion


def test_a_create_only_completion_writes_only_a_new_key(s3: Any, bucket: str) -> None:
    first_id, first = upload_parts(s3, bucket, "once", [b"first"])
    second_id, second = upload_parts(s3, bucket, "once", [b"second"])
    created = s3.complete_multipart_upload(Bucket=bucket, Key="once", UploadId=first_id,
                                           MultipartUpload={"Parts": first}, IfNoneMatch="*")
    assert created["ETag"] == f'"{multipart_etag([b"first"])}"'
    with pytest.raises(ClientError) as exists:
        s3.complete_multipart_upload(Bucket=bucket, Key="once", UploadId=second_id,
                                     MultipartUpload={"Parts": second}, IfNoneMatch="*")
    assert error_code(exists) == "PreconditionFailed" and status_of(exists) == 412
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"
    # the refused upload stays open with its parts: the client may complete it otherwise, or abort it
    assert [p["ETag"] for p in s3.list_parts(Bucket=bucket, Key="once", UploadId=second_id)["Parts"]] == [
        second[0]["ETag"]]
    s3.abort_multipart_upload(Bucket=bucket, Key="once", UploadId=second_id)
    with pytest.raises(ClientError) as gone:  # a missing upload is NoSuchUpload whatever the key holds
        s3.complete_multipart_upload(Bucket=bucket, Key="once", UploadId=second_id,
                                     MultipartUpload={"Parts": second}, IfNoneMatch="*")
    assert error_code(gone) == "NoSuchUpload"


def test_an_if_match_completion_replaces_only_the_version_it_names(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="cas", Body=b"v1")["ETag"]
    stale_id, stale = upload_parts(s3, bucket, "cas", [b"stale"])
    fresh_id, fresh = upload_parts(s3, bucket, "cas", [b"v2"])
    replaced = s3.complete_multipart_upload(Bucket=bucket, Key="cas", UploadId=fresh_id,
                                            MultipartUpload={"Parts": fresh}, IfMatch=etag)
    with pytest.raises(ClientError) as changed:  # v1 is no longer the current version
        s3.complete_multipart_upload(Bucket=bucket, Key="cas", UploadId=stale_id,
                                     MultipartUpload={"Parts": stale}, IfMatch=etag)
    assert error_code(changed) == "PreconditionFailed" and status_of(changed) == 412
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"v2"
    s3.complete_multipart_upload(Bucket=bucket, Key="cas", UploadId=stale_id,
                                 MultipartUpload={"Parts": stale}, IfMatch=replaced["ETag"])
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"stale"
    absent_id, absent = upload_parts(s3, bucket, "absent", [b"x"])
    with pytest.raises(ClientError) as missing:
        s3.complete_multipart_upload(Bucket=bucket, Key="absent", UploadId=absent_id,
                                     MultipartUpload={"Parts": absent}, IfMatch=etag)
    assert error_code(missing) == "NoSuchKey" and status_of(missing) == 404
    with pytest.raises(ClientError) as unsupported:
        s3.complete_multipart_upload(Bucket=bucket, Key="absent", UploadId=absent_id,
                                     MultipartUpload={"Parts": absent}, IfNoneMatch=etag)
    assert error_code(unsupported) == "NotImplemented"  # never completed unconditionally
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="absent")


def test_racing_create_only_completions_write_exactly_one(plain: Cluster, bucket: str) -> None:
    """Both completions may pass the check made before the parts are joined; the commit decides."""
    clients = [s3_client(f"http://{peer.s3_addr}") for peer in plain.peers[:2]]

    def finish(client: Any, key: str, upload: tuple[str, list[dict[str, Any]]], start: threading.Barrier,
               outcomes: list[Any], i: int) -> None:
        start.wait(timeout=30)
        try:
            outcomes[i] = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload[0],
                                                           MultipartUpload={"Parts": upload[1]}, IfNoneMatch="*")
        except ClientError as exc:
            outcomes[i] = exc

    for round_ in range(3):
        key = f"race-{round_}"
        bodies = [f"body {i} of {key}".encode() for i in range(2)]
        start = threading.Barrier(2)
        outcomes: list[Any] = [None, None]
        uploads = [upload_parts(clients[i], bucket, key, [bodies[i]]) for i in range(2)]
        threads = [threading.Thread(target=finish, args=(clients[i], key, uploads[i], start, outcomes, i))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        won = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, dict)]
        lost = [outcome for outcome in outcomes if isinstance(outcome, ClientError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert lost[0].response["Error"]["Code"] == "PreconditionFailed"
        assert clients[0].get_object(Bucket=bucket, Key=key)["Body"].read() == bodies[won[0]]


def test_create_ignores_conditions_as_s3_does(s3: Any, bucket: str) -> None:
    """S3 takes If-None-Match and If-Match on the completion only and ignores them when an upload is
    created, so a client sending them there (boto3 has no parameter for it) gets its upload."""
    s3.put_object(Bucket=bucket, Key="exists", Body=b"old")

    def conditions(request: Any, **_: Any) -> None:
        request.headers["If-None-Match"] = "*"
        request.headers["If-Match"] = '"0123456789abcdef0123456789abcdef"'

    s3.meta.events.register("before-sign.s3.CreateMultipartUpload", conditions)
    try:
        upload_id, parts = upload_parts(s3, bucket, "exists", [b"new"])
    finally:
        s3.meta.events.unregister("before-sign.s3.CreateMultipartUpload", conditions)
    complete(s3, bucket, "exists", upload_id, parts)
    assert s3.get_object(Bucket=bucket, Key="exists")["Body"].read() == b"new"


# ---------------------------------------------------------------------------------------- listing


def test_list_parts_pages(s3: Any, bucket: str) -> None:
    parts = [f"part {n}".encode() for n in range(1, 8)]
    upload_id, _ = upload_parts(s3, bucket, "paged", parts)
    first = s3.list_parts(Bucket=bucket, Key="paged", UploadId=upload_id, MaxParts=3)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2, 3]
    assert first["IsTruncated"] and first["NextPartNumberMarker"] == 3 and first["MaxParts"] == 3
    second = s3.list_parts(Bucket=bucket, Key="paged", UploadId=upload_id, MaxParts=3, PartNumberMarker=3)
    assert [p["PartNumber"] for p in second["Parts"]] == [4, 5, 6] and second["IsTruncated"]
    pages = s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="paged", UploadId=upload_id,
                                                    PaginationConfig={"PageSize": 2})
    assert [p["PartNumber"] for page in pages for p in page.get("Parts", [])] == list(range(1, 8))
    s3.abort_multipart_upload(Bucket=bucket, Key="paged", UploadId=upload_id)


def test_list_multipart_uploads_pages_with_prefix_and_delimiter(s3: Any) -> None:
    bucket = new_bucket(s3)
    keys = ["a", "a", "dir/1", "dir/2", "dir/sub/3", "z"]
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for key in keys]
    everything = [(u["Key"], u["UploadId"]) for page in s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}) for u in page.get("Uploads", [])]
    assert everything == sorted(zip(keys, ids, strict=True))
    first = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=3)
    assert first["IsTruncated"] and len(first["Uploads"]) == 3
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=first["NextKeyMarker"],
                                     UploadIdMarker=first["NextUploadIdMarker"])
    assert [u["Key"] for u in first["Uploads"] + rest["Uploads"]] == keys and not rest["IsTruncated"]
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in rolled["Uploads"]] == ["a", "a", "z"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir/"]
    paged_rolled = [(page.get("Uploads", []), page.get("CommonPrefixes", [])) for page in
                    s3.get_paginator("list_multipart_uploads").paginate(
                        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1})]
    assert [u["Key"] for ups, _ in paged_rolled for u in ups] == ["a", "a", "z"]
    assert [p["Prefix"] for _, prefixes in paged_rolled for p in prefixes] == ["dir/"]
    under = s3.list_multipart_uploads(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [u["Key"] for u in under["Uploads"]] == ["dir/1", "dir/2"]
    assert [p["Prefix"] for p in under["CommonPrefixes"]] == ["dir/sub/"]
    for key, upload_id in zip(keys, ids, strict=True):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


# ------------------------------------------------------------------------------------ part copies


def test_upload_part_copy_with_ranges(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MIB + 10)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    aligned = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=1,
                                  CopySource={"Bucket": bucket, "Key": "source"},
                                  CopySourceRange=f"bytes={MIB}-{6 * MIB - 1}")  # five whole chunks
    cut = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=2,
                              CopySource=f"{bucket}/source", CopySourceRange="bytes=10-1048585")  # cuts two chunks
    expected = [source[MIB : 6 * MIB], source[10:1048586]]
    for answer, data in [(aligned, expected[0]), (cut, expected[1])]:
        assert answer["CopyPartResult"]["ETag"] == f'"{md5_hex(data)}"'
    with pytest.raises(ClientError) as precondition:
        s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "source"}, CopySourceIfMatch='"0123"')
    assert error_code(precondition) == "PreconditionFailed"
    with pytest.raises(ClientError) as outside:
        s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange=f"bytes=0-{len(source)}")
    assert error_code(outside) == "InvalidArgument"
    parts = [{"PartNumber": n, "ETag": a["CopyPartResult"]["ETag"]} for n, a in ((1, aligned), (2, cut))]
    finished = complete(s3, bucket, "copied", upload_id, parts)
    assert finished["ETag"] == f'"{multipart_etag(expected)}"'
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == b"".join(expected)


# ----------------------------------------------------------------------------------------- expiry


@pytest.fixture
def expiring(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One peer that expires multipart uploads untouched for 2 s and collects garbage 3 s old."""
    failed_before = request.session.testsfailed
    cluster = Cluster(tmp_path, replicas=1,
                      extra=("--multipart-expiry", "2", "--gc-grace", "3", "--gc-interval", "0.3"))
    try:
        cluster.start(1)
        yield cluster
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


def test_expiry_collects_an_abandoned_uploads_chunks(expiring: Cluster) -> None:
    peer = expiring.peers[0]
    s3 = s3_client(f"http://{peer.s3_addr}")
    bucket = new_bucket(s3)
    kept = [os.urandom(PART), os.urandom(MIB + 7)]
    upload_id, done = upload_parts(s3, bucket, "kept", kept)
    complete(s3, bucket, "kept", upload_id, done)
    abandoned = os.urandom(2 * MIB + 5)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="abandoned")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="abandoned", UploadId=upload_id, PartNumber=1, Body=abandoned)
    chunk_files = [peer.chunk_path(hashlib.sha256(abandoned[i : i + MIB]).hexdigest())
                   for i in range(0, len(abandoned), MIB)]

    def collected() -> bool:
        return not any(path.exists() for path in chunk_files)

    wait_for(collected, 30, "the abandoned upload's chunks collected")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=bucket, Key="abandoned", UploadId=upload_id)
    assert error_code(gone) == "NoSuchUpload"
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"".join(kept)  # a version's chunks stay


@pytest.fixture
def collecting(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three peers (R=2) that collect garbage 3 s old; multipart uploads expire at the default 7 days."""
    with shared_cluster(tmp_path_factory, request, "collecting", peers=3, replicas=2,
                        extra=("--gc-grace", "3", "--gc-interval", "0.3")) as cluster:
        yield cluster


def test_abort_has_the_parts_chunks_collected_on_every_peer(collecting: Cluster) -> None:
    s3 = s3_client(f"http://{collecting.peers[0].s3_addr}")
    bucket = new_bucket(s3)
    kept = os.urandom(MIB + 11)
    s3.put_object(Bucket=bucket, Key="kept", Body=kept)
    part = os.urandom(2 * MIB + 5)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=1, Body=part)
    chunk_ids = [hashlib.sha256(part[i : i + MIB]).hexdigest() for i in range(0, len(part), MIB)]
    copies = [path for chunk_id in chunk_ids for peer in collecting.peers
              if (path := peer.chunk_path(chunk_id)).exists()]
    assert len(copies) >= 2 * len(chunk_ids), copies  # the part is stored like a version: R copies a chunk
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)

    def left() -> list[Path]:
        return [path for chunk_id in chunk_ids for peer in collecting.peers
                if (path := peer.chunk_path(chunk_id)).exists()]

    wait_for(lambda: not left(), 30, "the aborted part's chunks collected", lambda: f"left: {left()}")
    kept_ids = [hashlib.sha256(kept[i : i + MIB]).hexdigest() for i in range(0, len(kept), MIB)]
    for chunk_id in kept_ids:  # a version's chunks stay, on as many peers as before
        assert sum(peer.chunk_path(chunk_id).exists() for peer in collecting.peers) >= 2, chunk_id
    for peer in collecting.peers:
        got = s3_client(f"http://{peer.s3_addr}").get_object(Bucket=bucket, Key="kept")["Body"].read()
        assert got == kept
