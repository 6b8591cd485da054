"""aws-chunked bodies and checksums: decoding in any split, chunk and trailer signatures, trailing
checksums, and refusal of tampered or malformed framing.

botocore has no signer for STREAMING-AWS4-HMAC-SHA256-PAYLOAD chunks, so signed bodies come from a
small encoder written here from the AWS specification; it is itself checked against the exact
signatures of AWS's documented examples before it is trusted. The seed signatures of new requests
come from botocore's and the CRT's own signers, and unsigned trailer bodies from botocore's
AwsChunkedWrapper, the wrapper boto3 and the AWS CLI send by default.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import hmac
import io
import random
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.crt.auth
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)

from peer.s3 import (
    ALGORITHMS,
    AuthResult,
    AwsChunkedDecoder,
    ChecksumSet,
    PayloadMode,
    RequestHead,
    S3Error,
    SigningContext,
    SigV4Verifier,
    new_checksum,
    open_body,
    stored_content_encoding,
)

REGION = "us-east-1"
ACCESS_KEY = "AKIDPEERS3TEST"
SECRET = "chunked/secret+key"
SIGNED_AT = dt.datetime(2026, 3, 1, 12, 0, 0)
SIGNED_AT_S = float(calendar.timegm(SIGNED_AT.timetuple()))
AMZ_DATE = "20260301T120000Z"
SCOPE = f"20260301/{REGION}/s3/aws4_request"
EMPTY = hashlib.sha256(b"").hexdigest()

BOTOCORE_CHECKSUMS: dict[str, Callable[[], Any]] = {
    "crc32": Crc32Checksum,
    "crc32c": CrtCrc32cChecksum,
    "crc64nvme": CrtCrc64NvmeChecksum,
    "sha1": Sha1Checksum,
    "sha256": Sha256Checksum,
}


@pytest.fixture(autouse=True)
def signers_at_fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def now(remove_tzinfo: bool = True) -> dt.datetime:
        return SIGNED_AT if remove_tzinfo else SIGNED_AT.replace(tzinfo=dt.UTC)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", now)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", now)


def s3_error(call: Callable[[], object]) -> S3Error:
    with pytest.raises(S3Error) as caught:
        call()
    return caught.value


def pieces(data: bytes, how: str, seed: int = 7) -> Iterator[bytes]:
    """The body as a network might deliver it: whole, byte by byte, or in random-size pieces."""
    if how == "whole":
        yield data
        return
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = 1 if how == "bytes" else rng.choice([1, 2, 3, 17, 100, 4096, 65_537, rng.randint(1, 200_000)])
        yield data[pos : pos + step]
        pos += step


SPLITS = ["whole", "bytes", "random"]


def decode_all(reader: Any, body: bytes, how: str = "random", seed: int = 7) -> tuple[bytes, Any]:
    out = b"".join(reader.feed(piece) for piece in pieces(body, how, seed))
    return out, reader.finish()


# ---- An encoder from the specification, proven on AWS's examples -------------------------------------


def spec_hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def spec_key(secret: str, date: str, region: str = REGION) -> bytes:
    key = spec_hmac(b"AWS4" + secret.encode(), date)
    for part in (region, "s3", "aws4_request"):
        key = spec_hmac(key, part)
    return key


def encode_signed(
    chunks: list[bytes],
    *,
    key: bytes,
    seed: str,
    amz_date: str = AMZ_DATE,
    scope: str = SCOPE,
    trailers: list[tuple[str, str]] | None = None,
) -> tuple[list[bytes], list[str]]:
    """Frames of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) body, and the signatures they carry.

    Chunk n signs `AWS4-HMAC-SHA256-PAYLOAD`, the date, the scope, the signature of chunk n-1 (the seed
    for the first), the empty-string hash and the hash of its data; the trailer signs
    `AWS4-HMAC-SHA256-TRAILER`, the date, the scope, the final chunk's signature and the hash of its
    `name:value\\n` lines."""
    frames, signatures, previous = [], [], seed
    for data in [*chunks, b""]:
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY, hashlib.sha256(data).hexdigest())
        )
        previous = spec_hmac(key, to_sign).hex()
        signatures.append(previous)
        closing = b"\r\n" if data or trailers is None else b""
        frames.append(f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + closing)
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers).encode()
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, hashlib.sha256(canonical).hexdigest())
        )
        signature = spec_hmac(key, to_sign).hex()
        signatures.append(signature)
        lines = "".join(f"{name}:{value}\r\n" for name, value in trailers)
        frames.append(f"{lines}x-amz-trailer-signature:{signature}\r\n\r\n".encode())
    return frames, signatures


AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TIME_S = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))
AWS_SCOPE = "20130524/us-east-1/s3/aws4_request"
AWS_CHUNKS = [b"a" * 65536, b"a" * 1024]
AWS_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
AWS_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
AWS_TRAILER_SIGNATURES = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
]
AWS_TRAILER = [("x-amz-checksum-crc32c", "sOO8/Q==")]


def aws_example(trailer: bool) -> tuple[RequestHead, bytes]:
    """The documented PUT of 66560 'a's in 64 KiB chunks, with or without its crc32c trailer."""
    signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length"
    seed, mode, extra = AWS_SEED, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", [("Content-Length", "66824")]
    if trailer:
        signed = "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length"
        seed, mode, extra = AWS_TRAILER_SEED, mode + "-TRAILER", [("x-amz-trailer", "x-amz-checksum-crc32c")]
    credential = f"{AWS_KEY}/20130524/us-east-1/s3/aws4_request"
    signed += ";x-amz-storage-class" + (";x-amz-trailer" if trailer else "")
    authorization = f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed},Signature={seed}"
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("Authorization", authorization),
        ("x-amz-content-sha256", mode),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        *extra,
    ]
    frames, _ = encode_signed(
        AWS_CHUNKS,
        key=spec_key(AWS_SECRET, "20130524"),
        seed=seed,
        amz_date="20130524T000000Z",
        scope=AWS_SCOPE,
        trailers=AWS_TRAILER if trailer else None,
    )
    return RequestHead("PUT", "/examplebucket/chunkObject.txt", "", tuple(headers)), b"".join(frames)


def test_the_spec_encoder_reproduces_the_documented_signatures() -> None:
    key = spec_key(AWS_SECRET, "20130524")
    common = {"key": key, "amz_date": "20130524T000000Z", "scope": AWS_SCOPE}
    frames, signatures = encode_signed(AWS_CHUNKS, seed=AWS_SEED, **common)  # type: ignore[arg-type]
    assert signatures == AWS_SIGNATURES
    assert len(b"".join(frames)) == 66824  # the example's Content-Length
    _, signatures = encode_signed(AWS_CHUNKS, seed=AWS_TRAILER_SEED, trailers=AWS_TRAILER, **common)  # type: ignore[arg-type]
    assert signatures == AWS_TRAILER_SIGNATURES
    checksums = ChecksumSet(["crc32c"])
    checksums.update(b"".join(AWS_CHUNKS))
    assert checksums.digests() == {"crc32c": "sOO8/Q=="}  # the trailer value the example sends


@pytest.mark.parametrize("how", SPLITS)
@pytest.mark.parametrize("trailer", [False, True], ids=["no-trailer", "crc32c-trailer"])
def test_the_documented_streaming_upload_decodes(trailer: bool, how: str) -> None:
    head, body = aws_example(trailer)
    result = SigV4Verifier({AWS_KEY: AWS_SECRET}.get, clock=lambda: AWS_TIME_S).verify(head)
    assert result.signing.seed_signature == (AWS_TRAILER_SEED if trailer else AWS_SEED)
    payload, done = decode_all(open_body(result, head), body, how)
    assert payload == b"a" * 66560
    assert done.checksums == ({"crc32c": "sOO8/Q=="} if trailer else {})


# ---- New signed streaming uploads: seeds from botocore and the CRT --------------------------------------


class _StreamingSeedSigner(botocore.auth.S3SigV4Auth):
    """botocore's S3 signer declaring a streaming payload, as a chunk-signing client does."""

    def __init__(self, mode: str) -> None:
        super().__init__(Credentials(ACCESS_KEY, SECRET), "s3", REGION)
        self._mode = mode

    def payload(self, request: AWSRequest) -> str:
        return self._mode


