"""S3 versioning, CopyObject and conditional PutObject with boto3 against real peer processes.

Delete markers in an Enabled bucket (404 with `x-amz-delete-marker`, 405 for a marker read by its id,
deleting the marker restores the object), the `null` version of a Suspended bucket, today's behaviour
of a bucket whose versioning was never set, ListObjectVersions and its paging, listings that leave
deleted keys out, the gRPC side of markers (`dfs versions`, not found for download); CopyObject
within and across buckets (COPY and REPLACE, by version, its source conditions) sharing the source's
chunks, and garbage collection keeping them while either version lives; create-only and If-Match
PUTs, including two racing create-only PUTs of which exactly one is written.

Three peers (HTTP, authentication off, R=2) with a fast garbage collector: its short grace only
concerns chunks no version references, which no other test here leaves behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from client.errors import NotFoundError
from client.sdk import DfsClient
from tests.cluster import Cluster, wait_for
from tests.test_s3_api import error_code, md5_hex, new_bucket, raw, s3_client, status_of

GC_GRACE_S = 2.0
GC = ("--gc-interval", "0.5", "--gc-grace", str(GC_GRACE_S))
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    failed_before = request.session.testsfailed
    started = Cluster(tmp_path_factory.mktemp("s3versions"), replicas=2, extra=GC)
    try:
        started.start(3)
        yield started
    finally:
        started.close()
        if request.session.testsfailed > failed_before:
            print(started.tail_logs())


@pytest.fixture(scope="module")
def endpoint(cluster: Cluster) -> str:
    return f"http://{cluster.peers[0].s3_addr}"


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    return s3_client(endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    return new_bucket(s3)


@pytest.fixture
def versioned(s3: Any) -> str:
    name = new_bucket(s3)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def headers_of(answer: dict[str, Any]) -> dict[str, str]:
    return dict(answer["ResponseMetadata"]["HTTPHeaders"])


def error_headers(exc: pytest.ExceptionInfo[ClientError]) -> dict[str, str]:
    return dict(exc.value.response["ResponseMetadata"]["HTTPHeaders"])


def body_of(s3: Any, bucket: str, key: str, **kwargs: Any) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read())


def versions_of(s3: Any, bucket: str, **kwargs: Any) -> list[tuple[str, str, bool, bool]]:
    """(key, version id, is latest, is a delete marker) of every entry, in the listing's order."""
    listed = s3.list_object_versions(Bucket=bucket, **kwargs)
    assert not listed["IsTruncated"]
    entries = [(v["Key"], v["VersionId"], v["IsLatest"], False, v["LastModified"]) for v in listed.get("Versions", [])]
    entries += [(m["Key"], m["VersionId"], m["IsLatest"], True, m["LastModified"])
                for m in listed.get("DeleteMarkers", [])]
    # boto3 splits versions and markers into two lists: put them back in key, then newest-first order
    order = {vid: i for i, vid in enumerate(_raw_version_ids(s3, bucket, **kwargs))}
    return [entry[:4] for entry in sorted(entries, key=lambda e: order[e[1]])]


def _raw_version_ids(s3: Any, bucket: str, **kwargs: Any) -> list[str]:
    """The version ids in the order of the XML answer (Version and DeleteMarker interleaved)."""
    url = s3.generate_presigned_url("list_object_versions", Params={"Bucket": bucket, **kwargs})
    status, _, body = raw("GET", url)
    assert status == 200, body
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if el.tag.endswith("}VersionId")]


# ------------------------------------------------------------------------- delete markers (Enabled)


