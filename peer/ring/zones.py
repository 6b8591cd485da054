"""Zone spreading: the order in which a key's peers are used, so its pieces land in distinct zones first.

A zone is a failure domain an operator names (`DFS_ZONE`: a rack, a room, a site); "" is the unnamed
zone every peer without one shares. The rule (Swift's "as unique as possible", Garage's distinct zones
first) is a pure reordering of the ring's preference list for the key:

- zones are ordered by the position of their first peer in the preference list;
- peers are taken round-robin across zones in that order: the first peer of each zone, then the
  second of each zone that has one, and so on, each zone's peers in preference order.

So the first `width` peers span min(width, zones) zones, and no zone holds more than
ceil(width / zones) of them while every zone has that many peers; a zone with too few peers gives its
turns to the others. With one zone the order is the preference list itself, so a cluster without
zones places exactly as before. Both functions depend only on their arguments: every peer that sees
the same ring and zones computes the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["balanced", "spread"]


def _by_zone(nodes: Iterable[str], zone_of: Callable[[str], str]) -> list[list[str]]:
    """The nodes grouped by zone, zones in order of first appearance, each group in input order."""
    groups: dict[str, list[str]] = {}
    for node_id in nodes:
        groups.setdefault(zone_of(node_id), []).append(node_id)
    return list(groups.values())


def spread(preference: Sequence[str], zone_of: Callable[[str], str]) -> tuple[str, ...]:
    """`preference` reordered round-robin across its zones (see the module docstring)."""
    groups = _by_zone(preference, zone_of)
    if len(groups) <= 1:
        return tuple(preference)
    order: list[str] = []
    for rank in range(max(len(g) for g in groups)):
        order.extend(g[rank] for g in groups if rank < len(g))
    return tuple(order)


def balanced(chosen: Sequence[str], candidates: Sequence[str], zone_of: Callable[[str], str]) -> tuple[str, ...]:
    """`chosen`, then every other candidate, each next one from the zone that holds fewest so far.

    `candidates` come in spread order; ties go to the earliest. This picks stand-ins for owners that are
    down: a write whose owner in zone B is down goes to another peer of B before a second peer of a
    zone that already holds a copy. When `chosen` is a prefix of `candidates` in spread order (every
    owner usable), the result is `candidates` unchanged.
    """
    counts: dict[str, int] = {}
    for node_id in chosen:
        zone = zone_of(node_id)
        counts[zone] = counts.get(zone, 0) + 1
    taken = set(chosen)
    groups = _by_zone((n for n in candidates if n not in taken), zone_of)
    if len(counts.keys() | {zone_of(g[0]) for g in groups}) <= 1:
        return (*chosen, *(n for group in groups for n in group))
    position = {node_id: i for i, node_id in enumerate(candidates)}
    heads = [0] * len(groups)
    order = list(chosen)
    live = list(range(len(groups)))
    while live:
        best = min(live, key=lambda g: (counts.get(zone_of(groups[g][heads[g]]), 0), position[groups[g][heads[g]]]))
        node_id = groups[best][heads[best]]
        order.append(node_id)
        zone = zone_of(node_id)
        counts[zone] = counts.get(zone, 0) + 1
        heads[best] += 1
        if heads[best] == len(groups[best]):
            live.remove(best)
    return tuple(order)