class _CrtStreamingSeedSigner(botocore.crt.auth.CrtS3SigV4Auth):
    """The CRT's S3 signer (the one boto3 uses with awscrt installed), declaring a streaming payload."""

    def __init__(self, mode: str) -> None:
        super().__init__(Credentials(ACCESS_KEY, SECRET), "s3", REGION)
        self._mode = mode

    def _get_existing_sha256(self, request: AWSRequest) -> str:
        return self._mode


def streaming_head(mode: str, decoded_length: int, trailer: str | None, *, crt: bool) -> RequestHead:
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded_length)}
    if trailer is not None:
        headers["x-amz-trailer"] = trailer
    request = AWSRequest(method="PUT", url="http://127.0.0.1:9000/bucket/streamed%20key", headers=headers)
    signer = _CrtStreamingSeedSigner(mode) if crt else _StreamingSeedSigner(mode)
    signer.add_auth(request)
    headers_out = [(n, v.decode() if isinstance(v, bytes) else v) for n, v in request.headers.items()]
    if not any(n.lower() == "host" for n, _ in headers_out):
        headers_out.append(("Host", urlsplit(request.url).netloc))
    return RequestHead("PUT", urlsplit(request.url).path, "", tuple(headers_out))


def verifier() -> SigV4Verifier:
    return SigV4Verifier({ACCESS_KEY: SECRET}.get, clock=lambda: SIGNED_AT_S)


