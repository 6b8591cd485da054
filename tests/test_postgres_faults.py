"""The PostgreSQL backend when its server fails under upload traffic.

Three `dfs-peer` processes share one PostgreSQL server of the module's own (tests/pgserver.py), and
clients upload new content to a few shared names through every peer at once. Mid-traffic the server
is SIGKILLed (postmaster and backends together) or, in the second test, stopped cleanly (a fast
shutdown, as `pg_ctl stop -m fast`). While it is down every peer must report degraded (/health 503,
gRPC health NOT_SERVING) and refuse an upload at once with UNAVAILABLE; once it is restarted the same
peers must take uploads again by themselves. Every upload's outcome is recorded as its client was
told it, and afterwards the store must agree exactly: each acknowledged upload is one version with
the number and id the client got and downloads byte-identical, an upload told it failed is nowhere,
no version exists that no client was told about, each name's numbers run 1, 2, 3... without a gap,
and the chunks of the failed uploads are garbage-collected.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client import DfsClientError, NotFoundError, VersionInfo
from tests.cluster import Cluster, PeerProc, wait_for
from tests.pgserver import PgServer, postgres_server

pytestmark = pytest.mark.timeout(90)

WORKERS = 4
NAMES = 3  # names every worker writes, so that one name's commits come from several peers at once
REFUSAL_BOUND_S = 2.0  # an upload while the store is down is refused within this, not after a timeout
# Unreferenced chunks go after 5 s: far more than an upload here takes from its first chunk to its
# commit, so garbage collection can only take the chunks of uploads that did not commit.
PEER_FLAGS = ("--gc-interval", "0.5", "--gc-grace", "5")


@dataclass
class Attempt:
    """One upload and what its client was told."""

    name: str
    data: bytes
    started: float
    ended: float = 0.0
    version: int = 0
    version_id: str = ""
    chunk_ids: list[str] = field(default_factory=list)
    error: str = ""
    code: str | None = None  # the gRPC status and the peer's error kind of a failed upload
    kind: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def acknowledged(self) -> bool:
        return bool(self.version_id)


def upload(peer: PeerProc, name: str, timeout: float = 30) -> Attempt:
    """Uploads fresh random bytes (one chunk, so its id is their SHA-256) and records the outcome."""
    attempt = Attempt(name, os.urandom(random.randint(1024, 48 * 1024)), time.monotonic())
    try:
        with peer.client(timeout=timeout) as c:
            result = c.upload(attempt.data, name=name)
        attempt.version, attempt.version_id = result.version.version, result.version.version_id
        attempt.chunk_ids = [chunk.chunk_id for chunk in result.version.chunks]
    except DfsClientError as exc:
        attempt.error, attempt.code, attempt.kind = f"{type(exc).__name__}: {exc}", exc.code, exc.kind
    attempt.ended = time.monotonic()
    return attempt


class Traffic:
    """Clients uploading without pause, worker i through peer i % 3, until stopped."""

    def __init__(self, peers: list[PeerProc], prefix: str) -> None:
        self.peers = peers
        self.prefix = prefix
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(WORKERS)]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def record(self, attempt: Attempt) -> Attempt:
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    def acknowledged_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a.acknowledged and a.started >= moment)

    def stop(self) -> list[Attempt]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "an upload neither finished nor failed in 60 s"
        return list(self.attempts)

    def _run(self, worker: int) -> None:
        """After an error a worker backs off briefly, as a real client would, rather than spin on
        refusals while the store is down."""
        peer = self.peers[worker % len(self.peers)]
        count = 0
        while not self._stop.is_set():
            attempt = self.record(upload(peer, f"{self.prefix}/{(worker + count) % NAMES}"))
            count += 1
            if not attempt.acknowledged:
                self._stop.wait(0.05)


def health(peer: PeerProc) -> tuple[int, str]:
    """The peer's /health answer: (HTTP status, "ok" or "degraded")."""
    host, port = peer.gossip_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=3)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())["status"]
    finally:
        conn.close()


