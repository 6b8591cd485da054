"""Only peers may gossip: every rule here is an attack on a real aiohttp server that must fail without harm.

With TLS off, pushes and replies carry an HMAC credential over the cluster secret (X-Dfs-Peer-Auth);
with mTLS, /gossip demands a client certificate from the cluster CA. Servers run in-process on
127.0.0.1 port 0; every wait is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from peer.clock import SystemClock
from peer.errors import ConfigError
from peer.http.gossip import gossip_app
from peer.http.gossip_client import HttpGossipTransport
from peer.http.gossip_wire import AUTH_HEADER, MSGPACK, REPLY_PURPOSE, reply_payload
from peer.http.health import health_app
from peer.http.server import HttpServer, Mount
from peer.http.tls import PEER_TLS_NAME, client_ssl_context, server_ssl_context
from peer.membership.codec import GossipMessage, WireEntry, encode
from peer.membership.gossiper import Gossiper
from peer.membership.state import MemberEvent, MembershipView, MemberState
from peer.security.certs import init_certs
from peer.security.peerauth import PeerSigner
from tests.fakes import run_gossiper
from tests.waiting import wait_until

POLICY, VNODES = "rep:2", 150
MAX_BYTES = 64 * 1024
INTERVAL_S, SUSPECT_S, DEAD_S = 0.05, 0.5, 1.0
CONVERGE_S = 5.0
SECRET = "correct horse battery staple"
OTHER_SECRET = "another cluster's secret value"


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

    @property
    def view(self) -> MembershipView:
        return self.gossiper.view

    def state_of(self, node_id: str) -> MemberState | None:
        m = self.view.get(node_id)
        return m.state if m is not None else None

    def member_ids(self) -> set[str]:
        return {m.node_id for m in self.view.members()}

    async def shut_down(self) -> None:
        self.stop.set()
        await self.task
        await self.server.stop()
        await self.transport.close()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


class Harness:
    def __init__(self) -> None:
        self.peers: list[Peer] = []

    async def start(
        self,
        node_id: str,
        seeds: Sequence[str] = (),
        *,
        secret: str | None = SECRET,
        tls: Tls | None = None,
        body_timeout_s: float = 10.0,
        idle_timeout_s: float = 75.0,
    ) -> Peer:
        clock = SystemClock()
        view = MembershipView(node_id, f"grpc-{node_id}:0", "", incarnation=1, now=clock.monotonic(),
                              suspect_timeout_s=SUSPECT_S, dead_timeout_s=DEAD_S)
        signer = PeerSigner(secret) if secret is not None else None
        transport = HttpGossipTransport(timeout_s=0.5, max_reply_bytes=MAX_BYTES, signer=signer,
                                        ssl_context=tls.client if tls else None)
        gossiper = Gossiper(view, transport, seeds, interval_s=INTERVAL_S, fanout=2, policy=POLICY,
                            vnodes=VNODES, max_bytes=MAX_BYTES, clock=clock, rng=random.Random(node_id))
        server = HttpServer(idle_timeout_s=idle_timeout_s)
        server.mount(gossip_app(gossiper, MAX_BYTES, signer=signer, require_peer_cert=tls is not None,
                                body_timeout_s=body_timeout_s))
        server.mount(health_app(lambda: {"status": "ok", "node_id": node_id}))
        port = await server.start("127.0.0.1", 0, tls.server if tls else None)
        addr = f"127.0.0.1:{port}"
        view.set_local_addrs(f"grpc-{node_id}:0", addr)
        stop = asyncio.Event()
        task = asyncio.create_task(run_gossiper(gossiper, clock, stop))
        peer = Peer(node_id, gossiper, transport, server, addr, stop, task)
        gossiper.subscribe(peer.events.extend)
        self.peers.append(peer)
        return peer

    async def pair(self) -> tuple[Peer, Peer]:
        """Two peers sharing the secret, gossiping with each other, both seeing both alive."""
        a = await self.start("a")
        b = await self.start("b", [a.addr])
        await self.converged(2)
        return a, b

    async def converged(self, n: int) -> None:
        def every_view_has_n_alive() -> bool:
            return all(sum(m.state is MemberState.ALIVE for m in p.view.members()) == n for p in self.peers)

        await wait_until(every_view_has_n_alive, CONVERGE_S, describe=self.describe)

    def describe(self) -> str:
        return "; ".join(
            f"{p.node_id} sees " + ", ".join(f"{m.node_id}={m.state}@{m.incarnation}" for m in p.view.members())
            for p in self.peers
        )

    async def close(self) -> None:
        for peer in self.peers:
            await peer.shut_down()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        await h.close()


def message(sender: str, *members: WireEntry) -> bytes:
    return encode(GossipMessage(sender, POLICY, VNODES, members))


def fake_member(node_id: str = "mallory") -> WireEntry:
    return (node_id, "10.66.6.6:50051", "10.66.6.6:7946", 1, 1, "alive", 0, 0, "", "")


def left_news(peer: Peer) -> WireEntry:
    """What an attacker would send to make the cluster drop `peer`: its departure, outranking its life."""
    m = peer.view.local
    return (m.node_id, m.grpc_addr, m.gossip_addr, m.incarnation + 1, 0, "left", 0, 0, "", "")


async def post(addr: str, body: bytes, credential: str | None) -> tuple[int, str]:
    headers = {"Content-Type": MSGPACK}
    if credential is not None:
        headers[AUTH_HEADER] = credential
    async with aiohttp.ClientSession() as session, session.post(f"http://{addr}/gossip", data=body,
                                                                  headers=headers) as resp:
        return resp.status, await resp.text(errors="replace")


# -- HMAC: forged, tampered, replayed and stale pushes --------------------------------------------


async def test_push_without_credential_is_refused_and_view_unchanged(harness: Harness) -> None:
    a = await harness.start("a")
    status, reason = await post(a.addr, message("mallory", fake_member()), None)
    assert (status, reason) == (401, "peer credential missing")
    # An unsigned transport, as a peer without the secret would use, fails the exchange cleanly.
    unsigned = HttpGossipTransport(timeout_s=0.5)
    try:
        with pytest.raises(ConnectionError, match="HTTP 401"):
            await unsigned.push_pull(a.addr, message("mallory", fake_member()))
    finally:
        await unsigned.close()
    assert a.member_ids() == {"a"}


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        (PeerSigner(OTHER_SECRET), "bad peer credential"),
        (PeerSigner(SECRET, wall_clock=lambda: time.time() - 3600), "stale peer credential"),
        (PeerSigner(SECRET, wall_clock=lambda: time.time() + 3600), "stale peer credential"),
    ],
    ids=["wrong-secret", "stale-past", "stale-future"],
)
async def test_push_signed_wrongly_is_refused(harness: Harness, signer: PeerSigner, reason: str) -> None:
    a = await harness.start("a")
    body = message("mallory", fake_member())
    status, text = await post(a.addr, body, signer.sign("gossip", body))
    assert status == 401 and text.startswith(reason)
    assert a.member_ids() == {"a"}


async def test_tampered_body_with_a_valid_credential_is_refused(harness: Harness) -> None:
    a = await harness.start("a")
    signer = PeerSigner(SECRET)
    honest = message("friend")
    credential = signer.sign("gossip", honest)
    assert (await post(a.addr, message("friend", fake_member()), credential))[0] == 401
    # A credential for another endpoint does not transfer to /gossip either.
    assert (await post(a.addr, honest, signer.sign("other-endpoint", honest)))[0] == 401
    assert a.member_ids() == {"a"}
    # The untampered original still goes through: the refusal was about the body, not the key.
    assert (await post(a.addr, honest, credential))[0] == 200


async def test_exact_replay_is_refused(harness: Harness) -> None:
    a = await harness.start("a")
    body = message("friend", fake_member("newcomer"))
    credential = PeerSigner(SECRET).sign("gossip", body)
    assert (await post(a.addr, body, credential))[0] == 200
    assert "newcomer" in a.member_ids()  # the genuine push was merged
    assert await post(a.addr, body, credential) == (401, "replayed peer credential")


async def test_forged_push_cannot_add_a_member_or_evict_a_live_one(harness: Harness) -> None:
    a, b = await harness.pair()
    forgeries = [message("mallory", fake_member()), message("b", left_news(b))]
    for body in forgeries:
        for credential in (None, PeerSigner(OTHER_SECRET).sign("gossip", body)):
            assert (await post(a.addr, body, credential))[0] == 401
    assert "mallory" not in a.member_ids()
    assert a.state_of("b") is MemberState.ALIVE
    assert "left" not in [e.kind for e in a.events if e.node_id == "b"]
    # Control: the same eviction, signed with the cluster secret, would have been believed.
    evict = forgeries[1]
    assert (await post(a.addr, evict, PeerSigner(SECRET).sign("gossip", evict)))[0] == 200
    assert MemberEvent("left", "b") in a.events


async def test_refusals_are_logged_without_flooding(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    a = await harness.start("a")
    caplog.set_level(logging.DEBUG, logger="peer.http.gossip")
    for _ in range(20):
        assert (await post(a.addr, message("mallory"), None))[0] == 401
    levels = [r.levelno for r in caplog.records if r.name == "peer.http.gossip"]
    assert levels.count(logging.WARNING) == 1 and levels.count(logging.DEBUG) == 19


# -- HMAC: replies ----------------------------------------------------------------------------------


ReplyFn = Callable[[bytes, str], Awaitable[tuple[bytes, str | None]]]


async def fake_peer(reply: ReplyFn) -> tuple[HttpServer, str]:
    """A server that answers each push (body, credential) with whatever `reply` returns."""

    async def gossip(request: web.Request) -> web.Response:
        body, credential = await reply(await request.read(), request.headers.get(AUTH_HEADER, ""))
        headers = {AUTH_HEADER: credential} if credential is not None else None
        return web.Response(body=body, content_type=MSGPACK, headers=headers)

    app = web.Application()
    app.router.add_post("", gossip)
    server = HttpServer()
    server.mount(Mount("/gossip", app))
    port = await server.start("127.0.0.1", 0)
    return server, f"127.0.0.1:{port}"


async def test_forged_or_replayed_reply_is_refused_by_the_client(harness: Harness) -> None:
    a = await harness.start("a")
    # A genuine reply of `a`, captured from an earlier exchange by someone on the path.
    eavesdropped = PeerSigner(SECRET)
    push = message("b")
    async with aiohttp.ClientSession() as session, session.post(
        f"http://{a.addr}/gossip", data=push, headers={AUTH_HEADER: eavesdropped.sign("gossip", push)}
    ) as resp:
        captured_body, captured_cred = await resp.read(), resp.headers[AUTH_HEADER]
    forged_body = message("a", fake_member())

    def nonce_of(credential: str) -> str:
        return credential.split(".")[2]

    async def unsigned(body: bytes, cred: str) -> tuple[bytes, str | None]:
        return forged_body, None

    async def wrong_secret(body: bytes, cred: str) -> tuple[bytes, str | None]:
        return forged_body, PeerSigner(OTHER_SECRET).sign(REPLY_PURPOSE, reply_payload(nonce_of(cred), forged_body))

    async def replayed(body: bytes, cred: str) -> tuple[bytes, str | None]:
        return captured_body, captured_cred

    async def tampered(body: bytes, cred: str) -> tuple[bytes, str | None]:
        genuine = PeerSigner(SECRET).sign(REPLY_PURPOSE, reply_payload(nonce_of(cred), captured_body))
        return forged_body, genuine

    async def push_credential_echoed(body: bytes, cred: str) -> tuple[bytes, str | None]:
        return forged_body, cred

    transport = HttpGossipTransport(timeout_s=1.0, max_reply_bytes=MAX_BYTES, signer=PeerSigner(SECRET))
    try:
        for forge in (unsigned, wrong_secret, replayed, tampered, push_credential_echoed):
            server, addr = await fake_peer(forge)
            try:
                with pytest.raises(ConnectionError, match="reply from .* refused"):
                    await transport.push_pull(addr, message("b"))
            finally:
                await server.stop()
        # The same transport accepts a genuine reply.
        assert (await transport.push_pull(a.addr, message("b"))).startswith(b"\x85")
    finally:
        await transport.close()


async def test_peers_sharing_the_secret_converge_and_outsiders_stay_out(harness: Harness) -> None:
    a, b = await harness.pair()
    c = await harness.start("c", [b.addr])
    await harness.converged(3)
    outsider = await harness.start("x", [a.addr], secret=OTHER_SECRET)
    harness.peers.remove(outsider)
    try:
        # Unseeded, the outsider pushes to its seed `a` every round: let it try a good few times.
        await wait_until(lambda: outsider.view.local.heartbeat >= 10, CONVERGE_S)
        await harness.converged(3)
        assert not outsider.gossiper.seeded
        assert all("x" not in p.member_ids() for p in (a, b, c))
        assert outsider.member_ids() == {"x"}
    finally:
        await outsider.shut_down()


# -- mTLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent CAs: ours with three peers, and a foreign one with one."""
    ours, foreign = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("foreign")
    init_certs(ours, 3)
    init_certs(foreign, 1)
    return ours, foreign


