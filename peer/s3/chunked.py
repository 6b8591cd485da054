"""An incremental decoder of aws-chunked bodies: framed bytes in, object bytes out, in bounded memory.

The framing is `<hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n`, repeated, ended by a chunk of size
0, then (for the *-TRAILER modes) trailing headers such as `x-amz-checksum-crc32:<b64>` and, when
signed, `x-amz-trailer-signature:<sig>`, each on its own line, closed by an empty line.

Invariants:
- memory is bounded: only a chunk-header line (`max_line`) or the trailer (`max_trailer`) is ever
  buffered; chunk data passes straight through, so a chunk is never held whole;
- in the signed modes each chunk signature chains from the previous one (the seed signature of the
  Authorization header for the first chunk), so chunks cannot be dropped, reordered or altered;
- bytes returned by `feed` are not yet authentic: a chunk's signature is checked when its last byte
  arrives, and the whole body only when `finish` returns. Callers store them provisionally.
The framing never reaches the caller's output.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection

from peer.s3 import canonical
from peer.s3.errors import S3Error
from peer.s3.sigv4 import SigningContext

DEFAULT_MAX_CHUNK_SIZE = 16 * 1024 * 1024
"""SDKs send 64 KiB to 1 MiB chunks; a larger declared size is a broken or hostile client."""
DEFAULT_MAX_LINE = 4096
DEFAULT_MAX_TRAILER = 16 * 1024
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

_HEADER, _DATA, _DATA_END, _FINAL_END, _TRAILER, _DONE = range(6)


class ChunkSignatureChain:
    """Verifies chunk and trailer signatures in order, each chained to the one before it."""

    def __init__(self, signing: SigningContext) -> None:
        self._signing = signing
        self._previous = signing.seed_signature

    def verify_chunk(self, chunk_sha256: str, claimed: str) -> None:
        to_sign = canonical.chunk_string_to_sign(
            self._signing.amz_date, self._signing.scope, self._previous, chunk_sha256
        )
        self._check(to_sign, claimed, "chunk")

    def verify_trailer(self, trailer_sha256: str, claimed: str) -> None:
        to_sign = canonical.trailer_string_to_sign(
            self._signing.amz_date, self._signing.scope, self._previous, trailer_sha256
        )
        self._check(to_sign, claimed, "trailer")

    def _check(self, to_sign: str, claimed: str, what: str) -> None:
        expected = canonical.sign(self._signing.key, to_sign)
        if not canonical.signatures_equal(expected, claimed):
            raise S3Error(
                "SignatureDoesNotMatch",
                f"The {what} signature we calculated does not match the signature you provided.",
                extra={"StringToSign": to_sign, "SignatureProvided": claimed},
            )
        self._previous = expected


class AwsChunkedDecoder:
    def __init__(
        self,
        *,
        chain: ChunkSignatureChain | None,
        trailer_names: Collection[str] | None = None,
        decoded_length: int | None = None,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
        max_trailer: int = DEFAULT_MAX_TRAILER,
    ) -> None:
        """`chain` None reads unsigned chunks. `trailer_names` None expects no trailer; otherwise the
        trailer must carry exactly these (lower-case) names. `decoded_length` is the
        x-amz-decoded-content-length the client declared, when it did."""
        self._chain = chain
        self._trailer_names = None if trailer_names is None else frozenset(trailer_names)
        self._decoded_length = decoded_length
        self._max_chunk_size = max_chunk_size
        self._max_line = max_line
        self._max_trailer = max_trailer
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._matched_crlf = 0
        self._claimed = ""
        self._hasher = hashlib.sha256()
        self._decoded = 0
        self._trailer_bytes = 0
        self._trailers: list[tuple[str, str]] = []
        self._trailer_signature: str | None = None
        self._skipped_blank = False
        self._error: S3Error | None = None

    @property
    def hashes(self) -> bool:
        """Whether decoding hashes the chunk data (to check signed chunks)."""
        return self._chain is not None

    @property
    def decoded_size(self) -> int:
        return self._decoded

    def feed(self, data: bytes) -> bytes | memoryview:
        """Consume framed bytes; return the object bytes they contained (possibly none): a view of
        `data` when they are one run of it (no copy), else one copy of the runs joined."""
        if self._error is not None:
            raise self._error
        try:
            return self._consume(memoryview(data))
        except S3Error as exc:
            self._error = exc
            raise

    def finish(self) -> dict[str, str]:
        """Declare the end of the body; return the trailing headers (lower-case name -> value)."""
        if self._error is not None:
            raise self._error
        if self._state == _TRAILER and not self._line and self._trailers:
            self._end_trailer()  # the closing empty line is optional at the very end
        if self._state not in (_FINAL_END, _DONE) or (self._state == _FINAL_END and self._matched_crlf):
            raise S3Error("IncompleteBody", "The request body terminated unexpectedly")
        if self._decoded_length is not None and self._decoded != self._decoded_length:
            raise S3Error(
                "IncompleteBody",
                f"The body carried {self._decoded} bytes; x-amz-decoded-content-length said {self._decoded_length}.",
            )
        return dict(self._trailers)

    def _consume(self, view: memoryview) -> bytes | memoryview:
        out: list[memoryview] = []
        pos = 0
        while pos < len(view):
            if self._state == _DATA:
                take = min(self._remaining, len(view) - pos)
                piece = view[pos : pos + take]
                if self._chain is not None:  # only signed chunks need their own hash
                    self._hasher.update(piece)
                out.append(piece)
                self._remaining -= take
                self._decoded += take
                pos += take
                if self._remaining == 0:
                    self._end_chunk_data()
            elif self._state in (_DATA_END, _FINAL_END):
                pos = self._expect_crlf(view, pos)
            elif self._state == _DONE:
                if bytes(view[pos:]).strip(b"\r\n"):
                    raise _malformed("data follows the end of the aws-chunked body")
                pos = len(view)
            else:
                pos = self._read_line(view, pos)
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _read_line(self, view: memoryview, pos: int) -> int:
        """Buffer up to one line (of a chunk header or of the trailer), within its cap."""
        end = bytes(view[pos : pos + self._max_line + 2]).find(b"\n")
        stop = len(view) if end < 0 else pos + end + 1
        self._line += view[pos:stop]
        if self._state == _HEADER and len(self._line) > self._max_line:
            raise _malformed("chunk header line too long")
        if self._state == _TRAILER and self._trailer_bytes + len(self._line) > self._max_trailer:
            raise S3Error("MalformedTrailerError", "The trailer is larger than allowed.")
        if end >= 0:
            line = bytes(self._line)
            self._line.clear()
            if self._state == _HEADER:
                self._chunk_header(line)
            else:
                self._trailer_bytes += len(line)
                self._trailer_line(line)
        return stop

    def _chunk_header(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise _malformed("chunk header line must end with CRLF")
        size_field, *extensions = line[:-2].split(b";")
        if not _HEX_SIZE.fullmatch(size_field.strip()):
            raise _malformed("chunk size is not hexadecimal")
        size = int(size_field, 16)
        if size > self._max_chunk_size:
            raise S3Error("InvalidRequest", f"Chunk size {size} exceeds the maximum of {self._max_chunk_size}.")
        if self._decoded_length is not None and self._decoded + size > self._decoded_length:
            raise S3Error("IncompleteBody", "The body carries more data than x-amz-decoded-content-length.")
        self._claimed = _chunk_signature(extensions) if self._chain is not None else ""
        self._hasher = hashlib.sha256()
        self._remaining = size
        if size:
            self._state = _DATA
            return
        self._verify_chunk()
        self._state = _FINAL_END if self._trailer_names is None else _TRAILER

    def _end_chunk_data(self) -> None:
        self._verify_chunk()
        self._state = _DATA_END
        self._matched_crlf = 0

    def _verify_chunk(self) -> None:
        if self._chain is not None:
            self._chain.verify_chunk(self._hasher.hexdigest(), self._claimed)

    def _expect_crlf(self, view: memoryview, pos: int) -> int:
        while pos < len(view) and self._matched_crlf < 2:
            if view[pos] != b"\r\n"[self._matched_crlf]:
                raise _malformed("chunk data is not followed by CRLF")
            self._matched_crlf += 1
            pos += 1
        if self._matched_crlf == 2:
            self._matched_crlf = 0
            self._state = _HEADER if self._state == _DATA_END else _DONE
        return pos

    def _trailer_line(self, line: bytes) -> None:
        text = line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
        if not text:
            if not self._trailers and self._trailer_signature is None and not self._skipped_blank:
                self._skipped_blank = True  # some clients close the empty final chunk before the trailer
                return
            self._end_trailer()
            return
        if self._trailer_signature is not None:
            raise S3Error("MalformedTrailerError", "Nothing may follow the trailer signature.")
        name, colon, value = text.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not name:
            raise S3Error("MalformedTrailerError", "A trailer line is not 'name:value'.")
        if name == TRAILER_SIGNATURE:
            self._trailer_signature = value
        elif any(name == seen for seen, _ in self._trailers):
            raise S3Error("MalformedTrailerError", f"The trailer {name} appears twice.")
        else:
            self._trailers.append((name, value))

    def _end_trailer(self) -> None:
        received = {name for name, _ in self._trailers}
        if self._trailer_names is not None and received != self._trailer_names:
            raise S3Error(
                "MalformedTrailerError",
                f"The trailers sent ({', '.join(sorted(received)) or 'none'}) are not those declared in "
                f"x-amz-trailer ({', '.join(sorted(self._trailer_names))}).",
            )
        if self._chain is not None:
            claimed = self._trailer_signature
            if claimed is None or not _SIGNATURE.fullmatch(claimed):
                raise S3Error("SignatureDoesNotMatch", "The trailer carries no valid x-amz-trailer-signature.")
            digest = hashlib.sha256(canonical.canonical_trailer(self._trailers)).hexdigest()
            self._chain.verify_trailer(digest, claimed)
        self._state = _DONE


def _chunk_signature(extensions: list[bytes]) -> str:
    for extension in extensions:
        name, _, value = extension.decode("ascii", errors="replace").partition("=")
        if name.strip() == "chunk-signature" and _SIGNATURE.fullmatch(value.strip()):
            return value.strip()
    raise S3Error("SignatureDoesNotMatch", "A chunk of a signed aws-chunked body carries no chunk-signature.")


def _malformed(detail: str) -> S3Error:
    return S3Error("InvalidRequest", f"The aws-chunked body is malformed: {detail}.")