def test_delete_in_an_enabled_bucket_writes_a_marker_and_deleting_it_restores(s3: Any, versioned: str) -> None:
    v1 = s3.put_object(Bucket=versioned, Key="doc", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=versioned, Key="doc", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)

    deleted = s3.delete_object(Bucket=versioned, Key="doc")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (v1, v2)
    assert headers_of(deleted)["x-amz-delete-marker"] == "true"

    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as gone:
            call(Bucket=versioned, Key="doc")
        assert status_of(gone) == 404
        assert error_headers(gone)["x-amz-delete-marker"] == "true"
        assert error_headers(gone)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as no_key:
        s3.get_object(Bucket=versioned, Key="doc")
    assert error_code(no_key) == "NoSuchKey"

    for call in (s3.get_object, s3.head_object):  # a marker has nothing to read: 405, as S3 answers
        with pytest.raises(ClientError) as refused:
            call(Bucket=versioned, Key="doc", VersionId=marker)
        assert status_of(refused) == 405
        assert error_headers(refused)["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=versioned, Key="doc", VersionId=marker)
    assert error_code(refused) == "MethodNotAllowed"

    assert body_of(s3, versioned, "doc", VersionId=v1) == b"one"  # the versions under the marker stay
    assert "Contents" not in s3.list_objects_v2(Bucket=versioned)
    assert "Contents" not in s3.list_objects(Bucket=versioned)
    assert versions_of(s3, versioned) == [("doc", marker, True, True), ("doc", v2, False, False),
                                          ("doc", v1, False, False)]

    restored = s3.delete_object(Bucket=versioned, Key="doc", VersionId=marker)
    assert restored["DeleteMarker"] is True and restored["VersionId"] == marker
    assert body_of(s3, versioned, "doc") == b"two"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=versioned)["Contents"]] == ["doc"]


def test_a_marker_is_written_for_a_key_that_never_existed(s3: Any, versioned: str) -> None:
    deleted = s3.delete_object(Bucket=versioned, Key="never")
    assert deleted["DeleteMarker"] is True
    assert versions_of(s3, versioned) == [("never", deleted["VersionId"], True, True)]
    with pytest.raises(ClientError) as not_empty:  # a marker is a version: the bucket is not empty
        s3.delete_bucket(Bucket=versioned)
    assert error_code(not_empty) == "BucketNotEmpty"
    s3.delete_object(Bucket=versioned, Key="never", VersionId=deleted["VersionId"])
    s3.delete_bucket(Bucket=versioned)


def test_delete_objects_writes_markers_in_a_versioned_bucket(s3: Any, versioned: str) -> None:
    kept = s3.put_object(Bucket=versioned, Key="a", Body=b"a")["VersionId"]
    s3.put_object(Bucket=versioned, Key="b", Body=b"b")
    answer = s3.delete_objects(Bucket=versioned, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    markers = {d["Key"]: d["DeleteMarkerVersionId"] for d in answer["Deleted"]}
    assert all(d["DeleteMarker"] for d in answer["Deleted"]) and set(markers) == {"a", "b"}
    assert "Contents" not in s3.list_objects_v2(Bucket=versioned)

    undone = s3.delete_objects(Bucket=versioned, Delete={"Objects": [{"Key": "a", "VersionId": markers["a"]}]})
    assert undone["Deleted"] == [{"Key": "a", "VersionId": markers["a"], "DeleteMarker": True,
                                  "DeleteMarkerVersionId": markers["a"]}]
    got = s3.get_object(Bucket=versioned, Key="a")
    assert got["VersionId"] == kept and got["Body"].read() == b"a"


# -------------------------------------------------------------------------- the null version (Suspended)


def test_a_suspended_bucket_writes_and_replaces_the_null_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    assert s3.put_object(Bucket=bucket, Key="k", Body=b"null one")["VersionId"] == "null"
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"null two")["VersionId"] == "null"
    assert versions_of(s3, bucket) == [("k", "null", True, False), ("k", kept, False, False)]
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert got["VersionId"] == "null" and got["Body"].read() == b"null two"
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"

    deleted = s3.delete_object(Bucket=bucket, Key="k")  # a null delete marker replaces the null version
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    assert versions_of(s3, bucket) == [("k", "null", True, True), ("k", kept, False, False)]
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_headers(gone)["x-amz-delete-marker"] == "true"
    assert error_headers(gone)["x-amz-version-id"] == "null"

    s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert body_of(s3, bucket, "k") == b"enabled"
    with pytest.raises(ClientError) as none:
        s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert error_code(none) == "NoSuchVersion"


def test_an_unversioned_bucket_still_deletes_every_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert "DeleteMarker" not in deleted
    assert versions_of(s3, bucket) == []
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(gone) == "NoSuchKey" and "x-amz-delete-marker" not in error_headers(gone)


# ---------------------------------------------------------------------------- ListObjectVersions