def tls_for(directory: Path, peer: int, ca_dir: Path | None = None) -> Tls:
    cert, key, ca = directory / f"peer-{peer}.crt", directory / f"peer-{peer}.key", (ca_dir or directory) / "ca.crt"
    return Tls(server_ssl_context(cert, key, ca), client_ssl_context(cert, key, ca))


async def test_peers_gossip_over_mutual_tls(harness: Harness, certs: tuple[Path, Path]) -> None:
    ours, _ = certs
    a = await harness.start("a", secret=None, tls=tls_for(ours, 1))
    b = await harness.start("b", [a.addr], secret=None, tls=tls_for(ours, 2))
    c = await harness.start("c", [a.addr], secret=None, tls=tls_for(ours, 3))
    await harness.converged(3)  # waits until every view has three alive members
    assert a.member_ids() == b.member_ids() == c.member_ids() == {"a", "b", "c"}


async def test_client_without_certificate_gets_403_on_gossip_but_200_on_health(
    harness: Harness, certs: tuple[Path, Path]
) -> None:
    ours, _ = certs
    a = await harness.start("a", secret=None, tls=tls_for(ours, 1))
    no_cert = ssl.create_default_context(cafile=ours / "ca.crt")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"https://{a.addr}/gossip", data=message("mallory", fake_member()),
                                ssl=no_cert, server_hostname=PEER_TLS_NAME) as resp:
            assert (resp.status, await resp.text()) == (403, "a peer certificate is required")
        async with session.get(f"https://{a.addr}/health", ssl=no_cert, server_hostname=PEER_TLS_NAME) as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok", "node_id": "a"})
    assert a.member_ids() == {"a"}