def random_chunks(seed: int, count: int = 4) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(8192, 70_000)) for _ in range(count - 1)] + [rng.randbytes(rng.randint(1, 9000))]


def botocore_b64(algorithm: str, data: bytes) -> str:
    checksum = BOTOCORE_CHECKSUMS[algorithm]()
    checksum.update(data)
    return str(checksum.b64digest())


def signed_upload(
    algorithm: str | None, *, crt: bool = False, seed: int = 1
) -> tuple[RequestHead, AuthResult, list[bytes], list[bytes], str | None]:
    chunks = random_chunks(seed)
    data = b"".join(chunks)
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if algorithm else "")
    trailer = f"x-amz-checksum-{algorithm}" if algorithm else None
    head = streaming_head(mode, len(data), trailer, crt=crt)
    result = verifier().verify(head)
    value = botocore_b64(algorithm, data) if algorithm else None
    trailers = [(trailer, value)] if trailer and value else None
    frames, _ = encode_signed(
        chunks, key=spec_key(SECRET, "20260301"), seed=result.signing.seed_signature, trailers=trailers
    )
    return head, result, frames, chunks, value


@pytest.mark.parametrize("crt", [False, True], ids=["botocore-seed", "crt-seed"])
@pytest.mark.parametrize("algorithm", [None, *ALGORITHMS])
def test_signed_streaming_upload_with_every_trailing_checksum(algorithm: str | None, crt: bool) -> None:
    head, result, frames, chunks, value = signed_upload(algorithm, crt=crt)
    assert result.payload_mode.chunk_signed and result.payload_mode.has_trailer == bool(algorithm)
    outputs = set()
    for how in SPLITS:
        payload, done = decode_all(open_body(result, head), b"".join(frames), how)
        outputs.add(payload)
        assert done.checksums == ({algorithm: value} if algorithm else {})
    assert outputs == {b"".join(chunks)}


def _flip(frame: bytes, offset_from_end: int) -> bytes:
    index = len(frame) - offset_from_end
    return frame[:index] + bytes([frame[index] ^ 0x01]) + frame[index + 1 :]


def _bad_signature(frame: bytes) -> bytes:
    return re.sub(rb"chunk-signature=[0-9a-f]{8}", b"chunk-signature=00000000", frame, count=1)


CHUNK_TAMPERING: dict[str, tuple[Callable[[list[bytes]], list[bytes]], str]] = {
    "data-byte": (lambda f: [f[0], _flip(f[1], 10), *f[2:]], "SignatureDoesNotMatch"),
    "swapped-chunks": (lambda f: [f[1], f[0], *f[2:]], "SignatureDoesNotMatch"),
    "dropped-chunk": (lambda f: [f[0], *f[2:]], "SignatureDoesNotMatch"),
    "chunk-signature": (lambda f: [f[0], _bad_signature(f[1]), *f[2:]], "SignatureDoesNotMatch"),
    "final-chunk-signature": (lambda f: [*f[:-1], _bad_signature(f[-1])], "SignatureDoesNotMatch"),
    "no-chunk-signature": (
        lambda f: [re.sub(rb";chunk-signature=[0-9a-f]+", b"", f[0]), *f[1:]],
        "SignatureDoesNotMatch",
    ),
    "truncated": (lambda f: f[:-1], "IncompleteBody"),
    "truncated-mid-chunk": (lambda f: [f[0], f[1][:-500]], "IncompleteBody"),
}


