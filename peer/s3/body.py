"""Reading a request body as an authenticated request declared it: decode, then verify every digest.

`open_body(auth, head)` returns a `BodyReader` the edge feeds with raw bytes as they arrive; it gives
back the object's bytes (the aws-chunked framing removed) and, at `finish`, verifies what the client
promised about them: the signed x-amz-content-sha256, chunk and trailer signatures, an
`x-amz-checksum-*` value sent as a header or a trailer, Content-MD5, and x-amz-decoded-content-length.
Nothing is trusted before `finish` returns: the edge writes provisionally and discards on any error.

Decoding and hashing can be apart (`decode`, then `hash`): a large body's digests are then computed
by whoever passes over its bytes anyway (the upload's own hashing pass, in a worker thread) instead of
in a pass of their own on the receive path, and a caller that computes the body's SHA-256 for itself
hands it to `finish` (`open_body(..., sha256_given=True)`), so the signed payload hash costs no pass.
The MD5 is always computed: it is the object's ETag and what Content-MD5 is checked against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from peer.s3 import checksums
from peer.s3.chunked import DEFAULT_MAX_CHUNK_SIZE, AwsChunkedDecoder, ChunkSignatureChain
from peer.s3.errors import S3Error
from peer.s3.request import RequestHead
from peer.s3.sigv4 import AuthResult, PayloadMode


class ContentSha256Verifier:
    """Checks a body against the hex SHA-256 the client signed in x-amz-content-sha256, incrementally."""

    def __init__(self, expected_hex: str) -> None:
        self._expected = expected_hex.lower()
        self._hasher = hashlib.sha256()

    def update(self, data: bytes | memoryview) -> None:
        self._hasher.update(data)

    def finish(self) -> None:
        self.check(self._hasher.hexdigest())

    def check(self, computed: str) -> None:
        """Compares the hex SHA-256 of the whole body, computed by this verifier or elsewhere."""
        if computed != self._expected:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                extra={"ClientComputedContentSHA256": self._expected, "S3ComputedContentSHA256": computed},
            )


@dataclass(frozen=True)
class BodyResult:
    size: int
    """Bytes of the object, without any framing."""
    checksums: dict[str, str]
    """Algorithm -> base64 digest of each checksum the client declared and the data matched."""
    md5: str = ""
    """The hex MD5 of the object's bytes: the ETag of an object stored in one piece."""


class BodyReader:
    def __init__(
        self,
        *,
        decoder: AwsChunkedDecoder | None,
        sha256: ContentSha256Verifier | None,
        header_checksums: dict[str, str],
        trailer_algorithms: list[str],
        content_md5: bytes | None,
        sha256_given: bool = False,
    ) -> None:
        """`sha256_given`: the caller hashes the body with SHA-256 itself and passes the digest to
        `finish`, so `hash` leaves the signed payload hash out."""
        self._decoder = decoder
        self._sha256 = sha256
        self._sha256_given = sha256_given
        self._header_checksums = header_checksums
        self._trailer_algorithms = trailer_algorithms
        self._checksums = checksums.ChecksumSet([*header_checksums, *trailer_algorithms])
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._content_md5 = content_md5
        self._size = 0
        self._declared: dict[str, str] | None = None

    @property
    def decode_hashes(self) -> bool:
        """Whether decoding hashes the bytes (signed aws-chunked chunks): only then is it worth a
        worker thread; otherwise it is at most a copy."""
        return self._decoder is not None and self._decoder.hashes

    def feed(self, raw: bytes) -> bytes | memoryview:
        """Consume bytes as received; return the object bytes among them, hashed (not yet verified)."""
        data = self.decode(raw)
        self.hash(data)
        return data

    def decode(self, raw: bytes) -> bytes | memoryview:
        """The object bytes among `raw` (not yet verified), not hashed: each byte returned must reach
        `hash` once, in order, before `finish`."""
        data = raw if self._decoder is None else self._decoder.feed(raw)
        self._size += len(data)
        return data

    def hash(self, data: bytes | memoryview) -> None:
        """Feeds the object's bytes to every digest the body is checked against, in one pass. Never
        called for two pieces at once, but not necessarily from the thread that decodes."""
        self._md5.update(data)
        self._checksums.update(data)
        if self._sha256 is not None and not self._sha256_given:
            self._sha256.update(data)

    def end(self) -> int:
        """Declares the end of the raw body and checks its framing (the trailer, its signature, the
        decoded length); returns the object's size. The digests wait for `finish`."""
        if self._declared is None:
            declared = dict(self._header_checksums)
            if self._decoder is not None:
                trailers = self._decoder.finish()
                for algorithm in self._trailer_algorithms:
                    declared[algorithm] = trailers[checksums.header_name(algorithm)]
            self._declared = declared
        return self._size

    def finish(self, sha256: str | None = None) -> BodyResult:
        """Declare the end of the body and verify it all; raise the `S3Error` S3 would answer with.
        `sha256` is the hex SHA-256 of the object's bytes when the reader was opened with
        `sha256_given` (required then, ignored otherwise)."""
        self.end()
        assert self._declared is not None
        declared = self._declared
        if self._sha256 is not None:
            if not self._sha256_given:
                self._sha256.finish()
            elif sha256 is None:
                raise ValueError("a reader opened with sha256_given needs the body's SHA-256 to finish")
            else:
                self._sha256.check(sha256)
        md5 = self._md5.digest()
        if self._content_md5 is not None and md5 != self._content_md5:
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        self._checksums.verify(declared)
        computed = self._checksums.digests()
        return BodyResult(size=self._size, checksums={algorithm: computed[algorithm] for algorithm in declared},
                          md5=md5.hex())