def _pages(s3: Any, bucket: str, max_keys: int, **kwargs: Any) -> list[tuple[str, str]]:
    """Every entry of a paged ListObjectVersions: (key, version id) or (common prefix, "")."""
    entries: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    for _ in range(500):
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=max_keys, **markers, **kwargs)
        ids = _raw_version_ids(s3, bucket, MaxKeys=max_keys, **markers, **kwargs)
        found = {v["VersionId"]: v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])}
        prefixes = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(found) + len(prefixes) <= max_keys
        page_entries = [(found[vid], vid) for vid in ids] + [(p, "") for p in prefixes]
        entries += sorted(page_entries, key=lambda e: e[0]) if prefixes else page_entries
        if not page["IsTruncated"]:
            assert "NextKeyMarker" not in page
            return entries
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = page["NextVersionIdMarker"]
    raise AssertionError("the version listing never ends")


def test_list_object_versions_pages_neither_drop_nor_repeat(s3: Any, versioned: str) -> None:
    layout = {"a": 3, "b/x": 1, "b/y": 2, "c": 1, "d/e/f": 2, "e": 1}
    for key, count in layout.items():
        for i in range(count):
            s3.put_object(Bucket=versioned, Key=key, Body=f"{key}-{i}".encode())
    s3.delete_object(Bucket=versioned, Key="c")  # a marker over c
    s3.delete_object(Bucket=versioned, Key="z")  # a marker alone

    full = [(key, vid) for key, vid, _, _ in versions_of(s3, versioned)]
    assert [key for key, _ in full] == ["a"] * 3 + ["b/x"] + ["b/y"] * 2 + ["c"] * 2 + ["d/e/f"] * 2 + ["e", "z"]
    for max_keys in (1, 2, 3):
        assert _pages(s3, versioned, max_keys) == full, max_keys
        assert _pages(s3, versioned, max_keys, Prefix="b/") == [e for e in full if e[0].startswith("b/")]
        assert _pages(s3, versioned, max_keys, Delimiter="/") == [
            *[e for e in full if e[0] == "a"], ("b/", ""), *[e for e in full if e[0] == "c"], ("d/", ""),
            *[e for e in full if e[0] in ("e", "z")]], max_keys
        assert _pages(s3, versioned, max_keys, Prefix="d/", Delimiter="/") == [("d/e/", "")]

    listed = s3.list_object_versions(Bucket=versioned, Prefix="a")
    assert [v["IsLatest"] for v in listed["Versions"]] == [True, False, False]
    assert all(v["Size"] == 3 and v["ETag"] == f'"{md5_hex(v["Key"].encode() + b"-" + str(2 - i).encode())}"'
               for i, v in enumerate(listed["Versions"]))
    paginated = [v["VersionId"] for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=versioned, PaginationConfig={"PageSize": 2}) for v in page.get("Versions", []) + page.get(
        "DeleteMarkers", [])]
    assert sorted(paginated) == sorted(vid for _, vid in full)


def test_list_object_versions_markers_and_errors(s3: Any, versioned: str) -> None:
    s3.put_object(Bucket=versioned, Key="k", Body=b"1")
    s3.put_object(Bucket=versioned, Key="k", Body=b"2")
    first = s3.list_object_versions(Bucket=versioned, MaxKeys=1)
    assert first["IsTruncated"] and first["NextKeyMarker"] == "k"
    rest = s3.list_object_versions(Bucket=versioned, KeyMarker="k", VersionIdMarker=first["NextVersionIdMarker"])
    assert [v["IsLatest"] for v in rest["Versions"]] == [False]
    assert "Versions" not in s3.list_object_versions(Bucket=versioned, KeyMarker="k")
    assert "Versions" not in s3.list_object_versions(Bucket=versioned, MaxKeys=0)
    with pytest.raises(ClientError) as unknown:
        s3.list_object_versions(Bucket=versioned, KeyMarker="k", VersionIdMarker=uuid.uuid4().hex)
    assert error_code(unknown) == "InvalidArgument"
    with pytest.raises(ClientError) as alone:
        s3.list_object_versions(Bucket=versioned, VersionIdMarker=first["NextVersionIdMarker"])
    assert error_code(alone) == "InvalidArgument"
    encoded = s3.list_object_versions(Bucket=versioned, EncodingType="url")
    assert encoded["EncodingType"] == "url"


# ---------------------------------------------------------------------------- the gRPC side of markers


