"""SigV4 verification of S3 requests signed by the real clients: botocore's Python signers, the CRT
signers a boto3 client uses when awscrt is installed (as the AWS CLI does), and AWS's documented
examples. Every refusal is checked for the S3 error code a client would see."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import functools
import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import boto3
import botocore.auth
import botocore.crt.auth
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials

from peer.s3 import PayloadMode, RequestHead, S3Error, SigV4Verifier, has_credentials, open_body
from peer.s3.canonical import canonical_query, canonical_uri, parse_query, trim_value

REGION = "us-east-1"
ACCESS_KEY = "AKIDPEERS3TEST"
SECRET = "s3cr3t/With+Slash=And Space"
SIGNED_AT = dt.datetime(2026, 3, 1, 12, 0, 0)
SIGNED_AT_S = float(calendar.timegm(SIGNED_AT.timetuple()))
HTTP = "http://127.0.0.1:9000"
HTTPS = "https://s3.peer.test"

KEYS = [
    "plain.txt",
    "with space/and  two  spaces.bin",
    "ünïcödé/日本語/файл.txt",
    "special !$&'()*+,;=:@[]^`{}|\"<>.txt",
    "percent%20literal%2Fnot-a-slash",
    "tilde~under_score-dash.",
    "a//double//slash",
    "dots/./and/../segments",
    "question?hash#mark",
    "/leading-slash",
]


@pytest.fixture(autouse=True)
def signers_at_fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both of botocore's signer families read the time here; pinning it makes every signature fixed."""

    def now(remove_tzinfo: bool = True) -> dt.datetime:
        return SIGNED_AT if remove_tzinfo else SIGNED_AT.replace(tzinfo=dt.UTC)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", now)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", now)


def verifier(offset_s: float = 0.0, **kwargs: Any) -> SigV4Verifier:
    return SigV4Verifier({ACCESS_KEY: SECRET}.get, clock=lambda: SIGNED_AT_S + offset_s, **kwargs)


def head_of(request: AWSRequest | AWSPreparedRequest) -> RequestHead:
    """The request as the server receives it; the HTTP client adds Host when the signer did not."""
    headers = [(name, value.decode() if isinstance(value, bytes) else value) for name, value in request.headers.items()]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", urlsplit(request.url).netloc))
    split = urlsplit(request.url)
    return RequestHead(request.method, split.path, split.query, tuple(headers))


def body_of(request: AWSPreparedRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    data: bytes = body.read()
    return data


def sign(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    crt: bool = False,
    credentials: Credentials | None = None,
) -> RequestHead:
    """Sign with botocore's Python S3 signer, or the CRT one, as a client library would."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    signer_class = botocore.crt.auth.CrtS3SigV4Auth if crt else botocore.auth.S3SigV4Auth
    signer_class(credentials or Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(request)
    return head_of(request)


class _EmptyRaw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""

    def read(self, *_: Any, **__: Any) -> bytes:
        return b""


def boto_client(endpoint: str, **config: Any) -> tuple[Any, list[AWSPreparedRequest]]:
    """A real boto3 S3 client whose requests are captured just before they would go on the wire."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", **config),
    )
    sent: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyRaw())

    client.meta.events.register("before-send.s3.*", capture)
    return client, sent


def presigned_head(url: str, method: str, headers: tuple[tuple[str, str], ...] = ()) -> RequestHead:
    split = urlsplit(url)
    return RequestHead(method, split.path, split.query, (("Host", split.netloc), *headers))


def read_body(head: RequestHead, result: Any, body: bytes, seed: int = 0) -> tuple[bytes, Any]:
    """Feed the body in random pieces, as a network would deliver it."""
    reader = open_body(result, head)
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(body):
        step = rng.randint(1, 4096)
        out.append(reader.feed(body[pos : pos + step]))
        pos += step
    return b"".join(out), reader.finish()


def s3_error(call: Callable[[], object]) -> S3Error:
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value


def with_header(head: RequestHead, name: str, value: str) -> RequestHead:
    kept = tuple((n, v) for n, v in head.headers if n.lower() != name.lower())
    return dataclasses.replace(head, headers=(*kept, (name, value)))


