"""The membership view: one record per peer, merged from gossip, judged against local time.

Heartbeat failure detection (van Renesse et al.): every peer bumps its own heartbeat each round and
the news spreads by gossip. A member whose (incarnation, heartbeat) has not advanced for
`suspect_timeout_s` is SUSPECT, for `dead_timeout_s` DEAD, both measured on *our* monotonic clock.
Suspicion and death are local opinions and never travel: the wire only says "alive" or "left".
Pure and synchronous; time is always passed in as `now`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

EventKind = Literal["join", "update", "suspect", "dead", "left", "alive"]
WireStatus = Literal["alive", "left"]

#: The shape `codec` decodes to; kept structural so state and codec need not import each other.
EntryTuple = tuple[str, str, str, int, int, str, int, int, str, str]

DEFAULT_FORGET_AFTER_S = 24 * 3600.0


class MemberState(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


_EVENT_OF: dict[MemberState, EventKind] = {
    MemberState.ALIVE: "alive",
    MemberState.SUSPECT: "suspect",
    MemberState.DEAD: "dead",
    MemberState.LEFT: "left",
}


class Entry(NamedTuple):
    """One member as gossiped: what a peer knows about another, minus its local judgement."""

    node_id: str
    grpc_addr: str
    gossip_addr: str
    incarnation: int
    heartbeat: int
    status: str
    chunk_count: int
    chunk_bytes: int
    peer_addr: str = ""  # internal gRPC address when apart from grpc_addr (mutual TLS); "" = grpc_addr
    zone: str = ""  # failure domain the member runs in; "" = the one unnamed zone


@dataclass
class Member:
    node_id: str
    grpc_addr: str
    gossip_addr: str
    incarnation: int
    heartbeat: int
    state: MemberState
    chunk_count: int = 0
    chunk_bytes: int = 0
    # Local monotonic time at which news about this member last advanced.
    last_seen: float = 0.0
    # Local monotonic time of the last state change (drives forgetting).
    state_since: float = 0.0
    peer_addr: str = ""
    # The member's failure domain, as it announced it; fixed for one incarnation (a restart may change it).
    zone: str = ""

    @property
    def internal_addr(self) -> str:
        """Where other peers reach this member's internal chunk service."""
        return self.peer_addr or self.grpc_addr


@dataclass(frozen=True)
class MemberEvent:
    kind: EventKind
    node_id: str


def _precedence(incarnation: int, left: bool, heartbeat: int) -> tuple[int, int, int]:
    """Total order of news about one member.

    A higher incarnation always wins. Within one incarnation LEFT beats alive whatever the heartbeat,
    so a late alive echo from a slow peer can never undo a departure; otherwise the higher heartbeat wins.
    """
    return (incarnation, 1 if left else 0, heartbeat)


def _member_precedence(m: Member) -> tuple[int, int, int]:
    return _precedence(m.incarnation, m.state is MemberState.LEFT, m.heartbeat)


def _entry_precedence(e: Entry) -> tuple[int, int, int]:
    return _precedence(e.incarnation, e.status == "left", e.heartbeat)


