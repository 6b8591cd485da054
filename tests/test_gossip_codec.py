"""The gossip wire format: round trips, schema checks, forward and backward compatibility, and fuzzing
(junk in -> GossipDecodeError only)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.errors import GossipDecodeError, GossipMismatch
from peer.membership.codec import (
    LEGACY_VERSION,
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
# Major 1 has no zone: its longest entry is the 9 fields up to peer_addr.
ALICE_V1, BOB_V1 = tuple(ALICE)[:9], tuple(BOB)[:9]
ALICE_MAP = {"id": "alice", "ra": "127.0.0.1:50051", "ga": "127.0.0.1:7946", "in": 3, "hb": 42, "st": "alive",
             "cc": 10, "cb": 10_485_760}
BOB_MAP = {"id": "bob", "ra": "[::1]:50052", "ga": "[::1]:7947", "in": 1, "hb": 0, "st": "left"}


def valid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION[0],
        "vm": PROTOCOL_VERSION[1],
        "from": "alice",
        "cluster": {"policy": "rep:2", "vnodes": 150},
        "members": [ALICE_MAP, BOB_MAP],
    }
    body.update(overrides)
    return body


def v1_body(**overrides: Any) -> dict[str, Any]:
    """What a peer on protocol major 1 sends: entries as arrays, `replicas` in the fingerprint."""
    body: dict[str, Any] = {
        "v": 1,
        "from": "alice",
        "cluster": {"replicas": 2, "vnodes": 150},
        "members": [list(ALICE_V1), list(BOB_V1)],
    }
    body.update(overrides)
    return body


def alice_with(**changes: Any) -> dict[str, Any]:
    entry = {**ALICE_MAP, **changes}
    return {k: v for k, v in entry.items() if v is not None}


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def test_round_trip() -> None:
    msg = GossipMessage("alice", "rep:2", 150, (ALICE, BOB))
    decoded = decode(encode(msg), LIMIT)
    assert decoded == msg
    assert [Entry._make(e) for e in decoded.members] == [ALICE, BOB]
    check_fingerprint(decoded, policy="rep:2", vnodes=150)
    assert msgpack.unpackb(encode(msg)) == valid_body()  # optional fields at their default are left out


def test_oversize_body_is_refused_before_parsing() -> None:
    body = encode(GossipMessage("alice", "rep:2", 150, [ALICE] * 50))
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
        (pack(valid_body(vm=-1)), "vm out of range"),
        (pack(valid_body(cluster={"policy": "rep:2", "vnodes": -2})), "out of range"),
        (pack(valid_body(cluster={"policy": "", "vnodes": 150})), "cluster.policy"),
        (pack(valid_body(cluster={"policy": "rep 2\n", "vnodes": 150})), "cluster.policy"),
        (pack(valid_body(cluster={"policy": 2, "vnodes": 150})), "cluster.policy must be a string"),
        (pack(valid_body(cluster={"replicas": 2, "vnodes": 150})), "missing field 'policy'"),
        (pack(valid_body(cluster=[2, 150])), "'cluster' must be a map"),
        (pack(valid_body(members={"alice": 1})), "'members' must be an array"),
        (pack(valid_body(members=[list(ALICE)])), "members\\[0\\] must be a map"),
        (pack(valid_body(members=[alice_with(st=None)])), "missing 'st'"),
        (pack(valid_body(members=[alice_with(st="dead")])), "status"),
        (pack(valid_body(members=[alice_with(st=["alive"])])), "status"),
        (pack(valid_body(members=[alice_with(id="")])), "node_id"),
        (pack(valid_body(members=[alice_with(id="x" * 129)])), "node_id"),
        (pack(valid_body(members=[alice_with(**{"in": -1})])), "incarnation"),
        (pack(valid_body(members=[alice_with(hb=2**63)])), "heartbeat"),
        (pack(valid_body(members=[alice_with(hb=1.5)])), "heartbeat"),
        (pack(valid_body(members=[alice_with(cc=True)])), "chunk_count must be an integer"),
        (pack(valid_body(members=[alice_with(pa=7)])), "peer_addr must be a string"),
        (pack(valid_body(members=[alice_with(ra=5)])), "grpc_addr must be a string"),
        (pack(valid_body(members=[alice_with(zn=7)])), "zone must be a string"),
        (pack(valid_body(members=[alice_with(zn="eu west")])), "zone may hold only"),
        (pack(valid_body(members=[alice_with(zn="eu\nINFO all is well")])), "zone may hold only"),
        (pack(valid_body(members=[alice_with(zn="z" * 33)])), "zone must be 0..32 characters"),
        (pack(valid_body(members=[alice_with(ra=b"bytes")])), "msgpack"),
        (pack(valid_body(members=[alice_with(ra="h" * 257)])), "msgpack"),
        (pack(valid_body(members=[alice_with(zz=b"future bytes")])), "msgpack"),  # unknown, yet never bin
        (pack(valid_body(members=[{**ALICE_MAP, **{f"k{i}": i for i in range(25)}}])), "msgpack"),  # > 32 keys
        (pack({1: 2}), "msgpack"),  # non-string map key
        (pack(valid_body(members=[ALICE_MAP] * (MAX_MEMBERS + 1))), "msgpack"),
        # Major 1 is read as strictly as it always was.
        (pack(v1_body(cluster={"replicas": -2, "vnodes": 150})), "out of range"),
        (pack(v1_body(cluster={"policy": "rep:2", "vnodes": 150})), "missing field 'replicas'"),
        (pack(v1_body(members=[ALICE_MAP])), "8 or 9 fields"),
        (pack(v1_body(members=[list(ALICE)[:7]])), "8 or 9 fields"),
        (pack(v1_body(members=[list(ALICE)])), "8 or 9 fields"),  # a zone is not a major-1 field
        (pack(v1_body(members=[[*ALICE[:5], "dead", 0, 0]])), "status"),
        (pack(v1_body(members=[[*ALICE[:5], ["alive"], 0, 0]])), "status"),
        (pack(v1_body(members=[["", *ALICE_V1[1:]]])), "node_id"),
        (pack(v1_body(members=[["x" * 129, *ALICE_V1[1:]]])), "node_id"),
        (pack(v1_body(members=[[*ALICE_V1[:3], -1, *ALICE_V1[4:]]])), "incarnation"),
        (pack(v1_body(members=[[*ALICE_V1[:4], 2**63, *ALICE_V1[5:]]])), "heartbeat"),
        (pack(v1_body(members=[[*ALICE_V1[:4], 1.5, *ALICE_V1[5:]]])), "heartbeat"),
        (pack(v1_body(members=[[ALICE[0], 5, *ALICE_V1[2:]]])), "grpc_addr must be a string"),
    ],
)
def test_malformed_messages_are_decode_errors(body: bytes, reason: str) -> None:
    with pytest.raises(GossipDecodeError, match=reason):
        decode(body, 4 * LIMIT)


def test_foreign_protocol_version_decodes_and_fails_the_fingerprint() -> None:
    """A different major is read no further than `v`, `vm` and `from`, and refused in one line."""
    msg = decode(pack(valid_body(v=7, vm=3, cluster="opaque", members="a layout we do not know")), LIMIT)
    assert (msg.version, msg.members) == ((7, 3), ())
    ours = ".".join(map(str, PROTOCOL_VERSION))
    with pytest.raises(GossipMismatch, match=f"protocol version 7.3 \\(ours {ours}\\)") as refused:
        check_fingerprint(msg, policy="rep:2", vnodes=150)
    assert str(refused.value) == f"peer alice runs protocol version 7.3 (ours {ours}), a major we cannot read"
    sneaky = decode(pack(valid_body(v=7, **{"from": "evil\nINFO all is well"})), LIMIT)
    with pytest.raises(GossipMismatch) as refused:
        check_fingerprint(sneaky, policy="rep:2", vnodes=150)
    assert "\n" not in str(refused.value)


def test_higher_minor_version_is_read() -> None:
    msg = decode(pack(valid_body(vm=9)), LIMIT)
    assert (msg.version, [Entry._make(e) for e in msg.members]) == ((PROTOCOL_VERSION[0], 9), [ALICE, BOB])
    check_fingerprint(msg, policy="rep:2", vnodes=150)


def test_fingerprint_mismatch_names_both_values() -> None:
    msg = decode(encode(GossipMessage("alice", "rep:3", 150)), LIMIT)
    with pytest.raises(GossipMismatch, match="peer alice runs policy rep:3 \\(ours rep:2\\)"):
        check_fingerprint(msg, policy="rep:2", vnodes=150)
    with pytest.raises(GossipMismatch, match="vnodes 150 \\(ours 64\\)"):
        check_fingerprint(msg, policy="rep:3", vnodes=64)
    with pytest.raises(GossipMismatch, match="policy ec:4\\+2 \\(ours rep:3\\)"):
        check_fingerprint(decode(encode(GossipMessage("alice", "ec:4+2", 150)), LIMIT), "rep:3", 150)


# -- forward and backward compatibility ---------------------------------------------------------------


def test_unknown_keys_are_ignored_in_entries_and_at_the_top() -> None:
    """What a later minor version may add: new keys anywhere, of any type but bin and ext."""
    future = valid_body(
        vm=PROTOCOL_VERSION[1] + 1,
        zone_map={"eu-1": [1, 2, {"nested": None}]},
        cluster={"policy": "rep:2", "vnodes": 150, "layout": 7},
        members=[{**ALICE_MAP, "zone": "eu-1", "tags": ["ssd", 3, True, 1.5]}, {**BOB_MAP, "zz": None}],
    )
    msg = decode(pack(future), LIMIT)
    assert [Entry._make(e) for e in msg.members] == [ALICE, BOB]
    check_fingerprint(msg, policy="rep:2", vnodes=150)


def test_missing_optional_entry_fields_take_their_defaults() -> None:
    bare = {k: v for k, v in ALICE_MAP.items() if k in ("id", "ra", "ga", "in", "hb", "st")}
    (entry,) = decode(pack(valid_body(members=[bare])), LIMIT).members
    assert Entry._make(entry) == ALICE._replace(chunk_count=0, chunk_bytes=0, peer_addr="")
    (entry,) = decode(pack(valid_body(members=[{**bare, "pa": "10.0.0.1:50052"}])), LIMIT).members
    assert Entry._make(entry).peer_addr == "10.0.0.1:50052"
    assert Entry._make(entry).zone == ""  # a peer that predates zones, or has none, is in the unnamed zone


def test_a_members_zone_round_trips_under_its_short_key() -> None:
    zoned = ALICE._replace(zone="eu-west.1_a")
    msg = GossipMessage("alice", "rep:2", 150, (zoned, BOB))
    assert decode(encode(msg), LIMIT) == msg
    sent = msgpack.unpackb(encode(msg))["members"]
    assert sent[0]["zn"] == "eu-west.1_a" and "zn" not in sent[1]  # "" is the default, left out
    assert PROTOCOL_VERSION >= (2, 1)  # the minor version that added the key


def test_a_zone_is_not_written_in_version_1_and_reads_back_as_none() -> None:
    zoned = ALICE._replace(zone="b", peer_addr="10.0.0.1:50052")
    body = encode(GossipMessage("alice", "rep:2", 150, (zoned,), LEGACY_VERSION))
    assert msgpack.unpackb(body)["members"] == [list(zoned)[:9]]
    (entry,) = decode(body, LIMIT).members
    assert Entry._make(entry) == zoned._replace(zone="")


def test_version_1_tuple_entries_still_decode() -> None:
    """A peer not yet upgraded sends major 1: 8- or 9-field arrays and `replicas`, read as `rep:R`."""
    nine = [*ALICE[:8], "10.0.0.1:50052"]
    msg = decode(pack(v1_body(members=[nine, list(BOB)[:8]])), LIMIT)
    assert msg.version == LEGACY_VERSION
    assert (msg.sender, msg.policy, msg.vnodes) == ("alice", "rep:2", 150)
    assert [Entry._make(e) for e in msg.members] == [ALICE._replace(peer_addr="10.0.0.1:50052"), BOB]
    check_fingerprint(msg, policy="rep:2", vnodes=150)
    with pytest.raises(GossipMismatch, match="policy rep:2 \\(ours rep:3\\)"):
        check_fingerprint(msg, policy="rep:3", vnodes=150)


def test_version_1_is_written_for_peers_not_yet_upgraded() -> None:
    msg = GossipMessage("alice", "rep:2", 150, (ALICE, BOB), LEGACY_VERSION)
    assert msgpack.unpackb(encode(msg)) == {**v1_body(), "vm": 0}
    assert decode(encode(msg), LIMIT) == msg
    with pytest.raises(ValueError, match="protocol version 1"):
        encode(GossipMessage("alice", "ec:4+2", 150, (), LEGACY_VERSION))


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
@given(st.sampled_from(["v", "vm", "from", "cluster", "members", "new"]), msgpack_values,
       st.integers(0, 8), msgpack_values)
def test_fuzz_near_valid_messages(key: str, value: object, index: int, member_value: object) -> None:
    """Valid messages (either major) with one field, or one field of one member, replaced by anything."""
    check_decode_or_reject(pack(valid_body(**{key: value})))
    check_decode_or_reject(pack(v1_body(**{key: value})))
    keys = [*ALICE_MAP, "new"]
    check_decode_or_reject(pack(valid_body(members=[{**ALICE_MAP, keys[index % len(keys)]: member_value}])))
    legacy = list(ALICE_V1)
    legacy[index % len(legacy)] = member_value
    check_decode_or_reject(pack(v1_body(members=[legacy])))