@pytest.mark.parametrize("how", ["whole", "random"])
@pytest.mark.parametrize("tamper", list(CHUNK_TAMPERING))
def test_tampered_signed_chunks_are_refused(tamper: str, how: str) -> None:
    head, result, frames, _, _ = signed_upload(None)
    change, code = CHUNK_TAMPERING[tamper]
    body = b"".join(change(frames))
    assert s3_error(lambda: decode_all(open_body(result, head), body, how)).code == code


def test_chunks_signed_from_another_seed_are_refused() -> None:
    head, result, _, chunks, _ = signed_upload(None)
    frames, _ = encode_signed(chunks, key=spec_key(SECRET, "20260301"), seed="f" * 64)
    assert s3_error(lambda: decode_all(open_body(result, head), b"".join(frames))).code == "SignatureDoesNotMatch"


TRAILER_TAMPERING: dict[str, Callable[[bytes], bytes]] = {
    "checksum-value": lambda t: re.sub(rb"checksum-crc32c:.", b"checksum-crc32c:A", t),
    "trailer-signature": lambda t: re.sub(rb"signature:[0-9a-f]{4}", b"signature:0000", t),
    "no-trailer-signature": lambda t: re.sub(rb"x-amz-trailer-signature:[0-9a-f]+\r\n", b"", t),
    "malformed-trailer-signature": lambda t: re.sub(rb"signature:[0-9a-f]{4}", b"signature:XYZ", t),
}


@pytest.mark.parametrize("tamper", list(TRAILER_TAMPERING))
def test_tampered_signed_trailer_is_refused(tamper: str) -> None:
    head, result, frames, _, _ = signed_upload("crc32c")
    changed = [*frames[:-1], TRAILER_TAMPERING[tamper](frames[-1])]
    assert changed != frames
    assert s3_error(lambda: decode_all(open_body(result, head), b"".join(changed))).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_properly_signed_but_wrong_checksum_is_bad_digest(algorithm: str) -> None:
    head, result, _, chunks, _ = signed_upload(algorithm)
    wrong = botocore_b64(algorithm, b"other data")
    frames, _ = encode_signed(
        chunks,
        key=spec_key(SECRET, "20260301"),
        seed=result.signing.seed_signature,
        trailers=[(f"x-amz-checksum-{algorithm}", wrong)],
    )
    error = s3_error(lambda: decode_all(open_body(result, head), b"".join(frames)))
    assert (error.code, error.status) == ("BadDigest", 400)


# ---- Unsigned trailers: what boto3 and the AWS CLI send by default over HTTPS ----------------------------


class _EmptyRaw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""

    def read(self, *_: Any, **__: Any) -> bytes:
        return b""


def boto3_put(data: bytes, algorithm: str) -> tuple[RequestHead, bytes]:
    client = boto3.client(
        "s3",
        endpoint_url="https://s3.peer.test",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}),
    )
    sent: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyRaw())

    client.meta.events.register("before-send.s3.*", capture)
    client.put_object(Bucket="bucket", Key="k", Body=data, ChecksumAlgorithm=algorithm.upper())
    request = sent[-1]
    headers = tuple((n, v.decode() if isinstance(v, bytes) else v) for n, v in request.headers.items())
    split = urlsplit(request.url)
    assert request.body is not None and not isinstance(request.body, bytes | bytearray)
    return RequestHead("PUT", split.path, split.query, headers), request.body.read()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_boto3_unsigned_trailer_upload_with_every_checksum(algorithm: str) -> None:
    data = random.Random(algorithm).randbytes(2_500_000)  # three chunks of botocore's 1 MiB
    head, body = boto3_put(data, algorithm)
    result = verifier().verify(head)
    assert result.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert head.header("x-amz-trailer") == f"x-amz-checksum-{algorithm}"
    payload, done = decode_all(open_body(result, head), body, "random")
    assert payload == data
    assert done.checksums == {algorithm: botocore_b64(algorithm, data)}
    assert stored_content_encoding(head.header("content-encoding")) is None