def test_a_deleted_key_is_not_found_over_grpc_and_dfs_versions_shows_the_marker(
    cluster: Cluster, s3: Any, versioned: str
) -> None:
    s3.put_object(Bucket=versioned, Key="shown", Body=b"content")
    marker = s3.delete_object(Bucket=versioned, Key="shown")["VersionId"]
    name = f"{versioned}/shown"
    with DfsClient(cluster.peers[1].grpc_addr, timeout=30) as client:
        with pytest.raises(NotFoundError):
            client.read(name)
        with pytest.raises(NotFoundError):
            client.info(name)
        found = client.versions(name)
        assert [(v.version_id, v.delete_marker, v.latest) for v in found][0] == (marker, True, True)
        assert not found[1].delete_marker and found[1].size == 7
        assert name not in [f.name for f in client.list(f"{versioned}/")]
    shown = subprocess.run([sys.executable, "-m", "client.cli", "--peer", cluster.peers[2].grpc_addr, "versions",
                            name], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    marker_line = next(line for line in shown.stdout.splitlines() if marker in line)
    assert "(delete marker)" in marker_line and "*" in marker_line
    as_json = subprocess.run([sys.executable, "-m", "client.cli", "--json", "--peer", cluster.peers[2].grpc_addr,
                              "versions", name], capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert '"delete_marker": true' in as_json.stdout


# ------------------------------------------------------------------------------------------ CopyObject


def test_copy_within_a_bucket_keeps_metadata_and_shares_chunks(cluster: Cluster, s3: Any, bucket: str) -> None:
    body = os.urandom(2 * MIB + 5)
    put = s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="image/png", Metadata={"owner": "ana"},
                        CacheControl="max-age=60")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == put["ETag"] == f'"{md5_hex(body)}"'
    assert isinstance(copied["CopyObjectResult"]["LastModified"], dt.datetime)
    assert copied["VersionId"] != put["VersionId"] and copied["CopySourceVersionId"] == put["VersionId"]
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body and got["ContentType"] == "image/png"
    assert got["Metadata"] == {"owner": "ana"} and got["CacheControl"] == "max-age=60"
    with DfsClient(cluster.peers[0].grpc_addr, timeout=30) as client:
        source, target = client.info(f"{bucket}/src"), client.info(f"{bucket}/dst")
    assert [c.chunk_id for c in target.chunks] == [c.chunk_id for c in source.chunks]  # no byte moved
    assert (target.sha256, target.size) == (source.sha256, source.size)


def test_copy_across_buckets_with_replaced_metadata(s3: Any, bucket: str) -> None:
    other = new_bucket(s3)
    body = b"replace me" * 1000
    s3.put_object(Bucket=bucket, Key="from", Body=body, ContentType="text/plain", Metadata={"a": "1"},
                  ChecksumAlgorithm="CRC32")
    copied = s3.copy_object(Bucket=other, Key="to/here", CopySource={"Bucket": bucket, "Key": "from"},
                            MetadataDirective="REPLACE", ContentType="application/json", Metadata={"b": "2"},
                            ContentDisposition="attachment")
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=other, Key="to/here", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/json" and got["Metadata"] == {"b": "2"}
    assert got["ContentDisposition"] == "attachment" and "ChecksumCRC32" in got  # the content's checksum stays
    assert s3.get_object(Bucket=bucket, Key="from")["Metadata"] == {"a": "1"}
    plain_copy = s3.copy_object(Bucket=other, Key="plain", CopySource=f"{bucket}/from")
    assert plain_copy["CopyObjectResult"]["ETag"] == f'"{md5_hex(body)}"'
    assert s3.get_object(Bucket=other, Key="plain")["Metadata"] == {"a": "1"}


def test_copy_of_a_version_and_of_encoded_keys(s3: Any, endpoint: str, versioned: str) -> None:
    old = s3.put_object(Bucket=versioned, Key="dir/a b+ü?.txt", Body=b"old")["VersionId"]
    s3.put_object(Bucket=versioned, Key="dir/a b+ü?.txt", Body=b"new")
    copied = s3.copy_object(Bucket=versioned, Key="restored", CopySource={
        "Bucket": versioned, "Key": "dir/a b+ü?.txt", "VersionId": old})
    assert copied["CopySourceVersionId"] == old
    assert body_of(s3, versioned, "restored") == b"old"
    # an older version copied onto its own key is how a version is restored
    s3.copy_object(Bucket=versioned, Key="dir/a b+ü?.txt", CopySource={
        "Bucket": versioned, "Key": "dir/a b+ü?.txt", "VersionId": old})
    assert body_of(s3, versioned, "dir/a b+ü?.txt") == b"old"
    assert s3.copy_object(Bucket=versioned, Key="by-string", CopySource=f"{versioned}/dir/a b+ü?.txt")
    assert body_of(s3, versioned, "by-string") == b"old"
    header = f"/{versioned}/{quote('dir/a b+ü?.txt', safe='/')}?versionId={old}"  # as the header travels
    status, headers, body = raw("PUT", f"{endpoint}/{versioned}/by-header", b"", {"x-amz-copy-source": header})
    assert status == 200 and b"<CopyObjectResult" in body and headers["x-amz-copy-source-version-id"] == old
    assert body_of(s3, versioned, "by-header") == b"old"


def test_copy_refusals(s3: Any, versioned: str) -> None:
    s3.put_object(Bucket=versioned, Key="k", Body=b"v", Metadata={"x": "1"})
    with pytest.raises(ClientError) as itself:
        s3.copy_object(Bucket=versioned, Key="k", CopySource={"Bucket": versioned, "Key": "k"})
    assert error_code(itself) == "InvalidRequest"
    s3.copy_object(Bucket=versioned, Key="k", CopySource={"Bucket": versioned, "Key": "k"},
                   MetadataDirective="REPLACE", Metadata={"x": "2"})
    assert s3.head_object(Bucket=versioned, Key="k")["Metadata"] == {"x": "2"}

    for source, code in [({"Bucket": versioned, "Key": "missing"}, "NoSuchKey"),
                         ({"Bucket": "no-such-bucket-here", "Key": "k"}, "NoSuchBucket"),
                         ({"Bucket": versioned, "Key": "k", "VersionId": uuid.uuid4().hex}, "NoSuchVersion")]:
        with pytest.raises(ClientError) as refused:
            s3.copy_object(Bucket=versioned, Key="t", CopySource=source)
        assert error_code(refused) == code, source
    marker = s3.delete_object(Bucket=versioned, Key="k")["VersionId"]
    with pytest.raises(ClientError) as latest_marker:
        s3.copy_object(Bucket=versioned, Key="t", CopySource={"Bucket": versioned, "Key": "k"})
    assert error_code(latest_marker) == "NoSuchKey"
    with pytest.raises(ClientError) as by_marker:
        s3.copy_object(Bucket=versioned, Key="t", CopySource={"Bucket": versioned, "Key": "k", "VersionId": marker})
    assert error_code(by_marker) == "InvalidRequest"
    with pytest.raises(ClientError) as directive:
        s3.copy_object(Bucket=versioned, Key="t", CopySource={"Bucket": versioned, "Key": "k", "VersionId": marker},
                       MetadataDirective="MOVE")
    assert error_code(directive) in ("InvalidArgument", "ValidationError")


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"conditional")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    before, after = modified - dt.timedelta(hours=1), modified + dt.timedelta(hours=1)
    source = {"Bucket": bucket, "Key": "src"}
    passing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": etag}, {"CopySourceIfNoneMatch": '"other"'},
        {"CopySourceIfModifiedSince": before}, {"CopySourceIfUnmodifiedSince": after},
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": before},  # If-Match wins, as in S3
    ]
    failing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": '"other"'}, {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": after}, {"CopySourceIfUnmodifiedSince": before},
        {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": before},
    ]
    for conditions in passing:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **conditions)
    for conditions in failing:
        with pytest.raises(ClientError) as failed:
            s3.copy_object(Bucket=bucket, Key="refused", CopySource=source, **conditions)
        assert error_code(failed) == "PreconditionFailed" and status_of(failed) == 412, conditions
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="refused")