# ---- AWS's documented examples: independent of botocore, exact signatures ---------------------------

AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TIME_S = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))
EMPTY = hashlib.sha256(b"").hexdigest()
WELCOME = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
AWS_HOST = ("Host", "examplebucket.s3.amazonaws.com")
AWS_DATE = ("x-amz-date", "20130524T000000Z")


def aws_auth(signed_headers: str, signature: str) -> tuple[str, str]:
    credential = f"{AWS_KEY}/20130524/us-east-1/s3/aws4_request"
    return (
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed_headers},Signature={signature}",
    )


AWS_EXAMPLES = {
    "GET Object with Range": RequestHead(
        "GET",
        "/test.txt",
        "",
        (
            AWS_HOST,
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            AWS_DATE,
            aws_auth(
                "host;range;x-amz-content-sha256;x-amz-date",
                "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ),
    ),
    "PUT Object with Date and a '$' in the key": RequestHead(
        "PUT",
        "/test%24file.text",
        "",
        (
            AWS_HOST,
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            AWS_DATE,
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", WELCOME),
            aws_auth(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        ),
    ),
    "GET Bucket lifecycle (a parameter without value)": RequestHead(
        "GET",
        "/",
        "lifecycle",
        (
            AWS_HOST,
            ("x-amz-content-sha256", EMPTY),
            AWS_DATE,
            aws_auth(
                "host;x-amz-content-sha256;x-amz-date",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        ),
    ),
    "GET Bucket with parameters out of order": RequestHead(
        "GET",
        "/",
        "prefix=J&max-keys=2",
        (
            AWS_HOST,
            ("x-amz-content-sha256", EMPTY),
            AWS_DATE,
            aws_auth(
                "host;x-amz-content-sha256;x-amz-date",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ),
    ),
}


def aws_verifier(offset_s: float = 0.0) -> SigV4Verifier:
    return SigV4Verifier({AWS_KEY: AWS_SECRET}.get, clock=lambda: AWS_TIME_S + offset_s)


@pytest.mark.parametrize("name", AWS_EXAMPLES)
def test_the_documented_header_examples_verify(name: str) -> None:
    head = AWS_EXAMPLES[name]
    result = aws_verifier().verify(head)
    assert result.access_key_id == AWS_KEY
    assert not result.presigned
    authorization = head.header("authorization") or ""
    forged = with_header(head, "Authorization", authorization[:-1] + ("0" if authorization[-1] != "0" else "1"))
    assert s3_error(lambda: aws_verifier().verify(forged)).code == "SignatureDoesNotMatch"


def test_the_documented_presigned_example_verifies_until_it_expires() -> None:
    url = (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    head = presigned_head(url, "GET")
    result = aws_verifier(86400).verify(head)
    assert (result.access_key_id, result.presigned, result.payload_mode) == (AWS_KEY, True, PayloadMode.UNSIGNED)
    error = s3_error(lambda: aws_verifier(86401).verify(head))
    assert (error.code, error.status, error.message) == ("AccessDenied", 403, "Request has expired")
    assert error.extra["X-Amz-Expires"] == "86400"


# ---- Header authentication, signed by botocore and by the CRT -----------------------------------------


@pytest.mark.parametrize("crt", [False, True], ids=["botocore", "crt"])
def test_get_with_query_parameters(crt: bool) -> None:
    params = {"list-type": "2", "prefix": "a b/ü+x", "delimiter": "/", "start-after": "x+y=z&w"}
    query = urlencode(params, quote_via=quote)
    head = sign("GET", f"{HTTP}/bucket?{query}&uploads", crt=crt)
    result = verifier().verify(head)
    assert result.access_key_id == ACCESS_KEY
    assert result.payload_mode is PayloadMode.SIGNED and result.payload_sha256 == EMPTY


def test_list_objects_from_a_boto3_client() -> None:
    client, sent = boto_client(HTTP)
    client.list_objects_v2(Bucket="bucket", Prefix="a b/ü+x", Delimiter="/", MaxKeys=7, StartAfter="x+y=z&w")
    assert verifier().verify(head_of(sent[-1])).access_key_id == ACCESS_KEY


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("endpoint", [HTTP, HTTPS], ids=["http-signed-payload", "https-streaming-trailer"])
def test_put_object_from_a_boto3_client(key: str, endpoint: str) -> None:
    """Over HTTP botocore signs the payload and sends its CRC32 as a header; over HTTPS it sends an
    aws-chunked body with the CRC32 in an unsigned trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""
    data = random.Random(key).randbytes(70_000)
    client, sent = boto_client(endpoint)
    client.put_object(Bucket="bucket", Key=key, Body=data, Metadata={"note": "two  spaces"})
    head, raw = head_of(sent[-1]), body_of(sent[-1])
    result = verifier().verify(head)
    expected_mode = PayloadMode.SIGNED if endpoint == HTTP else PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert result.payload_mode is expected_mode
    payload, body = read_body(head, result, raw)
    assert payload == data
    assert body.size == len(data) and set(body.checksums) == {"crc32"}


@pytest.mark.parametrize("crt", [False, True], ids=["botocore", "crt"])
@pytest.mark.parametrize("key", KEYS)
def test_put_with_a_signed_payload_checks_the_body(key: str, crt: bool) -> None:
    data = key.encode() * 1000
    head = sign("PUT", f"{HTTP}/bucket/{_quote_key(key)}", body=data, headers={"x-amz-meta-k": "v"}, crt=crt)
    result = verifier().verify(head)
    assert result.payload_sha256 == hashlib.sha256(data).hexdigest()
    assert read_body(head, result, data)[0] == data
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    error = s3_error(lambda: read_body(head, result, tampered))
    assert (error.code, error.status) == ("XAmzContentSHA256Mismatch", 400)


def test_a_signed_payload_is_checked_against_a_sha256_computed_elsewhere() -> None:
    """The upload hashes every body with SHA-256 anyway; the reader takes that digest instead of
    hashing the body a second time, and refuses the body when it is not the one signed."""
    data = random.Random(3).randbytes(300_000)
    head = sign("PUT", f"{HTTP}/bucket/key", body=data)
    result = verifier().verify(head)
    for given, code in [(hashlib.sha256(data).hexdigest(), None),
                        (hashlib.sha256(data[1:]).hexdigest(), "XAmzContentSHA256Mismatch")]:
        reader = open_body(result, head, sha256_given=True)
        decoded = reader.decode(data)
        assert decoded == data
        reader.hash(decoded)
        assert reader.end() == len(data)
        if code is None:
            assert reader.finish(given).md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
        else:
            assert s3_error(functools.partial(reader.finish, given)).code == code


def _quote_key(key: str) -> str:
    return quote(key, safe="/~")


@pytest.mark.parametrize("crt", [False, True], ids=["botocore", "crt"])
def test_unsigned_payload_skips_the_body_hash(crt: bool) -> None:
    request = AWSRequest(method="PUT", url=f"{HTTPS}/bucket/key", data=b"anything")
    request.context["payload_signing_enabled"] = False
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    signer = botocore.crt.auth.CrtS3SigV4Auth if crt else botocore.auth.S3SigV4Auth
    signer(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(request)
    head = head_of(request)
    result = verifier().verify(head)
    assert result.payload_mode is PayloadMode.UNSIGNED and result.payload_sha256 is None
    assert read_body(head, result, b"whatever arrives")[0] == b"whatever arrives"


def test_date_header_instead_of_x_amz_date() -> None:
    head = sign("GET", f"{HTTP}/bucket/key", headers={"Date": "placeholder"})
    assert head.header("x-amz-date") is None and head.header("date")
    assert verifier().verify(head).access_key_id == ACCESS_KEY


def test_repeated_header_is_signed_as_its_values_joined() -> None:
    head = sign("GET", f"{HTTP}/bucket/key", headers={"x-amz-meta-list": "one,two"})
    split = tuple(h for h in head.headers if h[0] != "x-amz-meta-list") + (
        ("x-amz-meta-list", "one"),
        ("X-Amz-Meta-List", "two"),
    )
    assert verifier().verify(dataclasses.replace(head, headers=split)).access_key_id == ACCESS_KEY


# ---- Presigned URLs from a boto3 client ----------------------------------------------------------------


def test_presigned_get_and_put() -> None:
    client, _ = boto_client(HTTP)
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "a key/ü"}, ExpiresIn=300)
    result = verifier(299).verify(presigned_head(get_url, "GET"))
    assert (result.access_key_id, result.presigned) == (ACCESS_KEY, True)

    put_url = client.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "up load"}, ExpiresIn=60)
    head = presigned_head(put_url, "PUT", (("Content-Type", "application/octet-stream"),))
    result = verifier(30).verify(head)
    assert result.payload_mode is PayloadMode.UNSIGNED
    assert read_body(head, result, b"uploaded bytes")[0] == b"uploaded bytes"


def test_presigned_url_expiry_is_enforced() -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=600)
    assert verifier(600).verify(presigned_head(url, "GET")).presigned
    error = s3_error(lambda: verifier(601).verify(presigned_head(url, "GET")))
    assert (error.code, error.message) == ("AccessDenied", "Request has expired")
    error = s3_error(lambda: verifier(-16 * 60).verify(presigned_head(url, "GET")))
    assert (error.code, error.message) == ("AccessDenied", "Request is not yet valid")


@pytest.mark.parametrize("expires", ["604801", "-1", "soon"])
def test_presigned_expiry_over_a_week_or_not_a_number_is_refused(expires: str) -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    url = url.replace("X-Amz-Expires=60", f"X-Amz-Expires={expires}")
    assert s3_error(lambda: verifier().verify(presigned_head(url, "GET"))).code == "AuthorizationQueryParametersError"


def test_presigned_url_for_a_whole_week_is_accepted() -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=604800)
    assert verifier(604800).verify(presigned_head(url, "GET")).presigned


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.replace("/b/k", "/b/other"),
        lambda u: u + "&extra=1",
        lambda u: u.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Brange"),
        lambda u: u.replace("X-Amz-Date=20260301T120000Z", "X-Amz-Date=20260301T120001Z"),
    ],
    ids=["path", "added-parameter", "signed-headers", "date"],
)
def test_tampered_presigned_url_is_refused(tamper: Callable[[str], str]) -> None:
    client, _ = boto_client(HTTP)
    url = tamper(client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60))
    assert s3_error(lambda: verifier().verify(presigned_head(url, "GET", (("Range", "bytes=0-1"),)))).code == (
        "SignatureDoesNotMatch"
    )


def test_sigv2_presigned_url_is_refused() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=HTTP,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3"),
    )
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    head = presigned_head(url, "GET")
    assert has_credentials(head)
    assert s3_error(lambda: verifier().verify(head)).code == "InvalidRequest"


# ---- Clock, keys and tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset_s", [15 * 60 + 1, -(15 * 60 + 1), 3600])
def test_clock_skew_beyond_fifteen_minutes_is_refused(offset_s: float) -> None:
    head = sign("GET", f"{HTTP}/bucket/key")
    error = s3_error(lambda: verifier(offset_s).verify(head))
    assert (error.code, error.status) == ("RequestTimeTooSkewed", 403)
    assert error.extra["RequestTime"] == "20260301T120000Z"


@pytest.mark.parametrize("offset_s", [15 * 60, -15 * 60, 14 * 60])
def test_clock_skew_within_fifteen_minutes_is_accepted(offset_s: float) -> None:
    assert verifier(offset_s).verify(sign("GET", f"{HTTP}/bucket/key")).access_key_id == ACCESS_KEY


def test_unknown_access_key_is_refused() -> None:
    head = sign("GET", f"{HTTP}/bucket/key", credentials=Credentials("AKIDUNKNOWN", SECRET))
    error = s3_error(lambda: verifier().verify(head))
    assert (error.code, error.status, error.extra["AWSAccessKeyId"]) == ("InvalidAccessKeyId", 403, "AKIDUNKNOWN")


def test_wrong_secret_is_refused() -> None:
    head = sign("GET", f"{HTTP}/bucket/key", credentials=Credentials(ACCESS_KEY, "not the secret"))
    error = s3_error(lambda: verifier().verify(head))
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)
    assert error.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20260301T120000Z\n")


HEADER_TAMPERING: dict[str, Callable[[RequestHead], RequestHead]] = {
    "path": lambda h: dataclasses.replace(h, raw_path="/bucket/other"),
    "path-encoding": lambda h: dataclasses.replace(h, raw_path="/bucket/a%2Fb"),
    "query-value": lambda h: dataclasses.replace(h, raw_query="prefix=y"),
    "query-added": lambda h: dataclasses.replace(h, raw_query="prefix=x&max-keys=1"),
    "method": lambda h: dataclasses.replace(h, method="DELETE"),
    "signed-header": lambda h: with_header(h, "x-amz-meta-note", "changed"),
    "host": lambda h: with_header(h, "Host", "evil.example"),
    "date": lambda h: with_header(h, "X-Amz-Date", "20260301T120500Z"),
    "payload-hash": lambda h: with_header(h, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
}


@pytest.mark.parametrize("tamper", list(HEADER_TAMPERING))
def test_tampered_request_is_refused(tamper: str) -> None:
    head = sign("GET", f"{HTTP}/bucket/a/b?prefix=x", headers={"x-amz-meta-note": "original"})
    assert verifier().verify(head).access_key_id == ACCESS_KEY
    assert s3_error(lambda: verifier().verify(HEADER_TAMPERING[tamper](head))).code == "SignatureDoesNotMatch"


def test_unsigned_amz_header_is_refused() -> None:
    head = sign("PUT", f"{HTTP}/bucket/key", body=b"x")
    added = dataclasses.replace(head, headers=(*head.headers, ("x-amz-acl", "public-read")))
    error = s3_error(lambda: verifier().verify(added))
    assert (error.code, error.extra["HeadersNotSigned"]) == ("AccessDenied", "x-amz-acl")
    unsigned_ok = dataclasses.replace(head, headers=(*head.headers, ("User-Agent", "anything")))
    assert verifier().verify(unsigned_ok).access_key_id == ACCESS_KEY


def test_region_can_be_pinned() -> None:
    head = sign("GET", f"{HTTP}/bucket/key")
    assert verifier(region=REGION).verify(head).access_key_id == ACCESS_KEY
    assert s3_error(lambda: verifier(region="eu-west-3").verify(head)).code == "AuthorizationHeaderMalformed"


# ---- Malformed authentication ----------------------------------------------------------------------------

SIG = "0" * 64
GOOD_CREDENTIAL = f"{ACCESS_KEY}/20260301/{REGION}/s3/aws4_request"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, SignedHeaders=host",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, Signature={SIG}",
        f"AWS4-HMAC-SHA256 SignedHeaders=host, Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260301/{REGION}/s3, SignedHeaders=host, Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260301/{REGION}/iam/aws4_request, SignedHeaders=host, "
        f"Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260302/{REGION}/s3/aws4_request, SignedHeaders=host, "
        f"Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, SignedHeaders=host;;x-amz-date, Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, SignedHeaders=host, Signature=XYZ",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}, Credential={GOOD_CREDENTIAL}, SignedHeaders=host, "
        f"Signature={SIG}",
        f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL} SignedHeaders=host Signature={SIG}",
    ],
)
def test_malformed_authorization_header(authorization: str) -> None:
    head = with_header(sign("GET", f"{HTTP}/bucket/key"), "Authorization", authorization)
    error = s3_error(lambda: verifier().verify(head))
    assert (error.code, error.status) == ("AuthorizationHeaderMalformed", 400)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("Authorization", f"AWS {ACCESS_KEY}:c2lnbmF0dXJl", "InvalidRequest"),
        ("Authorization", "AWS4-ECDSA-P256-SHA256 Credential=x", "InvalidRequest"),
        ("X-Amz-Date", "yesterday", "AccessDenied"),
        ("x-amz-content-sha256", "not-a-hash", "InvalidArgument"),
    ],
)
def test_other_refusals_of_the_header(name: str, value: str, code: str) -> None:
    head = with_header(sign("GET", f"{HTTP}/bucket/key"), name, value)
    assert s3_error(lambda: verifier().verify(head)).code == code


def test_missing_content_sha256_is_refused() -> None:
    head = sign("GET", f"{HTTP}/bucket/key")
    stripped = dataclasses.replace(
        head, headers=tuple(h for h in head.headers if h[0].lower() != "x-amz-content-sha256")
    )
    assert s3_error(lambda: verifier().verify(stripped)).code == "InvalidRequest"


@pytest.mark.parametrize(
    "drop",
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"],
)
def test_presigned_url_missing_a_parameter(drop: str) -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    split = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(split.query) if k != drop])
    head = RequestHead("GET", split.path, query, (("Host", split.netloc),))
    assert s3_error(lambda: verifier().verify(head)).code == "AuthorizationQueryParametersError"


@pytest.mark.parametrize(
    ("old", "new"),
    [("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), ("20260301T120000Z", "2026-03-01")],
    ids=["algorithm", "date"],
)
def test_presigned_url_with_a_bad_algorithm_or_date(old: str, new: str) -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}).replace(old, new)
    error = s3_error(lambda: verifier().verify(presigned_head(url, "GET")))
    assert error.code == "AuthorizationQueryParametersError"


def test_header_and_query_authentication_together_are_refused() -> None:
    client, _ = boto_client(HTTP)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    head = presigned_head(url, "GET", (("Authorization", f"AWS4-HMAC-SHA256 Credential={GOOD_CREDENTIAL}"),))
    assert s3_error(lambda: verifier().verify(head)).code == "InvalidArgument"


def test_anonymous_request_is_refused() -> None:
    head = RequestHead("GET", "/bucket/key", "prefix=a", (("Host", "s3.peer.test"),))
    assert not has_credentials(head)
    error = s3_error(lambda: verifier().verify(head))
    assert (error.code, error.status) == ("AccessDenied", 403)


def test_s3_error_carries_the_status_of_its_code() -> None:
    assert S3Error("BadDigest", "x").status == 400
    assert S3Error("SignatureDoesNotMatch", "x").status == 403
    with pytest.raises(ValueError):
        S3Error("NoSuchCode", "x")


# ---- Canonical forms ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/bucket/a b", "/bucket/a%20b"),
        ("/bucket/a%20b", "/bucket/a%20b"),
        ("/bucket/a%2fb", "/bucket/a%2Fb"),
        ("/bucket/%7e~", "/bucket/~~"),
        ("/bucket/a+b", "/bucket/a%2Bb"),
        ("/bucket/./../x//y", "/bucket/./../x//y"),
        ("/bucket/%C3%BC", "/bucket/%C3%BC"),
        ("/bucket/$!", "/bucket/%24%21"),
    ],
)
def test_canonical_uri_encodes_each_segment_once(raw: str, expected: str) -> None:
    assert canonical_uri(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("uploads", "uploads="),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("prefix=a+b&x=%7e", "prefix=a%20b&x=~"),
        ("k=a%2Fb&empty=", "empty=&k=a%2Fb"),
        ("&&a=1&", "a=1"),
        ("X-Amz-Signature=abc&z=1", "z=1"),
    ],
)
def test_canonical_query(raw: str, expected: str) -> None:
    assert canonical_query(parse_query(raw), exclude={"X-Amz-Signature"}) == expected


def test_header_values_are_trimmed_and_collapsed() -> None:
    assert trim_value("  a   b \t c  ") == "a b c"
    head = sign("GET", f"{HTTP}/bucket/key", headers={"x-amz-meta-spaced": "  lots   of    space  "})
    assert head.header("x-amz-meta-spaced") == "  lots   of    space  "
    assert verifier().verify(head).access_key_id == ACCESS_KEY


def test_public_surface() -> None:
    """What the package exports is its __all__ (submodules, imported or not, aside)."""
    import pkgutil

    import peer.s3

    submodules = {info.name for info in pkgutil.iter_modules(peer.s3.__path__)}
    exported = {name for name in dir(peer.s3) if not name.startswith("_")} - submodules
    assert exported == set(peer.s3.__all__)
