"""The bounded chaos run of tests/chaos.py: `rep:2` and `rep:3` on 5 real peer processes each, and
`ec:4+2` on 7, each policy the cluster's default, so every upload and every repair goes through it.

Clients upload and download throughout while peers are SIGKILLed and restarted, paused, have chunk or
fragment files corrupted on disk, one leaves for good and a new one joins. Each run stops by itself
after CHAOS_S seconds of faults; then every acknowledged version must download byte-identical and,
within the stated bound, every chunk must have R intact copies on its owners, or each of its
fragments be intact on its owner (fragment i on owner i). Throughout, every running
peer's GET /metrics is scraped each second and must parse, list the core families and never show a
counter going backwards (tests/scraper.py). The figures are printed
(visible with -s) and attached to the test report; the peers' log tails are attached on failure.

DFS_CHAOS_SEED=N replays the runs with another seed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, ChaosResult, run_chaos

pytestmark = pytest.mark.long  # `make test-long`

CHAOS_S = 35.0
REPLICATION_BOUND_S = 60.0
SEED = int(os.environ.get("DFS_CHAOS_SEED", "0"))


def chaos(tmp_path: Path, request: pytest.FixtureRequest, seed: int, *, peers: int = 5, replicas: int = 2,
          policy: str = "") -> ChaosResult:
    cfg = ChaosConfig(peers=peers, replicas=replicas, policy=policy, duration_s=CHAOS_S, clients=3, seed=SEED or seed,
                      fault_interval_s=2.5, replication_bound_s=REPLICATION_BOUND_S, max_versions=300)
    base = tmp_path / "chaos"
    result = run_chaos(base, cfg)
    summary = result.summary()
    print(summary)
    request.node.add_report_section("call", "chaos summary", summary)
    if result.failures:
        request.node.add_report_section("call", "peer logs", result.logs)
    else:
        shutil.rmtree(base, ignore_errors=True)  # hundreds of MiB of chunks: keep them only to debug
    return result


def check(result: ChaosResult) -> None:
    cfg = result.cfg
    assert result.ok, "\n".join(result.failures)
    # The run did what the issue asks of it, or its verdict would mean little.
    assert result.faults["leave"] == cfg.leaves and result.faults["join"] == cfg.joins, result.faults
    assert all(result.faults[kind] >= 1 for kind in ("kill+restart", "pause", "corrupt")), result.faults
    assert result.counts["uploads_acked"] >= 20, result.counts
    # The end conditions.
    assert result.counts["final_ok"] == result.counts["uploads_acked"]
    assert result.counts["final_missing"] == result.counts["final_wrong"] == 0
    assert result.time_to_full_replication_s is not None
    assert result.time_to_full_replication_s <= REPLICATION_BOUND_S
    # Every peer that ran, the one that joined included, answered scrapes that passed their checks.
    scraped = result.scrapes.parsed
    assert sorted(scraped) == list(range(cfg.peers + cfg.joins)) and min(scraped.values()) >= 1, scraped


@pytest.mark.timeout(240)
def test_chaos_five_peers_two_replicas(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check(chaos(tmp_path, request, replicas=2, seed=1))


@pytest.mark.timeout(240)
def test_chaos_five_peers_three_replicas(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    check(chaos(tmp_path, request, replicas=3, seed=2))


@pytest.mark.timeout(240)
def test_chaos_ec_4_2(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Seven peers, so that the six fragments of a chunk still have six owners after the leave, and a
    corrupt or lost fragment is rebuilt from four others while up to two peers are down."""
    check(chaos(tmp_path, request, seed=3, peers=7, policy="ec:4+2"))
