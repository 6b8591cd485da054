"""Bounded fuzzing of everything a peer reads from the network (the long run is `make fuzz`).

Targets: the gossip decoder (byte-level mutation of valid encodings, structure-aware msgpack with an
exact oracle), the name/header validation functions, the real FileStoreServicer.Upload in process,
and one real in-process peer driven over gRPC and HTTP with malformed, out-of-order, truncated and
oversize input. Invariants live in tests/fuzz/targets.py; docs/FUZZING.md explains them and how to
run longer. $DFS_FUZZ_EXAMPLES overrides every example count here.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.sdk import DfsClient
from peer.config import PeerConfig
from peer.errors import GossipDecodeError, GossipMismatch, InvalidRequest
from peer.files import rules as v
from peer.membership import codec
from peer.node import Node
from peer.rpc.client_service import ClientLimits
from peer.storage.chunkstore import check_chunk_id
from proto import dfs_pb2 as pb
from tests.cluster import wait_for
from tests.fuzz import examples, targets
from tests.inproc import InProcPeer


def fuzz(default_examples: int) -> settings:
    return settings(max_examples=examples(default_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------ gossip: byte level

MARKERS = bytes([0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC7, 0xCA,
                 0xCB, 0xCC, 0xCF, 0xD0, 0xD3, 0xD4, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF])
HUGE_HEADERS = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                b"\xdc\xff\xff", b"\xde\xff\xff", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", b"\xd3\x80" + b"\x00" * 7]

short_text = st.text(max_size=24)
counters = st.integers(0, codec.MAX_COUNTER)
statuses = st.sampled_from(sorted(codec.STATUSES))
POLICY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:+._-"
policies = st.one_of(st.text(POLICY_CHARS, min_size=1, max_size=codec.MAX_POLICY_LEN),
                     st.sampled_from(["rep:2", "ec:4+2"]))
ZONE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
zones = st.text(ZONE_CHARS, max_size=codec.MAX_ZONE_LEN)
wire_entries = st.tuples(
    st.text(min_size=1, max_size=24), short_text, short_text, counters, counters, statuses, counters, counters,
    short_text, zones,
)
senders, entry_lists = st.text(min_size=1, max_size=24), st.lists(wire_entries, max_size=4).map(tuple)
# Major 1 has no zone: what it carries reads back with the unnamed one.
legacy_entry_lists = st.lists(wire_entries.map(lambda e: (*e[:9], "")), max_size=4).map(tuple)
gossip_messages = st.one_of(
    st.builds(codec.GossipMessage, senders, policies, counters, entry_lists,
              st.tuples(st.just(codec.PROTOCOL_VERSION[0]), counters)),
    # What this peer still writes for a peer on major 1: a replica count is all that major can say.
    st.builds(codec.GossipMessage, senders, counters.map(lambda r: f"rep:{r}"), counters, legacy_entry_lists,
              st.just(codec.LEGACY_VERSION)),
)
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 4096), st.integers(1, 255)),
        st.tuples(st.just("set"), st.integers(0, 4096), st.sampled_from(list(MARKERS))),
        st.tuples(st.just("insert"), st.integers(0, 4096), st.binary(min_size=1, max_size=8)
                  | st.sampled_from(HUGE_HEADERS)),
        st.tuples(st.just("delete"), st.integers(0, 4096), st.integers(1, 16)),
        st.tuples(st.just("truncate"), st.integers(0, 4096), st.just(0)),
        st.tuples(st.just("repeat"), st.integers(0, 4096), st.integers(1, 64)),
    ),
    min_size=1, max_size=4,
)


def mutate(body: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    out = bytearray(body)
    for op, pos, arg in ops:
        at = pos % (len(out) + 1)
        if op == "flip" and out:
            out[at % len(out)] ^= arg
        elif op == "set" and out:
            out[at % len(out)] = arg
        elif op == "insert":
            out[at:at] = arg
        elif op == "delete":
            del out[at : at + arg]
        elif op == "truncate":
            del out[at:]
        elif op == "repeat":
            out[at:at] = out[at : at + arg]
    return bytes(out)


@fuzz(300)
@given(st.one_of(gossip_messages.map(codec.encode), st.sampled_from(targets.gossip_seeds())), mutations)
def test_gossip_mutated_encodings(body: bytes, ops: list[tuple[str, int, Any]]) -> None:
    """Valid encodings with bytes flipped, markers swapped in, huge declared lengths, cuts and repeats."""
    targets.check_gossip_body(mutate(body, ops))


@fuzz(100)
@given(gossip_messages, st.integers(0, 64))
def test_gossip_size_limit_is_exact(msg: codec.GossipMessage, slack: int) -> None:
    body = codec.encode(msg)
    assert targets.check_gossip_body(body, max_bytes=len(body) + slack) == msg
    with pytest.raises(GossipDecodeError, match="exceeds"):
        codec.decode(body + b"\x00" * (slack + 1), len(body) + slack)


# ------------------------------------------------------------- gossip: structure aware, exact oracle
# Each strategy draws (value, ok): `ok` says whether the schema accepts the value in that slot.

msgpack_ints = st.integers(-(2**63), 2**64 - 1)
JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), msgpack_ints, st.text(max_size=4),
                 st.lists(st.integers(0, 3), max_size=2),
                 st.dictionaries(st.text(max_size=2), msgpack_ints, max_size=2))


def _counter_ok(x: Any) -> bool:
    return type(x) is int and 0 <= x <= codec.MAX_COUNTER


def policy_ok(x: Any) -> bool:
    return isinstance(x, str) and 1 <= len(x) <= codec.MAX_POLICY_LEN and set(x) <= set(POLICY_CHARS)


def zone_ok(x: Any) -> bool:
    return isinstance(x, str) and len(x) <= codec.MAX_ZONE_LEN and set(x) <= set(ZONE_CHARS)


def slot(kind: str) -> st.SearchStrategy[tuple[Any, bool]]:
    if kind == "counter":
        edge = st.sampled_from([0, 1, codec.MAX_COUNTER, codec.MAX_COUNTER + 1, -1, 2**63, True, False, 1.0])
        return st.one_of(counters, edge, JUNK).map(lambda x: (x, _counter_ok(x)))
    if kind == "status":
        return st.one_of(st.sampled_from(["alive", "left", "dead", "", "ALIVE"]), JUNK).map(
            lambda x: (x, isinstance(x, str) and x in codec.STATUSES))
    if kind == "policy":
        odd = st.sampled_from(["", "rep 2", "rep:2\n", "ec:4+2é", "x" * codec.MAX_POLICY_LEN,
                               "x" * (codec.MAX_POLICY_LEN + 1)])
        return st.one_of(policies, odd, JUNK).map(lambda x: (x, policy_ok(x)))
    if kind == "zone":
        odd = st.sampled_from(["eu west", "a\n", "é", "a:b", "z" * codec.MAX_ZONE_LEN, "z" * (codec.MAX_ZONE_LEN + 1)])
        return st.one_of(zones, odd, JUNK).map(lambda x: (x, zone_ok(x)))
    low, high = (1, codec.MAX_NODE_ID_LEN) if kind == "node_id" else (0, codec.MAX_ADDR_LEN)
    sized = st.sampled_from([low, max(low - 1, 0), high, high + 1]).flatmap(
        lambda n: st.sampled_from(["x", "é", "€"]).map(lambda ch: ch * n))
    return st.one_of(short_text, sized, JUNK).map(
        lambda x: (x, isinstance(x, str) and low <= len(x) <= high))


# Values every slot of a kind accepts.
VALID = {"node_id": st.text(min_size=1, max_size=24), "addr": short_text, "counter": counters, "status": statuses,
         "policy": policies, "zone": zones}
ENTRY_KINDS = ("node_id", "addr", "addr", "counter", "counter", "status", "counter", "counter", "addr", "zone")
ENTRY_LENGTHS = sorted(codec.LEGACY_ENTRY_LENGTHS)
unknown_keys = st.text(min_size=3, max_size=6).filter(lambda k: k not in ("from", "cluster", "members", "policy"))


@st.composite
def map_entries(draw: st.DrawFn) -> tuple[Any, bool, tuple[Any, ...] | None]:
    """A current-major entry: (wire value, ok, the WireEntry decode must produce). Optional keys are
    sometimes left out (read as their default); at most one key is drawn valid or invalid, or left
    out (a required key then fails); unknown keys of any value are ignored."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JUNK), False, None
    suspect = draw(st.integers(0, 2 * len(codec.ENTRY_KEYS) - 1))  # half the time, none
    wire: dict[str, Any] = {}
    expected: list[Any] = []
    ok = True
    for i, (key, kind) in enumerate(zip(codec.ENTRY_KEYS, ENTRY_KINDS, strict=True)):
        left_out = draw(st.integers(0, 3)) == 0 if i == suspect or not key.required else False
        if left_out:
            ok = ok and not key.required
            expected.append(key.default)
            continue
        value, good = draw(slot(kind)) if i == suspect else (draw(VALID[kind]), True)
        wire[key.key] = value
        expected.append(value)
        ok = ok and good
    wire.update(draw(st.dictionaries(unknown_keys, JUNK, max_size=4)))
    return wire, ok, tuple(expected) if ok else None


