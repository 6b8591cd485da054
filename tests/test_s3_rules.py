"""The S3 edge's rules one by one, without a peer: bucket names and the key mapping, which operation a
request is, where bucket and key come from, ranges and preconditions, the stored metadata, the XML
documents (hostile ones included), and bodies read without authentication (--no-auth)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from peer.http.s3.call import parse_target
from peer.http.server import HttpServer, Mount
from peer.s3 import RequestHead, S3Error, open_body, unverified
from peer.s3.conditions import (
    Outcome,
    Span,
    check_copy_preconditions,
    check_preconditions,
    http_date,
    iso_time,
    parse_range,
)
from peer.s3.names import CopySource, bucket_name_problem, check_bucket_name, key_of, object_name, parse_copy_source
from peer.s3.objectmeta import (
    checksum_headers,
    completed_metadata,
    etag_of,
    response_headers,
    stored_metadata,
)
from peer.s3.operations import ADMIN, READ, WRITE, resolve
from peer.s3.xmldoc import parse_create_bucket, parse_delete, parse_versioning
from tests.test_s3_chunked import aws_example


def s3_error(call: Callable[[], object]) -> S3Error:
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------------------------- bucket names


@pytest.mark.parametrize("name", ["abc", "my-bucket.2026", "a" * 63, "0xx", "b-1"])
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None and check_bucket_name(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Abc", "a_b", "-ab", "ab-", ".ab", "a..b", "10.0.0.1",
                                  "xn--abc", "sthree-x", "amzn-s3-demo-x", "x-s3alias", "x--ol-s3", "x.mrap",
                                  "x--x-s3", "x--table-s3", "a b", "a/b", ""])
def test_invalid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is not None
    error = s3_error(lambda: check_bucket_name(name))
    assert error.code == "InvalidBucketName" and error.status == 400


def test_object_keys_map_to_file_names_and_back() -> None:
    for key in ("k", "a/b/c", "a//b", "./x", "with space+plus", "日本/é"):
        name = object_name("bucket", key)
        assert name == f"bucket/{key}" and key_of("bucket", name) == key
    assert s3_error(lambda: object_name("bucket", "")).code == "InvalidArgument"
    room = 1024 - len("bucket/")
    assert object_name("bucket", "k" * room) == "bucket/" + "k" * room
    too_long = s3_error(lambda: object_name("bucket", "k" * (room + 1)))
    assert too_long.code == "KeyTooLongError" and too_long.extra["MaxSizeAllowed"] == str(room)
    with pytest.raises(ValueError):
        key_of("bucket", "other/k")


# ------------------------------------------------------------------------------------ operations


@pytest.mark.parametrize(("method", "bucket", "key", "query", "copy", "name", "role"), [
    ("GET", "", "", {}, False, "ListBuckets", READ),
    ("GET", "b", "", {}, False, "ListObjects", READ),
    ("GET", "b", "", {"list-type": "2", "prefix": "x"}, False, "ListObjectsV2", READ),
    ("GET", "b", "", {"list-type": "1"}, False, "ListObjects", READ),
    ("GET", "b", "", {"location": ""}, False, "GetBucketLocation", READ),
    ("GET", "b", "", {"versioning": ""}, False, "GetBucketVersioning", READ),
    ("PUT", "b", "", {"versioning": ""}, False, "PutBucketVersioning", ADMIN),
    ("PUT", "b", "", {}, False, "CreateBucket", ADMIN),
    ("DELETE", "b", "", {}, False, "DeleteBucket", ADMIN),
    ("HEAD", "b", "", {}, False, "HeadBucket", READ),
    ("POST", "b", "", {"delete": ""}, False, "DeleteObjects", WRITE),
    ("PUT", "b", "k", {"x-id": "PutObject"}, False, "PutObject", WRITE),
    ("GET", "b", "k", {"versionId": "v", "response-content-type": "t", "X-Amz-Signature": "s"}, False,
     "GetObject", READ),
    ("GET", "b", "k", {"AWSAccessKeyId": "a", "Signature": "s", "Expires": "1"}, False, "GetObject", READ),
    ("HEAD", "b", "k", {}, False, "HeadObject", READ),
    ("DELETE", "b", "k", {"versionId": "v"}, False, "DeleteObject", WRITE),
    ("GET", "b", "k", {"acl": ""}, False, "GetObjectAcl", READ),
    ("PUT", "b", "k", {}, True, "CopyObject", WRITE),
    ("GET", "b", "", {"versions": "", "key-marker": "k", "version-id-marker": "v", "max-keys": "2"}, False,
     "ListObjectVersions", READ),
    ("POST", "b", "k", {"uploads": ""}, False, "CreateMultipartUpload", WRITE),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, False, "UploadPart", WRITE),
    ("PUT", "b", "k", {"uploadId": "u", "partNumber": "1"}, True, "UploadPartCopy", WRITE),
    ("GET", "b", "k", {"uploadId": "u", "max-parts": "2", "part-number-marker": "1"}, False, "ListParts", READ),
    ("GET", "b", "", {"uploads": "", "key-marker": "k", "upload-id-marker": "u", "max-uploads": "2",
                      "prefix": "p", "delimiter": "/"}, False, "ListMultipartUploads", READ),
    ("POST", "b", "k", {"uploadId": "u"}, False, "CompleteMultipartUpload", WRITE),
    ("DELETE", "b", "k", {"uploadId": "u"}, False, "AbortMultipartUpload", WRITE),
])
def test_operations_and_their_roles(method: str, bucket: str, key: str, query: dict[str, str], copy: bool,
                                     name: str, role: str) -> None:
    operation = resolve(method, bucket, key, query, copy)
    assert (operation.name, operation.role, operation.implemented) == (name, role, True)


@pytest.mark.parametrize(("method", "bucket", "key", "query", "copy", "name"), [
    ("GET", "b", "k", {"partNumber": "1"}, False, "GetObject (partNumber)"),
    ("PUT", "b", "", {"cors": ""}, False, "PUT bucket ?cors"),
    ("GET", "b", "k", {"tagging": ""}, False, "GET object ?tagging"),
    ("PATCH", "b", "k", {}, False, "PATCH object"),
    ("DELETE", "", "", {}, False, "DELETE service"),
])
def test_everything_else_is_named_and_not_implemented(method: str, bucket: str, key: str, query: dict[str, str],
                                                      copy: bool, name: str) -> None:
    operation = resolve(method, bucket, key, query, copy)
    assert (operation.name, operation.implemented) == (name, False)


# ----------------------------------------------------------------------------------- addressing


def head(target: str, host: str = "127.0.0.1:9000") -> RequestHead:
    return RequestHead.from_target("GET", target, [("Host", host)])


def test_path_style_targets() -> None:
    assert parse_target(head("/"), "").bucket == ""
    t = parse_target(head("/b"), "")
    assert (t.bucket, t.key) == ("b", "")
    t = parse_target(head("/b/"), "")
    assert (t.bucket, t.key) == ("b", "")
    t = parse_target(head("/b/dir/a%20b%2Bc+d%2F%E6%97%A5?versionId=v1&prefix=a%2Fb&acl"), "")
    assert (t.bucket, t.key) == ("b", "dir/a b+c+d/日")
    assert dict(t.query) == {"versionId": "v1", "prefix": "a/b", "acl": ""}
    t = parse_target(head("/b//double/./dot"), "")
    assert t.key == "/double/./dot"


def test_virtual_hosted_targets_only_under_the_domain() -> None:
    t = parse_target(head("/dir/k", "photos.s3.test:9000"), "s3.test")
    assert (t.bucket, t.key) == ("photos", "dir/k")
    t = parse_target(head("/", "my.dotted.bucket.s3.test"), "s3.test")
    assert (t.bucket, t.key) == ("my.dotted.bucket", "")
    t = parse_target(head("/photos/k", "s3.test:9000"), "s3.test")  # the domain itself: path style
    assert (t.bucket, t.key) == ("photos", "k")
    t = parse_target(head("/photos/k", "photos.s3.test"), "")  # no domain configured: path style
    assert (t.bucket, t.key) == ("photos", "k")
    t = parse_target(head("/photos/k", "[::1]:9000"), "s3.test")
    assert (t.bucket, t.key) == ("photos", "k")


# ------------------------------------------------------------------------ ranges and conditions


@pytest.mark.parametrize(("header", "span"), [
    (None, None),
    ("bytes=0-9", Span(0, 10, 100)),
    ("bytes=90-", Span(90, 10, 100)),
    ("bytes=90-1000", Span(90, 10, 100)),
    ("bytes=-10", Span(90, 10, 100)),
    ("bytes=-1000", Span(0, 100, 100)),
    ("bytes=99-99", Span(99, 1, 100)),
    ("Bytes = 5 - 6", Span(5, 2, 100)),
    ("bytes=9-3", None),  # invalid: the whole object
    ("bytes=0-1,5-6", None),  # several ranges: S3 sends it all
    ("items=0-1", None),
    ("bytes=-", None),
    ("bytes=a-b", None),
])
def test_ranges(header: str | None, span: Span | None) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100),
                                               ("bytes=0-", 0), ("bytes=-5", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    error = s3_error(lambda: parse_range(header, size))
    assert error.code == "InvalidRange" and error.status == 416 and error.extra["ActualObjectSize"] == str(size)


def test_content_range_and_times() -> None:
    assert Span(5, 10, 100).content_range == "bytes 5-14/100"
    assert http_date(1772366400.7) == "Sun, 01 Mar 2026 12:00:00 GMT"
    assert iso_time(1772366400.25) == "2026-03-01T12:00:00.250Z"
    assert iso_time(1772366400.9996) == "2026-03-01T12:00:01.000Z"


MODIFIED = 1772366400.5  # Sun, 01 Mar 2026 12:00:00 GMT, plus half a second
BEFORE, AT, AFTER = "Sun, 01 Mar 2026 11:59:59 GMT", "Sun, 01 Mar 2026 12:00:00 GMT", "Sun, 01 Mar 2026 12:00:01 GMT"


@pytest.mark.parametrize(("headers", "outcome"), [
    ({}, Outcome.PROCEED),
    ({"if-match": '"e1"'}, Outcome.PROCEED),
    ({"if-match": 'W/"e1", "e2"'}, Outcome.PROCEED),
    ({"if-match": "*"}, Outcome.PROCEED),
    ({"if-match": '"e2"'}, "If-Match"),
    ({"if-unmodified-since": AT}, Outcome.PROCEED),
    ({"if-unmodified-since": BEFORE}, "If-Unmodified-Since"),
    ({"if-match": '"e1"', "if-unmodified-since": BEFORE}, Outcome.PROCEED),  # If-Match decides
    ({"if-none-match": '"e1"'}, Outcome.NOT_MODIFIED),
    ({"if-none-match": "*"}, Outcome.NOT_MODIFIED),
    ({"if-none-match": '"e2"'}, Outcome.PROCEED),
    ({"if-modified-since": AT}, Outcome.NOT_MODIFIED),
    ({"if-modified-since": AFTER}, Outcome.NOT_MODIFIED),
    ({"if-modified-since": BEFORE}, Outcome.PROCEED),
    ({"if-none-match": '"e2"', "if-modified-since": AFTER}, Outcome.PROCEED),  # If-None-Match decides
    ({"if-modified-since": "not a date"}, Outcome.PROCEED),
    ({"if-unmodified-since": "not a date"}, Outcome.PROCEED),
    ({"if-match": '"e2"', "if-none-match": '"e1"'}, "If-Match"),
])
def test_preconditions_in_rfc_order(headers: dict[str, str], outcome: Outcome | str) -> None:
    def judge() -> Outcome:
        return check_preconditions(headers.get, "e1", MODIFIED)

    if isinstance(outcome, Outcome):
        assert judge() is outcome
    else:
        error = s3_error(judge)
        assert error.code == "PreconditionFailed" and error.status == 412 and error.extra["Condition"] == outcome


@pytest.mark.parametrize(("headers", "condition"), [
    ({}, None),
    ({"if-match": '"e1"', "if-unmodified-since": BEFORE}, None),  # If-Match decides, as for a GET
    ({"if-none-match": '"e2"', "if-modified-since": AFTER}, None),
    ({"if-match": '"e2"'}, "If-Match"),
    ({"if-unmodified-since": BEFORE}, "If-Unmodified-Since"),
    ({"if-none-match": '"e1"'}, "x-amz-copy-source-If-None-Match"),  # a GET's 304 is a copy's 412
    ({"if-modified-since": AFTER}, "x-amz-copy-source-If-Modified-Since"),
])
def test_copy_source_conditions(headers: dict[str, str], condition: str | None) -> None:
    sent = {f"x-amz-copy-source-{name}": value for name, value in headers.items()}
    sent["if-match"] = '"not-for-the-source"'  # the target's own conditions are not the source's

    def judge() -> None:
        check_copy_preconditions(sent.get, "e1", MODIFIED)

    if condition is None:
        judge()
    else:
        error = s3_error(judge)
        assert error.code == "PreconditionFailed" and error.status == 412 and error.extra["Condition"] == condition


@pytest.mark.parametrize(("header", "source"), [
    ("b/k", CopySource("b", "k")),
    ("/b/dir/a%20b%2Bc+d%3F%E6%97%A5", CopySource("b", "dir/a b+c+d?日")),
    ("b/k?versionId=0123", CopySource("b", "k", "0123")),
    ("/b/a%3FversionId%3Dx?versionId=v", CopySource("b", "a?versionId=x", "v")),
])
def test_copy_source_header(header: str, source: CopySource) -> None:
    assert parse_copy_source(header) == source


@pytest.mark.parametrize("header", ["", "b", "/b/", "b/k?versionId="])
def test_malformed_copy_source_header(header: str) -> None:
    assert s3_error(lambda: parse_copy_source(header)).code == "InvalidArgument"


# -------------------------------------------------------------------------------- object metadata


def test_request_headers_become_stored_metadata_and_back() -> None:
    sent = {"x-amz-meta-owner": "ana", "x-amz-meta-note": "  café  ", "content-disposition": "inline",
            "cache-control": "no-cache", "expires": "Thu, 01 Jan 2030 00:00:00 GMT", "content-language": "de",
            "content-type": "text/plain", "x-amz-date": "ignored"}
    meta = stored_metadata(sent, sent.get, "gzip")
    assert meta == {"owner": "ana", "note": "café", "s3:content-disposition": "inline",
                    "s3:cache-control": "no-cache", "s3:expires": "Thu, 01 Jan 2030 00:00:00 GMT",
                    "s3:content-language": "de", "s3:content-encoding": "gzip"}
    meta |= completed_metadata("d41d8cd98f00b204e9800998ecf8427e", {"crc32": "AAAAAA=="})
    meta["bad key"] = "left out"
    headers = dict(response_headers(meta, ""))
    assert headers["Content-Type"] == "binary/octet-stream"
    assert headers["x-amz-meta-owner"] == "ana"
    assert headers["x-amz-meta-note"] == "=?UTF-8?B?" + base64.b64encode("café".encode()).decode() + "?="
    assert headers["x-amz-missing-meta"] == "1"
    assert headers["content-encoding"] == "gzip" and headers["cache-control"] == "no-cache"
    assert not any(name.startswith("s3:") or name == "x-amz-meta-etag" for name in headers)
    assert etag_of(meta, "f" * 64) == "d41d8cd98f00b204e9800998ecf8427e"
    assert etag_of({"owner": "x"}, "f" * 64) == "f" * 64


def test_checksum_headers_always_carry_the_stored_sha256() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    sha256_b64 = base64.b64encode(bytes.fromhex(digest)).decode()
    assert dict(checksum_headers({}, digest)) == {"x-amz-checksum-sha256": sha256_b64,
                                                  "x-amz-checksum-type": "FULL_OBJECT"}
    carried = dict(checksum_headers({"s3:checksum-crc32": "AAAAAA=="}, digest))
    assert carried["x-amz-checksum-crc32"] == "AAAAAA==" and carried["x-amz-checksum-sha256"] == sha256_b64


# ---------------------------------------------------------------------------------- XML documents

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def test_request_documents_are_read_with_or_without_namespace() -> None:
    assert parse_create_bucket(b"") == ""
    assert parse_create_bucket(
        f"<CreateBucketConfiguration {NS}><LocationConstraint>eu-west-1</LocationConstraint>"
        "</CreateBucketConfiguration>".encode()) == "eu-west-1"
    assert parse_versioning(b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>") == "Enabled"
    quiet, objects = parse_delete(
        f"<Delete {NS}><Quiet>true</Quiet><Object><Key>a</Key></Object>"
        "<Object><Key>b&amp;c</Key><VersionId>v1</VersionId></Object></Delete>".encode())
    assert quiet and objects == [("a", None), ("b&c", "v1")]


@pytest.mark.parametrize("body", [
    b"<VersioningConfiguration><Status>Enabled",
    b"not xml",
    b"<Other><Status>Enabled</Status></Other>",
    b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "Enabled">]><VersioningConfiguration><Status>&a;</Status>'
    b"</VersioningConfiguration>",
    b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a SYSTEM "file:///etc/passwd">]><VersioningConfiguration>'
    b"<Status>&a;</Status></VersioningConfiguration>",
    b"<VersioningConfiguration><Status>Enabled</Status><Status>Enabled</Status></VersioningConfiguration>",
])
def test_malformed_and_hostile_documents_are_malformed_xml(body: bytes) -> None:
    assert s3_error(lambda: parse_versioning(body)).code == "MalformedXML"


def test_delete_documents_hold_one_to_a_thousand_keys() -> None:
    many = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"
    assert s3_error(lambda: parse_delete(many)).code == "MalformedXML"
    assert s3_error(lambda: parse_delete(b"<Delete></Delete>")).code == "MalformedXML"
    assert s3_error(lambda: parse_delete(b"<Delete><Object></Object></Delete>")).code == "MalformedXML"
    assert s3_error(lambda: parse_versioning(b"<VersioningConfiguration><Status>On</Status>"
                                             b"</VersioningConfiguration>")).code == (
        "IllegalVersioningConfigurationException")


# ------------------------------------------------------------------------------- --no-auth bodies


def test_without_authentication_signed_chunks_are_decoded_but_not_checked() -> None:
    head, body = aws_example(trailer=True)
    auth = unverified(head)
    assert not auth.verified and auth.payload_mode.chunk_signed
    reader = open_body(auth, head)
    data = reader.feed(body)
    assert data == b"a" * 66560 and reader.finish().checksums == {"crc32c": "sOO8/Q=="}
    at = body.index(b"chunk-signature=") + len(b"chunk-signature=")
    tampered = body[:at] + (b"0" if body[at:at + 1] != b"0" else b"1") + body[at + 1:]
    reader = open_body(unverified(head), head)  # no key: nothing to check a signature with
    assert reader.feed(tampered) == b"a" * 66560 and reader.finish().checksums == {"crc32c": "sOO8/Q=="}
    wrong = unverified(RequestHead("PUT", "/b/k", "", (("x-amz-content-sha256", hashlib.sha256(b"x").hexdigest()),)))
    reader = open_body(wrong, RequestHead("PUT", "/b/k", "", ()))
    reader.feed(b"not x")
    assert s3_error(reader.finish).code == "XAmzContentSHA256Mismatch"  # digests are still checked


# ----------------------------------------------------------------------------------- the listener


def test_an_app_owning_every_path_has_the_listener_to_itself() -> None:
    server = HttpServer()
    server.mount(Mount("", web.Application()))
    with pytest.raises(RuntimeError, match="listener of its own"):
        server.mount(Mount("/health", web.Application()))
    other = HttpServer()
    other.mount(Mount("/health", web.Application()))
    with pytest.raises(RuntimeError, match="listener of its own"):
        other.mount(Mount("", web.Application()))


def test_the_s3_endpoint_and_multipart_expiry_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """A peer with nothing set serves S3 on 127.0.0.1:9000 and aborts a multipart upload left without
    a new part for 7 days."""
    from peer.config import PeerConfig

    defaults = PeerConfig(data_dir=tmp_path)
    assert defaults.s3_addr == "127.0.0.1:9000"
    assert defaults.multipart_expiry_s == 7 * 86400