def test_copy_into_a_suspended_bucket_writes_the_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")["VersionId"] == "null"
    assert s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")["VersionId"] == "null"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket, Prefix="dst")["Versions"]] == ["null"]


def test_gc_keeps_copied_chunks_while_either_version_exists(cluster: Cluster, s3: Any, bucket: str) -> None:
    body = os.urandom(MIB + MIB // 2)
    s3.put_object(Bucket=bucket, Key="orig", Body=body)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/orig")
    with DfsClient(cluster.peers[0].grpc_addr, timeout=30) as client:
        chunk_ids = [c.chunk_id for c in client.info(f"{bucket}/copy").chunks]
    assert len(chunk_ids) == 2

    def held() -> list[str]:
        return [c for c in chunk_ids for p in cluster.peers if p.chunk_path(c).exists()]

    assert len(held()) == 2 * 2  # R=2
    s3.delete_object(Bucket=bucket, Key="orig")  # the bucket is unversioned: the source file is gone
    time.sleep(GC_GRACE_S + 4 * 0.5 + 1.0)  # past the grace, several collection passes
    assert len(held()) == 4
    assert body_of(s3, bucket, "copy") == body

    s3.delete_object(Bucket=bucket, Key="copy")  # no version references them now: collected
    wait_for(lambda: not held(), 20, "the chunks of the last version collected", lambda: f"held {held()}")


# ------------------------------------------------------------------------------- conditional PutObject


def test_create_only_put(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=versioned, Key="once", Body=b"second", IfNoneMatch="*")
    assert error_code(exists) == "PreconditionFailed" and status_of(exists) == 412
    assert body_of(s3, versioned, "once") == b"first"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=versioned)["Versions"]] == [first["VersionId"]]

    s3.delete_object(Bucket=versioned, Key="once")  # a delete marker: the key no longer exists
    s3.put_object(Bucket=versioned, Key="once", Body=b"again", IfNoneMatch="*")
    assert body_of(s3, versioned, "once") == b"again"

    url = s3.generate_presigned_url("put_object", Params={"Bucket": versioned, "Key": "once"})
    status, _, body = raw("PUT", url, b"x", {"If-None-Match": '"some-etag"'})
    assert status == 501 and b"NotImplemented" in body


