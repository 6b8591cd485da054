"""The invariants every fuzzer checks: one `check_*` per target, calling the real code.

Each check feeds one input to the peer's own code (the gossip decoder, the validation functions, the
real FileStoreServicer.Upload) and raises AssertionError when the result breaks a rule; an exception
the code was not allowed to raise propagates as itself. The rules are stated here once, from the
spec (proto comments, module docstrings), without reusing the code under test: control characters
and UTF-8 lengths are computed from code points, not with unicodedata or str.encode.

Used by tests/test_fuzz_inputs.py (hypothesis) and by the atheris harnesses beside this file.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import msgpack
from google.protobuf.message import DecodeError

from peer.errors import GossipDecodeError, InvalidRequest
from peer.files import FileService
from peer.files import rules as v
from peer.membership import codec
from peer.metadata.store import VersionRecord
from peer.rpc import wire
from peer.rpc.client_service import FileStoreServicer, UploadItem
from peer.transfer.upload import UploadSpec
from proto import dfs_pb2 as pb

GOSSIP_LIMIT = 1024 * 1024

# ------------------------------------------------------------------------------------------ gossip


def check_gossip_body(body: bytes, max_bytes: int = GOSSIP_LIMIT) -> codec.GossipMessage | None:
    """decode() accepts the body or raises GossipDecodeError, nothing else; what it accepts encodes
    again to a message that decodes to the same value; a body over the limit is refused unparsed."""
    if body:
        try:
            codec.decode(body, len(body) - 1)
        except GossipDecodeError as exc:
            assert "exceeds" in str(exc), f"an oversize body must be refused for its size, not: {exc}"
        else:
            raise AssertionError(f"a body of {len(body)} bytes passed a limit of {len(body) - 1}")
    try:
        msg = codec.decode(body, max_bytes)
    except GossipDecodeError:
        return None
    _check_gossip_fields(msg)
    again = codec.encode(msg)
    decoded = codec.decode(again, max(max_bytes, len(again)))
    assert decoded == msg, f"re-encoding changed the message: {msg!r} -> {decoded!r}"
    assert codec.encode(decoded) == again, "encode(decode(encode(m))) must equal encode(m)"
    return msg


def _check_gossip_fields(msg: codec.GossipMessage) -> None:
    def counter(n: object) -> bool:
        return type(n) is int and 0 <= n <= codec.MAX_COUNTER

    assert isinstance(msg.sender, str) and 1 <= len(msg.sender) <= codec.MAX_NODE_ID_LEN, msg.sender
    assert len(msg.version) == 2 and all(map(counter, msg.version)) and counter(msg.vnodes), msg
    if msg.version[0] not in codec.READABLE_MAJORS:
        assert (msg.policy, msg.vnodes, tuple(msg.members)) == ("", 0, ()), "a foreign major must stay unread"
        return
    policy_chars = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:+._-")
    assert 1 <= len(msg.policy) <= codec.MAX_POLICY_LEN and set(msg.policy) <= policy_chars, msg.policy
    if msg.version[0] == 1:
        assert msg.policy.startswith("rep:") and counter(int(msg.policy[4:])), "major 1 only knows replicas"
    for entry in msg.members:
        assert len(entry) == codec.ENTRY_FIELDS, entry
        node_id, grpc_addr, gossip_addr, incarnation, heartbeat, status, count, size = entry[:8]
        assert isinstance(node_id, str) and 1 <= len(node_id) <= codec.MAX_NODE_ID_LEN, entry
        texts = (grpc_addr, gossip_addr, *entry[8:])
        assert all(isinstance(t, str) and len(t) <= codec.MAX_ADDR_LEN for t in texts), entry
        assert all(counter(n) for n in (incarnation, heartbeat, count, size)), entry
        assert status in codec.STATUSES, entry
        assert codec.ZONE_RE.fullmatch(entry[9]), entry  # printable, short: it lands in tables and logs


def gossip_seeds() -> list[bytes]:
    """Valid encodings (current and major-1 layouts, unknown keys of a later minor) and a foreign
    major, to mutate from."""
    alive = ("alice", "127.0.0.1:50051", "127.0.0.1:7946", 3, 42, "alive", 10, 10_485_760)
    left = ("bob", "[::1]:50052", "[::1]:7947", 1, 0, "left", 0, 0)
    members: list[codec.WireEntry] = [(*alive, "", "eu-1"), (*left, "", "")]
    legacy = {"v": 1, "from": "carol", "cluster": {"replicas": 2, "vnodes": 150}, "members": [list(alive)]}
    later_minor = {"v": 2, "vm": 5, "from": "erin", "cluster": {"policy": "ec:4+2", "vnodes": 64, "x": [1]},
                   "members": [{"id": "erin", "ra": "", "ga": "", "in": 1, "hb": 1, "st": "alive", "zone": "z1"}],
                   "new": {"a": None}}
    foreign = {"v": 7, "from": "dave", "cluster": {"replicas": 3, "vnodes": 64}, "members": "opaque"}
    return [
        codec.encode(codec.GossipMessage("alice", "rep:2", 150, members)),
        codec.encode(codec.GossipMessage("alice", "rep:2", 150, members, codec.LEGACY_VERSION)),
        codec.encode(codec.GossipMessage("z", "r", 0)),
        msgpack.packb(legacy, use_bin_type=True),
        msgpack.packb(later_minor, use_bin_type=True),
        msgpack.packb(foreign, use_bin_type=True),
    ]


# -------------------------------------------------------------------------------------- validation

MAX_NAME_BYTES = 1024
MAX_CONTENT_TYPE_CHARS = 256
MAX_META_ENTRIES = 64
MAX_META_BYTES = 8 * 1024


def is_control(ch: str) -> bool:
    """Unicode category Cc is exactly C0, DEL and C1: U+0000-001F and U+007F-009F."""
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F


def utf8_len(text: str) -> int | None:
    """Bytes of `text` in UTF-8, or None when it holds a lone surrogate (not encodable)."""
    total = 0
    for ch in text:
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:
            return None
        total += 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return total


def name_ok(name: str) -> bool:
    size = utf8_len(name)
    return size is not None and 0 < size <= MAX_NAME_BYTES and not any(map(is_control, name))


def content_type_ok(value: str) -> bool:
    return utf8_len(value) is not None and len(value) <= MAX_CONTENT_TYPE_CHARS and not any(map(is_control, value))


def metadata_ok(meta: Mapping[str, str], max_bytes: int = MAX_META_BYTES) -> bool:
    sizes = [utf8_len(text) for kv in meta.items() for text in kv]
    if len(meta) > MAX_META_ENTRIES or None in sizes:
        return False
    keys_ok = all(key and not any(map(is_control, key)) for key in meta)
    return keys_ok and sum(s for s in sizes if s is not None) <= max_bytes


def id_ok(value: str) -> bool:
    return len(value) == 32 and all(ch in "0123456789abcdef" for ch in value)


def _accepts(check: Any, value: Any, *args: Any) -> tuple[bool, Any]:
    """Runs one check: (True, its result) or (False, None) on InvalidRequest; anything else escapes."""
    try:
        return True, check(value, *args)
    except InvalidRequest:
        return False, None


def check_text(text: str) -> None:
    """Every text check on one value agrees with its rule, returns what it accepted unchanged, and
    raises nothing but InvalidRequest; accepted names round-trip through UTF-8, free of controls."""
    accepted, out = _accepts(v.check_name, text)
    assert accepted == name_ok(text), f"check_name({text!r}) accepted={accepted}, rule says {name_ok(text)}"
    if accepted:
        assert out == text and out.encode("utf-8").decode("utf-8") == text
        assert not any(map(is_control, out))
    accepted, out = _accepts(v.check_content_type, text)
    assert accepted == content_type_ok(text), f"check_content_type({text!r}) accepted={accepted}"
    assert not accepted or out == text
    accepted, out = _accepts(v.check_id, text, "file id")
    assert accepted == id_ok(text), f"check_id({text!r}) accepted={accepted}"
    assert not accepted or out == text
    for meta in ({text: "v"}, {"k": text}):
        check_metadata(meta)


def check_metadata(meta: Mapping[str, str], max_bytes: int = MAX_META_BYTES) -> None:
    accepted, out = _accepts(v.check_metadata, meta, max_bytes)
    assert accepted == metadata_ok(meta, max_bytes), f"check_metadata({meta!r}) accepted={accepted}"
    assert not accepted or out == dict(meta)


def check_header_fields(name: str, content_type: str, meta: Mapping[str, str]) -> None:
    """The same checks after a protobuf round trip, as the servicer sees the fields. Protobuf itself
    refuses text that is not UTF-8, so only encodable values get this far."""
    if None in (utf8_len(name), utf8_len(content_type), *map(utf8_len, (*meta.keys(), *meta.values()))):
        return
    wire = pb.UploadRequest(header=pb.UploadHeader(name=name, content_type=content_type, metadata=meta))
    header = pb.UploadRequest.FromString(wire.SerializeToString()).header
    assert (header.name, header.content_type, dict(header.metadata)) == (name, content_type, dict(meta))
    assert _accepts(v.check_name, header.name)[0] == name_ok(name)
    assert _accepts(v.check_content_type, header.content_type)[0] == content_type_ok(content_type)
    check_metadata(header.metadata)


def name_seeds() -> list[str]:
    return ["a", "photos/a.jpg", "\x00", "a\nb", "\x7f", "\x85", "\u2028", "é" * 512, "€" * 342, "😀" * 256,
            "0123456789abcdef" * 2, "0123456789abcdef" * 2 + "\n", "\ud800", ""]


# ------------------------------------------------------------------------------------------ upload


MAX_FILE_SIZE = 1024**4  # DFS_MAX_FILE_SIZE's default


@dataclass(frozen=True)
class Expected:
    """What the Upload contract (proto/dfs.proto) says a message sequence must lead to."""

    ok: bool
    reason: str = ""
    undecodable: bool = False  # a message is not a valid UploadRequest at all
    #: Refused only once the stream ended (its proof of the end fails): the chunks were written
    #: by then, and are left unreferenced for garbage collection.
    at_end: bool = False
    spec: UploadSpec | None = None
    data: bytes = b""


def expected_upload(
    messages: Sequence[bytes], max_metadata_bytes: int = MAX_META_BYTES, max_file_size: int = MAX_FILE_SIZE
) -> Expected:
    """A header (its optional size within 0..max_file_size), then data, then at most one trailer; the
    stream proves it is complete by the trailer (size, and SHA-256 unless empty) or by the size its
    header declared, and never brings more than that size (or max_file_size). The first message that
    breaks a rule decides the outcome; an end without proof is refused."""
    if not messages:
        return Expected(False, "no header")
    spec, declared, trailer, data = None, None, None, bytearray()
    for index, raw in enumerate(messages):
        try:
            msg = pb.UploadRequest.FromString(raw)
        except DecodeError:
            return Expected(False, f"message {index} is not an UploadRequest", undecodable=True)
        kind = msg.WhichOneof("msg")
        if index == 0:
            if kind != "header":
                return Expected(False, "no header first")
            header = msg.header
            fields = (header.name, header.content_type, dict(header.metadata))
            if not (name_ok(fields[0]) and content_type_ok(fields[1]) and metadata_ok(fields[2], max_metadata_bytes)):
                return Expected(False, f"bad header {fields!r}"[:200])
            declared = header.size if header.HasField("size") else None
            if declared is not None and not 0 <= declared <= max_file_size:
                return Expected(False, f"declared size {declared} out of range")
            spec = UploadSpec(*fields)
        elif trailer is not None:
            return Expected(False, f"message {index} follows the trailer")
        elif kind == "trailer":
            trailer = msg.trailer
        elif kind != "data":
            return Expected(False, f"message {index} is a {kind} after the header")
        else:
            data += msg.data
            if len(data) > (max_file_size if declared is None else declared):
                return Expected(False, f"{len(data)} bytes: more than declared or allowed")
    if declared is not None and len(data) != declared:
        return Expected(False, f"declared {declared} bytes, sent {len(data)}", at_end=True)
    if trailer is None:
        return Expected(False, "no proof the stream is complete", at_end=True) if declared is None else _ok(spec, data)
    if trailer.size != len(data):
        return Expected(False, f"the trailer says {trailer.size} bytes, sent {len(data)}", at_end=True)
    if trailer.sha256 and trailer.sha256.lower() != hashlib.sha256(data).hexdigest():
        return Expected(False, "the trailer's sha256 does not match", at_end=True)
    return _ok(spec, data)


def _ok(spec: UploadSpec | None, data: bytearray) -> Expected:
    return Expected(True, spec=spec, data=bytes(data))


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class AbortingContext:
    """The part of grpc.aio.ServicerContext that Upload uses: abort() raises, as in grpc."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise Aborted(code, details)

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()


