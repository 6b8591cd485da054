"""Placement rules: ring plus liveness gives who is on the ring, where a write goes, and where a read looks.

Pure functions of their arguments: time arrives as `now` and liveness as an `is_usable` callback, so
they never block and every answer can be replayed in a test. Results list each node id at most once
and follow the ring's clockwise order for the key (Swift get_nodes / get_more_nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from peer.ring.hashring import HashRing

__all__ = ["MemberView", "read_order", "ring_members", "write_targets"]

_ALWAYS_ON = frozenset({"alive", "suspect"})
_KNOWN_STATES = frozenset({"alive", "suspect", "dead", "left"})


class MemberView(Protocol):
    """What placement needs to know about a member; membership's own Member type satisfies it.

    `state` is one of "alive", "suspect", "dead", "left" (a str enum with those values works too);
    `state_since` is when the member entered that state, on the same clock as `now`.
    """

    @property
    def node_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def state_since(self) -> float: ...


def ring_members(members: Iterable[MemberView], now: float, dead_grace_s: float) -> list[str]:
    """Sorted, distinct ids of the members that hold ring positions at `now`.

    A dead member keeps its positions for `dead_grace_s` so a peer that merely restarted or was briefly
    partitioned does not trigger a rebalance of its whole share. A member that left said it is gone for
    good, so its keys move at once.
    """
    on_ring: set[str] = set()
    for member in members:
        state = member.state
        if state not in _KNOWN_STATES:
            raise ValueError(f"member {member.node_id} has unknown state {state!r}")
        if state in _ALWAYS_ON or (state == "dead" and now - member.state_since < dead_grace_s):
            on_ring.add(member.node_id)
    return sorted(on_ring)


def write_targets(
    ring: HashRing, key: str, r: int, is_usable: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """(targets, skipped): the first r usable nodes clockwise from `key`, and the owners passed over.

    A target beyond the owners stands in for a skipped owner (a hinted handoff), so callers record the
    hint against `skipped`. Fewer than r targets means too few usable nodes; quorum is the caller's call.
    """
    owners = ring.owners(key, r)
    usable = [node_id for node_id in owners if is_usable(node_id)]
    if len(usable) == len(owners):
        return usable, []
    skipped = [node_id for node_id in owners if node_id not in usable]
    for node_id in ring.preference(key)[len(owners) :]:
        if len(usable) >= r:
            break
        if is_usable(node_id):
            usable.append(node_id)
    return usable, skipped


def read_order(
    ring: HashRing,
    key: str,
    r: int,
    recorded: Sequence[str],
    is_usable: Callable[[str], bool],
) -> list[str]:
    """Distinct node ids to try for a read of `key`, best first.

    Recorded holders that are still owners come first (ring order), then recorded holders elsewhere
    (ring order, then any no longer on the ring in recorded order), then the rest of the preference
    list, which finds copies a handoff or rebalance left unrecorded. Usable nodes precede unusable ones;
    unusable ones stay listed because a suspect peer may still answer.
    """
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    preference = ring.preference(key)
    held = set(recorded)
    owners = preference[:r]
    candidates: dict[str, None] = dict.fromkeys(node_id for node_id in owners if node_id in held)
    candidates.update(dict.fromkeys(node_id for node_id in preference if node_id in held))
    candidates.update(dict.fromkeys(recorded))
    candidates.update(dict.fromkeys(preference))
    usable: list[str] = []
    unusable: list[str] = []
    for node_id in candidates:
        (usable if is_usable(node_id) else unusable).append(node_id)
    return usable + unusable