def test_if_match_put(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)
    assert error_code(stale) == "PreconditionFailed" and status_of(stale) == 412
    assert body_of(s3, bucket, "k") == b"v2"
    with pytest.raises(ClientError) as missing:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"v", IfMatch=etag)
    assert error_code(missing) == "NoSuchKey"
    s3.put_object(Bucket=bucket, Key="k", Body=b"v4", IfMatch="*")
    assert body_of(s3, bucket, "k") == b"v4"


def test_racing_create_only_puts_write_exactly_one(cluster: Cluster, s3: Any, bucket: str) -> None:
    """Both PUTs pass the check made before their bodies are read; the commit decides."""
    clients = [s3_client(f"http://{peer.s3_addr}") for peer in cluster.peers[:2]]

    def put(i: int, key: str, body: bytes, start: threading.Barrier, outcomes: list[Any]) -> None:
        start.wait(timeout=30)
        try:
            outcomes[i] = clients[i].put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            outcomes[i] = exc

    for round_ in range(4):
        key = f"race-{round_}"
        bodies = [os.urandom(MIB + i) for i in range(2)]
        start = threading.Barrier(2)
        outcomes: list[Any] = [None, None]
        threads = [threading.Thread(target=put, args=(i, key, bodies[i], start, outcomes)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        won = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, dict)]
        lost = [o for o in outcomes if isinstance(o, ClientError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert lost[0].response["Error"]["Code"] == "PreconditionFailed"
        assert body_of(s3, bucket, key) == bodies[won[0]]
        listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
        assert len(listed["Versions"]) == 1
        assert hashlib.md5(bodies[won[0]], usedforsecurity=False).hexdigest() in listed["Versions"][0]["ETag"]


def test_create_only_puts_that_both_passed_the_early_check_are_settled_at_the_commit(
    cluster: Cluster, s3: Any, bucket: str
) -> None:
    """Two create-only PUTs send their heads and half their bodies, so both are judged "absent"
    before either stores anything; then both finish. Only the commit can tell them apart."""
    key = "settled-at-commit"
    bodies = [os.urandom(MIB + 17), os.urandom(MIB + 23)]
    connections = []
    for peer, body in zip(cluster.peers[1:3], bodies, strict=True):
        host, port = peer.s3_addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.putrequest("PUT", f"/{bucket}/{key}")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("If-None-Match", "*")
        conn.putheader("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        conn.endheaders()
        conn.send(body[: len(body) // 2])
        connections.append(conn)
    time.sleep(1.0)  # both peers have read the heads and judged the key absent
    for conn, body in zip(connections, bodies, strict=True):
        conn.send(body[len(body) // 2:])
    answers = []
    for conn in connections:
        answer = conn.getresponse()
        answers.append((answer.status, answer.read()))
        conn.close()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 412], answers
    winner = next(i for i, (status, _) in enumerate(answers) if status == 200)
    assert b"PreconditionFailed" in answers[1 - winner][1]
    assert b"exists already" in answers[1 - winner][1]  # refused by the commit, not by the early check
    assert body_of(s3, bucket, key) == bodies[winner]
    assert len(s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]) == 1