async def test_handshake_fails_across_certificate_authorities(harness: Harness, certs: tuple[Path, Path]) -> None:
    ours, foreign = certs
    a = await harness.start("a", secret=None, tls=tls_for(ours, 1))
    # A client whose certificate another CA signed, though it trusts ours.
    intruder = HttpGossipTransport(timeout_s=1.0, ssl_context=tls_for(foreign, 1, ca_dir=ours).client)
    # A client of our cluster dialling a server whose certificate another CA signed.
    impostor = HttpServer()
    impostor.mount(gossip_app(a.gossiper, MAX_BYTES))
    impostor_port = await impostor.start("127.0.0.1", 0, tls_for(foreign, 1).server)
    honest = HttpGossipTransport(timeout_s=1.0, ssl_context=tls_for(ours, 2).client)
    try:
        with pytest.raises(ConnectionError, match="failed"):  # reset in the handshake, not an HTTP status
            await intruder.push_pull(a.addr, message("mallory", fake_member()))
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            await honest.push_pull(f"127.0.0.1:{impostor_port}", message("b"))
    finally:
        await intruder.close()
        await honest.close()
        await impostor.stop()
    assert a.member_ids() == {"a"}


async def test_plain_http_client_to_tls_port_fails(harness: Harness, certs: tuple[Path, Path]) -> None:
    ours, _ = certs
    a = await harness.start("a", secret=None, tls=tls_for(ours, 1))
    plain = HttpGossipTransport(timeout_s=1.0)
    try:
        with pytest.raises(ConnectionError, match="failed"):
            await plain.push_pull(a.addr, message("mallory", fake_member()))
    finally:
        await plain.close()
    assert a.member_ids() == {"a"}


