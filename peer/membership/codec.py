"""The gossip wire format: one msgpack map per push or reply, checked field by field on the way in.

Anything a peer sends is untrusted: size, nesting, types, string lengths and numbers are bounded
here, so every malformed body becomes a GossipDecodeError and nothing else. A message from another
major version, redundancy policy or vnode count decodes fine; `check_fingerprint` rejects it.

Forward compatibility. Messages and member entries are maps with short keys (`ENTRY_KEYS`). A reader
ignores keys it does not know and fills in the default of an optional key that is missing, so a new
field (a zone, say) arrives as an optional key under a higher minor version and needs no cluster-wide
restart. Such a key must never change what the keys a reader does know mean; a change that every
reader has to understand is a new major. The version is major.minor (`v`, `vm`): any minor is
readable, a different major is refused in one line. Every major keeps `v` and `from`, which are all
a reader looks at in a major it cannot read. New fields use only msgpack types other than bin and
ext, which every version refuses.

Rolling upgrade from major 1. Major 1 laid each entry out as an array of 8 or 9 fields and put
`replicas` (read here as the policy `rep:R`) in the fingerprint. This version reads both majors and
can still write major 1 (`GossipMessage.version`), so the gossiper answers a major-1 push in major 1
and keeps both kinds of peer talking while they are restarted one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from peer.config import MAX_ZONE_LEN, ZONE_RE
from peer.errors import GossipDecodeError, GossipMismatch

Version = tuple[int, int]
#: 2.1 added the member's zone (`zn`); a 2.0 reader ignores it and places as if every peer shared one zone.
PROTOCOL_VERSION: Version = (2, 1)
#: The tuple-entry layout, still read and written for peers that have not been upgraded yet.
LEGACY_VERSION: Version = (1, 0)
READABLE_MAJORS = frozenset({LEGACY_VERSION[0], PROTOCOL_VERSION[0]})

MAX_MEMBERS = 10_000
MAX_NODE_ID_LEN = 128
MAX_ADDR_LEN = 256
MAX_POLICY_LEN = 64
#: Keys per map, known or not: room for fields added by later minor versions.
MAX_MAP_LEN = 32
# Counters stay far below 2**64 so that refuting (incarnation + 1) can always be encoded again.
MAX_COUNTER = 2**53
STATUSES = frozenset({"alive", "left"})
# A policy is a short token such as "rep:2" or "ec:4+2"; it lands in log lines and error replies,
# so it never holds whitespace or control characters.
_POLICY = re.compile(r"[A-Za-z0-9:+._-]+")
_REP_POLICY = re.compile(r"rep:(0|[1-9][0-9]*)")

#: (node_id, grpc_addr, gossip_addr, incarnation, heartbeat, status, chunk_count, chunk_bytes,
#: peer_addr, zone); the same shape as membership.state.Entry, which this module does not import (sibling
#: layers). peer_addr is the internal (mutual TLS) gRPC address, "" when it is grpc_addr; zone is the
#: member's failure domain, "" for the one unnamed zone.
WireEntry = tuple[str, str, str, int, int, str, int, int, str, str]
ENTRY_FIELDS = 10
#: Major-1 entries of peers that predate the internal address field; peer_addr then reads as "".
LEGACY_ENTRY_FIELDS = 8
#: The array lengths major 1 knows: without and with peer_addr. It never carries a zone, so what this
#: peer writes in major 1 stops after peer_addr, and the zone of a major-1 entry reads as "".
LEGACY_ENTRY_LENGTHS = (LEGACY_ENTRY_FIELDS, LEGACY_ENTRY_FIELDS + 1)


@dataclass(frozen=True)
class GossipMessage:
    sender: str
    policy: str
    vnodes: int
    members: Sequence[WireEntry] = ()
    version: Version = PROTOCOL_VERSION


def encode(msg: GossipMessage) -> bytes:
    """Writes the layout of `msg.version`'s major: 1 for a peer not yet upgraded, else the current one."""
    if msg.version[0] == LEGACY_VERSION[0]:
        cluster: dict[str, Any] = {"replicas": _replicas_of(msg.policy), "vnodes": msg.vnodes}
        members: list[Any] = [list(e[: LEGACY_ENTRY_LENGTHS[-1]]) for e in msg.members]
    else:
        cluster = {"policy": msg.policy, "vnodes": msg.vnodes}
        members = [_entry_map(e) for e in msg.members]
    body = {"v": msg.version[0], "vm": msg.version[1], "from": msg.sender, "cluster": cluster, "members": members}
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(body: bytes, max_bytes: int) -> GossipMessage:
    """Parses and validates one message; raises GossipDecodeError with a short reason."""
    if len(body) > max_bytes:
        raise GossipDecodeError(f"gossip message of {len(body)} bytes exceeds the limit of {max_bytes}")
    top = _unpack(body)
    if not isinstance(top, dict):
        raise GossipDecodeError("gossip message must be a map")
    version = (_counter(_field(top, "v"), "v"), _counter(top.get("vm", 0), "vm"))
    sender = _text(_field(top, "from"), "from", MAX_NODE_ID_LEN, nonempty=True)
    if version[0] not in READABLE_MAJORS:
        # A major we cannot read may lay out everything else differently: leave it unread and let
        # the fingerprint check report the mismatch, rather than calling a foreign peer's message malformed.
        return GossipMessage(sender, "", 0, (), version)
    cluster = _field(top, "cluster")
    if not isinstance(cluster, dict):
        raise GossipDecodeError("'cluster' must be a map")
    if version[0] == LEGACY_VERSION[0]:
        policy = f"rep:{_counter(_field(cluster, 'replicas'), 'cluster.replicas')}"
        read_entry = _legacy_entry
    else:
        policy = _policy(_field(cluster, "policy"))
        read_entry = _entry
    vnodes = _counter(_field(cluster, "vnodes"), "cluster.vnodes")
    return GossipMessage(sender, policy, vnodes, _members(_field(top, "members"), read_entry), version)