@st.composite
def entries(draw: st.DrawFn) -> tuple[Any, bool, tuple[Any, ...] | None]:
    """A major-1 entry: (wire value, ok, the WireEntry decode must produce); at most one field is
    drawn valid or invalid, the others valid."""
    length = draw(st.sampled_from([*ENTRY_LENGTHS, 7, ENTRY_LENGTHS[-1] + 1]))
    suspect = draw(st.integers(0, 2 * length - 1))  # half the time, none
    kinds = [ENTRY_KINDS[i % len(ENTRY_KINDS)] for i in range(length)]
    fields = [draw(slot(kind)) if i == suspect else (draw(VALID[kind]), True) for i, kind in enumerate(kinds)]
    values = [x for x, _ in fields]
    if draw(st.integers(0, 9)) == 0:
        return draw(JUNK), False, None
    ok = length in ENTRY_LENGTHS and all(good for _, good in fields)
    padded = tuple(values) + ("",) * (codec.ENTRY_FIELDS - length)
    return values, ok, padded if ok else None


def msgpack_ok(obj: Any) -> bool:
    """The unpacker's own limits, which hold everywhere in the body, read or not."""
    if isinstance(obj, str):
        return len(obj.encode()) <= codec.MAX_ADDR_LEN
    if isinstance(obj, list):
        return len(obj) <= codec.MAX_MEMBERS and all(map(msgpack_ok, obj))
    if isinstance(obj, dict):
        keys_ok = all(isinstance(k, str) and msgpack_ok(k) for k in obj)
        return len(obj) <= codec.MAX_MAP_LEN and keys_ok and all(map(msgpack_ok, obj.values()))
    return True


