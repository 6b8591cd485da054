"""The gossiper: each round bump our heartbeat, judge timeouts, and push-pull with a few peers.

Every exchange sends our whole snapshot and merges the reply, so news spreads in O(log N) rounds.
Exchanges run as their own tasks: a slow or unreachable peer can delay only its own reply, never our
heartbeat, or the rest of the cluster would wrongly suspect *us*. Nothing an exchange raises stops gossip.
It is a background worker (`work_once` is one round, then idle for `interval_s`); `run` is its own loop.
Peers still on protocol major 1 are answered, and pushed to, in major 1 (see codec) until they upgrade:
such a peer refuses our first push, and its own next push to us is how we learn which major it reads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from peer.clock import Clock
from peer.errors import GossipDecodeError, GossipMismatch
from peer.membership.awareness import LocalHealth
from peer.membership.codec import (
    LEGACY_VERSION,
    PROTOCOL_VERSION,
    GossipMessage,
    Version,
    check_fingerprint,
    decode,
    encode,
)
from peer.membership.state import MemberEvent, MembershipView, MemberState

log = logging.getLogger(__name__)

Subscriber = Callable[[list[MemberEvent]], None]

# Chance per round of also contacting one DEAD member, so a peer that comes back behind a partition
# it cannot see across is noticed even if it never reaches us first.
DEAD_PROBE_PROBABILITY = 0.1

MAX_MISMATCHES_REMEMBERED = 1024
MAX_LEGACY_PEERS_REMEMBERED = 1024

_EXCHANGE_ERRORS = (ConnectionError, OSError, TimeoutError, GossipDecodeError, GossipMismatch)


class GossipTransport(Protocol):
    async def push_pull(self, addr: str, body: bytes) -> bytes:
        """Sends `body` to the peer at `addr` and returns its reply.

        Raises ConnectionError, OSError or TimeoutError when the exchange fails.
        """
        ...


SeedResolver = Callable[[Sequence[str]], Awaitable[list[str]]]
SEED_EVERY_ROUNDS = 30


class Gossiper:
    name = "gossip"

    def __init__(
        self,
        view: MembershipView,
        transport: GossipTransport,
        seeds: Sequence[str],
        *,
        interval_s: float,
        fanout: int,
        policy: str,
        vnodes: int,
        max_bytes: int,
        clock: Clock,
        rng: random.Random | None = None,
        resolve_seeds: SeedResolver | None = None,
    ) -> None:
        """`policy` is the redundancy policy (`rep:R`, later `ec:K+M`) that, with `vnodes`, every
        member must share. `resolve_seeds` expands seed names to every address behind them: a seed
        such as a container service name resolves to all its replicas (this peer included), and contacting
        each of them, rather than whichever one a cached connection reached first, is what keeps
        peers started together from each gossiping only with themselves."""
        self.view = view
        self._transport = transport
        self._seeds = list(dict.fromkeys(seeds))
        self._seed_addrs = list(self._seeds)
        self._resolve_seeds = resolve_seeds
        self._rounds = 0
        self._interval_s = interval_s
        self._fanout = fanout
        self._policy = policy
        self._vnodes = vnodes
        self._max_bytes = max_bytes
        self._clock = clock
        self._rng = rng or random.Random()
        self._subscribers: list[Subscriber] = []
        self._inflight: dict[str, asyncio.Task[bool]] = {}
        self._seeded = False
        self._mismatches_warned: set[tuple[str, Version, str, int]] = set()
        # Gossip addresses of peers last heard speaking protocol major 1: we push to them in major 1.
        self._legacy_addrs: set[str] = set()
        self.health = LocalHealth(interval_s)
        """How late our own rounds run (Lifeguard's local health): excuses our stalls, scales timeouts."""

    @property
    def seeded(self) -> bool:
        """True once an exchange has introduced us to at least one other member."""
        return self._seeded

    def subscribe(self, callback: Subscriber) -> None:
        """Calls `callback` with the events of every merge or tick that produced some, in order,
        never concurrently (all calls come from the event loop)."""
        self._subscribers.append(callback)

    # -- the worker -----------------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        """How long to stay idle after each `work_once`: the gossip interval."""
        return self._interval_s

    async def work_once(self) -> bool:
        """One round (seeds re-resolved when due). Always False: the next round is one interval away.
        The clock read here is the injected one, so a test drives rounds by calling this."""
        if self._resolve_seeds is not None and self._seeds and self._wants_seeds():
            self._seed_addrs = await self._resolve_seeds(self._seeds)
        self.gossip_round()
        return False

    async def close(self) -> None:
        """Cancels the exchanges in flight; whatever drives `work_once` calls this once it stops."""
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def gossip_round(self) -> None:
        """One round: heartbeat, our own lateness (awareness.py), timeouts, then exchanges started in
        the background."""
        self._rounds += 1
        self.view.local_heartbeat()
        now = self._clock.monotonic()
        self._mind_own_lateness(now)
        self._publish(self.view.tick(now, self.health.multiplier))
        for addr in self._pick_targets():
            if addr not in self._inflight:
                task = asyncio.create_task(self._exchange(addr), name=f"gossip {addr}")
                self._inflight[addr] = task
                task.add_done_callback(functools.partial(self._exchange_done, addr))

    async def handle(self, body: bytes) -> bytes:
        """Serves one push from a peer: merge its snapshot, answer with ours in the major it spoke."""
        msg = decode(body, self._max_bytes)
        try:
            check_fingerprint(msg, self._policy, self._vnodes)
        except GossipMismatch as exc:
            self._warn_mismatch(msg, exc)
            raise
        own = next((e[2] for e in msg.members if e[0] == msg.sender), "")
        self._note_major(own, msg.version)
        self._merge(msg)
        return self._encode_snapshot(self._reply_version(msg.version))

    async def leave(self, timeout_s: float) -> None:
        """Announces our departure to every member not already gone, waiting at most `timeout_s`."""
        self.view.leave()
        log.info("%s: leaving the cluster (incarnation %d)", self.view.self_id, self.view.local.incarnation)
        addrs = {m.gossip_addr for m in self.view.members()
                 if m.node_id != self.view.self_id and m.state is not MemberState.LEFT and m.gossip_addr}
        if not addrs:
            return
        tasks = [asyncio.create_task(self._exchange(a), name=f"gossip leave {a}") for a in addrs]
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        told = sum(t.result() for t in done)
        log.info("%s: told %d of %d members that we left", self.view.self_id, told, len(addrs))

    # -- internals ------------------------------------------------------------------------------

    def _mind_own_lateness(self, now: float) -> None:
        """A round that started late means we were stalled: that time is excused from every member's
        silence, and the timeouts grow with our local health score. Lateness is read on the event
        loop's clock, the one that runs late; the timeouts stay on the injected clock."""
        before = self.health.score
        lag = self.health.round_started(asyncio.get_running_loop().time())
        self.view.excuse(lag, now)
        if lag >= self.view.suspect_timeout_s / 2:
            log.info("%s: gossip round ran %.2f s late (this peer was stalled): that silence is excused, "
                     "timeouts now x%d", self.view.self_id, lag, self.health.multiplier)
        elif self.health.score != before:
            log.debug("%s: local health score %d (round %.3f s late)", self.view.self_id, self.health.score, lag)

    def _pick_targets(self) -> list[str]:
        """Up to `fanout` random live members, sometimes one dead one, and the seeds while we have
        not yet been introduced to anybody (or everybody we knew is gone)."""
        others = [m for m in self.view.members() if m.node_id != self.view.self_id and m.gossip_addr]
        live = [m.gossip_addr for m in others if m.state in (MemberState.ALIVE, MemberState.SUSPECT)]
        dead = [m.gossip_addr for m in others if m.state is MemberState.DEAD]
        targets = self._rng.sample(live, min(self._fanout, len(live)))
        if dead and (not live or self._rng.random() < DEAD_PROBE_PROBABILITY):
            targets.append(self._rng.choice(dead))
        if self._wants_seeds(live):
            own = self.view.local.gossip_addr
            seeds = [s for s in self._seed_addrs if s != own]
            targets += self._rng.sample(seeds, min(self._fanout, len(seeds)))
        return list(dict.fromkeys(targets))

    def _wants_seeds(self, live: list[str] | None = None) -> bool:
        """Seeds until introduced, when everyone we knew is gone, and every SEED_EVERY_ROUNDS rounds:
        the periodic contact merges two groups that each started without reaching the other."""
        if live is None:
            live = [m.node_id for m in self.view.members()
                    if m.node_id != self.view.self_id and m.state in (MemberState.ALIVE, MemberState.SUSPECT)]
        return not self._seeded or not live or self._rounds % SEED_EVERY_ROUNDS == 0

    async def _exchange(self, addr: str) -> bool:
        """Push-pull with one peer; failures are logged and swallowed (the next round retries)."""
        try:
            version = LEGACY_VERSION if addr in self._legacy_addrs else PROTOCOL_VERSION
            reply = await self._transport.push_pull(addr, self._encode_snapshot(version))
            msg = decode(reply, self._max_bytes)
            check_fingerprint(msg, self._policy, self._vnodes)
        except _EXCHANGE_ERRORS as exc:
            log.debug("%s: gossip with %s failed: %r", self.view.self_id, addr, exc)
            return False
        except Exception:
            log.exception("%s: gossip with %s failed unexpectedly", self.view.self_id, addr)
            return False
        self._note_major(addr, msg.version)
        self._merge(msg)
        if any(e[0] != self.view.self_id for e in msg.members):
            self._seeded = True
        return True

    def _warn_mismatch(self, msg: GossipMessage, exc: GossipMismatch) -> None:
        """A misconfigured peer retries every round: say so loudly once per peer and setting, then quietly."""
        key = (msg.sender, msg.version, msg.policy, msg.vnodes)
        if key in self._mismatches_warned:
            log.debug("%s: rejected gossip: %s", self.view.self_id, exc)
            return
        if len(self._mismatches_warned) >= MAX_MISMATCHES_REMEMBERED:
            self._mismatches_warned.clear()
        self._mismatches_warned.add(key)
        log.warning("%s: rejected gossip: %s", self.view.self_id, exc)

    @staticmethod
    def _reply_version(asked: Version) -> Version:
        return LEGACY_VERSION if asked[0] == LEGACY_VERSION[0] else PROTOCOL_VERSION

    def _note_major(self, addr: str, version: Version) -> None:
        """Remembers whether the peer at `addr` still speaks major 1, so that our pushes reach it in
        a shape it reads; a peer that upgraded is heard in the current major and forgotten here."""
        if not addr:
            return
        if version[0] != LEGACY_VERSION[0]:
            self._legacy_addrs.discard(addr)
            return
        if len(self._legacy_addrs) >= MAX_LEGACY_PEERS_REMEMBERED:
            self._legacy_addrs.clear()
        self._legacy_addrs.add(addr)

    def _exchange_done(self, addr: str, task: asyncio.Task[bool]) -> None:
        if self._inflight.get(addr) is task:
            del self._inflight[addr]

    def _merge(self, msg: GossipMessage) -> None:
        incarnation = self.view.local.incarnation
        events = self.view.merge(msg.members, self._clock.monotonic())
        if self.view.local.incarnation != incarnation:
            log.info("%s: refuted stale news about us from %s, now incarnation %d",
                     self.view.self_id, msg.sender, self.view.local.incarnation)
        self._publish(events)

    def _encode_snapshot(self, version: Version = PROTOCOL_VERSION) -> bytes:
        msg = GossipMessage(self.view.self_id, self._policy, self._vnodes, self.view.snapshot_entries(), version)
        return encode(msg)

    def _publish(self, events: list[MemberEvent]) -> None:
        if not events:
            return
        for e in events:
            m = self.view.get(e.node_id)
            log.info("%s: member %s %s (incarnation %s, gossip %s)", self.view.self_id, e.node_id, e.kind,
                     m.incarnation if m else "?", m.gossip_addr if m else "?")
        for callback in self._subscribers:
            try:
                callback(events)
            except Exception:
                log.exception("%s: membership subscriber %r failed", self.view.self_id, callback)

