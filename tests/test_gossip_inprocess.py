"""Gossip between real peers in one event loop: aiohttp servers on 127.0.0.1 port 0, HTTP transport.

Peers are seeded in a chain (B via A, C via B, ...) as an operator would, then faults are injected by
stopping a peer's server and loop. Every wait is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import msgpack
import pytest

from peer.clock import ManualClock, SystemClock
from peer.gossip_http.client import HttpGossipTransport, resolve_seeds
from peer.gossip_http.server import build_app, start_http
from peer.membership.codec import GossipMessage, encode
from peer.membership.gossiper import Gossiper, SeedResolver
from peer.membership.state import MemberEvent, MembershipView, MemberState
from tests.waiting import wait_until

REPLICAS, VNODES = 2, 150
MAX_BYTES = 64 * 1024
INTERVAL_S, SUSPECT_S, DEAD_S = 0.05, 0.5, 1.0
CONVERGE_S = 5.0


@dataclass
class Peer:
    node_id: str
    gossiper: Gossiper
    transport: HttpGossipTransport
    runner: aiohttp.web.AppRunner
    addr: str
    stop: asyncio.Event
    task: asyncio.Task[None]
    events: list[MemberEvent] = field(default_factory=list)
    running: bool = True

    @property
    def view(self) -> MembershipView:
        return self.gossiper.view

    def state_of(self, node_id: str) -> MemberState | None:
        return state_in(self.gossiper, node_id)

    def kinds_about(self, node_id: str) -> list[str]:
        return [e.kind for e in self.events if e.node_id == node_id]

    async def shut_down(self) -> None:
        """Stops the loop and the server, as a crash would look from outside (no leave)."""
        if not self.running:
            return
        self.running = False
        self.stop.set()
        await self.task
        await self.runner.cleanup()
        await self.transport.close()


class Harness:
    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}

    async def start(
        self, node_id: str, seeds: Sequence[str] = (), incarnation: int = 1, resolve: SeedResolver | None = None
    ) -> Peer:
        # The gossip address is known only once the listener is bound, below.
        clock = SystemClock()
        view = MembershipView(node_id, f"grpc-{node_id}:0", "", incarnation=incarnation,
                              now=clock.monotonic(), suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S)
        transport = HttpGossipTransport(timeout_s=0.5, max_reply_bytes=MAX_BYTES)
        gossiper = Gossiper(view, transport, seeds, interval_s=INTERVAL_S, fanout=2, replicas=REPLICAS,
                            vnodes=VNODES, max_bytes=MAX_BYTES, clock=clock,
                            rng=random.Random(f"{node_id}/{incarnation}"), resolve_seeds=resolve)
        app = build_app(gossiper, lambda: {"status": "ok", "node_id": node_id}, MAX_BYTES)
        runner, port = await start_http(app, "127.0.0.1", 0)
        addr = f"127.0.0.1:{port}"
        view.set_local_addrs(f"grpc-{node_id}:0", addr)
        stop = asyncio.Event()
        peer = Peer(node_id, gossiper, transport, runner, addr, stop, asyncio.create_task(gossiper.run(stop)))
        gossiper.subscribe(peer.events.extend)
        self.peers[node_id] = peer
        return peer

    async def start_chain(self, n: int) -> list[Peer]:
        chain: list[Peer] = []
        for i in range(n):
            seeds = [chain[-1].addr] if chain else []
            chain.append(await self.start(chr(ord("a") + i), seeds))
        return chain

    def running(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.running]

    def describe(self) -> str:
        def one(p: Peer) -> str:
            seen = ", ".join(f"{m.node_id}={m.state}@{m.incarnation}" for m in p.view.members())
            return f"{p.node_id} sees {seen}"

        return "; ".join(one(p) for p in self.running())

    def all_see(self, node_id: str, state: MemberState, peers: Sequence[Peer] | None = None) -> bool:
        return all(p.state_of(node_id) is state for p in (peers or self.running()) if p.node_id != node_id)

    async def converged(self, n: int) -> None:
        def every_view_has_n_alive() -> bool:
            return all(
                sum(m.state is MemberState.ALIVE for m in p.view.members()) == n for p in self.running()
            )

        await wait_until(every_view_has_n_alive, CONVERGE_S, describe=self.describe)

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.shut_down()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        await h.close()


async def test_chain_seeded_cluster_converges_and_reports_health(harness: Harness) -> None:
    peers = await harness.start_chain(5)
    await harness.converged(5)
    assert all(p.gossiper.seeded for p in peers[1:])
    assert all(p.kinds_about(q.node_id)[0] == "join" for p in peers for q in peers if p is not q)
    async with aiohttp.ClientSession() as session, session.get(f"http://{peers[0].addr}/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "node_id": "a"}


async def test_stopped_member_is_suspected_then_declared_dead(harness: Harness) -> None:
    peers = await harness.start_chain(4)
    await harness.converged(4)
    victim, others = peers[2], [p for p in peers if p is not peers[2]]
    await victim.shut_down()
    await wait_until(lambda: harness.all_see(victim.node_id, MemberState.DEAD), DEAD_S + CONVERGE_S,
                     describe=harness.describe)
    for p in others:
        assert p.kinds_about(victim.node_id)[-2:] == ["suspect", "dead"]
    # The survivors keep gossiping among themselves.
    await wait_until(lambda: all(harness.all_see(q.node_id, MemberState.ALIVE) for q in others), CONVERGE_S,
                     describe=harness.describe)


async def test_leave_is_seen_promptly_and_never_suspected(harness: Harness) -> None:
    peers = await harness.start_chain(4)
    await harness.converged(4)
    leaver = peers[1]
    await leaver.gossiper.leave(timeout_s=1.0)
    await leaver.shut_down()
    # Well inside the suspect timeout: the announcement did it, not the failure detector.
    await wait_until(lambda: harness.all_see(leaver.node_id, MemberState.LEFT), SUSPECT_S * 0.8,
                     describe=harness.describe)
    for p in harness.running():
        assert p.kinds_about(leaver.node_id)[-1] == "left"


async def test_restarted_member_with_higher_incarnation_is_alive_again(harness: Harness) -> None:
    peers = await harness.start_chain(4)
    await harness.converged(4)
    await peers[3].shut_down()
    await wait_until(lambda: harness.all_see("d", MemberState.DEAD), DEAD_S + CONVERGE_S,
                     describe=harness.describe)
    del harness.peers["d"]
    harness.peers["old-d"] = peers[3]
    reborn = await harness.start("d", seeds=[peers[0].addr], incarnation=2)

    def all_see_new_life() -> bool:
        return all(
            (m := p.view.get("d")) is not None and m.state is MemberState.ALIVE
            and (m.incarnation, m.gossip_addr) == (2, reborn.addr)
            for p in harness.running()
        )

    await wait_until(all_see_new_life, CONVERGE_S, describe=harness.describe)
    for p in peers[:3]:
        assert p.kinds_about("d")[-1] == "alive"
    await harness.converged(4)


async def test_bad_gossip_requests_are_refused_and_gossip_goes_on(harness: Harness) -> None:
    peers = await harness.start_chain(3)
    await harness.converged(3)
    url = f"http://{peers[0].addr}/gossip"
    wrong_cluster = encode(GossipMessage("intruder", REPLICAS + 1, VNODES))
    cases = [
        (b"\xc1 not msgpack at all", 400, "msgpack"),
        (b"\x00" * (MAX_BYTES + 1), 413, ""),
        (msgpack.packb({"hello": "world"}), 400, "missing field"),
        (wrong_cluster, 409, f"replicas {REPLICAS + 1} (ours {REPLICAS})"),
    ]
    async with aiohttp.ClientSession() as session:
        for body, status, reason in cases:
            async with session.post(url, data=body, headers={"Content-Type": "application/msgpack"}) as resp:
                assert (resp.status, reason in await resp.text()) == (status, True)
    assert peers[0].view.get("intruder") is None
    await harness.start("d", seeds=[peers[0].addr])
    await harness.converged(4)


async def test_http_transport_reports_failures_as_connection_errors(harness: Harness) -> None:
    (peer,) = await harness.start_chain(1)
    transport = HttpGossipTransport(timeout_s=0.5, max_reply_bytes=MAX_BYTES)
    try:
        with pytest.raises(ConnectionError, match="HTTP 409 Conflict: peer intruder runs replicas 3"):
            await transport.push_pull(peer.addr, encode(GossipMessage("intruder", 3, VNODES)))
        reply = await transport.push_pull(peer.addr, encode(GossipMessage("friend", REPLICAS, VNODES)))
        assert reply.startswith(b"\x84")  # a msgpack map: the peer's snapshot
        await peer.shut_down()
        with pytest.raises(ConnectionError, match="failed"):
            await transport.push_pull(peer.addr, b"")
    finally:
        await transport.close()
    with pytest.raises(ConnectionError, match="closed"):
        await transport.push_pull(peer.addr, b"")


class FlakyTransport:
    """In-memory network: addr -> Gossiper, failing the first pushes to chosen addresses."""

    def __init__(self) -> None:
        self.nodes: dict[str, Gossiper] = {}
        self.failures: dict[str, list[BaseException]] = {}
        self.attempts: dict[str, int] = {}

    async def push_pull(self, addr: str, body: bytes) -> bytes:
        self.attempts[addr] = self.attempts.get(addr, 0) + 1
        pending = self.failures.get(addr)
        if pending:
            raise pending.pop(0)
        if addr not in self.nodes:
            raise ConnectionRefusedError(addr)
        return await self.nodes[addr].handle(body)


def in_memory_gossiper(
    node_id: str, net: FlakyTransport, clock: ManualClock, seeds: Sequence[str]
) -> Gossiper:
    view = MembershipView(node_id, f"{node_id}:50051", f"{node_id}:7946", incarnation=1,
                          now=clock.monotonic(), suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S)
    gossiper = Gossiper(view, net, seeds, interval_s=INTERVAL_S, fanout=2, replicas=REPLICAS, vnodes=VNODES,
                        max_bytes=MAX_BYTES, clock=clock, rng=random.Random(node_id))
    net.nodes[view.local.gossip_addr] = gossiper
    return gossiper


def state_in(gossiper: Gossiper, node_id: str) -> MemberState | None:
    member = gossiper.view.get(node_id)
    return member.state if member is not None else None


def broken_subscriber(events: list[MemberEvent]) -> None:
    raise RuntimeError("subscriber bug")


async def settle() -> None:
    """Lets the exchanges a round started (and their done callbacks) run; in memory they never block."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_seeds_are_retried_until_an_exchange_succeeds() -> None:
    clock, net = ManualClock(), FlakyTransport()
    a = in_memory_gossiper("a", net, clock, seeds=[])
    b = in_memory_gossiper("b", net, clock, seeds=["a:7946", "b:7946"])
    net.failures["a:7946"] = [ConnectionRefusedError("a"), TimeoutError(), RuntimeError("a bug")]
    seen: list[MemberEvent] = []
    b.subscribe(broken_subscriber)  # must not starve the subscribers after it
    b.subscribe(seen.extend)
    for _ in range(3):
        b.gossip_round()
        await settle()
        assert not b.seeded
    b.gossip_round()
    await settle()
    assert b.seeded
    assert net.attempts == {"a:7946": 4}  # never our own address, although it is listed as a seed
    assert seen == [MemberEvent("join", "a")]
    assert state_in(a, "b") is MemberState.ALIVE
    # Time is the injected clock's: silence past the timeout is suspicion, a's next round is news.
    clock.advance(SUSPECT_S)
    b.gossip_round()
    await settle()
    assert state_in(b, "a") is MemberState.SUSPECT
    a.gossip_round()
    await settle()
    assert seen == [MemberEvent("join", "a"), MemberEvent("suspect", "a"), MemberEvent("alive", "a")]


async def test_peers_sharing_one_seed_name_that_includes_themselves_form_one_cluster(harness: Harness) -> None:
    """As with a container service name: the seed resolves to every replica, each peer included."""
    addrs: list[str] = []

    async def service_name(_seeds: Sequence[str]) -> list[str]:
        return list(addrs)

    for node_id in "abcd":
        peer = await harness.start(node_id, ["peer:7946"], resolve=service_name)
        addrs.append(peer.addr)
    await harness.converged(4)
    assert all(p.gossiper.seeded for p in harness.running())


async def test_resolve_seeds_expands_names_and_keeps_unresolvable_ones() -> None:
    resolved = await resolve_seeds(["localhost:7946", "127.0.0.2:1", "no-such-host.invalid:7946", "junk"])
    assert "127.0.0.1:7946" in resolved
    assert "127.0.0.2:1" in resolved
    assert "no-such-host.invalid:7946" in resolved and "junk" in resolved
