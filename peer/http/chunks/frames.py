"""The chunk stream's frames: a fixed 64-byte header, then `length` bytes of body.

Every field is checked before a byte of body is read or any memory is set aside for it, so a peer
sending junk costs its receiver 64 bytes and a closed connection. Layout (big-endian):

    0   kind     u8     PUT 0x01, GET 0x02 (requests); STORED 0x81, DATA 0x82, ERROR 0x83 (answers)
    1   flags    u8     bit 0: `xxh3` holds the sender's XXH3-64 of the body; no other bit is defined
    2   code     u16    ERROR: why (the ErrorCode values); 0 otherwise
    4   length   u32    body bytes: the chunk (PUT, DATA), a reason in UTF-8 (ERROR); 0 otherwise
    8   xxh3     u64    0 unless flagged
    16  chunk id 32     the binary SHA-256 the frame is about
    48  tag      16     HMAC-SHA256 under the session key over (direction, sequence number, bytes
                        0..47), truncated; all zero where no session key is needed (TLS, or no auth)

Under a session key (dfs-chunks/2), a frame with a body is followed by a 16-byte body tag: AES-GCM's
tag over the body as associated data (nothing is encrypted) under a key derived from the session
key, with the frame's direction and sequence number as the nonce, so a body is bound to its header
and position as the header is. It costs about 0.05 ms of CPU per MiB where checking the body's
SHA-256 against its id costs 0.6, and it is checked before the body is taken for anything. Both ends
compute it on the event loop: for a 1 MiB chunk that is less CPU than handing the work to a thread
(about 0.08 ms here). The header tag is still checked first, before any memory is set aside for the
body. dfs-chunks/1 has no body tag: on a keyed stream of that version the receiver checks every
body's SHA-256 against its id (`Sealer.trusts_checksums` is False).
"""

from __future__ import annotations

import enum
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from peer.errors import InvalidRequest

__all__ = ["BODY_TAG_BYTES", "HEADER_BYTES", "MAX_REASON_BYTES", "ErrorCode", "Frame", "FrameError", "Kind", "Sealer",
           "decode_header", "encode_header"]

HEADER = struct.Struct(">BBHIQ32s16s")
HEADER_BYTES = HEADER.size  # 64
SIGNED_BYTES = 48
TAG_BYTES = 16
FLAG_XXH3 = 0x01
MAX_REASON_BYTES = 512
_NO_TAG = bytes(TAG_BYTES)
BODY_TAG_BYTES = 16
_BODY_KEY_LABEL = b"dfs-chunks body tags"
Buffer = bytes | bytearray | memoryview


class FrameError(InvalidRequest):
    """Bytes that are no valid frame (or handshake) of this protocol; the connection carrying them ends."""


class Kind(enum.IntEnum):
    PUT = 0x01
    GET = 0x02
    STORED = 0x81
    DATA = 0x82
    ERROR = 0x83


class ErrorCode(enum.IntEnum):
    """Why a request failed, as the requester must tell it apart: a missing or corrupt copy sends it to
    another peer, the rest say this peer cannot take the chunk now."""

    NOT_FOUND = 1
    CORRUPT = 2
    INVALID = 3
    STORAGE_FULL = 4
    FAILED = 5


# What each kind may carry: (body allowed, xxh3 flag: required / forbidden / optional).
_REQUIRED, _FORBIDDEN, _OPTIONAL = "required", "forbidden", "optional"
_RULES = {
    Kind.PUT: (True, _OPTIONAL),
    Kind.GET: (False, _FORBIDDEN),
    Kind.STORED: (False, _FORBIDDEN),
    Kind.DATA: (True, _REQUIRED),
    Kind.ERROR: (True, _FORBIDDEN),
}


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    chunk_id: str
    """Lowercase hex, as the chunk store names chunks."""
    length: int = 0
    xxh3: int | None = None
    code: int = 0


def encode_header(frame: Frame) -> bytes:
    """The 64 header bytes with a zero tag (`Sealer.seal` fills it in)."""
    flags = 0 if frame.xxh3 is None else FLAG_XXH3
    return HEADER.pack(frame.kind, flags, frame.code, frame.length, frame.xxh3 or 0,
                       bytes.fromhex(frame.chunk_id), _NO_TAG)


def decode_header(raw: bytes | bytearray | memoryview, max_body: int) -> Frame:
    """The frame a header announces, or FrameError; `max_body` bounds the chunk a PUT or DATA may carry."""
    if len(raw) != HEADER_BYTES:
        raise FrameError(f"a frame header is {HEADER_BYTES} bytes, not {len(raw)}")
    kind_value, flags, code, length, xxh3, chunk_id, _tag = HEADER.unpack(raw)
    try:
        kind = Kind(kind_value)
    except ValueError:
        raise FrameError(f"unknown frame kind 0x{kind_value:02x}") from None
    body, checksum = _RULES[kind]
    if flags & ~FLAG_XXH3:
        raise FrameError(f"undefined flags 0x{flags:02x} on a {kind.name} frame")
    flagged = bool(flags & FLAG_XXH3)
    if (checksum == _REQUIRED and not flagged) or (checksum == _FORBIDDEN and flagged):
        raise FrameError(f"a {kind.name} frame {'needs' if checksum == _REQUIRED else 'takes no'} XXH3-64")
    if not flagged and xxh3:
        raise FrameError("an XXH3-64 value without its flag")
    if kind == Kind.ERROR:
        if code not in ErrorCode._value2member_map_:
            raise FrameError(f"unknown error code {code}")
        limit = MAX_REASON_BYTES
    elif code:
        raise FrameError(f"an error code on a {kind.name} frame")
    else:
        limit = max_body if body else 0
    if length > limit:
        raise FrameError(f"a {kind.name} frame of {length} bytes (at most {limit})")
    return Frame(kind, chunk_id.hex(), length, xxh3 if flagged else None, code)


