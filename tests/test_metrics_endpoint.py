"""GET /metrics on real peers: who may read it, what it lists, and that counters move by what happened.

Two `dfs-peer serve` processes with client authentication on, whose allow-list names no address the
test connects from, so every scrape here needs a token; the allow-list itself is checked in-process
with a fake remote address. docs/METRICS.md must list exactly the families a peer exports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from client.errors import AuthenticationError
from client.sdk import DfsClient
from peer.errors import Unauthenticated
from peer.http.metrics import METRICS_OFF, allowed, metrics_app
from peer.metrics import PeerMetrics
from tests.cluster import Cluster, PeerProc, wait_for
from tests.test_s3_api import create_key, s3_client

pytestmark = pytest.mark.timeout(120)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "METRICS.md"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """Two peers with tokens required and only 192.0.2.7 (a documentation address) allowed; a read token."""
    base = tmp_path_factory.mktemp("metrics")
    metadata = f"sqlite:///{base / 'metadata.db'}"
    made = subprocess.run(
        [sys.executable, "-m", "peer", "token", "create", "--role", "read", "--name", "prometheus",
         "--metadata", metadata],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    admin = subprocess.run(
        [sys.executable, "-m", "peer", "token", "create", "--role", "admin", "--metadata", metadata],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    cluster = Cluster(base, metadata=metadata, extra=["--metrics-allow", "192.0.2.7", "--repair-interval", "0.5"],
                      client_kwargs={"token": admin.stdout.strip()})
    try:
        for _ in range(2):
            cluster.add_peer(env={"DFS_NO_AUTH": ""})
        cluster.wait_converged()
        yield cluster, made.stdout.strip()
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def s3_key(secured: tuple[Cluster, str]) -> tuple[str, str]:
    """An S3 access key of the admin role for the `secured` peers."""
    cluster, _ = secured
    return create_key(cluster.metadata, "admin")


def get(peer: PeerProc, token: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET /metrics."""
    request = urllib.request.Request(f"http://{peer.gossip_addr}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def scrape(peer: PeerProc, token: str) -> Samples:
    status, _, body = get(peer, token)
    assert status == 200, body
    return parse(body)


def parse(body: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def families(peer: PeerProc, token: str) -> set[str]:
    """Every family's name as its samples spell it (the parser drops a counter's `_total`)."""
    _, _, body = get(peer, token)
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in text_string_to_metric_families(body)}


# ------------------------------------------------------------------ who may read it


def test_a_token_of_any_role_reads_the_metrics(secured: tuple[Cluster, str]) -> None:
    cluster, token = secured
    status, content_type, body = get(cluster.peers[0], token)
    assert status == 200
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    assert "dfs_requests_total" in body


@pytest.mark.parametrize("token", [None, "", "dfs_0123456789abcdef_" + "A" * 43, "not-a-token"])
def test_without_a_valid_token_from_elsewhere_it_is_refused(secured: tuple[Cluster, str], token: str | None) -> None:
    cluster, good = secured
    before = scrape(cluster.peers[1], good)
    status, _, body = get(cluster.peers[1], token)
    assert status == 401
    assert "dfs_" not in body
    reason = "no_token" if not token else "bad_token"
    after = scrape(cluster.peers[1], good)
    assert value(after, "dfs_auth_failures_total", api="metrics", reason=reason) == (
        value(before, "dfs_auth_failures_total", api="metrics", reason=reason) + 1
    )


@pytest.mark.parametrize(
    ("remote", "networks", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1/32", "::1/128"), True),
        ("::1", ("127.0.0.1/32", "::1/128"), True),
        ("::ffff:127.0.0.1", ("127.0.0.1/32",), True),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("10.1.2.3", ("127.0.0.1/32", "::1/128"), False),
        ("fe80::1%eth0", ("fe80::/10",), True),
        ("", ("0.0.0.0/0",), False),
        ("not-an-address", ("0.0.0.0/0",), False),
    ],
)
def test_the_allow_list_matches_addresses_and_networks(remote: str, networks: tuple[str, ...], expected: bool) -> None:
    import ipaddress

    assert allowed(remote, [ipaddress.ip_network(n) for n in networks]) is expected


class FakeVerifier:
    async def verify(self, token: str) -> object:
        if token != "good":
            raise Unauthenticated("invalid or revoked token")
        return object()


@pytest.mark.parametrize(
    ("remote", "auth", "status"),
    [
        ("127.0.0.1", None, 200),  # the default allow-list: a scraper on the peer's own host
        ("::1", None, 200),
        ("203.0.113.9", None, 401),
        ("203.0.113.9", "Bearer bad", 401),
        ("203.0.113.9", "Basic Z29vZA==", 401),
        ("203.0.113.9", "Bearer good", 200),
        ("10.0.0.1", None, 200),  # an allowed network
    ],
)
async def test_the_endpoint_asks_a_token_only_outside_the_allow_list(
    remote: str, auth: str | None, status: int
) -> None:
    import ipaddress

    from peer.config import PeerConfig

    default = PeerConfig.local(Path("/nonexistent")).metrics_networks
    networks = [*default, ipaddress.ip_network("10.0.0.0/8")]
    metrics = PeerMetrics()
    mount = metrics_app(metrics.render, networks, FakeVerifier(), metrics.auth_failed)  # type: ignore[arg-type]

    @web.middleware
    async def from_remote(request: web.Request, handler: object) -> web.StreamResponse:
        return await handler(request.clone(remote=remote))  # type: ignore[operator]

    root = web.Application(middlewares=[from_remote])
    root.add_subapp(mount.prefix, mount.app)
    async with TestClient(TestServer(root)) as http:
        reply = await http.get("/metrics", headers={"Authorization": auth} if auth else {})
        assert reply.status == status
        if status == 200:
            assert "dfs_requests_total" in await reply.text()


async def test_without_client_authentication_anyone_reads_it() -> None:
    metrics = PeerMetrics()
    mount = metrics_app(metrics.render, [], None)

    @web.middleware
    async def from_remote(request: web.Request, handler: object) -> web.StreamResponse:
        return await handler(request.clone(remote="198.51.100.4"))  # type: ignore[operator]

    root = web.Application(middlewares=[from_remote])
    root.add_subapp(mount.prefix, mount.app)
    async with TestClient(TestServer(root)) as http:
        assert (await http.get("/metrics")).status == 200


def test_over_tls_it_needs_no_client_certificate_unlike_gossip(tmp_path: Path) -> None:
    """The same HTTPS listener as gossip: /metrics answers a client without a certificate (here from
    the default allow-list's loopback, auth on), where /gossip refuses one."""
    import ssl

    from peer.security.certs import init_certs

    certs = tmp_path / "certs"
    init_certs(certs, 1)
    tls = ["--tls-cert", str(certs / "peer-1.crt"), "--tls-key", str(certs / "peer-1.key"),
           "--tls-ca", str(certs / "ca.crt")]
    peer = PeerProc(tmp_path, 1, f"sqlite:///{tmp_path / 'metadata.db'}", 1, tls)
    try:
        peer.start(env={"DFS_NO_AUTH": ""})
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        with urllib.request.urlopen(f"https://{peer.gossip_addr}/metrics", context=context, timeout=10) as reply:
            assert reply.status == 200
            assert "dfs_requests_total" in reply.read().decode()
        gossip = urllib.request.Request(f"https://{peer.gossip_addr}/gossip", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(gossip, context=context, timeout=10)
        assert refused.value.code == 403
        refused.value.close()
        with pytest.raises(OSError):  # plain HTTP on the TLS listener: no answer
            urllib.request.urlopen(f"http://{peer.gossip_addr}/metrics", timeout=10)
    finally:
        peer.kill()


# ------------------------------------------------------------------ switched off


@pytest.mark.parametrize(
    ("flags", "env", "on"),
    [([], {}, True), (["--no-metrics"], {}, False), ([], {"DFS_METRICS": "false"}, False)],
    ids=["default", "flag", "env"],
)
def test_a_peer_without_metrics_serves_files_and_answers_404(
    tmp_path: Path, flags: list[str], env: dict[str, str], on: bool
) -> None:
    """Metrics are on unless switched off; off, files are served as ever and /metrics says why it
    has nothing, in one line, to anyone (the peer runs with --no-auth, so the default peer would
    answer anyone too)."""
    peer = PeerProc(tmp_path, 0, f"sqlite:///{tmp_path / 'metadata.db'}", 1, flags)
    try:
        peer.start(env=env)
        data = bytes(range(256)) * 300
        with peer.client() as c:
            c.upload(data, name="switch/file")
            assert c.read("switch/file") == data
        status, content_type, body = get(peer)
        if on:
            assert status == 200, body
            wait_for(lambda: value(parse(get(peer)[2]), "dfs_requests_total", api="grpc", operation="Put",
                                   code="OK") == 1, 10, "the upload counted")
        else:
            assert (status, content_type.split(";")[0], body) == (404, "text/plain", METRICS_OFF)
            assert body.count("\n") == 1 and "dfs_" not in body
    finally:
        peer.kill()


# ------------------------------------------------------------------ what it lists


def test_every_exported_family_is_documented_and_every_documented_one_exported(secured: tuple[Cluster, str]) -> None:
    cluster, token = secured
    documented = set(re.findall(r"^\| `(dfs_[a-z0-9_]+)`", DOCS.read_text(), re.MULTILINE))
    assert families(cluster.peers[0], token) == documented


def test_the_peer_reports_its_members_disk_workers_and_metadata(secured: tuple[Cluster, str]) -> None:
    cluster, token = secured
    peer = cluster.peers[0]
    wait_for(lambda: value(scrape(peer, token), "dfs_worker_runs_total", worker="housekeeping") > 0, 10,
             "a housekeeping run")
    samples = scrape(peer, token)
    assert value(samples, "dfs_members", state="alive") == 2
    assert value(samples, "dfs_members", state="dead") == 0
    assert value(samples, "dfs_ring_peers") == 2
    assert value(samples, "dfs_ring_changes_total") >= 1
    assert value(samples, "dfs_disk_total_bytes") >= value(samples, "dfs_disk_free_bytes") > 0
    assert value(samples, "dfs_metadata_healthy") == 1
    assert value(samples, "dfs_metadata_operation_seconds_count", operation="ping") >= 1
    assert value(samples, "dfs_worker_last_run_timestamp_seconds", worker="housekeeping") > 1_600_000_000
    assert value(samples, "dfs_worker_errors_total", worker="housekeeping") == 0
    assert value(samples, "dfs_upload_budget_limit_bytes") > 0
    assert value(samples, "dfs_upload_budget_used_bytes") == 0


# ------------------------------------------------------------------ counters after a known workload


def test_request_counters_move_by_exactly_the_workload(secured: tuple[Cluster, str], tmp_path: Path) -> None:
    """3 streamed uploads, 2 one-message uploads, 2 streamed downloads (each a Get answered with the
    header alone, then a Download) through the SDK: the counters of peer 0 move by exactly that."""
    cluster, token = secured
    peer = cluster.peers[0]
    big, small = 2 * 1024 * 1024 + 17, 1000
    before = scrape(peer, token)
    with peer.client() as c:
        for i in range(3):
            c.upload(bytes([i]) * big, name=f"metrics/big-{i}")
        for i in range(2):
            c.upload(bytes([i]) * small, name=f"metrics/small-{i}")
        for i in range(2):
            assert c.read(f"metrics/big-{i}") == bytes([i]) * big
        with pytest.raises(Exception):  # noqa: B017 - a missing file, whatever the SDK calls it
            c.info("metrics/none")

    def moved(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    expected = {("Upload", "OK"): 3, ("Put", "OK"): 2, ("Download", "OK"): 2, ("Get", "OK"): 2,
                ("Stat", "NOT_FOUND"): 1}

    def counted() -> dict[tuple[str, str], float]:
        after = scrape(peer, token)
        return {key: moved(after, "dfs_requests_total", api="grpc", operation=key[0], code=key[1])
                for key in expected}

    wait_for(lambda: counted() == expected, 10, "the request counters", lambda: str(counted()))
    after = scrape(peer, token)
    assert moved(after, "dfs_received_bytes_total", api="grpc", operation="Upload") >= 3 * big
    assert moved(after, "dfs_received_bytes_total", api="grpc", operation="Put") >= 2 * small
    assert moved(after, "dfs_sent_bytes_total", api="grpc", operation="Download") >= 2 * big
    assert moved(after, "dfs_request_duration_seconds_count", api="grpc", operation="Upload") == 3
    assert moved(after, "dfs_request_duration_seconds_count", api="grpc", operation="Download") == 2
    assert moved(after, "dfs_request_duration_seconds_sum", api="grpc", operation="Upload") > 0
    assert moved(after, "dfs_metadata_operation_seconds_count", operation="commit_version") >= 5


def test_refused_calls_are_counted_by_reason(secured: tuple[Cluster, str]) -> None:
    cluster, token = secured
    peer = cluster.peers[0]
    before = scrape(peer, token)
    with DfsClient(peer.grpc_addr, timeout=10) as anonymous, pytest.raises(AuthenticationError):
        anonymous.status()
    with DfsClient(peer.grpc_addr, timeout=10, token=token) as reader, pytest.raises(Exception):  # noqa: B017
        reader.upload(b"x", name="metrics/refused")
    after = scrape(peer, token)
    for reason in ("no_token", "role_too_low"):
        assert value(after, "dfs_auth_failures_total", api="grpc", reason=reason) == (
            value(before, "dfs_auth_failures_total", api="grpc", reason=reason) + 1
        ), reason
    assert value(after, "dfs_requests_total", api="grpc", operation="ClusterStatus", code="UNAUTHENTICATED") == (
        value(before, "dfs_requests_total", api="grpc", operation="ClusterStatus", code="UNAUTHENTICATED") + 1
    )
    assert value(after, "dfs_requests_total", api="grpc", operation="Put", code="PERMISSION_DENIED") == (
        value(before, "dfs_requests_total", api="grpc", operation="Put", code="PERMISSION_DENIED") + 1
    )


def test_a_corrupt_copy_counts_once_as_quarantined_and_is_repaired(secured: tuple[Cluster, str]) -> None:
    """One copy rots, one read finds it, one repair restores it: each counter moves by exactly one, on
    the peer where it happened."""
    cluster, token = secured
    with cluster.peers[0].client() as c:
        data = bytes(range(256)) * 8192 + b"corrupt"  # 2 MiB and a bit: three chunks
        version = c.upload(data, name="metrics/rot").version
    chunk = version.chunks[0]
    holder = cluster.by_id(chunk.peers[0])
    others = [p for p in cluster.peers if p is not holder]
    before = {p.node_id: scrape(p, token) for p in cluster.peers}
    path = holder.chunk_path(chunk.chunk_id)
    path.write_bytes(b"\x00" * 16 + path.read_bytes()[16:])  # same size, wrong bytes
    with holder.client() as c:
        assert c.read("metrics/rot") == data  # served from the other copy; this one quarantined

    def moved(peer: PeerProc, name: str, **labels: str) -> float:
        return value(scrape(peer, token), name, **labels) - value(before[peer.node_id], name, **labels)

    assert moved(holder, "dfs_quarantined_chunks_total") == 1
    assert all(moved(p, "dfs_quarantined_chunks_total") == 0 for p in others)
    for operation in ("Get", "Download"):  # the read: a header, then the stream
        assert moved(holder, "dfs_requests_total", api="grpc", operation=operation, code="OK") == 1, operation
    wait_for(lambda: path.exists() and sum(moved(p, "dfs_repaired_chunks_total") for p in cluster.peers) >= 1, 30,
             "the quarantined copy restored by anti-entropy")
    assert sum(moved(p, "dfs_repaired_chunks_total") for p in cluster.peers) == 1
    assert moved(holder, "dfs_quarantined_chunks_total") == 1
    assert all(moved(p, "dfs_corrupt_chunks_total") == 0 for p in cluster.peers)  # the read found it, not a scrub


def test_chunk_copies_between_peers_travel_on_chunk_streams(secured: tuple[Cluster, str]) -> None:
    """Every peer of this version sends chunk data to the others on chunk streams, none over gRPC:
    the receiving owner counts the second copy of each uploaded chunk under `stream`."""
    cluster, token = secured
    before = [scrape(p, token) for p in cluster.peers]
    data = os.urandom(3 * 1024 * 1024 + 17)  # four chunks, each with its second copy on the other peer
    with cluster.peers[0].client() as c:
        c.upload(data, name="metrics/streamed.bin")
    after = [scrape(p, token) for p in cluster.peers]

    def moved(transport: str) -> float:
        name = "dfs_peer_chunk_bytes_total"
        labels = {"transport": transport, "direction": "received"}
        return sum(value(a, name, **labels) - value(b, name, **labels) for a, b in zip(after, before, strict=True))

    assert moved("stream") >= len(data)
    assert moved("grpc") == 0


def test_chunk_reads_from_another_holder_travel_on_chunk_streams(secured: tuple[Cluster, str]) -> None:
    """A download through a peer that lost its copy of a chunk reads that chunk from the other holder
    on a chunk stream (so may the repair that restores the copy): the holder counts the bytes sent
    under `stream`, and no peer sends or receives chunk data over gRPC."""
    cluster, token = secured
    data = os.urandom(2 * 1024 * 1024 + 5)
    with cluster.peers[0].client() as c:
        stored = c.upload(data, name="metrics/read-from-holder.bin")
    lost = stored.version.chunks[1]
    cluster.peers[0].chunk_path(lost.chunk_id).unlink()
    before = [scrape(p, token) for p in cluster.peers]
    with cluster.peers[0].client() as c:
        assert c.read("metrics/read-from-holder.bin") == data
    after = [scrape(p, token) for p in cluster.peers]

    def moved(transport: str, direction: str) -> float:
        name = "dfs_peer_chunk_bytes_total"
        labels = {"transport": transport, "direction": direction}
        return sum(value(a, name, **labels) - value(b, name, **labels) for a, b in zip(after, before, strict=True))

    assert moved("stream", "sent") >= lost.size
    assert moved("grpc", "sent") == moved("grpc", "received") == 0


def test_s3_requests_move_the_duration_histogram_and_byte_counters(secured: tuple[Cluster, str],
                                                                   s3_key: tuple[str, str]) -> None:
    """3 PUTs and 2 GETs through boto3: the S3 histogram counts move by exactly that, the byte
    counters by at least the objects' bytes."""
    cluster, token = secured
    peer = cluster.peers[0]
    s3 = s3_client(f"http://{peer.s3_addr}", s3_key)
    s3.create_bucket(Bucket="metrics-s3")
    sizes = [300_000, 1_500_000, 70_000]
    bodies = [os.urandom(size) for size in sizes]
    before = scrape(peer, token)
    for i, body in enumerate(bodies):
        s3.put_object(Bucket="metrics-s3", Key=f"k{i}", Body=body)
    for i in range(2):
        assert s3.get_object(Bucket="metrics-s3", Key=f"k{i}")["Body"].read() == bodies[i]

    def moved(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    def durations() -> dict[str, float]:
        after = scrape(peer, token)
        return {operation: moved(after, "dfs_request_duration_seconds_count", api="s3", operation=operation)
                for operation in ("PutObject", "GetObject")}

    expected = {"PutObject": 3, "GetObject": 2}
    wait_for(lambda: durations() == expected, 10, "the S3 durations observed", lambda: str(durations()))
    after = scrape(peer, token)
    assert moved(after, "dfs_request_duration_seconds_sum", api="s3", operation="PutObject") > 0
    assert moved(after, "dfs_requests_total", api="s3", operation="PutObject", code="200") == 3
    assert moved(after, "dfs_requests_total", api="s3", operation="GetObject", code="200") == 2
    assert moved(after, "dfs_received_bytes_total", api="s3", operation="PutObject") >= sum(sizes)
    assert moved(after, "dfs_sent_bytes_total", api="s3", operation="GetObject") >= sizes[0] + sizes[1]
    assert moved(after, "dfs_sent_bytes_total", api="s3", operation="GetObject") < 2 * (sizes[0] + sizes[1])


def test_refused_s3_requests_are_counted_by_their_error_code(secured: tuple[Cluster, str],
                                                            s3_key: tuple[str, str]) -> None:
    cluster, token = secured
    peer = cluster.peers[0]
    endpoint = f"http://{peer.s3_addr}"
    before = scrape(peer, token)
    with pytest.raises(ClientError) as wrong_secret:
        s3_client(endpoint, (s3_key[0], "y" * 40)).list_buckets()
    assert wrong_secret.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown:
        s3_client(endpoint, ("DKUNKNOWNKEY00000000", "x" * 40)).list_buckets()
    assert unknown.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    def moved(name: str, **labels: str) -> float:
        return value(scrape(peer, token), name, **labels) - value(before, name, **labels)

    for reason in ("SignatureDoesNotMatch", "InvalidAccessKeyId"):
        assert moved("dfs_auth_failures_total", api="s3", reason=reason) == 1, reason
    assert moved("dfs_auth_failures_total", api="s3", reason="AccessDenied") == 0
    assert moved("dfs_requests_total", api="s3", operation="ListBuckets", code="403") == 2