def test_boto3_unsigned_trailer_tampering() -> None:
    data = random.Random(3).randbytes(50_000)
    head, body = boto3_put(data, "crc32")
    result = verifier().verify(head)
    flipped = body[:100] + bytes([body[100] ^ 0x01]) + body[101:]
    assert s3_error(lambda: decode_all(open_body(result, head), flipped)).code == "BadDigest"
    value = botocore_b64("crc32", b"not it")
    wrong_value = re.sub(rb"x-amz-checksum-crc32:[^\r]+", b"x-amz-checksum-crc32:" + value.encode(), body)
    assert s3_error(lambda: decode_all(open_body(result, head), wrong_value)).code == "BadDigest"
    renamed = body.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32c:")
    assert s3_error(lambda: decode_all(open_body(result, head), renamed)).code == "MalformedTrailerError"


@pytest.mark.parametrize("chunk_size", [1, 7, 8192, 1 << 20])
def test_botocore_wrapper_bodies_decode_identically_in_any_split(chunk_size: int) -> None:
    data = random.Random(chunk_size).randbytes(30_000)
    body = AwsChunkedWrapper(io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size).read()
    for how in SPLITS:
        decoder = AwsChunkedDecoder(chain=None, trailer_names=["x-amz-checksum-crc32"], decoded_length=len(data))
        payload, trailers = decode_all(decoder, body, how, seed=chunk_size)
        assert payload == data
        assert trailers == {"x-amz-checksum-crc32": botocore_b64("crc32", data)}


# ---- Checksums -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "digest_hex"),
    [
        ("crc32", "cbf43926"),
        ("crc32c", "e3069283"),
        ("crc64nvme", "ae8b14860a799888"),
        ("sha1", hashlib.sha1(b"123456789").hexdigest()),
        ("sha256", hashlib.sha256(b"123456789").hexdigest()),
    ],
)
def test_checksum_known_vectors(algorithm: str, digest_hex: str) -> None:
    """The CRC check values of their catalogue entries ("123456789"), big-endian."""
    checksum = new_checksum(algorithm)
    for byte in b"123456789":
        checksum.update(bytes([byte]))
    assert checksum.digest().hex() == digest_hex


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksums_agree_with_botocore_in_any_split(algorithm: str) -> None:
    rng = random.Random(algorithm)
    for size in (0, 1, 1000, 300_000):
        data = rng.randbytes(size)
        checksums = ChecksumSet([algorithm])
        for piece in pieces(data, "random", seed=size):
            checksums.update(piece)
        assert checksums.digests() == {algorithm: botocore_b64(algorithm, data)}


def unsigned_put(headers: dict[str, str]) -> tuple[RequestHead, AuthResult]:
    """An UNSIGNED-PAYLOAD PUT signed by botocore, carrying the given headers (signed too)."""
    request = AWSRequest(method="PUT", url="https://s3.peer.test/bucket/key", headers=headers)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(request)
    head = RequestHead(
        "PUT", "/bucket/key", "", (("Host", "s3.peer.test"), *((n, str(v)) for n, v in request.headers.items()))
    )
    result = verifier().verify(head)
    assert result.payload_mode is PayloadMode.UNSIGNED
    return head, result


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_header_is_verified(algorithm: str) -> None:
    data = random.Random(5).randbytes(100_000)
    head, result = unsigned_put({f"x-amz-checksum-{algorithm}": botocore_b64(algorithm, data)})
    assert decode_all(open_body(result, head), data)[1].checksums == {algorithm: botocore_b64(algorithm, data)}
    error = s3_error(lambda: decode_all(open_body(result, head), data[:-1] + b"!"))
    assert (error.code, error.message) == (
        "BadDigest",
        f"The {algorithm.upper()} you specified did not match the calculated checksum.",
    )