def open_body(auth: AuthResult, head: RequestHead, *, max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
              sha256_given: bool = False) -> BodyReader:
    """A reader for the body of a request `auth` came from, or the `S3Error` its headers deserve.
    `sha256_given`: the caller will pass the body's SHA-256 to `BodyReader.finish`."""
    mode = auth.payload_mode
    trailer_algorithms = _declared_trailers(head, mode)
    decoder = None
    if mode.streaming:
        decoder = AwsChunkedDecoder(
            chain=ChunkSignatureChain(auth.signing) if mode.chunk_signed and auth.verified else None,
            trailer_names=[checksums.header_name(a) for a in trailer_algorithms] if mode.has_trailer else None,
            decoded_length=_decoded_length(head),
            max_chunk_size=max_chunk_size,
        )
    header_checksums = _header_checksums(head)
    if header_checksums and trailer_algorithms:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header or trailer, not both.")
    return BodyReader(
        decoder=decoder,
        sha256=ContentSha256Verifier(auth.payload_sha256) if auth.payload_sha256 is not None else None,
        header_checksums=header_checksums,
        trailer_algorithms=trailer_algorithms,
        content_md5=_content_md5(head),
        sha256_given=sha256_given,
    )


def stored_content_encoding(value: str | None) -> str | None:
    """The Content-Encoding to store with the object: aws-chunked describes the upload, not the object."""
    if value is None:
        return None
    kept = [token.strip() for token in value.split(",") if token.strip() and token.strip().lower() != "aws-chunked"]
    return ",".join(kept) or None


def _header_checksums(head: RequestHead) -> dict[str, str]:
    declared = {}
    for name in head.header_values:
        algorithm = checksums.algorithm_of(name)
        if algorithm is None:
            continue
        value = head.header(name) or ""
        checksums.decode_value(algorithm, value)
        declared[algorithm] = value.strip()
    if len(declared) > 1:
        raise S3Error(
            "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    return declared


def _declared_trailers(head: RequestHead, mode: PayloadMode) -> list[str]:
    """The checksum algorithms x-amz-trailer announces; only checksum trailers exist in S3."""
    value = head.header("x-amz-trailer")
    names = [name.strip().lower() for name in (value or "").split(",") if name.strip()]
    if not mode.has_trailer:
        if names:
            raise S3Error("InvalidRequest", "x-amz-trailer requires a STREAMING-*-TRAILER x-amz-content-sha256.")
        return []
    if not names:
        raise S3Error("InvalidRequest", f"{mode.value} requires an x-amz-trailer header.")
    algorithms = []
    for name in names:
        algorithm = checksums.algorithm_of(name)
        if algorithm is None:
            raise S3Error("InvalidRequest", f"The trailer {name} is not supported; only x-amz-checksum-* are.")
        algorithms.append(algorithm)
    if len(algorithms) != 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- trailer.")
    return algorithms


def _decoded_length(head: RequestHead) -> int | None:
    value = head.header("x-amz-decoded-content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", "x-amz-decoded-content-length must be a non-negative integer.")
    return int(value)


def _content_md5(head: RequestHead) -> bytes | None:
    value = head.header("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest", "The Content-MD5 you specified is not valid.")
    return digest
