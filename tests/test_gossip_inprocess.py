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
from peer.http.gossip import gossip_app
from peer.http.gossip_client import HttpGossipTransport, resolve_seeds
from peer.http.health import health_app
from peer.http.server import HttpServer
from peer.membership.codec import PROTOCOL_VERSION, GossipMessage, encode
from peer.membership.gossiper import Gossiper, SeedResolver
from peer.membership.state import MemberEvent, MembershipView, MemberState
from tests.fakes import run_gossiper
from tests.waiting import wait_until

POLICY, VNODES = "rep:2", 150
MAX_BYTES = 64 * 1024
INTERVAL_S, SUSPECT_S, DEAD_S = 0.05, 0.5, 1.0
CONVERGE_S = 5.0


@dataclass
class Peer:
    node_id: str
    gossiper: Gossiper
    transport: HttpGossipTransport
    server: HttpServer
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
        await self.server.stop()
        await self.transport.close()


class Harness:
    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}

    async def start(
        self, node_id: str, seeds: Sequence[str] = (), incarnation: int = 1, resolve: SeedResolver | None = None,
        *, future: bool = False,
    ) -> Peer:
        """`future`: the peer adds fields a later minor version might, to everything it sends."""
        # The gossip address is known only once the listener is bound, below.
        clock = SystemClock()
        view = MembershipView(node_id, f"grpc-{node_id}:0", "", incarnation=incarnation,
                              now=clock.monotonic(), suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S)
        transport = (FutureTransport if future else HttpGossipTransport)(timeout_s=0.5, max_reply_bytes=MAX_BYTES)
        gossiper = (FutureGossiper if future else Gossiper)(
            view, transport, seeds, interval_s=INTERVAL_S, fanout=2, policy=POLICY, vnodes=VNODES,
            max_bytes=MAX_BYTES, clock=clock, rng=random.Random(f"{node_id}/{incarnation}"), resolve_seeds=resolve)
        server = HttpServer()
        server.mount(gossip_app(gossiper, MAX_BYTES))
        server.mount(health_app(lambda: {"status": "ok", "node_id": node_id}))
        port = await server.start("127.0.0.1", 0)
        addr = f"127.0.0.1:{port}"
        view.set_local_addrs(f"grpc-{node_id}:0", addr)
        stop = asyncio.Event()
        task = asyncio.create_task(run_gossiper(gossiper, clock, stop))
        peer = Peer(node_id, gossiper, transport, server, addr, stop, task)
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
    wrong_cluster = encode(GossipMessage("intruder", "rep:3", VNODES))
    wrong_major = encode(GossipMessage("intruder", POLICY, VNODES, version=(3, 0)))
    cases = [
        (b"\xc1 not msgpack at all", 400, "msgpack"),
        (b"\x00" * (MAX_BYTES + 1), 413, ""),
        (msgpack.packb({"hello": "world"}), 400, "missing field"),
        (wrong_cluster, 409, f"policy rep:3 (ours {POLICY})"),
        (wrong_major, 409, f"peer intruder runs protocol version 3.0 (ours {'.'.join(map(str, PROTOCOL_VERSION))}), "
                           "a major we cannot read"),
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
        with pytest.raises(ConnectionError, match="HTTP 409 Conflict: peer intruder runs policy rep:3"):
            await transport.push_pull(peer.addr, encode(GossipMessage("intruder", "rep:3", VNODES)))
        reply = await transport.push_pull(peer.addr, encode(GossipMessage("friend", POLICY, VNODES)))
        assert reply.startswith(b"\x85")  # a msgpack map: the peer's snapshot
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
    gossiper = Gossiper(view, net, seeds, interval_s=INTERVAL_S, fanout=2, policy=POLICY, vnodes=VNODES,
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


# -- forward and backward compatibility, and the worker shape ------------------------------------------


def from_a_later_minor(body: bytes) -> bytes:
    """What a peer of a later minor version might send: new keys at the top, in the fingerprint and in
    every member entry, of types this version never reads."""
    msg = msgpack.unpackb(body)
    msg["vm"] += 1
    msg["layout"] = {"epoch": 7, "zones": ["eu-1", "eu-2"]}
    msg["cluster"]["zones"] = 2
    for entry in msg["members"]:
        entry["zone"] = "eu-1"
        entry["caps"] = [1, 2.5, None, {"ssd": True}]
    packed: bytes = msgpack.packb(msg, use_bin_type=True)
    return packed


class FutureTransport(HttpGossipTransport):
    sent = 0

    async def push_pull(self, addr: str, body: bytes) -> bytes:
        FutureTransport.sent += 1
        return await super().push_pull(addr, from_a_later_minor(body))


class FutureGossiper(Gossiper):
    answered = 0

    async def handle(self, body: bytes) -> bytes:
        reply = from_a_later_minor(await super().handle(body))
        FutureGossiper.answered += 1
        return reply


async def test_a_peer_sending_unknown_fields_converges_with_peers_that_do_not(harness: Harness) -> None:
    """b adds fields to its pushes and replies; a hears of b only through b's pushes, c only through
    b's replies, so the cluster converges only if both are read."""
    FutureTransport.sent = FutureGossiper.answered = 0
    a = await harness.start("a")
    b = await harness.start("b", [a.addr], future=True)
    await harness.start("c", [b.addr])
    await harness.converged(3)
    assert b.gossiper.seeded and a.state_of("b") is MemberState.ALIVE
    assert FutureTransport.sent > 0 and FutureGossiper.answered > 0


class Version1Peer:
    """The network as one peer still on protocol major 1 sees it: it reads only major-1 pushes (its
    decoder finds no `replicas` in anything newer) and sends entries as arrays."""

    ADDR = "old:7946"

    def __init__(self) -> None:
        self.pushes: list[int] = []
        self.heartbeat = 0

    async def push_pull(self, addr: str, body: bytes) -> bytes:
        assert addr == self.ADDR
        top = msgpack.unpackb(body)
        self.pushes.append(top["v"])
        if top["v"] != 1:
            raise ConnectionError("HTTP 400 Bad Request: missing field 'replicas'")
        assert all(isinstance(e, list) for e in top["members"])
        return self.message()

    def message(self) -> bytes:
        self.heartbeat += 1
        entry = ["old", "old:50051", self.ADDR, 1, self.heartbeat, "alive", 0, 0]
        body = {"v": 1, "from": "old", "cluster": {"replicas": 2, "vnodes": VNODES}, "members": [entry]}
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed


async def test_a_version_1_peer_is_answered_and_then_pushed_to_in_version_1() -> None:
    """A rolling upgrade: the restarted peer reads the old one's pushes, answers in its major, and
    from then on pushes to it in that major too."""
    clock, old = ManualClock(), Version1Peer()
    view = MembershipView("a", "a:50051", "a:7946", incarnation=1, now=clock.monotonic(),
                          suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S)
    a = Gossiper(view, old, [old.ADDR], interval_s=INTERVAL_S, fanout=2, policy=POLICY, vnodes=VNODES,
                 max_bytes=MAX_BYTES, clock=clock, rng=random.Random("a"))
    a.gossip_round()
    await settle()
    assert (old.pushes, a.seeded) == ([2], False)  # the old peer cannot read the current major
    reply = msgpack.unpackb(await a.handle(old.message()))
    assert (reply["v"], reply["cluster"]) == (1, {"replicas": 2, "vnodes": VNODES})
    assert {e[0] for e in reply["members"]} == {"a", "old"}
    assert state_in(a, "old") is MemberState.ALIVE
    a.gossip_round()
    await settle()
    assert (old.pushes, a.seeded) == ([2, 1], True)


async def test_the_gossiper_is_a_worker_on_the_injected_clock() -> None:
    clock, net = ManualClock(), FlakyTransport()
    a = in_memory_gossiper("a", net, clock, seeds=[])
    b = in_memory_gossiper("b", net, clock, seeds=["a:7946"])
    assert (b.name, b.interval_s) == ("gossip", INTERVAL_S)
    assert await b.work_once() is False  # one round, then idle until the next interval
    await settle()
    assert b.seeded and state_in(a, "b") is MemberState.ALIVE
    clock.advance(SUSPECT_S)
    assert await b.work_once() is False
    assert state_in(b, "a") is MemberState.SUSPECT  # judged on the injected clock
    await b.close()  # the exchange that round started never runs
    await settle()
    assert net.attempts == {"a:7946": 1} and state_in(b, "a") is MemberState.SUSPECT
