"""Membership with real `dfs-peer serve` processes: convergence, leaving, crashing, pausing, restarting.

Faults are real signals: SIGTERM (a graceful leave), SIGKILL (a crash), SIGSTOP/SIGCONT (a peer
that goes silent and comes back, as behind a partition). Each observer's view of the victim is polled
through the public ClusterStatus RPC and every change is recorded with the time since the fault, so a
failed expectation reports the whole trajectory. The gossip HTTP endpoint is also attacked directly
with junk, oversized, mis-shaped and foreign messages, after which the peer must still serve.

Timings come from the fast profile in tests/cluster.py (FAST): gossip every 0.1 s, suspect after
1 s of silence, dead after 2 s, and a dead peer keeps its ring positions for 4 s more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.client import HTTPConnection

import msgpack
import pytest

from client.models import ClusterStatus, MemberStatus
from peer.http.gossip_wire import AUTH_HEADER, PUSH_PURPOSE
from peer.membership.codec import LEGACY_VERSION, PROTOCOL_VERSION, GossipMessage, decode, encode
from peer.ring.hashring import HashRing
from peer.security.peerauth import PeerSigner
from tests.cluster import FAST, TEST_SECRET, Cluster, PeerProc, wait_for


def _fast(flag: str) -> float:
    return float(FAST[FAST.index(flag) + 1])


SUSPECT_S = _fast("--suspect-timeout")
DEAD_S = _fast("--dead-timeout")
GRACE_S = _fast("--dead-grace")
LEAVE_SEEN_WITHIN_S = 1.5  # well before DEAD_S: only a LEAVE announcement can explain it
SLACK_S = 0.5  # polling, RPC and housekeeping latency allowed on either side of a deadline
MSGPACK = "application/msgpack"
MAX_GOSSIP_BYTES = 64 * 1024
MAJOR = PROTOCOL_VERSION[0]


# ----------------------------------------------------------------------------------------- helpers


def status(peer: PeerProc) -> ClusterStatus:
    with peer.client(timeout=3) as client:
        return client.status()


def member(st: ClusterStatus, node_id: str) -> MemberStatus | None:
    return next((m for m in st.members if m.node_id == node_id), None)


def ring_digest(node_ids: Iterable[str], vnodes: int) -> str:
    """The digest every peer must report for a ring of exactly these members."""
    return HashRing.build(node_ids, vnodes).digest


@dataclass(frozen=True)
class Sighting:
    t: float
    """Seconds since the fault."""
    state: str
    on_ring: bool
    digest: str


@dataclass
class Watch:
    """Each observer's view of one subject, recorded as it changes, timed from the fault."""

    observers: Sequence[PeerProc]
    subject: str
    t0: float = field(default_factory=time.monotonic)
    history: dict[str, list[Sighting]] = field(default_factory=dict)

    def poll(self) -> None:
        for obs in self.observers:
            st = status(obs)
            m = member(st, self.subject)
            seen = Sighting(
                round(time.monotonic() - self.t0, 3),
                m.state if m else "(unknown)",
                m.on_ring if m else False,
                st.ring_digest,
            )
            past = self.history.setdefault(obs.node_id, [])
            if not past or (past[-1].state, past[-1].on_ring, past[-1].digest) != (
                seen.state,
                seen.on_ring,
                seen.digest,
            ):
                past.append(seen)

    def until(self, pred: Callable[[Sighting], bool], timeout: float, what: str) -> None:
        """Polls until every observer's latest sighting satisfies `pred`."""

        def done() -> bool:
            self.poll()
            return len(self.history) == len(self.observers) and all(pred(h[-1]) for h in self.history.values())

        wait_for(done, timeout, f"{what} (subject {self.subject[:8]})", self.describe)

    def states(self, observer: str) -> list[str]:
        out: list[str] = []
        for s in self.history[observer]:
            if not out or out[-1] != s.state:
                out.append(s.state)
        return out

    def first(self, observer: str, pred: Callable[[Sighting], bool]) -> Sighting:
        found = next((s for s in self.history[observer] if pred(s)), None)
        assert found is not None, self.describe()
        return found

    def describe(self) -> str:
        return "; ".join(
            f"{obs[:8]}: " + " -> ".join(f"{s.t:.2f}s {s.state} ring={s.on_ring} {s.digest[:8]}" for s in h)
            for obs, h in self.history.items()
        )


