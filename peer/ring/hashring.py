"""Consistent-hash ring: which peers own a key, as an immutable value with no I/O and no clock.

Invariants: the ring is a function of the node id SET, each node's zone and the vnode count only, so
every peer that knows the same members builds an identical ring and the same `digest` (peers compare
digests to agree on placement). Owners of a key are the first r distinct nodes clockwise from MD5(key);
`spread` is that order taken round-robin across zones (peer/ring/zones.py), the order placement uses.
Zones never move a point: they only reorder the nodes a key already has.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from struct import Struct
from types import MappingProxyType
from typing import Protocol

from peer.ring.zones import spread

__all__ = ["DEFAULT_VNODES", "HashRing", "key_position"]

DEFAULT_VNODES = 150

# Owner tables cost O(points * r) memory; past this r, lookups slice the walked preference list instead.
_TABLE_MAX_R = 8

_unpack_u64 = Struct(">Q").unpack_from


class _Digest(Protocol):
    def digest(self) -> bytes: ...


def _pick_md5() -> Callable[[bytes], _Digest]:
    # MD5 only spreads keys here; it guards nothing. CPython's built-in MD5 skips OpenSSL's per-call
    # EVP setup, which is ~40% of a lookup on chunk-id-sized keys; both give identical bytes.
    try:
        import _md5
    except ImportError:  # interpreters built without the built-in hashes
        return partial(hashlib.md5, usedforsecurity=False)
    md5: Callable[[bytes], _Digest] = _md5.md5
    return md5


_md5 = _pick_md5()


def key_position(key: str) -> int:
    """Ring position of `key`: the first 8 bytes of its MD5, big-endian; every peer must use this rule."""
    return _unpack_u64(_md5(key.encode()).digest())[0]


def _ring_digest(nodes: tuple[str, ...], vnodes: int, zones: Mapping[str, str]) -> str:
    # Length-prefixed so no choice of node ids can make two different sets hash the same bytes. The
    # zones are added only when some node has one, so a ring without zones keeps the digest it always
    # had; their marker starts with a letter, which no length prefix does.
    parts = [f"vnodes={vnodes};".encode()]
    for node_id in nodes:
        raw = node_id.encode()
        parts.append(b"%d:%s" % (len(raw), raw))
    if zones:
        parts.append(b"zones;")
        for node_id in nodes:
            raw = zones.get(node_id, "").encode()
            parts.append(b"%d:%s" % (len(raw), raw))
    return _md5(b"".join(parts)).digest()[:8].hex()


def _distinct_successors(point_nodes: list[str], r: int) -> list[tuple[str, ...]]:
    """For each point index, the first r distinct nodes clockwise from it; one extra entry for wrap-around.

    Walks backwards, deriving each entry from its clockwise neighbour in O(r): the first lap only
    seeds what lies past the last point, the second records. O(points * r) instead of a walk per point.
    """
    count = len(point_nodes)
    table: list[tuple[str, ...]] = [()] * (count + 1)
    succ: tuple[str, ...] = ()
    for record in (False, True):
        for i in range(count - 1, -1, -1):
            node = point_nodes[i]
            if not succ or succ[0] != node:
                if node in succ:
                    succ = (node, *(n for n in succ if n != node))
                else:
                    succ = (node, *succ[: r - 1])
            if record:
                table[i] = succ
    table[count] = table[0]
    return table


class HashRing:
    """An immutable consistent-hash ring; build it with `HashRing.build`.

    Lookup caches (owner tables per r, walked preference lists) fill lazily; they are derived from the
    immutable points, so they never change an answer, and the ring stays safe to share.
    """

    __slots__ = (
        "_nodes",
        "_node_set",
        "_vnodes",
        "_zones",
        "_zoned",
        "_digest",
        "_positions",
        "_point_nodes",
        "_tables",
        "_walks",
        "_spreads",
    )

    _nodes: tuple[str, ...]
    _node_set: frozenset[str]
    _vnodes: int
    _zones: Mapping[str, str]
    _zoned: bool
    _digest: str
    _positions: list[int]
    _point_nodes: list[str]
    _tables: dict[int, list[tuple[str, ...]]]
    _walks: dict[int, tuple[str, ...]]
    _spreads: dict[int, tuple[str, ...]]

    def __init__(
        self, node_ids: Iterable[str] = (), vnodes: int = DEFAULT_VNODES, zones: Mapping[str, str] | None = None
    ) -> None:
        if isinstance(node_ids, str):
            raise TypeError("node_ids must be an iterable of node ids, not a single string")
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        nodes = tuple(sorted(set(node_ids)))
        # Only the zones of nodes on the ring count, and "" (no zone) is left out, so the same ring
        # compares and digests equal however the mapping was spelled.
        known = zones or {}
        node_zones = {node_id: zone for node_id in nodes if (zone := known.get(node_id, ""))}
        # Ties on position (vanishingly rare with 64 bits) are broken by node id, keeping the order total.
        points = sorted(
            (key_position(f"{node_id}#{i}"), node_id) for node_id in nodes for i in range(vnodes)
        )
        init = object.__setattr__
        init(self, "_nodes", nodes)
        init(self, "_node_set", frozenset(nodes))
        init(self, "_vnodes", vnodes)
        init(self, "_zones", MappingProxyType(node_zones))
        init(self, "_zoned", len({node_zones.get(node_id, "") for node_id in nodes}) > 1)
        init(self, "_digest", _ring_digest(nodes, vnodes, node_zones))
        init(self, "_positions", [position for position, _ in points])
        init(self, "_point_nodes", [node_id for _, node_id in points])
        init(self, "_tables", {})
        init(self, "_walks", {})
        init(self, "_spreads", {})

    @classmethod
    def build(
        cls, node_ids: Iterable[str], vnodes: int = DEFAULT_VNODES, zones: Mapping[str, str] | None = None
    ) -> HashRing:
        """The ring of `node_ids` (duplicates and order ignored) with `vnodes` points per node; `zones`
        maps node ids to their zone (missing or "": the unnamed zone)."""
        return cls(node_ids, vnodes, zones)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"HashRing is immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"HashRing is immutable (tried to delete {name!r})")

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node ids on the ring, sorted."""
        return self._nodes

    @property
    def vnodes(self) -> int:
        return self._vnodes

    @property
    def zones(self) -> Mapping[str, str]:
        """Node id -> zone, for the nodes on the ring that have one (read-only)."""
        return self._zones

    def zone_of(self, node_id: str) -> str:
        """The node's zone; "" for the unnamed zone (and for a node not on the ring)."""
        return self._zones.get(node_id, "")

    @property
    def zoned(self) -> bool:
        """Whether the nodes span more than one zone; if not, `spread` is `preference`."""
        return self._zoned

    @property
    def digest(self) -> str:
        """Fingerprint of (node set, zones, vnodes): equal digests mean equal placement on every peer."""
        return self._digest

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._node_set

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashRing):
            return NotImplemented
        return self._vnodes == other._vnodes and self._nodes == other._nodes and self._zones == other._zones

    def __hash__(self) -> int:
        return hash((self._vnodes, self._nodes, tuple(sorted(self._zones.items()))))

    def __repr__(self) -> str:
        zones = len({self.zone_of(node_id) for node_id in self._nodes})
        return f"HashRing(nodes={len(self._nodes)}, zones={zones}, vnodes={self._vnodes}, digest={self._digest})"

    def key_position(self, key: str) -> int:
        return key_position(key)

    def owners(self, key: str, r: int) -> tuple[str, ...]:
        """The first r distinct nodes clockwise from `key` (fewer if the ring has fewer nodes)."""
        table = self._tables.get(r)
        if table is not None:
            # Hot path: one MD5, one bisect, one index. Kept inline; a call costs ~10% here.
            return table[bisect_left(self._positions, _unpack_u64(_md5(key.encode()).digest())[0])]
        return self._owners_uncached(key, r)

    def preference(self, key: str) -> tuple[str, ...]:
        """Every node, in clockwise order from `key`: the owners first, then the handoff order."""
        return self.owners(key, len(self._nodes))

    def spread(self, key: str) -> tuple[str, ...]:
        """Every node for `key` in placement order: `preference` taken round-robin across zones, so the
        first r span as many zones as there are (`zones.spread`); `preference` itself without zones."""
        if not self._zoned:
            return self.preference(key)
        index = bisect_left(self._positions, key_position(key)) % len(self._positions)
        found = self._spreads.get(index)
        if found is None:
            # Memoised per point, like the walks: at most one entry per point, and the same answer.
            found = spread(self._walk(index), self.zone_of)
            self._spreads[index] = found
        return found

    def spread_owners(self, key: str, r: int) -> tuple[str, ...]:
        """The first r nodes of `spread(key)`: the owners placement uses (`owners(key, r)` without zones)."""
        if not self._zoned:
            return self.owners(key, r)
        if r < 0:
            raise ValueError(f"r must be >= 0, got {r}")
        return self.spread(key)[:r]

    def _owners_uncached(self, key: str, r: int) -> tuple[str, ...]:
        if r < 0:
            raise ValueError(f"r must be >= 0, got {r}")
        want = min(r, len(self._nodes))
        if want <= _TABLE_MAX_R:
            table = self._tables.get(want)
            if table is None:
                if want == 0:
                    table = [()] * (len(self._positions) + 1)
                else:
                    table = _distinct_successors(self._point_nodes, want)
                self._tables[want] = table
            # Aliasing r > n to the n table keeps later calls with that r on the hot path.
            self._tables[r] = table
            return table[bisect_left(self._positions, key_position(key))]
        index = bisect_left(self._positions, key_position(key))
        return self._walk(index % len(self._positions))[:want]

    def _walk(self, index: int) -> tuple[str, ...]:
        """All distinct nodes clockwise from point `index`, memoised per point (at most one per point)."""
        found = self._walks.get(index)
        if found is not None:
            return found
        point_nodes = self._point_nodes
        total = len(self._nodes)
        seen: dict[str, None] = {}
        i = index
        while len(seen) < total:
            seen.setdefault(point_nodes[i])
            i += 1
            if i == len(point_nodes):
                i = 0
        found = tuple(seen)
        self._walks[index] = found
        return found