class Sealer:
    """Tags the frames one end sends and checks those it receives, under the connection's session key.

    Each direction numbers its frames from 0, and the number enters the tag, so a frame cannot be
    dropped, repeated, reordered or reflected back to its sender without the check failing. Without a
    key (TLS protects the stream, or peer authentication is off) tags are zero and must stay zero.
    `tag_body` and `check_body` belong to the frame last sealed or checked: call them before the next.
    """

    def __init__(self, key: bytes | None, *, client: bool, body_tags: bool = True) -> None:
        self._key = key
        self._send_dir, self._recv_dir = (b"C", b"S") if client else (b"S", b"C")
        self._sent = 0
        self._received = 0
        self._body_mac = (AESGCM(hmac.digest(key, _BODY_KEY_LABEL, "sha256"))
                          if key is not None and body_tags else None)

    @property
    def trusts_checksums(self) -> bool:
        """Whether a body's XXH3-64 may stand for its SHA-256. XXH3-64 is no cryptographic hash (bytes
        can be crafted to match one), so it may only where something else authenticates the body: TLS,
        or the body tag; or where no attacker is assumed (no peer authentication). A keyed stream
        without body tags (dfs-chunks/1) leaves the receiver to check SHA-256 against the id."""
        return self._key is None or self._body_mac is not None

    @property
    def body_tag_bytes(self) -> int:
        """Bytes that follow each non-empty body."""
        return BODY_TAG_BYTES if self._body_mac is not None else 0

    def seal(self, header: bytes) -> bytes:
        """`header` (from encode_header) with its tag."""
        seq, self._sent = self._sent, self._sent + 1
        if self._key is None:
            return header
        return header[:SIGNED_BYTES] + self._tag(self._send_dir, seq, header[:SIGNED_BYTES])

    def check(self, header: bytes | bytearray | memoryview) -> None:
        """Raises FrameError unless the received header carries the tag its position calls for."""
        seq, self._received = self._received, self._received + 1
        tag = bytes(header[SIGNED_BYTES:HEADER_BYTES])
        expected = _NO_TAG if self._key is None else self._tag(self._recv_dir, seq, bytes(header[:SIGNED_BYTES]))
        if not hmac.compare_digest(tag, expected):
            raise FrameError("a frame failed its authentication tag")

    def sealed(self, header: bytes, body: Buffer = b"") -> tuple[bytes, Buffer, bytes]:
        """What goes on the wire for one frame, in order: the header with its tag, the body, its body tag."""
        tagged = self.seal(header)
        return tagged, body, self.tag_body(body)

    def body_span(self, length: int) -> int:
        """Bytes that follow a header announcing `length`: the body and, where there is one, its body tag
        (read into one buffer, so the tag costs no read of its own)."""
        return length + self.body_tag_bytes if length else 0

    def checked_body(self, received: memoryview, length: int) -> memoryview:
        """The body within `received` (`body_span(length)` bytes), once it passed its body tag."""
        body = received[:length]
        self.check_body(body, received[length:])
        return body

    def tag_body(self, body: Buffer) -> bytes:
        """The body tag that follows `body`, the body of the frame last sealed (b"" where none is sent)."""
        if self._body_mac is None or not len(body):
            return b""
        return self._body_mac.encrypt(self._nonce(self._send_dir, self._sent - 1), b"", body)

    def check_body(self, body: Buffer, tag: Buffer) -> None:
        """Raises FrameError unless `tag` is the body tag of `body` as the body of the frame last checked."""
        if self._body_mac is None or not len(body):
            return
        expected = self._body_mac.encrypt(self._nonce(self._recv_dir, self._received - 1), b"", body)
        if not hmac.compare_digest(bytes(tag), expected):
            raise FrameError("a frame body failed its authentication tag")

    def _tag(self, direction: bytes, seq: int, signed: bytes) -> bytes:
        assert self._key is not None
        return hmac.digest(self._key, direction + seq.to_bytes(8, "big") + signed, "sha256")[:TAG_BYTES]

    @staticmethod
    def _nonce(direction: bytes, seq: int) -> bytes:
        """12 bytes, never repeated under one key: each stream has its own key, and within it each
        direction numbers its frames."""
        return direction + bytes(3) + seq.to_bytes(8, "big")