def check_fingerprint(msg: GossipMessage, policy: str, vnodes: int) -> None:
    """Refuses a peer whose protocol or placement settings differ from ours: merging its view would
    let two peers disagree on where every chunk lives. The reason is one line naming both sides."""
    sender = _one_line(msg.sender)
    if msg.version[0] not in READABLE_MAJORS:
        theirs, ours = ".".join(map(str, msg.version)), ".".join(map(str, PROTOCOL_VERSION))
        raise GossipMismatch(f"peer {sender} runs protocol version {theirs} (ours {ours}), a major we cannot read")
    diffs = [
        f"{name} {theirs} (ours {ours})"
        for name, theirs, ours in (("policy", msg.policy, policy), ("vnodes", msg.vnodes, vnodes))
        if theirs != ours
    ]
    if diffs:
        raise GossipMismatch(f"peer {sender} runs " + ", ".join(diffs))


# -- scalars --------------------------------------------------------------------------------------


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
            max_map_len=MAX_MAP_LEN,
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


def _policy(value: Any) -> str:
    text = _text(value, "cluster.policy", MAX_POLICY_LEN, nonempty=True)
    if not _POLICY.fullmatch(text):
        raise GossipDecodeError("cluster.policy may hold only letters, digits and ':+._-'")
    return text


def _replicas_of(policy: str) -> int:
    """Major 1 could only say `replicas`: a policy it cannot express has no major-1 encoding."""
    match = _REP_POLICY.fullmatch(policy)
    if match is None or int(match[1]) > MAX_COUNTER:
        raise ValueError(f"policy {policy!r} cannot be written in protocol version 1")
    return int(match[1])


def _one_line(text: str) -> str:
    return text if text.isprintable() else repr(text)


# -- member entries -------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class EntryKey:
    """One field of a member entry: its wire key, its name in WireEntry, its check, its default."""

    key: str
    name: str
    check: Callable[[Any, str], Any]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _node_id(value: Any, what: str) -> str:
    return _text(value, what, MAX_NODE_ID_LEN, nonempty=True)


def _addr(value: Any, what: str) -> str:
    return _text(value, what, MAX_ADDR_LEN)


def _zone(value: Any, what: str) -> str:
    text = _text(value, what, MAX_ZONE_LEN)
    if not ZONE_RE.fullmatch(text):
        raise GossipDecodeError(f"{what} may hold only letters, digits and '._-'")
    return text


def _status(value: Any, what: str) -> str:
    if not isinstance(value, str) or value not in STATUSES:
        raise GossipDecodeError(f"{what} must be 'alive' or 'left'")
    return value


#: One row per WireEntry field, in its order. A new field goes at the end, optional, with a default.
ENTRY_KEYS: tuple[EntryKey, ...] = (
    EntryKey("id", "node_id", _node_id),
    EntryKey("ra", "grpc_addr", _addr),
    EntryKey("ga", "gossip_addr", _addr),
    EntryKey("in", "incarnation", _counter),
    EntryKey("hb", "heartbeat", _counter),
    EntryKey("st", "status", _status),
    EntryKey("cc", "chunk_count", _counter, 0),
    EntryKey("cb", "chunk_bytes", _counter, 0),
    EntryKey("pa", "peer_addr", _addr, ""),
    EntryKey("zn", "zone", _zone, ""),  # since 2.1
)


def _entry_map(entry: Sequence[Any]) -> dict[str, Any]:
    """Optional fields at their default are left out: smaller, and decoding puts them back."""
    return {k.key: value for k, value in zip(ENTRY_KEYS, entry, strict=True) if value != k.default}


def _members(value: Any, read_entry: Callable[[Any, str], WireEntry]) -> tuple[WireEntry, ...]:
    if not isinstance(value, list):
        raise GossipDecodeError("'members' must be an array")
    return tuple(read_entry(item, f"members[{i}]") for i, item in enumerate(value))


def _entry(item: Any, where: str) -> WireEntry:
    if not isinstance(item, dict):
        raise GossipDecodeError(f"{where} must be a map")
    values = []
    for k in ENTRY_KEYS:
        if k.required and k.key not in item:
            raise GossipDecodeError(f"{where} is missing {k.key!r} ({k.name})")
        values.append(k.check(item.get(k.key, k.default), f"{where}.{k.name}"))
    return tuple(values)  # type: ignore[return-value]


def _legacy_entry(item: Any, where: str) -> WireEntry:
    """Major 1: an array of the first 8 fields, or 9 (with peer_addr)."""
    if not isinstance(item, list) or len(item) not in LEGACY_ENTRY_LENGTHS:
        lengths = " or ".join(map(str, LEGACY_ENTRY_LENGTHS))
        raise GossipDecodeError(f"{where} must be an array of {lengths} fields")
    padded = [*item, *[""] * (ENTRY_FIELDS - len(item))]
    # The status first, as major 1 always did: its reason is the most telling one.
    _status(padded[5], f"{where}.status")
    values = [k.check(value, f"{where}.{k.name}") for k, value in zip(ENTRY_KEYS, padded, strict=True)]
    return tuple(values)  # type: ignore[return-value]