def assert_full_view(cluster: Cluster, digest: str, departed: dict[str, str] | None = None) -> None:
    """Every live peer reports `digest` and lists the live peers alive, on the ring, at their addresses,
    plus exactly the `departed` ones ({node id: state}), off the ring."""
    live = {p.node_id: p for p in cluster.live()}
    departed = departed or {}
    for p in live.values():
        st = status(p)
        assert st.node_id == p.node_id
        assert st.ring_digest == digest, (p.node_id, st.ring_digest, digest)
        assert {m.node_id for m in st.members} == set(live) | set(departed), st.members
        for m in st.members:
            if m.node_id in departed:
                assert (m.state, m.on_ring) == (departed[m.node_id], False), m
                continue
            assert (m.state, m.on_ring) == ("alive", True), m
            assert (m.grpc_addr, m.gossip_addr) == (live[m.node_id].grpc_addr, live[m.node_id].gossip_addr)


def http_request(
    method: str, addr: str, path: str, body: bytes | None = None, content_type: str = MSGPACK
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one plain HTTP request; error statuses are returned, not raised.

    A body is signed with the test cluster's secret, as a peer would: these requests come from
    inside the cluster and test what the decoder does with them (outsiders are test_gossip_auth's)."""
    headers = {"Content-Type": content_type} if body is not None else {}
    if body is not None:
        headers[AUTH_HEADER] = PeerSigner(TEST_SECRET).sign(PUSH_PURPOSE, body)
    request = urllib.request.Request(f"http://{addr}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers.get_content_type(), reply.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get_content_type(), err.read()


def post_chunked(addr: str, pieces: Iterable[bytes]) -> tuple[int, bytes]:
    """POST /gossip with Transfer-Encoding: chunked, so no Content-Length announces the size."""
    host, _, port = addr.rpartition(":")
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/gossip", body=iter(pieces), headers={"Content-Type": MSGPACK})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def still_serves(peer: PeerProc, name: str) -> None:
    """A real gRPC round trip through `peer`: upload, then read back."""
    data = os.urandom(50_000)
    with peer.client(timeout=30) as client:
        client.upload(data, name=name)
        assert client.read(name) == data


# ------------------------------------------------------------------------------------ convergence


def test_three_peers_converge_on_one_ring(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    digest = cluster.wait_converged()
    st = status(cluster.peers[0])
    assert digest == ring_digest((p.node_id for p in cluster.peers), st.vnodes)
    assert_full_view(cluster, digest)
    for p in cluster.peers:
        code, ctype, body = http_request("GET", p.gossip_addr, "/health")
        assert (code, ctype) == (200, "application/json")
        doc = json.loads(body)
        assert doc["status"] == "ok" and doc["node_id"] == p.node_id


# ------------------------------------------------------------------------------------------ faults


def test_sighup_stops_a_peer_as_cleanly_as_sigterm(make_cluster: Callable[..., Cluster]) -> None:
    """A closed terminal (or the kernel's SIGHUP to an orphaned, stopped process group) is a clean
    leave, not a silent death: exit 0, ready.json gone, and the others see it leave at once."""
    cluster = make_cluster(2)
    cluster.wait_converged()
    victim, observer = cluster.peers[1], cluster.peers[0]
    watch = Watch([observer], victim.node_id)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGHUP)
    assert victim.proc.wait(10) == 0
    assert not (victim.data_dir / "ready.json").exists()
    watch.until(lambda s: s.state == "left", LEAVE_SEEN_WITHIN_S, "the peer is seen to leave after SIGHUP")


def test_sigterm_announces_leave_and_the_ring_shrinks_at_once(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    digest3 = cluster.wait_converged()
    victim, observers = cluster.peers[2], cluster.peers[:2]
    node_id = victim.node_id
    vnodes = status(observers[0]).vnodes
    digest2 = ring_digest((p.node_id for p in observers), vnodes)
    assert digest2 != digest3

    watch = Watch(observers, node_id)
    assert victim.terminate(timeout=10) == 0
    exited_after = time.monotonic() - watch.t0
    assert exited_after < 3.0, f"SIGTERM took {exited_after:.2f} s to stop the peer"
    assert not (victim.data_dir / "ready.json").exists(), "a stopped peer must remove its ready.json"

    watch.until(
        lambda s: s.state == "left" and not s.on_ring and s.digest == digest2,
        max(LEAVE_SEEN_WITHIN_S - (time.monotonic() - watch.t0), 0.05),
        f"victim left and off the ring within {LEAVE_SEEN_WITHIN_S} s of SIGTERM",
    )
    for obs in observers:
        assert watch.states(obs.node_id) in (["left"], ["alive", "left"]), watch.describe()
    assert cluster.wait_converged() == digest2
    assert_full_view(cluster, digest2, departed={node_id: "left"})

    # A rolling restart: the peer left under a higher incarnation than the one it starts with from
    # disk, so it has to outbid its own departure before the others take it back.
    cluster.restart(victim)
    assert victim.node_id == node_id
    watch.until(lambda s: s.state == "alive" and s.on_ring and s.digest == digest3, 10, "victim back")
    assert cluster.wait_converged() == digest3
    assert_full_view(cluster, digest3)


def test_sigkill_suspect_then_dead_then_off_the_ring_after_grace(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    digest3 = cluster.wait_converged()
    victim, observers = cluster.peers[2], cluster.peers[:2]
    vnodes = status(observers[0]).vnodes
    digest2 = ring_digest((p.node_id for p in observers), vnodes)

    victim.kill()
    watch = Watch(observers, victim.node_id)
    watch.until(lambda s: s.state == "dead", DEAD_S + 3, "victim dead")
    for obs in observers:
        # Dead but within its grace: still on the ring, so nothing is rebalanced yet.
        assert all(s.on_ring and s.digest == digest3 for s in watch.history[obs.node_id]), watch.describe()

    watch.until(lambda s: not s.on_ring, GRACE_S + 3, "victim off the ring after the grace period")
    for obs in observers:
        assert watch.states(obs.node_id) == ["alive", "suspect", "dead"], watch.describe()
        suspect = watch.first(obs.node_id, lambda s: s.state == "suspect")
        dead = watch.first(obs.node_id, lambda s: s.state == "dead")
        off = watch.first(obs.node_id, lambda s: not s.on_ring)
        assert suspect.t >= SUSPECT_S - SLACK_S, watch.describe()
        assert dead.t >= DEAD_S - SLACK_S and dead.on_ring, watch.describe()
        assert off.t - dead.t >= GRACE_S - SLACK_S, f"dropped before the grace ran out: {watch.describe()}"
        assert off.state == "dead" and off.digest == digest2, watch.describe()
    assert cluster.wait_converged() == digest2
    assert_full_view(cluster, digest2, departed={victim.node_id: "dead"})


def test_restart_after_sigkill_keeps_identity_and_chunks(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(3)
    digest3 = cluster.wait_converged()
    data = os.urandom(2 * 1024 * 1024 + 12345)  # three chunks of the default 1 MiB
    with cluster.peers[0].client() as client:
        uploaded = client.upload(data, name="survivor.bin").version
    # Roles are chosen through placement: the victim holds the most chunks of the file, its partner
    # shares at least one chunk with it alone, and the bystander holds no copy of that chunk.
    held: dict[str, list[str]] = {}
    for chunk in uploaded.chunks:
        for node_id in chunk.peers:
            held.setdefault(node_id, []).append(chunk.chunk_id)
    victim = cluster.by_id(max(held, key=lambda n: len(held[n])))

    def shared_with_victim(node_id: str) -> int:
        return sum(1 for c in uploaded.chunks if set(c.peers) == {victim.node_id, node_id})

    partner = max((p for p in cluster.peers if p is not victim), key=lambda p: shared_with_victim(p.node_id))
    bystander = next(p for p in cluster.peers if p not in (victim, partner))
    assert shared_with_victim(partner.node_id) >= 1
    observers = [partner, bystander]
    mine = held[victim.node_id]
    assert all(victim.chunk_path(c).is_file() for c in mine)
    old_id = victim.node_id
    old_incarnation = member(status(partner), old_id).incarnation  # type: ignore[union-attr]

    victim.kill()
    watch = Watch(observers, old_id)
    watch.until(lambda s: s.state == "dead", DEAD_S + 3, "victim dead")

    cluster.restart(victim)
    assert victim.node_id == old_id, "a restart on the same data dir must keep the node id"
    watch.until(lambda s: s.state == "alive" and s.on_ring, 10, "victim alive again")
    assert cluster.wait_converged() == digest3
    assert_full_view(cluster, digest3)  # also: everybody dials the victim at its new ports
    for obs in observers:
        back = member(status(obs), old_id)
        assert back is not None and back.incarnation > old_incarnation, back

    assert all(victim.chunk_path(c).is_file() for c in mine), "chunks were lost across the restart"
    me = member(status(victim), old_id)
    assert me is not None and me.chunk_count >= len(mine)
    with victim.client() as client:
        assert client.read("survivor.bin") == data
        assert client.read(uploaded.file_id, version=1) == data
        assert [c.peers for c in client.stat("survivor.bin").chunks] == [c.peers for c in uploaded.chunks]

    # With the partner gone, the bystander can only get the chunks they shared from the restarted victim.
    partner.kill()
    with bystander.client() as client:
        assert client.read("survivor.bin") == data


def test_sigstop_makes_a_peer_suspect_then_dead_and_sigcont_brings_it_back(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3)
    digest3 = cluster.wait_converged()
    victim, observers = cluster.peers[1], [cluster.peers[0], cluster.peers[2]]

    victim.pause()
    watch = Watch(observers, victim.node_id)
    try:
        watch.until(lambda s: s.state == "dead", DEAD_S + 3, "paused victim dead")
    finally:
        victim.resume()
    watch.until(lambda s: s.state == "alive", 10, "resumed victim alive again")
    for obs in observers:
        # While a member is alive in its view, a status call also asks it for its counters and waits
        # up to a second for a paused one; so a poll may straddle the short suspect phase unseen.
        seen = watch.states(obs.node_id)
        assert seen[-2:] == ["dead", "alive"], watch.describe()
        assert seen[:-2] in (["alive", "suspect"], ["alive"], ["suspect"]), watch.describe()
        # Resumed within the grace period: it never left the ring, so nothing was rebalanced.
        assert all(s.on_ring and s.digest == digest3 for s in watch.history[obs.node_id]), watch.describe()
    assert cluster.wait_converged() == digest3
    assert_full_view(cluster, digest3)
    still_serves(victim, "after-sigcont.bin")


# ------------------------------------------------------------------------------ the gossip endpoint


def test_gossip_endpoint_rejects_bad_bodies_and_the_peer_keeps_serving(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(3, extra=("--max-gossip-bytes", str(MAX_GOSSIP_BYTES)))
    digest = cluster.wait_converged()
    target = cluster.peers[0]
    addr = target.gossip_addr
    st = status(target)
    replicas, vnodes = st.replicas, st.vnodes
    policy = f"rep:{replicas}"

    # The control: a well-formed message with our fingerprint and no news is answered with our view.
    code, ctype, body = http_request("POST", addr, "/gossip", encode(GossipMessage("probe", policy, vnodes)))
    assert (code, ctype) == (200, MSGPACK)
    reply = decode(body, MAX_GOSSIP_BYTES)
    assert (reply.sender, reply.policy, reply.vnodes) == (target.node_id, policy, vnodes)
    assert {e[0] for e in reply.members} == {p.node_id for p in cluster.peers}

    unsigned = urllib.request.Request(f"http://{addr}/gossip", data=b"\x80", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=10)
    refused.value.close()
    assert refused.value.code == 401

    junk = random.Random(20240601).randbytes(4096)
    assert http_request("POST", addr, "/gossip", junk)[0] == 400
    assert http_request("POST", addr, "/gossip", b"")[0] == 400

    oversized = os.urandom(200 * 1024)
    assert http_request("POST", addr, "/gossip", oversized)[0] == 413
    status_code, _ = post_chunked(addr, (oversized[i : i + 16384] for i in range(0, len(oversized), 16384)))
    assert status_code == 413

    wrong_shapes = [
        {"hello": "world"},
        [1, 2, 3],
        "just a string",
        {"v": MAJOR, "from": "x", "cluster": {"policy": policy}, "members": []},
        {"v": MAJOR, "from": "x", "cluster": {"policy": policy, "vnodes": vnodes}, "members": {}},
        {"v": MAJOR, "from": "x", "cluster": {"policy": policy, "vnodes": vnodes},
         "members": [{"id": "x", "ra": "", "ga": "", "in": 1, "hb": 1, "st": "zombie"}]},
        {"v": -1, "from": "x", "cluster": {"policy": policy, "vnodes": vnodes}, "members": []},
        # Major 1 is still read, as strictly as before.
        {"v": 1, "from": "x", "cluster": {"replicas": replicas, "vnodes": vnodes},
         "members": [["x", "", "", 1, 1, "zombie", 0, 0]]},
    ]
    for shape in wrong_shapes:
        code, _, text = http_request("POST", addr, "/gossip", msgpack.packb(shape, use_bin_type=True))
        assert code == 400, (shape, code, text)

    intruder = ("intruder" + "0" * 24, "127.0.0.1:1", "127.0.0.1:2", 1, 99, "alive", 0, 0, "", "")
    foreign = [
        GossipMessage("intruder", f"rep:{replicas + 1}", vnodes, [intruder]),
        GossipMessage("intruder", policy, vnodes + 1, [intruder]),
        GossipMessage("intruder", policy, vnodes, [intruder], version=(MAJOR + 1, 0)),
        GossipMessage("intruder", f"rep:{replicas + 1}", vnodes, [intruder], version=LEGACY_VERSION),
    ]
    for msg in foreign:
        code, _, text = http_request("POST", addr, "/gossip", encode(msg))
        assert code == 409, (msg, code, text)
        assert b"intruder" in text

    # After all of that the peer still serves gRPC, nobody merged the intruder, and the ring is intact.
    assert cluster.wait_converged() == digest
    assert_full_view(cluster, digest)
    still_serves(target, "after-gossip-abuse.bin")
    code, _, body = http_request("GET", addr, "/health")
    assert code == 200 and json.loads(body)["status"] == "ok"