def test_tls_loader_errors_name_the_file(certs: tuple[Path, Path], tmp_path: Path) -> None:
    ours, _ = certs
    cert, key, ca = ours / "peer-1.crt", ours / "peer-1.key", ours / "ca.crt"
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    missing = tmp_path / "missing.crt"
    cases = [
        ((missing, key, ca), str(missing)),
        ((cert, missing, ca), str(missing)),
        ((cert, key, missing), str(missing)),
        ((junk, key, ca), str(junk)),
        ((cert, junk, ca), str(junk)),
        ((cert, key, junk), str(junk)),
        ((cert, ours / "peer-2.key", ca), f"{ours / 'peer-2.key'} does not belong to the certificate {cert}"),
    ]
    for make in (server_ssl_context, client_ssl_context):
        for args, named in cases:
            with pytest.raises(ConfigError) as info:
                make(*args)
            assert named in str(info.value) and "\n" not in str(info.value)


# -- slow and idle clients --------------------------------------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection, or a failure after `within_s`."""
    return await asyncio.wait_for(reader.read(), within_s)


async def test_stalled_body_gets_408_and_the_connection_is_dropped(harness: Harness) -> None:
    body_timeout_s = 0.3
    a = await harness.start("a", body_timeout_s=body_timeout_s)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(a.addr.rsplit(":", 1)[1]))
    try:
        writer.write(b"POST /gossip HTTP/1.1\r\nHost: a\r\nContent-Type: application/msgpack\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b"\x84" * 10)
        await writer.drain()
        started = time.monotonic()
        answer = await read_until_closed(reader, body_timeout_s + 2.0)
        assert time.monotonic() - started < body_timeout_s + 2.0
        assert answer.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()
        await writer.wait_closed()
    assert a.member_ids() == {"a"}


async def test_idle_connection_is_closed(harness: Harness) -> None:
    a = await harness.start("a", idle_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(a.addr.rsplit(":", 1)[1]))
    try:
        assert await read_until_closed(reader, 3.0) == b""  # closed by the server, having sent nothing
    finally:
        writer.close()
        await writer.wait_closed()
