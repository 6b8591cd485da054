"""The chaos test's scrape checks can fail: a peer's real exposition passes them, and an exposition
without a core family, one that does not parse, or a counter that went down does not."""

from __future__ import annotations

import pytest

from peer.metrics import PeerMetrics
from tests.scraper import check_exposition, went_back


def exposition(metrics: PeerMetrics) -> str:
    return metrics.render()[0].decode()


def test_a_peers_exposition_passes_and_its_counters_are_compared() -> None:
    metrics = PeerMetrics()
    metrics.count_request("grpc", "Put", "OK", 0.01, 100, 10)
    before = check_exposition(exposition(metrics))
    assert before[("dfs_requests_total", (("api", "grpc"), ("code", "OK"), ("operation", "Put")))] == 1
    metrics.count_request("grpc", "Put", "OK", 0.01, 100, 10)
    metrics.repaired.inc()
    after = check_exposition(exposition(metrics))
    assert went_back(before, after) == []
    assert went_back(after, before) != []  # as a restarted process would look, were its pid the same


@pytest.mark.parametrize("family", ["dfs_requests", "dfs_chunks_stored", "dfs_members", "dfs_under_replicated_chunks"])
def test_an_exposition_without_a_core_family_fails(family: str) -> None:
    def name(line: str) -> str:  # the family a HELP or TYPE line describes, or a sample's name
        return line.split()[2] if line.startswith("#") else line.split("{")[0].split()[0]

    kept = [line for line in exposition(PeerMetrics()).splitlines() if name(line) not in (family, f"{family}_total")]
    with pytest.raises(AssertionError, match="core families"):
        check_exposition("\n".join(kept) + "\n")


def test_an_exposition_that_does_not_parse_fails() -> None:
    with pytest.raises(AssertionError, match="does not parse"):
        check_exposition(exposition(PeerMetrics()) + "dfs_requests_total{api= 1\n")
