"""Standard gRPC health checking and server reflection, as grpcurl and load balancers use them.

A real `dfs-peer serve` process with client authentication on answers both without a token, through
the `grpcio-health-checking` and `grpcio-reflection` clients. NOT_SERVING needs the metadata store to
go away under a running peer: an in-process peer whose store the test can switch off and on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from client.errors import AuthenticationError
from client.sdk import DfsClient
from peer.errors import MetadataUnavailable
from peer.metadata.open import open_store
from peer.metadata.store import MetadataStore
from tests.cluster import Cluster, wait_for
from tests.inproc import InProcCluster

pytestmark = pytest.mark.timeout(120)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def secured_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gRPC address of one peer that asks every client call for a token."""
    cluster = Cluster(tmp_path_factory.mktemp("health"), replicas=1)
    try:
        cluster.add_peer(env={"DFS_NO_AUTH": ""})
        yield cluster.peers[0].grpc_addr
    finally:
        cluster.close()


def check(addr: str, service: str = "") -> Any:
    with grpc.insecure_channel(addr) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)


def test_health_is_serving_without_a_token(secured_peer: str) -> None:
    assert check(secured_peer).status == SERVING
    assert check(secured_peer, "dfs.v1.FileStore").status == SERVING
    with DfsClient(secured_peer, timeout=5) as anonymous, pytest.raises(AuthenticationError):
        anonymous.status()  # the file API itself still wants a token


def test_health_of_an_unknown_service_is_not_found(secured_peer: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        check(secured_peer, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_watch_streams_the_status(secured_peer: str) -> None:
    with grpc.insecure_channel(secured_peer) as channel:
        replies = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert next(replies).status == SERVING
        replies.cancel()


def test_reflection_lists_the_services_and_describes_the_file_store(secured_peer: str) -> None:
    with grpc.insecure_channel(secured_peer) as channel:
        reflection = ProtoReflectionDescriptorDatabase(channel)
        services = set(reflection.get_services())
        assert {"dfs.v1.FileStore", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        assert "dfs.v1.PeerChunks" not in services  # peers' own service is not advertised to clients
        file_store = DescriptorPool(reflection).FindServiceByName("dfs.v1.FileStore")
        methods = {m.name for m in file_store.methods}
        assert {"Upload", "Download", "Stat", "List", "Delete"} <= methods
        upload = file_store.methods_by_name["Upload"]
        assert upload.input_type.full_name == "dfs.v1.UploadRequest"


# ------------------------------------------------------------------ NOT_SERVING while the store is gone


class Switchable:
    """A metadata store the test can take away: while `down`, every call fails as an unreachable
    store's would."""

    def __init__(self, inner: MetadataStore) -> None:
        self._inner = inner
        self.backend = inner.backend
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down and name != "close":
                raise MetadataUnavailable(self.backend, "taken away by the test")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def switchable_peer(tmp_path: Path) -> Iterator[tuple[InProcCluster, Switchable]]:
    store = Switchable(open_store(f"sqlite:///{tmp_path / 'metadata.db'}"))
    cluster = InProcCluster(tmp_path, store, replicas=1)  # type: ignore[arg-type]
    try:
        cluster.start(1)
        yield cluster, store
    finally:
        cluster.close()


def wait_status(addr: str, status: int, timeout: float = 15) -> None:
    seen: list[Any] = []

    def reached() -> bool:
        seen.append(check(addr).status)
        return bool(seen[-1] == status) and check(addr, "dfs.v1.FileStore").status == status

    wait_for(reached, timeout, f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}",
             lambda: f"last {seen[-1:]}")


def test_health_is_not_serving_while_the_metadata_store_is_down(
    switchable_peer: tuple[InProcCluster, Switchable],
) -> None:
    cluster, store = switchable_peer
    peer = cluster.peers[0]
    samples: Callable[[], dict[str, float]] = peer.node.metrics.samples
    assert check(peer.grpc_addr).status == SERVING
    store.down = True
    wait_status(peer.grpc_addr, NOT_SERVING)
    assert samples()["dfs_metadata_healthy"] == 0
    store.down = False
    wait_status(peer.grpc_addr, SERVING)
    assert samples()["dfs_metadata_healthy"] == 1
    errors = {s.labels["operation"]: s.value for family in peer.node.metrics.registry.collect()
              for s in family.samples if s.name == "dfs_metadata_errors_total"}
    assert errors.get("ping", 0) >= 1
