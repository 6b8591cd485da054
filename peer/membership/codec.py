"""The gossip wire format: one msgpack map per push or reply, checked field by field on the way in.

Anything a peer sends is untrusted: size, nesting, types, string lengths and numbers are bounded
here, so every malformed body becomes a GossipDecodeError and nothing else. A message from another
protocol version, replication factor or vnode count decodes fine; `check_fingerprint` rejects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from peer.errors import GossipDecodeError, GossipMismatch

PROTOCOL_VERSION = 1
MAX_MEMBERS = 10_000
MAX_NODE_ID_LEN = 128
MAX_ADDR_LEN = 256
# Counters stay far below 2**64 so that refuting (incarnation + 1) can always be encoded again.
MAX_COUNTER = 2**53
STATUSES = frozenset({"alive", "left"})
ENTRY_FIELDS = 9
#: Entries of peers that predate the internal address field; peer_addr then reads as "".
LEGACY_ENTRY_FIELDS = 8

#: (node_id, grpc_addr, gossip_addr, incarnation, heartbeat, status, chunk_count, chunk_bytes,
#: peer_addr); the same shape as membership.state.Entry, which this module does not import (sibling
#: layers). peer_addr is the internal (mutual TLS) gRPC address, "" when it is grpc_addr.
WireEntry = tuple[str, str, str, int, int, str, int, int, str]


@dataclass(frozen=True)
class GossipMessage:
    sender: str
    replicas: int
    vnodes: int
    members: Sequence[WireEntry] = ()
    version: int = PROTOCOL_VERSION


def encode(msg: GossipMessage) -> bytes:
    body = {
        "v": msg.version,
        "from": msg.sender,
        "cluster": {"replicas": msg.replicas, "vnodes": msg.vnodes},
        "members": [list(e) for e in msg.members],
    }
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(body: bytes, max_bytes: int) -> GossipMessage:
    """Parses and validates one message; raises GossipDecodeError with a short reason."""
    if len(body) > max_bytes:
        raise GossipDecodeError(f"gossip message of {len(body)} bytes exceeds the limit of {max_bytes}")
    top = _unpack(body)
    if not isinstance(top, dict):
        raise GossipDecodeError("gossip message must be a map")
    version = _counter(_field(top, "v"), "v")
    sender = _text(_field(top, "from"), "from", MAX_NODE_ID_LEN, nonempty=True)
    cluster = _field(top, "cluster")
    if not isinstance(cluster, dict):
        raise GossipDecodeError("'cluster' must be a map")
    replicas = _counter(_field(cluster, "replicas"), "cluster.replicas")
    vnodes = _counter(_field(cluster, "vnodes"), "cluster.vnodes")
    # Another version may lay members out differently: leave them unread and let the fingerprint
    # check report the mismatch, rather than calling a foreign peer's message malformed.
    members = _members(_field(top, "members")) if version == PROTOCOL_VERSION else ()
    return GossipMessage(sender, replicas, vnodes, members, version)


def check_fingerprint(msg: GossipMessage, replicas: int, vnodes: int) -> None:
    """Refuses a peer whose protocol or placement settings differ from ours: merging its view would
    let two peers disagree on where every chunk lives."""
    diffs = [
        f"{name} {theirs} (ours {ours})"
        for name, theirs, ours in (
            ("protocol version", msg.version, PROTOCOL_VERSION),
            ("replicas", msg.replicas, replicas),
            ("vnodes", msg.vnodes, vnodes),
        )
        if theirs != ours
    ]
    if diffs:
        raise GossipMismatch(f"peer {msg.sender} runs " + ", ".join(diffs))


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_ADDR_LEN,
            max_bin_len=0,
            max_ext_len=0,
            max_array_len=MAX_MEMBERS,  # bounds the member list, the largest array we accept
            max_map_len=16,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers truncated input, extra data, limits and bad UTF-8; FormatError and
        # StackError (reserved bytes, deep nesting) derive from UnpackException.
        raise GossipDecodeError(f"not a valid msgpack message: {exc}") from exc


def _field(m: dict[Any, Any], key: str) -> Any:
    try:
        return m[key]
    except KeyError:
        raise GossipDecodeError(f"missing field {key!r}") from None


def _counter(value: Any, what: str) -> int:
    # bool is an int subclass in Python, but msgpack true/false is never a counter.
    if type(value) is not int:
        raise GossipDecodeError(f"{what} must be an integer")
    if not 0 <= value <= MAX_COUNTER:
        raise GossipDecodeError(f"{what} out of range: {value}")
    return value


def _text(value: Any, what: str, max_len: int, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise GossipDecodeError(f"{what} must be a string")
    if len(value) > max_len or (nonempty and not value):
        raise GossipDecodeError(f"{what} must be {int(nonempty)}..{max_len} characters")
    return value


def _members(value: Any) -> tuple[WireEntry, ...]:
    if not isinstance(value, list):
        raise GossipDecodeError("'members' must be an array")
    return tuple(_entry(item, i) for i, item in enumerate(value))


def _entry(item: Any, index: int) -> WireEntry:
    where = f"members[{index}]"
    if not isinstance(item, list) or len(item) not in (LEGACY_ENTRY_FIELDS, ENTRY_FIELDS):
        raise GossipDecodeError(f"{where} must be an array of {LEGACY_ENTRY_FIELDS} or {ENTRY_FIELDS} fields")
    node_id, grpc_addr, gossip_addr, incarnation, heartbeat, status, chunk_count, chunk_bytes = item[:8]
    peer_addr = item[8] if len(item) == ENTRY_FIELDS else ""
    if not isinstance(status, str) or status not in STATUSES:
        raise GossipDecodeError(f"{where}.status must be 'alive' or 'left'")
    return (
        _text(node_id, f"{where}.node_id", MAX_NODE_ID_LEN, nonempty=True),
        _text(grpc_addr, f"{where}.grpc_addr", MAX_ADDR_LEN),
        _text(gossip_addr, f"{where}.gossip_addr", MAX_ADDR_LEN),
        _counter(incarnation, f"{where}.incarnation"),
        _counter(heartbeat, f"{where}.heartbeat"),
        status,
        _counter(chunk_count, f"{where}.chunk_count"),
        _counter(chunk_bytes, f"{where}.chunk_bytes"),
        _text(peer_addr, f"{where}.peer_addr", MAX_ADDR_LEN),
    )