@dataclass
class RecordingUploads:
    """Stands in for UploadService: reads every piece, records what would be committed."""

    committed: list[tuple[UploadSpec, bytes]] = field(default_factory=list)

    async def upload(self, spec: UploadSpec, pieces: AsyncIterator[bytes],
                     check_complete: Callable[[int, str], None] | None = None, *,
                     tap: Callable[[bytes | memoryview], None] | None = None) -> VersionRecord:
        data = b"".join([piece async for piece in pieces])
        if tap is not None:
            tap(data)
        if check_complete is not None:  # as UploadService does: after the chunks, before the commit
            check_complete(len(data), hashlib.sha256(data).hexdigest())
        self.committed.append((spec, data))
        return VersionRecord("0" * 32, "1" * 32, 1, spec.name, len(data), hashlib.sha256(data).hexdigest(), (),
                             spec.content_type, dict(spec.metadata), 0.0, True)


class NoBuckets:
    """Stands in for the metadata store where FileService asks it: no name falls in a bucket, so
    every upload takes the cluster's policy."""

    async def get_bucket(self, name: str) -> None:
        return None


@dataclass(frozen=True)
class Outcome:
    reply: pb.UploadReply | None = None
    code: grpc.StatusCode | None = None
    details: str = ""
    committed: tuple[tuple[UploadSpec, bytes], ...] = ()