@pytest.mark.parametrize("value", ["not base64!", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="])
def test_malformed_checksum_header_is_invalid_request(value: str) -> None:
    head, result = unsigned_put({"x-amz-checksum-crc32": value})
    assert s3_error(lambda: open_body(result, head)).code == "InvalidRequest"


def test_two_checksum_headers_are_refused() -> None:
    head, result = unsigned_put({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "A" * 27 + "="})
    assert s3_error(lambda: open_body(result, head)).code == "InvalidRequest"


def test_content_md5_is_verified() -> None:
    import base64

    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    head, result = unsigned_put({"Content-MD5": good})
    assert decode_all(open_body(result, head), b"payload")[0] == b"payload"
    assert s3_error(lambda: decode_all(open_body(result, head), b"payloaD")).code == "BadDigest"
    head, result = unsigned_put({"Content-MD5": "short"})
    assert s3_error(lambda: open_body(result, head)).code == "InvalidDigest"


# ---- The decoder's framing rules --------------------------------------------------------------------------


def unsigned_decoder(**kwargs: Any) -> AwsChunkedDecoder:
    return AwsChunkedDecoder(chain=None, **kwargs)


def test_chunk_data_streams_through_without_waiting_for_the_chunk_end() -> None:
    decoder = unsigned_decoder()
    assert decoder.feed(b"100000\r\n") == b""
    assert decoder.feed(b"x" * 100) == b"x" * 100
    assert decoder.feed(b"y" * 5000) == b"y" * 5000
    assert decoder.decoded_size == 5100


@pytest.mark.parametrize(
    "header",
    [b"1000001\r\n", b"ffffffff\r\n", b"ffffffffffffffffffffffff\r\n", b"1000001;chunk-signature=00\r\n"],
)
def test_oversize_chunk_header_is_refused_before_any_data(header: bytes) -> None:
    decoder = unsigned_decoder()
    error = s3_error(lambda: decoder.feed(header))
    assert (error.code, error.status) == ("InvalidRequest", 400)
    assert s3_error(lambda: decoder.feed(b"more")) is error  # a refused body stays refused


def test_chunk_size_cap_is_configurable() -> None:
    assert unsigned_decoder(max_chunk_size=1024).feed(b"400\r\n") == b""
    assert s3_error(lambda: unsigned_decoder(max_chunk_size=1024).feed(b"401\r\n")).code == "InvalidRequest"


@pytest.mark.parametrize("how", ["whole", "bytes"])
def test_endless_chunk_header_is_refused_within_its_cap(how: str) -> None:
    decoder = unsigned_decoder(max_line=64)
    with pytest.raises(S3Error) as caught:
        for piece in pieces(b"1" + b";x=y" * 100, how):
            decoder.feed(piece)
    assert caught.value.code == "InvalidRequest"


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",
        b"\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\nabcXY0\r\n\r\n",
        b"3\r\nabc\r\n0\r\n\r\ntrailing garbage",
        b"-3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["non-hex-size", "empty-size", "lf-only-header", "no-crlf-after-data", "data-after-end", "negative-size"],
)
def test_malformed_framing_is_refused(body: bytes) -> None:
    assert s3_error(lambda: decode_all(unsigned_decoder(), body, "bytes")).code == "InvalidRequest"


@pytest.mark.parametrize(
    "body", [b"", b"3\r\nab", b"3\r\nabc", b"3\r\nabc\r\n", b"3\r\nabc\r\n0", b"3\r\nabc\r\n0\r\n\r"]
)
def test_truncated_body_is_incomplete(body: bytes) -> None:
    assert s3_error(lambda: decode_all(unsigned_decoder(), body, "whole")).code == "IncompleteBody"


def test_missing_closing_crlf_after_the_final_chunk_is_tolerated() -> None:
    assert decode_all(unsigned_decoder(), b"3\r\nabc\r\n0\r\n")[0] == b"abc"


@pytest.mark.parametrize("declared", [2, 4])
def test_decoded_length_must_match(declared: int) -> None:
    error = s3_error(lambda: decode_all(unsigned_decoder(decoded_length=declared), b"3\r\nabc\r\n0\r\n\r\n"))
    assert error.code == "IncompleteBody"


TRAILER_NAMES = ["x-amz-checksum-crc32"]
CRC_ABC = botocore_b64("crc32", b"abc")


@pytest.mark.parametrize(
    "tail",
    [
        f"0\r\nx-amz-checksum-crc32:{CRC_ABC}\r\n\r\n",
        f"0\r\nx-amz-checksum-crc32:{CRC_ABC}\r\n",
        f"0\r\n\r\nx-amz-checksum-crc32:{CRC_ABC}\r\n\r\n",
        f"0\r\nx-amz-checksum-crc32:{CRC_ABC}\n\r\n\r\n",
        f"0\r\nX-Amz-Checksum-CRC32 : {CRC_ABC} \r\n\r\n",
    ],
    ids=["botocore", "no-closing-line", "blank-before-trailer", "lf-endings", "case-and-spaces"],
)
def test_trailer_variants_sent_by_clients(tail: str) -> None:
    body = b"3\r\nabc\r\n" + tail.encode()
    for how in SPLITS:
        payload, trailers = decode_all(unsigned_decoder(trailer_names=TRAILER_NAMES), body, how)
        assert (payload, trailers) == (b"abc", {"x-amz-checksum-crc32": CRC_ABC})


@pytest.mark.parametrize(
    ("trailer", "code"),
    [
        ("x-amz-checksum-sha1:AAAA\r\n\r\n", "MalformedTrailerError"),
        ("\r\n", "IncompleteBody"),
        (f"x-amz-checksum-crc32:{CRC_ABC}\r\nx-amz-checksum-crc32:{CRC_ABC}\r\n\r\n", "MalformedTrailerError"),
        ("no colon here\r\n\r\n", "MalformedTrailerError"),
        (f"x-amz-checksum-crc32:{CRC_ABC}\r\nx-amz-meta-extra:1\r\n\r\n", "MalformedTrailerError"),
        ("x-amz-meta-filler:" + "x" * 20_000 + "\r\n\r\n", "MalformedTrailerError"),
        (f"x-amz-checksum-crc32:{CRC_ABC}", "IncompleteBody"),
    ],
    ids=["undeclared", "missing", "duplicate", "not-name-value", "extra", "oversize", "unterminated"],
)
def test_malformed_trailer_is_refused(trailer: str, code: str) -> None:
    body = b"3\r\nabc\r\n0\r\n" + trailer.encode()
    decoder = unsigned_decoder(trailer_names=TRAILER_NAMES)
    assert s3_error(lambda: decode_all(decoder, body, "random")).code == code


def fake_auth(mode: PayloadMode) -> AuthResult:
    return AuthResult(ACCESS_KEY, mode, None, SigningContext(b"k" * 32, AMZ_DATE, SCOPE, "0" * 64), False)


@pytest.mark.parametrize(
    ("mode", "headers"),
    [
        (PayloadMode.STREAMING_UNSIGNED_TRAILER, ()),
        (PayloadMode.STREAMING_UNSIGNED_TRAILER, (("x-amz-trailer", "x-amz-meta-color"),)),
        (PayloadMode.STREAMING_UNSIGNED_TRAILER, (("x-amz-trailer", "x-amz-checksum-crc32,x-amz-checksum-sha1"),)),
        (PayloadMode.UNSIGNED, (("x-amz-trailer", "x-amz-checksum-crc32"),)),
        (PayloadMode.STREAMING_SIGNED, (("x-amz-decoded-content-length", "many"),)),
        (
            PayloadMode.STREAMING_UNSIGNED_TRAILER,
            (("x-amz-trailer", "x-amz-checksum-crc32"), ("x-amz-checksum-crc32", CRC_ABC)),
        ),
    ],
    ids=["no-x-amz-trailer", "non-checksum-trailer", "two-trailers", "trailer-without-streaming", "bad-length", "both"],
)
def test_body_declarations_are_checked_before_reading(mode: PayloadMode, headers: tuple[tuple[str, str], ...]) -> None:
    head = RequestHead("PUT", "/b/k", "", headers)
    error = s3_error(lambda: open_body(fake_auth(mode), head))
    assert error.code in ("InvalidRequest", "InvalidArgument")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [(None, None), ("aws-chunked", None), ("gzip,aws-chunked", "gzip"), ("AWS-CHUNKED, gzip", "gzip"), ("br", "br")],
)
def test_aws_chunked_is_never_stored_as_the_object_encoding(sent: str | None, stored: str | None) -> None:
    assert stored_content_encoding(sent) == stored
