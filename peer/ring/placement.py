"""Placement rules: ring plus liveness gives who is on the ring, where a write goes, and where a read looks.

Pure functions of their arguments: time arrives as `now` and liveness as an `is_usable` callback, so
they never block and every answer can be replayed in a test. Results list each node id at most once
and follow the ring's placement order for the key (`HashRing.spread`: clockwise, taken round-robin
across zones; plain clockwise order without zones), as Swift's get_nodes / get_more_nodes do. Stand-ins
for owners that are down come from the zones holding fewest pieces first (`zones.balanced`).
`Placement` binds them to the live ring, liveness and the cluster's redundancy policy: it is the one
place that turns a policy into peers, so uploads, reads and repair never count owners themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from peer.errors import InsufficientReplicas
from peer.ring.hashring import HashRing
from peer.ring.policy import Policy
from peer.ring.zones import balanced

__all__ = ["MemberView", "Placement", "WritePlan", "read_order", "ring_members", "stand_in_order", "write_targets"]

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
    """(targets, skipped): the usable owners of `key`, then stand-ins up to r, and the owners passed over.

    Without zones the targets are the first r usable nodes clockwise; with zones a stand-in comes from
    the zone that holds fewest targets so far. A target beyond the owners stands in for a skipped owner
    (a hinted handoff), so callers record the hint against `skipped`. Fewer than r targets means too
    few usable nodes; quorum is the caller's call.
    """
    owners = ring.spread_owners(key, r)
    usable = [node_id for node_id in owners if is_usable(node_id)]
    if len(usable) == len(owners):
        return usable, []
    skipped = [node_id for node_id in owners if node_id not in usable]
    if ring.zoned:  # the stand-ins depend on every candidate's zone, so all of them are asked
        rest = [node_id for node_id in ring.spread(key)[len(owners) :] if is_usable(node_id)]
        return [*usable, *stand_in_order(ring, usable, rest)][:r], skipped
    for node_id in ring.preference(key)[len(owners) :]:
        if len(usable) >= r:
            break
        if is_usable(node_id):
            usable.append(node_id)
    return usable, skipped


def stand_in_order(ring: HashRing, kept: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """The order in which `candidates` (usable non-owners, in placement order) stand in for owners that
    are down, next to the usable owners `kept`: placement order without zones; with zones, each next
    one from the zone that holds fewest of `kept` and the stand-ins before it, so a write around a down
    peer keeps its pieces in as many zones as it can."""
    if not ring.zoned:
        return list(candidates)
    return list(balanced(kept, candidates, ring.zone_of)[len(kept) :])


def read_order(
    ring: HashRing,
    key: str,
    r: int,
    recorded: Sequence[str],
    is_usable: Callable[[str], bool],
) -> list[str]:
    """Distinct node ids to try for a read of `key`, best first.

    Recorded holders that are still owners come first (placement order), then recorded holders
    elsewhere (placement order, then any no longer on the ring in recorded order), then the rest of the
    placement order, which finds copies a handoff or rebalance left unrecorded. Usable nodes precede
    unusable ones; unusable ones stay listed because a suspect peer may still answer.
    """
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    preference = ring.spread(key)
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


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Where the pieces of one chunk go under `policy`, decided from one look at liveness.

    `targets` are the first `policy.width` usable peers clockwise (the usable owners, then stand-ins
    past them), `fallbacks` the further usable peers in ring order, to replace a target whose write
    fails, and `skipped` the owners passed over as unusable: a stand-in holds a hinted copy that
    anti-entropy hands back to its owner. Fewer targets than the width means too few usable peers.
    """

    policy: Policy
    targets: tuple[str, ...]
    fallbacks: tuple[str, ...]
    skipped: tuple[str, ...]

    @property
    def candidates(self) -> tuple[str, ...]:
        """Targets first, then fallbacks: the order in which to try peers."""
        return self.targets + self.fallbacks