class MembershipView:
    """Every member we know of, ourselves included; the only place membership rules live."""

    def __init__(
        self,
        node_id: str,
        grpc_addr: str,
        gossip_addr: str,
        *,
        incarnation: int,
        now: float,
        suspect_timeout_s: float,
        dead_timeout_s: float,
        forget_after_s: float = DEFAULT_FORGET_AFTER_S,
        zone: str = "",
    ) -> None:
        if not 0 < suspect_timeout_s <= dead_timeout_s:
            raise ValueError("need 0 < suspect_timeout_s <= dead_timeout_s")
        self.self_id = node_id
        self.suspect_timeout_s = suspect_timeout_s
        self.dead_timeout_s = dead_timeout_s
        self.forget_after_s = forget_after_s
        me = Member(node_id, grpc_addr, gossip_addr, incarnation, 0, MemberState.ALIVE,
                    last_seen=now, state_since=now, zone=zone)
        self._members: dict[str, Member] = {node_id: me}

    # -- our own record -------------------------------------------------------------------------

    @property
    def local(self) -> Member:
        """A copy of our own record."""
        return dataclasses.replace(self._me)

    @property
    def _me(self) -> Member:
        return self._members[self.self_id]

    def local_heartbeat(self) -> None:
        self._me.heartbeat += 1

    def set_local_stats(self, chunk_count: int, chunk_bytes: int) -> None:
        self._me.chunk_count = chunk_count
        self._me.chunk_bytes = chunk_bytes

    def set_local_addrs(self, grpc_addr: str, gossip_addr: str, peer_addr: str = "") -> None:
        """Records the addresses we are reachable at, once the listeners are bound (port 0 resolves late)."""
        self._me.grpc_addr = grpc_addr
        self._me.gossip_addr = gossip_addr
        self._me.peer_addr = peer_addr

    def leave(self) -> None:
        """Marks us LEFT under a fresh incarnation, so the news outranks every alive record of this life."""
        me = self._me
        if me.state is not MemberState.LEFT:
            me.incarnation += 1
            me.state = MemberState.LEFT

    # -- reading --------------------------------------------------------------------------------

    def members(self) -> list[Member]:
        return [dataclasses.replace(m) for m in self._members.values()]

    def get(self, node_id: str) -> Member | None:
        m = self._members.get(node_id)
        return dataclasses.replace(m) if m is not None else None

    def snapshot_entries(self) -> list[Entry]:
        """What we gossip: every member but the DEAD, each as alive or left.

        DEAD members are withheld (van Renesse): their last heartbeat is stale news that would only
        re-introduce them to peers that have already forgotten them, or to newcomers.
        """
        return [_to_entry(m) for m in self._members.values() if m.state is not MemberState.DEAD]

    # -- updating -------------------------------------------------------------------------------

    def merge(self, remote_entries: Iterable[EntryTuple], now: float) -> list[MemberEvent]:
        """Applies a peer's entries; returns the transitions they caused, in order."""
        events: list[MemberEvent] = []
        for raw in remote_entries:
            entry = Entry._make(raw)
            if entry.node_id == self.self_id:
                self._maybe_refute(entry)
                continue
            event = self._apply(entry, now)
            if event is not None:
                events.append(event)
        return events

    def excuse(self, seconds: float, now: float) -> None:
        """We were stalled for `seconds` (our own event loop ran late): nobody could be heard meanwhile,
        so that time does not count as any member's silence (see awareness.py)."""
        if seconds <= 0:
            return
        for m in self._members.values():
            if m.node_id != self.self_id:
                m.last_seen = min(now, m.last_seen + seconds)

    def tick(self, now: float, scale: float = 1.0) -> list[MemberEvent]:
        """Applies the suspect and dead timeouts, each times `scale` (our local health multiplier,
        1 while we run on time), and forgets long-gone members."""
        events: list[MemberEvent] = []
        for m in list(self._members.values()):
            if m.node_id == self.self_id:
                continue
            silent_for = now - m.last_seen
            if m.state is MemberState.ALIVE and silent_for >= self.suspect_timeout_s * scale:
                events.append(self._transition(m, MemberState.SUSPECT, now))
            if m.state is MemberState.SUSPECT and silent_for >= self.dead_timeout_s * scale:
                events.append(self._transition(m, MemberState.DEAD, now))
            gone = m.state in (MemberState.DEAD, MemberState.LEFT)
            if gone and now - m.state_since >= self.forget_after_s:
                del self._members[m.node_id]
        return events

    def _maybe_refute(self, entry: Entry) -> None:
        """Only a member speaks for itself: news about us that outranks our own record is answered
        by moving to a higher incarnation, which every peer then prefers (memberlist refute)."""
        me = self._me
        if me.state is MemberState.LEFT:
            return
        if _entry_precedence(entry) > _member_precedence(me):
            me.incarnation = entry.incarnation + 1

    def _apply(self, entry: Entry, now: float) -> MemberEvent | None:
        known = self._members.get(entry.node_id)
        if known is None:
            # A departure of someone we never knew tells us nothing worth remembering, and storing it
            # would let long-forgotten LEFT records bounce between peers forever.
            if entry.status == "left":
                return None
            self._members[entry.node_id] = _from_entry(entry, now)
            return MemberEvent("join", entry.node_id)
        if _entry_precedence(entry) <= _member_precedence(known):
            return None
        changed = (known.grpc_addr, known.gossip_addr, known.incarnation, known.zone) != (
            entry.grpc_addr, entry.gossip_addr, entry.incarnation, entry.zone)
        known.grpc_addr, known.gossip_addr, known.peer_addr = entry.grpc_addr, entry.gossip_addr, entry.peer_addr
        known.zone = entry.zone
        known.incarnation, known.heartbeat = entry.incarnation, entry.heartbeat
        known.chunk_count, known.chunk_bytes = entry.chunk_count, entry.chunk_bytes
        known.last_seen = now
        if entry.status == "left":
            return None if known.state is MemberState.LEFT else self._transition(known, MemberState.LEFT, now)
        if known.state is not MemberState.ALIVE:
            return self._transition(known, MemberState.ALIVE, now)
        return MemberEvent("update", entry.node_id) if changed else None

    @staticmethod
    def _transition(m: Member, state: MemberState, now: float) -> MemberEvent:
        m.state = state
        m.state_since = now
        return MemberEvent(_EVENT_OF[state], m.node_id)


def _to_entry(m: Member) -> Entry:
    status: WireStatus = "left" if m.state is MemberState.LEFT else "alive"
    return Entry(m.node_id, m.grpc_addr, m.gossip_addr, m.incarnation, m.heartbeat, status,
                 m.chunk_count, m.chunk_bytes, m.peer_addr, m.zone)


def _from_entry(e: Entry, now: float) -> Member:
    return Member(e.node_id, e.grpc_addr, e.gossip_addr, e.incarnation, e.heartbeat, MemberState.ALIVE,
                  e.chunk_count, e.chunk_bytes, last_seen=now, state_since=now, peer_addr=e.peer_addr, zone=e.zone)