def grpc_serving(peer: PeerProc) -> int:
    with grpc.insecure_channel(peer.grpc_addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
    return int(reply.status)


def all_degraded(peers: list[PeerProc]) -> bool:
    return all(health(p) == (503, "degraded") and grpc_serving(p) == health_pb2.HealthCheckResponse.NOT_SERVING
               for p in peers)


def all_healthy(peers: list[PeerProc]) -> bool:
    return all(health(p) == (200, "ok") and grpc_serving(p) == health_pb2.HealthCheckResponse.SERVING
               for p in peers)


@pytest.fixture(scope="module")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[
        tuple[PgServer, Cluster]]:
    failed_before = request.session.testsfailed
    with postgres_server() as server:
        cluster = Cluster(tmp_path_factory.mktemp("pgfaults"), metadata=server.uri(), replicas=2, extra=PEER_FLAGS)
        try:
            cluster.start(3)
            yield server, cluster
        finally:
            cluster.close()
            if request.session.testsfailed > failed_before:
                print(cluster.tail_logs())
                print(f"----- postgres -----\n{server.tail()}")


@pytest.mark.parametrize("outage", ["kill", "stop"])
def test_uploads_across_a_postgresql_outage_commit_once_or_fail_cleanly(
    pg_cluster: tuple[PgServer, Cluster], outage: str
) -> None:
    server, cluster = pg_cluster
    peers = cluster.peers
    wait_for(lambda: all_healthy(peers), 20, "every peer healthy before the outage")
    traffic = Traffic(peers, f"pg-{outage}").start()
    try:
        began = time.monotonic()
        wait_for(lambda: traffic.acknowledged_since(began) >= 20, 40, "uploads acknowledged before the outage")
        failed_at = time.monotonic()
        server.kill() if outage == "kill" else server.stop()

        wait_for(lambda: all_degraded(peers), 10, "every peer reporting degraded")
        # Garbage collection pauses while the store is down: the chunks that uploads which had failed
        # by now left behind are all still here, for the collection checked at the end.
        stranded = held_chunks(peers, [a for a in list(traffic.attempts) if a.ended and not a.acknowledged])
        for peer in peers:
            refused = traffic.record(upload(peer, f"pg-{outage}/0", timeout=10))
            assert (refused.code, refused.kind) == ("UNAVAILABLE", "metadata_unavailable"), refused.error
            took = refused.ended - refused.started
            assert took < REFUSAL_BOUND_S, f"refused only after {took:.1f} s"

        server.start()
        wait_for(lambda: all_healthy(peers), 20, "every peer healthy again, without a restart")
        recovered = time.monotonic()
        for peer in peers:
            accepted = traffic.record(upload(peer, f"pg-{outage}/1"))
            assert accepted.acknowledged, accepted.error
        wait_for(lambda: traffic.acknowledged_since(recovered) >= 10, 30, "uploads acknowledged after recovery")
    finally:
        attempts = traffic.stop()

    in_flight = [a for a in attempts if a.started <= failed_at <= a.ended]
    assert in_flight, "no upload was in flight when the server went down"
    errors = sorted({a.error[:100] for a in in_flight if a.error})
    print(f"{outage}: {len(attempts)} uploads, {sum(a.acknowledged for a in attempts)} acknowledged; in flight at"
          f" the failure: {sum(a.acknowledged for a in in_flight)} committed, {len(in_flight)} in all {errors}")
    assert all(a.acknowledged or a.error for a in attempts)  # every client was told one or the other
    check_store_matches_what_clients_were_told(peers, attempts)
    check_chunks_of_failed_uploads_are_collected(peers, attempts, stranded)
    check_acknowledged_versions_download_identically(peers, attempts)


def check_store_matches_what_clients_were_told(peers: list[PeerProc], attempts: list[Attempt]) -> None:
    stored: dict[str, VersionInfo] = {}
    with peers[0].client() as c:
        for name in sorted({a.name for a in attempts}):
            try:
                versions = c.versions(name)
            except NotFoundError:
                versions = []
            numbers = sorted(v.version for v in versions)
            assert numbers == list(range(1, len(numbers) + 1)), f"{name}: version numbers {numbers} have a gap"
            for v in versions:
                assert v.sha256 not in stored, f"{name} v{v.version}: the same upload stored twice"
                stored[v.sha256] = v
    told = {a.sha256: a for a in attempts}
    for sha256, v in stored.items():
        attempt = told.get(sha256)
        assert attempt is not None, f"{v.name} v{v.version} is stored, but no client uploaded it"
        assert attempt.acknowledged, f"{v.name} v{v.version} is stored, but its client was told: {attempt.error}"
        assert (v.name, v.version, v.version_id) == (attempt.name, attempt.version, attempt.version_id)
    missing = [a for a in attempts if a.acknowledged and a.sha256 not in stored]
    assert not missing, f"acknowledged uploads lost: {[(a.name, a.version) for a in missing]}"


def held_chunks(peers: list[PeerProc], attempts: list[Attempt]) -> set[str]:
    """The chunks of `attempts` some peer holds (each upload is one chunk, named by its SHA-256)."""
    return {a.sha256 for a in attempts for p in peers if p.chunk_path(a.sha256).exists()}


def check_chunks_of_failed_uploads_are_collected(
    peers: list[PeerProc], attempts: list[Attempt], stranded: set[str]
) -> None:
    acknowledged = next(a for a in attempts if a.acknowledged)
    assert acknowledged.chunk_ids == [acknowledged.sha256]  # one chunk, named by its content
    failed = [a for a in attempts if not a.acknowledged]
    print(f"chunks left by failed uploads while the store was down: {len(stranded)}")
    wait_for(lambda: not held_chunks(peers, failed), 30, "chunks of failed uploads collected",
             lambda: f"still held: {sorted(held_chunks(peers, failed))}")


def check_acknowledged_versions_download_identically(peers: list[PeerProc], attempts: list[Attempt]) -> None:
    clients = [p.client() for p in peers]
    try:
        for i, attempt in enumerate(a for a in attempts if a.acknowledged):
            assert clients[i % len(clients)].read(attempt.name, version=attempt.version_id) == attempt.data
    finally:
        for c in clients:
            c.close()