async def run_upload(messages: Sequence[bytes], **servicer_kwargs: Any) -> Outcome:
    """The real FileStoreServicer.Upload over `messages`, each parsed by the request deserializer the
    peer registers for Upload (data as a view of the bytes, junk as `wire.Malformed`)."""
    uploads = RecordingUploads()
    servicer = FileStoreServicer(FileService(uploads, None, NoBuckets(), **servicer_kwargs), None)  # type: ignore[arg-type]

    async def requests() -> AsyncIterator[UploadItem]:
        for raw in messages:
            yield wire.decode_upload_request(raw)

    try:
        reply = await servicer.Upload(requests(), AbortingContext())  # type: ignore[arg-type]
    except Aborted as exc:
        return Outcome(code=exc.code, details=exc.details, committed=tuple(uploads.committed))
    return Outcome(reply=reply, code=grpc.StatusCode.OK, committed=tuple(uploads.committed))


def expected_put(request: pb.PutRequest, **limits: Any) -> Expected:
    """Put is the Upload contract applied to header, data and trailer at once; the trailer is required."""
    if not request.HasField("trailer"):
        return Expected(False, "a Put without a trailer")
    stream = [pb.UploadRequest(header=request.header).SerializeToString(), data_msg(request.data),
              pb.UploadRequest(trailer=request.trailer).SerializeToString()]
    return expected_upload(stream, **limits)


