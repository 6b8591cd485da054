"""The gossip wire format: round trips, schema checks, and fuzzing (junk in -> GossipDecodeError only)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.errors import GossipDecodeError, GossipMismatch
from peer.membership.codec import (
    MAX_MEMBERS,
    PROTOCOL_VERSION,
    GossipMessage,
    check_fingerprint,
    decode,
    encode,
)
from peer.membership.state import Entry

LIMIT = 1024 * 1024
ALICE = Entry("alice", "127.0.0.1:50051", "127.0.0.1:7946", 3, 42, "alive", 10, 10_485_760)
BOB = Entry("bob", "[::1]:50052", "[::1]:7947", 1, 0, "left", 0, 0)


def valid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "from": "alice",
        "cluster": {"replicas": 2, "vnodes": 150},
        "members": [list(ALICE), list(BOB)],
    }
    body.update(overrides)
    return body


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def test_round_trip() -> None:
    msg = GossipMessage("alice", 2, 150, (ALICE, BOB))
    decoded = decode(encode(msg), LIMIT)
    assert decoded == msg
    assert [Entry._make(e) for e in decoded.members] == [ALICE, BOB]
    check_fingerprint(decoded, replicas=2, vnodes=150)


def test_oversize_body_is_refused_before_parsing() -> None:
    body = encode(GossipMessage("alice", 2, 150, [ALICE] * 50))
    with pytest.raises(GossipDecodeError, match="exceeds"):
        decode(body, max_bytes=len(body) - 1)
    assert decode(body, max_bytes=len(body)).sender == "alice"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xc1", "msgpack"),
        (b"\x92\x01", "msgpack"),  # truncated array
        (pack(valid_body()) + b"\x00", "msgpack"),  # trailing data
        (pack([1, 2, 3]), "map"),
        (pack({k: v for k, v in valid_body().items() if k != "cluster"}), "missing field 'cluster'"),
        (pack(valid_body(v="1")), "v must be an integer"),
        (pack(valid_body(v=True)), "v must be an integer"),
        (pack(valid_body(cluster={"replicas": -2, "vnodes": 150})), "out of range"),
        (pack(valid_body(cluster=[2, 150])), "'cluster' must be a map"),
        (pack(valid_body(members={"alice": 1})), "'members' must be an array"),
        (pack(valid_body(members=[list(ALICE)[:7]])), "8 or 9 fields"),
        (pack(valid_body(members=[[*ALICE[:5], "dead", 0, 0]])), "status"),
        (pack(valid_body(members=[[*ALICE[:5], ["alive"], 0, 0]])), "status"),
        (pack(valid_body(members=[["", *ALICE[1:]]])), "node_id"),
        (pack(valid_body(members=[["x" * 129, *ALICE[1:]]])), "node_id"),
        (pack(valid_body(members=[[*ALICE[:3], -1, *ALICE[4:]]])), "incarnation"),
        (pack(valid_body(members=[[*ALICE[:4], 2**63, *ALICE[5:]]])), "heartbeat"),
        (pack(valid_body(members=[[*ALICE[:4], 1.5, *ALICE[5:]]])), "heartbeat"),
        (pack(valid_body(members=[[ALICE[0], 5, *ALICE[2:]]])), "grpc_addr must be a string"),
        (pack(valid_body(members=[[ALICE[0], b"bytes", *ALICE[2:]]])), "msgpack"),
        (pack(valid_body(members=[[ALICE[0], "h" * 257, *ALICE[2:]]])), "msgpack"),
        (pack({1: 2}), "msgpack"),  # non-string map key
        (pack(valid_body(members=[list(ALICE)] * (MAX_MEMBERS + 1))), "msgpack"),
    ],
)
def test_malformed_messages_are_decode_errors(body: bytes, reason: str) -> None:
    with pytest.raises(GossipDecodeError, match=reason):
        decode(body, 4 * LIMIT)


def test_foreign_protocol_version_decodes_and_fails_the_fingerprint() -> None:
    msg = decode(pack(valid_body(v=7, members="a layout we do not know")), LIMIT)
    assert (msg.version, msg.members) == (7, ())
    with pytest.raises(GossipMismatch, match="protocol version 7 \\(ours 1\\)"):
        check_fingerprint(msg, replicas=2, vnodes=150)


def test_fingerprint_mismatch_names_both_values() -> None:
    msg = decode(encode(GossipMessage("alice", 3, 150)), LIMIT)
    with pytest.raises(GossipMismatch, match="peer alice runs replicas 3 \\(ours 2\\)"):
        check_fingerprint(msg, replicas=2, vnodes=150)
    with pytest.raises(GossipMismatch, match="vnodes 150 \\(ours 64\\)"):
        check_fingerprint(msg, replicas=3, vnodes=64)


def check_decode_or_reject(body: bytes) -> None:
    try:
        msg = decode(body, LIMIT)
    except GossipDecodeError:
        return
    assert isinstance(msg, GossipMessage)
    # Whatever is accepted can be sent on again unchanged.
    assert decode(encode(msg), LIMIT) == msg


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(body: bytes) -> None:
    """Junk is either a valid message or a GossipDecodeError, never another exception (checked inside)."""
    check_decode_or_reject(body)


msgpack_ints = st.integers(-(2**63), 2**64 - 1)
msgpack_values = st.recursive(
    st.none() | st.booleans() | msgpack_ints | st.floats() | st.text(max_size=300) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=9)
    | st.dictionaries(st.text(max_size=8) | msgpack_ints, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(msgpack_values)
def test_fuzz_arbitrary_msgpack_objects(obj: object) -> None:
    check_decode_or_reject(pack(obj))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["v", "from", "cluster", "members"]), msgpack_values,
       st.integers(0, 7), msgpack_values)
def test_fuzz_near_valid_messages(key: str, value: object, index: int, member_value: object) -> None:
    """Valid messages with one field, or one field of one member, replaced by anything."""
    check_decode_or_reject(pack(valid_body(**{key: value})))
    member = list(ALICE)
    member[index] = member_value
    check_decode_or_reject(pack(valid_body(members=[member])))
