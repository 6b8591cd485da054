"""Shared fixtures: process clusters of real peers, with their logs shown when a test fails."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster
from tests.pgserver import pg_server  # noqa: F401 - the session's PostgreSQL server, for every module

# Every peer a test starts serves S3 on a free port unless the test names one: the default address
# (127.0.0.1:9000) would be the same for every peer, and for every test run on this host.
os.environ.setdefault("DFS_S3_ADDR", "127.0.0.1:0")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK and the CLI read DFS_TLS_CA and DFS_TOKEN; a developer's shell must not change the tests."""
    monkeypatch.delenv("DFS_TLS_CA", raising=False)
    monkeypatch.delenv("DFS_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each run of `dfs` sees a config directory of the test's own; the developer's profile and peer
    never leak in."""
    config = tmp_path / "config"
    monkeypatch.setenv("DFS_CONFIG_DIR", str(config))
    monkeypatch.delenv("DFS_PROFILE", raising=False)
    monkeypatch.delenv("DFS_PEER", raising=False)
    return config


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    """Factory: make_cluster(n, replicas=2, metadata=None, extra=()) -> a converged Cluster."""
    clusters: list[Cluster] = []

    def factory(n: int, replicas: int = 2, metadata: str | None = None, extra: tuple[str, ...] = ()) -> Cluster:
        base = tmp_path / f"cluster{len(clusters)}"
        base.mkdir()
        cluster = Cluster(base, metadata=metadata, replicas=replicas, extra=extra)
        clusters.append(cluster)
        return cluster.start(n)

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for cluster in clusters:
        cluster.close()
        if failed is not None and failed.failed:
            print(cluster.tail_logs())