async def run_put(request: pb.PutRequest, **servicer_kwargs: Any) -> Outcome:
    """The real FileStoreServicer.Put on one request."""
    uploads = RecordingUploads()
    servicer = FileStoreServicer(FileService(uploads, None, NoBuckets(), **servicer_kwargs), None)  # type: ignore[arg-type]
    try:
        reply = await servicer.Put(request, AbortingContext())  # type: ignore[arg-type]
    except Aborted as exc:
        return Outcome(code=exc.code, details=exc.details, committed=tuple(uploads.committed))
    return Outcome(reply=reply, code=grpc.StatusCode.OK, committed=tuple(uploads.committed))


def check_upload_outcome(expected: Expected, outcome: Outcome) -> None:
    """A valid stream commits exactly its header and data; any other fails with INVALID_ARGUMENT
    (undecodable messages included) and commits nothing."""
    if expected.ok:
        assert outcome.code == grpc.StatusCode.OK, f"valid upload refused: {outcome.code} {outcome.details}"
        assert outcome.committed == ((expected.spec, expected.data),), outcome.committed
        return
    assert outcome.committed == (), f"{expected.reason}: but committed {outcome.committed!r}"[:500]
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, (
        f"{expected.reason}: expected INVALID_ARGUMENT, got {outcome.code} {outcome.details!r}")