@st.composite
def gossip_bodies(draw: st.DrawFn) -> tuple[Any, codec.GossipMessage | None]:
    """(msgpack object, the message decode must return, or None when it must refuse). Either major
    this peer reads, or a foreign one (read no further than `v`, `vm` and `from`). At most one slot of
    the message is drawn valid or invalid (or its key left out), the others valid, and each member
    entry has its own such slot: with every slot as likely wrong as right, no message would be valid."""
    suspect = draw(st.sampled_from([None, None, "v", "vm", "from", "policy", "vnodes", "cluster", "members", "drop"]))

    def pick(name: str, kind: str) -> tuple[Any, bool]:
        return draw(slot(kind)) if suspect == name else (draw(VALID[kind]), True)

    major = draw(st.sampled_from([codec.PROTOCOL_VERSION[0]] * 2 + [codec.LEGACY_VERSION[0], 7]))
    version, v_ok = draw(slot("counter")) if suspect == "v" else (major, True)
    has_minor = draw(st.booleans())  # without "vm" the minor version reads as 0
    minor, vm_ok = pick("vm", "counter") if has_minor else (0, True)
    sender, s_ok = pick("from", "node_id")
    legacy = v_ok and version == codec.LEGACY_VERSION[0]
    reads = v_ok and version in codec.READABLE_MAJORS
    vnodes, n_ok = pick("vnodes", "counter")
    if legacy:
        replicas, p_ok = pick("policy", "counter")
        policy, cluster = f"rep:{replicas}", {"replicas": replicas, "vnodes": vnodes}
    else:
        policy, p_ok = pick("policy", "policy")
        cluster = {"policy": policy, "vnodes": vnodes}
    cluster.update(draw(st.dictionaries(unknown_keys, JUNK, max_size=3)))
    c_ok = p_ok and n_ok
    if suspect == "cluster":
        cluster, c_ok = draw(st.one_of(JUNK, st.just({"replicas": 2}), st.just({"policy": "rep:2"}))), False
    drawn = draw(st.lists(entries() if legacy else map_entries(), max_size=3))
    members: Any = [e for e, _, _ in drawn]
    m_ok = all(ok for _, ok, _ in drawn)
    if suspect == "members":
        members, m_ok = draw(JUNK.filter(lambda x: x != [])), False
    body: dict[str, Any] = {"v": version, "from": sender, "cluster": cluster, "members": members}
    if has_minor:
        body["vm"] = minor
    dropped = draw(st.sampled_from(["v", "from", "cluster", "members"])) if suspect == "drop" else None
    if dropped:
        del body[dropped]
    extra_keys = unknown_keys.filter(lambda k: k not in ("v", "vm"))
    body.update(draw(st.dictionaries(extra_keys, JUNK, max_size=14)))
    ok = msgpack_ok(body) and v_ok and vm_ok and s_ok and dropped not in ("v", "from")
    if reads:
        ok = ok and c_ok and m_ok and dropped not in ("cluster", "members")
    if not ok:
        return body, None
    version_read = (version, minor)
    if not reads:
        return body, codec.GossipMessage(sender, "", 0, (), version_read)
    wire = tuple(p for _, _, p in drawn)
    return body, codec.GossipMessage(sender, policy, vnodes, wire, version_read)  # type: ignore[arg-type]