class Placement:
    """The owners, write plan and read order of a chunk, for a policy (the cluster's by default).

    `ring` is the current HashRing or a callable returning it, read on every question, so answers
    follow ring changes; the ring carries the members' zones, so both change together and the ring's
    digest covers both. `pinned()` fixes it where a whole pass must see one ring (a placement index
    built in a worker thread is only valid for the ring digest it records).
    """

    __slots__ = ("_ring", "_is_usable", "_policy")

    def __init__(
        self, ring: HashRing | Callable[[], HashRing], is_usable: Callable[[str], bool], policy: Policy
    ) -> None:
        self._ring = ring
        self._is_usable = is_usable
        self._policy = policy

    @property
    def ring(self) -> HashRing:
        ring = self._ring
        return ring if isinstance(ring, HashRing) else ring()

    @property
    def policy(self) -> Policy:
        """The cluster's default policy: what uploads use, and what an unrecorded policy means."""
        return self._policy

    def pinned(self) -> Placement:
        """The same placement on the ring (and zones) of this moment, whatever the live ring becomes."""
        return Placement(self.ring, self._is_usable, self._policy)

    def policy_of(self, recorded: str) -> Policy:
        """The policy a version record names; "" (a record older than the field) is the cluster's."""
        return Policy.parse(recorded) if recorded else self._policy

    def owners(self, chunk_id: str, policy: Policy | None = None) -> tuple[str, ...]:
        """The peers that should hold the chunk's pieces, in placement order (fewer on a small ring):
        piece i of an erasure-coded chunk belongs to owners[i]."""
        return self.ring.spread_owners(chunk_id, (policy or self._policy).width)

    def usable_count(self) -> int:
        ring = self.ring
        return sum(1 for node_id in ring.nodes if self._is_usable(node_id))

    def require_writable(self, policy: Policy | None = None) -> Policy:
        """The policy to write with (`policy`, else the cluster's), once enough peers are usable to
        hold all of its pieces. Never a narrower one: a policy the cluster cannot meet is refused."""
        chosen = policy or self._policy
        available = self.usable_count()
        if available < chosen.width:
            # The cluster's own default names the setting an operator would change.
            setting = "" if policy is not None else f"the cluster default: --default-policy {chosen}" + (
                "" if chosen.erasure_coded else f" or --replicas {chosen.width}")
            raise InsufficientReplicas(chosen.width, available, setting, policy=str(chosen))
        return chosen

    def write_plan(self, chunk_id: str, policy: Policy | None = None) -> WritePlan:
        """Targets, fallbacks and skipped owners of one chunk; each peer's liveness is asked once.

        The targets and skipped owners are, as sets, exactly `write_targets` for the policy's width.
        Targets are positional: target i is owner i when it is usable, else a stand-in (the next
        usable peer past the owners, from the zones holding fewest pieces first: `stand_in_order`),
        because fragment i of a coded chunk belongs to owner i and a stand-in holds it for that owner
        only.
        """
        policy = policy or self._policy
        ring = self.ring
        preference = ring.spread(chunk_id)
        usable = [node_id for node_id in preference if self._is_usable(node_id)]
        usable_set = set(usable)
        owners = preference[: policy.width]
        owner_set = set(owners)
        kept = [node_id for node_id in owners if node_id in usable_set]
        others = [node_id for node_id in usable if node_id not in owner_set]
        # With every owner usable, the zone-balanced order of the others is their placement order.
        order = stand_in_order(ring, kept, others) if len(kept) < len(owners) else others
        stand_ins = iter(order)
        targets = [node_id if node_id in usable_set else next(stand_ins, None) for node_id in owners]
        chosen = [node_id for node_id in targets if node_id is not None]
        chosen_set = set(chosen)
        return WritePlan(
            policy=policy,
            targets=tuple(chosen),
            fallbacks=tuple(node_id for node_id in order if node_id not in chosen_set),
            skipped=tuple(node_id for node_id in owners if node_id not in usable_set),
        )

    def read_order(self, chunk_id: str, recorded: Sequence[str], policy: Policy | None = None) -> list[str]:
        """Peers to try for a read of the chunk, best first (see `read_order`)."""
        width = (policy or self._policy).width
        return read_order(self.ring, chunk_id, width, recorded, self._is_usable)