# Harness input framing: [u16 length][message] repeated; a short tail is the last message.
_LEN = struct.Struct(">H")


def split_messages(data: bytes, limit: int = 16) -> list[bytes]:
    messages: list[bytes] = []
    while data and len(messages) < limit:
        if len(data) < _LEN.size:
            messages.append(data)
            break
        (n,) = _LEN.unpack_from(data)
        messages.append(data[_LEN.size : _LEN.size + n])
        data = data[_LEN.size + n :]
    return messages


def join_messages(messages: Sequence[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(m)) + m for m in messages)


def header(name: str = "a", content_type: str = "", metadata: Mapping[str, str] | None = None,
           size: int | None = None) -> bytes:
    head = pb.UploadHeader(name=name, content_type=content_type, metadata=dict(metadata or {}))
    if size is not None:
        head.size = size
    return pb.UploadRequest(header=head).SerializeToString()


def data_msg(data: bytes) -> bytes:
    return pb.UploadRequest(data=data).SerializeToString()


def trailer_msg(size: int, sha256: str = "") -> bytes:
    return pb.UploadRequest(trailer=pb.UploadTrailer(size=size, sha256=sha256)).SerializeToString()


def complete(head: bytes, pieces: Sequence[bytes], proof: str = "trailer") -> list[bytes]:
    """A valid stream: `proof` is "trailer", "size-only" (trailer without sha256), "declared" (the
    header's size, no trailer) or "both"."""
    data = b"".join(pieces)
    if proof in ("declared", "both"):
        request = pb.UploadRequest.FromString(head)
        request.header.size = len(data)
        head = request.SerializeToString()
    stream = [head, *map(data_msg, pieces)]
    if proof != "declared":
        stream.append(trailer_msg(len(data), "" if proof == "size-only" else hashlib.sha256(data).hexdigest()))
    return stream


def upload_seeds() -> list[list[bytes]]:
    photo = header("photos/a.jpg", "image/jpeg", {"owner": "ana"})
    return [
        complete(photo, [b"hello ", b"world"]),
        complete(header("x"), []),
        complete(header("y"), [b"", b"1"], "declared"),
        complete(header("z"), [b"abc"], "size-only"),
        complete(header("w"), [b"abc"], "both"),
        [header("cut"), data_msg(b"no proof of the end")],
        [header("short", size=10), data_msg(b"abc")],
        [header("huge", size=2**62), data_msg(b"abc")],
        [header("t"), trailer_msg(3), data_msg(b"abc")],
        [data_msg(b"no header")],
        [header("a"), header("b")],
        [header("\x00"), trailer_msg(0)],
        [header("m", metadata={"k" * 100: "v" * 9000}), trailer_msg(0)],
        [b"\x0a\x04\x0a\x02\xff\xfe"],  # header name that is not UTF-8
        [header("z"), b"\x12\xff\xff\xff\xff\x07"],  # data declaring 2 GiB, carrying none
        [],
    ]