@fuzz(300)
@given(gossip_bodies())
def test_gossip_structure_aware(case: tuple[Any, codec.GossipMessage | None]) -> None:
    """decode accepts exactly the well-formed messages, and returns exactly their content."""
    obj, expected = case
    event("valid" if expected else "invalid")
    body = msgpack.packb(obj, use_bin_type=True)
    try:
        got = codec.decode(body, targets.GOSSIP_LIMIT)
    except GossipDecodeError as exc:
        assert expected is None, f"refused a valid message ({exc}): {obj!r}"
        return
    assert got == expected, f"decoded {obj!r} as {got!r}"
    targets.check_gossip_body(body)


# -------------------------------------------------------------------------------------- validation

EDGE_CHARS = ["a", "/", " ", "\x00", "\n", "\x1f", "\x7e", "\x7f", "\x80", "\x9f", "\xa0", "é", "€", "😀", "\u2028",
              "\u200e", "\ufeff", "\ud800", "\udfff", "A", "f", "0", "g"]
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from(EDGE_CHARS), max_size=40),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    # Lengths around every limit (1024 name bytes, 256 content-type characters), in 1- to 4-byte characters.
    st.tuples(st.sampled_from(["a", "é", "€", "😀", "\x00"]), st.sampled_from([1024, 256]), st.integers(-2, 2)).map(
        lambda t: t[0] * (t[1] // len(t[0].encode("utf-8", "surrogatepass")) + t[2])),
    st.from_regex(r"\A[0-9a-f]{31,33}\Z") | st.from_regex(r"\A[0-9a-fA-F]{32}\n?\Z"),
)
small_meta = st.dictionaries(st.text(st.sampled_from(EDGE_CHARS), max_size=6), st.text(max_size=40), max_size=6)
big_meta = st.one_of(
    st.integers(60, 68).map(lambda n: {f"k{i}": "" for i in range(n)}),
    st.integers(-3, 3).map(lambda d: {"k": "v" * (targets.MAX_META_BYTES - 1 + d)}),
    st.integers(-3, 3).map(lambda d: {"k": "€" * ((targets.MAX_META_BYTES + d) // 3)}),
)
metadata = st.one_of(small_meta, big_meta)
# What protobuf can carry at all: text without lone surrogates.
proto_texts = texts.filter(lambda t: targets.utf8_len(t) is not None)
proto_meta = metadata.filter(lambda m: all(targets.utf8_len(t) is not None for kv in m.items() for t in kv))


@fuzz(500)
@given(texts)
def test_text_checks_follow_their_rules(text: str) -> None:
    targets.check_text(text)


@fuzz(200)
@given(metadata, st.sampled_from([targets.MAX_META_BYTES, 0, 100]))
def test_metadata_check_follows_its_rule(meta: dict[str, str], max_bytes: int) -> None:
    targets.check_metadata(meta, max_bytes)


@fuzz(200)
@given(texts, texts, metadata)
def test_header_fields_after_protobuf(name: str, content_type: str, meta: dict[str, str]) -> None:
    targets.check_header_fields(name, content_type, meta)


@pytest.mark.parametrize("value", ["0123456789abcdef" * 2 + "\n", "\n" + "a" * 32, "A" * 32, "a" * 31, "a" * 33])
def test_ids_are_exactly_32_lowercase_hex(value: str) -> None:
    """Regression: the id pattern ended in `$`, which matched before a trailing newline."""
    with pytest.raises(InvalidRequest):
        v.check_id(value, "file id")


def test_token_ids_are_exactly_16_lowercase_hex() -> None:
    """Regression: the same trailing-newline hole as check_id."""
    assert v.check_token_id("0123456789abcdef") == "0123456789abcdef"
    with pytest.raises(InvalidRequest):
        v.check_token_id("0123456789abcdef\n")


def test_text_that_is_not_utf8_is_invalid_not_an_encode_error() -> None:
    """Regression: a lone surrogate made check_metadata raise UnicodeEncodeError."""
    for meta in ({"\ud800": "v"}, {"k": "\udfff"}):
        with pytest.raises(InvalidRequest, match="UTF-8"):
            v.check_metadata(meta)
    with pytest.raises(InvalidRequest, match="UTF-8"):
        v.check_content_type("text/\ud800")


# ------------------------------------------------------------------ upload: the servicer in process

valid_names = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
INT64 = (-(2**63), 2**63 - 1)
sizes = st.one_of(st.none(), st.integers(0, 300), st.sampled_from([-1, *INT64, 2**40, 2**62]))
headers = st.builds(targets.header, st.one_of(valid_names, proto_texts), st.one_of(st.just(""), proto_texts),
                    proto_meta, sizes)
valid_meta = st.dictionaries(valid_names.map(lambda k: k[:8]), st.text(st.characters(exclude_categories=("Cs",)),
                                                                        max_size=40), max_size=6)
valid_headers = st.builds(targets.header, valid_names, st.sampled_from(["", "text/plain"]), valid_meta)
pieces = st.lists(st.binary(max_size=64), max_size=4)
datas = st.binary(max_size=64).map(targets.data_msg)
sha256s = st.one_of(st.just(""), st.text("0123456789abcdefABCDEF", min_size=64, max_size=64), st.text(max_size=70))
trailers = st.builds(targets.trailer_msg, st.one_of(st.integers(0, 300), st.integers(*INT64)), sha256s)
proofs = st.sampled_from(["trailer", "size-only", "declared", "both"])


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


huge_declared = st.tuples(st.sampled_from([b"\x0a", b"\x12", b"\x1a", b"\x0a\x05\x1a"]), st.integers(2**20, 2**62),
                          st.binary(max_size=8)).map(lambda t: t[0] + varint(t[1]) + t[2])
messages = st.one_of(
    headers, datas, trailers, st.just(b""), st.binary(max_size=48), huge_declared,
    st.tuples(st.one_of(headers, datas, trailers), mutations).map(lambda t: mutate(*t)),
)


@st.composite
def upload_streams(draw: st.DrawFn) -> list[bytes]:
    """Valid streams (header, data, proof of the end), the same with one message put in anywhere,
    dropped or swapped, or any messages at all."""
    stream = targets.complete(draw(valid_headers), draw(pieces), draw(proofs))
    shape = draw(st.sampled_from(["valid", "inject", "drop", "replace", "random"]))
    if shape == "inject":
        stream.insert(draw(st.integers(0, len(stream))), draw(messages))
    elif shape == "drop":  # the header, a piece, or the proof of the end: a cut stream
        del stream[draw(st.integers(0, len(stream) - 1))]
    elif shape == "replace":
        stream[draw(st.integers(0, len(stream) - 1))] = draw(messages)
    elif shape == "random":
        stream = draw(st.lists(messages, max_size=5))
    return stream


@fuzz(400)
@given(upload_streams(), st.sampled_from([targets.MAX_FILE_SIZE, 0, 3, 100]))
async def test_upload_servicer_in_process(stream: list[bytes], max_file_size: int) -> None:
    expected = targets.expected_upload(stream, max_file_size=max_file_size)
    event("valid" if expected.ok else "undecodable" if expected.undecodable else "invalid")
    outcome = await targets.run_upload(stream, limits=ClientLimits(max_file_size=max_file_size))
    targets.check_upload_outcome(expected, outcome)


@st.composite
def put_requests(draw: st.DrawFn) -> pb.PutRequest:
    """Put requests around the valid ones: any header the Upload fuzzing draws, any data, and a
    trailer that is right, wrong in size or SHA-256, drawn at random, or missing."""
    head = pb.UploadRequest.FromString(draw(st.one_of(valid_headers, headers))).header
    data = draw(st.binary(max_size=64))
    right = pb.UploadTrailer(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    trailer = draw(st.sampled_from(["right", "size-only", "random", "none"]))
    request = pb.PutRequest(header=head, data=data)
    if trailer == "right":
        request.trailer.CopyFrom(right)
    elif trailer == "size-only":
        request.trailer.size = len(data)
    elif trailer == "random":
        request.trailer.CopyFrom(pb.UploadRequest.FromString(draw(trailers)).trailer)
    return request


@fuzz(300)
@given(put_requests(), st.sampled_from([targets.MAX_FILE_SIZE, 0, 3, 100]))
async def test_put_servicer_in_process(request: pb.PutRequest, max_file_size: int) -> None:
    expected = targets.expected_put(request, max_file_size=max_file_size)
    event("valid" if expected.ok else "invalid")
    outcome = await targets.run_put(request, limits=ClientLimits(max_file_size=max_file_size))
    targets.check_upload_outcome(expected, outcome)


# ---------------------------------------------------------------------- one real peer on real sockets


# Small chunks and messages keep oversize messages cheap to send: 64 KiB chunks, 128 KiB messages.
# The file size limit is reached only by declared sizes; fuzzed data stays far below it.
CHUNK = 64 * 1024
MESSAGE_LIMIT = 2 * CHUNK
MAX_FILE = 4 * CHUNK


@contextmanager
def single_peer(data_dir: Path) -> Iterator[InProcPeer]:
    """One Node (replicas=1) on its own event-loop thread, with real gRPC and HTTP sockets; like
    tests/inproc.InProcCluster, but with this file's limits. Garbage collection is off, so that
    chunk files only ever come, never go, while the tests count them."""
    config = PeerConfig.local(data_dir, replicas=1, chunk_size=CHUNK, max_message_bytes=MESSAGE_LIMIT,
                              max_file_size=MAX_FILE, gc_interval_s=3600.0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-peer", daemon=True)
    thread.start()
    node = Node(config, handle_signals=False)
    future = asyncio.run_coroutine_threadsafe(node.run(), loop)
    try:
        ready = data_dir / "ready.json"
        wait_for(lambda: ready.exists() or future.done(), 20, "fuzz peer ready")
        if future.done():
            future.result()
        doc = json.loads(ready.read_text())
        yield InProcPeer(0, data_dir, node, future, doc["node_id"], doc["grpc_addr"], doc["gossip_addr"])
    finally:
        loop.call_soon_threadsafe(node.stop_event.set)
        try:
            future.result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcPeer]:
    with single_peer(tmp_path_factory.mktemp("fuzzpeer")) as p:
        yield p


class Wire:
    """Raw access to one peer: Upload with pre-serialized (or garbage) messages, and what it stores."""

    def __init__(self, peer: InProcPeer) -> None:
        self.peer = peer
        self.channel = grpc.insecure_channel(peer.grpc_addr)
        self.upload = self.channel.stream_unary("/dfs.v1.FileStore/Upload", request_serializer=None,
                                                response_deserializer=pb.UploadReply.FromString)
        self.client = DfsClient(peer.grpc_addr, timeout=10)

    def close(self) -> None:
        self.client.close()
        self.channel.close()

    def send(self, stream: list[bytes]) -> tuple[grpc.StatusCode, pb.UploadReply | None]:
        try:
            return grpc.StatusCode.OK, self.upload(iter(stream), timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), None

    def send_then_hang_up(self, stream: list[bytes]) -> grpc.StatusCode:
        """Sends every message, then cancels without ever ending the stream: a truncated upload."""
        all_sent, hung_up = threading.Event(), threading.Event()

        def feed() -> Iterator[bytes]:
            yield from stream
            all_sent.set()
            hung_up.wait(10)

        future = self.upload.future(feed(), timeout=10)
        future.add_done_callback(lambda _: all_sent.set())  # the peer may refuse before reading it all
        try:
            assert all_sent.wait(10), "grpc neither took the messages nor ended the call"
            future.cancel()
        finally:
            hung_up.set()
        try:
            future.result()
        except grpc.FutureCancelledError:
            return grpc.StatusCode.CANCELLED
        except grpc.RpcError as exc:
            return exc.code()
        raise AssertionError("an upload that never ended its stream was committed")

    def listed(self) -> frozenset[tuple[str, int]]:
        return frozenset((f.name, f.version) for f in self.client.list(page_size=1000))

    def stored(self) -> tuple[frozenset[tuple[str, int]], int]:
        """(every (name, latest version) listed, number of chunk files on disk)."""
        return self.listed(), sum(1 for p in (self.peer.data_dir / "chunks").rglob("*") if p.is_file())

    def round_trip(self, name: str, data: bytes) -> None:
        result = self.client.upload(data, name=name, content_type="application/octet-stream", piece_size=CHUNK // 2)
        assert self.client.read(name, version=result.version.version) == data
        assert not self.peer.future.done(), "the peer stopped"


@pytest.fixture(scope="module")
def wire(peer: InProcPeer) -> Iterator[Wire]:
    w = Wire(peer)
    yield w
    w.close()


@pytest.fixture(scope="module")
def cut_wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    """A peer of its own for cut and oversize streams: a cut upload may leave chunk files for garbage
    collection (upload.py), and the known bugs below may commit what they should not; either would
    blur the exact checks the `wire` tests make."""
    with single_peer(tmp_path_factory.mktemp("cutpeer")) as p:
        w = Wire(p)
        yield w
        w.close()


def allowed_failures(expected: targets.Expected) -> set[grpc.StatusCode]:
    return {grpc.StatusCode.INVALID_ARGUMENT}


def test_upload_streams_over_grpc(wire: Wire) -> None:
    """Random upload streams on the wire: a valid one is stored and reads back; any other fails with
    INVALID_ARGUMENT and lists nothing new (nor writes a chunk file, unless refused at its very end);
    and the peer serves a normal upload and download afterwards."""
    config = wire.peer.node.config

    @fuzz(60)
    @given(upload_streams())
    def run(stream: list[bytes]) -> None:
        expected = targets.expected_upload(stream, config.max_metadata_bytes, config.max_file_size)
        event("valid" if expected.ok else "undecodable" if expected.undecodable else "invalid")
        before = wire.stored()
        code, reply = wire.send(stream)
        if not expected.ok:
            assert code in allowed_failures(expected), f"{expected.reason}: got {code}"
            listed, chunks = wire.stored()
            assert listed == before[0], f"{expected.reason}: a refused upload was committed"
            # Refused before its end, the data never reached the chunker; refused at the end, its
            # chunks are already written and are left for garbage collection.
            assert chunks == before[1] or expected.at_end, f"{expected.reason}: chunk files written"
            return
        assert code == grpc.StatusCode.OK and reply is not None and expected.spec is not None, code
        info = reply.version
        assert (info.name, info.size, info.sha256) == (
            expected.spec.name, len(expected.data), hashlib.sha256(expected.data).hexdigest())
        assert (info.content_type, dict(info.metadata)) == (expected.spec.content_type, expected.spec.metadata)
        assert wire.client.read(info.name, version=info.version) == expected.data

    run()
    wire.round_trip("after-fuzz/upload", bytes(range(256)) * 900)  # 225 KiB: four chunks


def test_cut_upload_streams_over_grpc(cut_wire: Wire) -> None:
    """The same streams, cut off (cancelled) before they end: the call fails with CANCELLED, or
    INVALID_ARGUMENT if the peer refused it first, and the peer serves normally afterwards."""
    config = cut_wire.peer.node.config
    baseline = cut_wire.listed()
    valid_names: set[str] = set()

    @fuzz(40)
    @given(upload_streams())
    def run(stream: list[bytes]) -> None:
        expected = targets.expected_upload(stream, config.max_metadata_bytes, config.max_file_size)
        allowed = {grpc.StatusCode.CANCELLED} | (set() if expected.ok else allowed_failures(expected))
        if expected.ok and expected.spec is not None:
            valid_names.add(expected.spec.name)
        code = cut_wire.send_then_hang_up(stream)
        assert code in allowed, f"{expected.reason or 'valid but cut'}: got {code}"
        # A valid stream sent whole may be committed though the client hung up before the answer (it
        # proved its end); nothing else may be.
        new = {name for name, _ in cut_wire.listed() - baseline}
        assert new <= valid_names, f"stored by a refused upload: {new - valid_names}"

    run()
    cut_wire.round_trip("after-cuts/upload", b"x" * 200_000)


def test_cut_upload_is_never_committed(cut_wire: Wire) -> None:
    """Regression: grpc.aio ends the request iterator (EOF) when the client cancels, so a cut stream
    looked complete and was committed (3-8 % of cut header-only uploads) until uploads had to prove
    their end with a trailer or a declared size."""
    before = cut_wire.listed()
    for i in range(50):
        cut = [targets.header(f"cut/{i}"), targets.data_msg(b"part")][: 1 + i % 2]
        assert cut_wire.send_then_hang_up(cut) == grpc.StatusCode.CANCELLED
        assert cut_wire.listed() == before, f"committed after {i + 1} cut uploads: {cut_wire.listed() - before}"


@pytest.mark.parametrize("before_it", [[], [targets.data_msg(b"abc")]], ids=["after-header", "after-data"])
def test_oversize_upload_message_is_refused(cut_wire: Wire, before_it: list[bytes]) -> None:
    too_big = targets.data_msg(b"\x00" * MESSAGE_LIMIT)
    code, _ = cut_wire.send([targets.header("oversize"), *before_it, too_big])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    cut_wire.round_trip("after-oversize", b"still serving")


def test_oversize_upload_message_is_never_committed(cut_wire: Wire) -> None:
    """Regression: refusing an oversize message, grpc cancels the call and the request iterator ends
    as if complete; the stream so far was committed for about half of such uploads."""
    before = cut_wire.listed()
    for i in range(5):  # each refusal takes grpc 0.1-0.9 s
        code, _ = cut_wire.send([targets.header(f"oversize/{i}"), targets.data_msg(b"\x00" * MESSAGE_LIMIT)])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert cut_wire.listed() == before, f"committed after {i + 1} tries: {cut_wire.listed() - before}"


@pytest.mark.parametrize("stream", [
    [b"\x0a\x04\x0a\x02\xff\xfe"],  # a header whose name is not UTF-8
    [targets.header("x"), b"\x12\xff\xff\xff\xff\x07"],  # data that declares 2 GiB and carries none
    [targets.header("x"), b"\xff\xff"],  # not protobuf at all
], ids=["bad-utf8-name", "huge-declared-length", "garbage"])
def test_undecodable_upload_message_is_invalid_argument(wire: Wire, stream: list[bytes]) -> None:
    before = wire.stored()
    code, _ = wire.send(stream)
    assert wire.stored() == before
    assert code == grpc.StatusCode.INVALID_ARGUMENT, code


# ------------------------------------------------------------------------------- the gossip endpoint


def post_gossip(peer: InProcPeer, body: bytes, headers: dict[str, str] | None = None) -> int:
    host, port = peer.gossip_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/gossip", body=body, headers={"Content-Type": "application/msgpack", **(headers or {})})
        return conn.getresponse().status
    finally:
        conn.close()


def test_gossip_endpoint_refuses_junk(peer: InProcPeer) -> None:
    """Bodies the decoder refuses get 400, foreign fingerprints 409; the peer keeps gossiping."""
    config = peer.node.config

    @fuzz(60)
    @given(st.one_of(
        st.tuples(st.one_of(gossip_messages.map(codec.encode), st.sampled_from(targets.gossip_seeds())), mutations)
        .map(lambda t: mutate(*t)),
        gossip_bodies().map(lambda case: msgpack.packb(case[0], use_bin_type=True)),
        st.binary(max_size=64),
    ))
    def run(body: bytes) -> None:
        try:
            codec.check_fingerprint(codec.decode(body, config.max_gossip_bytes), f"rep:{config.replicas}",
                                    config.vnodes)
        except GossipDecodeError:
            expected = 400
        except GossipMismatch:
            expected = 409
        else:
            return  # a valid push would really join fake members to this peer's ring
        assert post_gossip(peer, body) == expected

    run()
    assert_gossip_serves(peer)


def test_gossip_endpoint_refuses_oversize_bodies(peer: InProcPeer) -> None:
    limit = peer.node.config.max_gossip_bytes
    assert post_gossip(peer, b"\x00" * (limit + 1)) == 413
    # A declared size alone is refused before any of the body is read: the answer comes first. The
    # body is sent afterwards only so that aiohttp stops lingering on the connection (10 s otherwise).
    host, port = peer.gossip_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/gossip")
        conn.putheader("Content-Length", str(limit + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        response.read()
        conn.send(b"\x00" * (limit + 1))
    finally:
        conn.close()
    assert_gossip_serves(peer)


def assert_gossip_serves(peer: InProcPeer) -> None:
    host, port = peer.gossip_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert not peer.future.done(), "the peer stopped"


# ---------------------------------------------------------------------- found while fuzzing, elsewhere


def test_chunk_ids_with_a_trailing_newline_are_refused(tmp_path: Path) -> None:
    try:
        check_chunk_id("ab" * 32 + "\n")
    except InvalidRequest:
        return
    raise AssertionError("check_chunk_id accepted a chunk id ending in a newline")
