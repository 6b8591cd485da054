"""The bounded partition run (tests/netns_run.py): 5 peers, each in its own network namespace, under
client load through every peer while the network between them fails once in each way (a link cut, a
flapping link, an asymmetric route, one peer isolated, a 2 | 3 split) after a SIGKILL and a SIGSTOP.

The history of every call is judged after the heal (tests/history.py): nothing acknowledged is lost,
no download returns bytes that were not a committed version's, version numbers are consecutive and
follow commit order, no read is stale. What each side of a partition can do is checked against
docs/ARCHITECTURE.md "Partitions"; membership converges and full redundancy returns within their
bounds. `make partition` runs the long version (10 minutes of random faults).

Needs root (namespaces, veth pairs, a bridge): without it the test skips with one line, and under CI
it fails instead.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.netns import Network, require_netns
from tests.netns_run import BOUNDED, NETWORK_KINDS, run_partitions


@pytest.mark.timeout(300)
def test_every_kind_of_partition_loses_no_acknowledged_version(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    require_netns()
    base = tmp_path / "partitions"
    result = run_partitions(base, BOUNDED)
    summary = result.summary()
    print(summary)
    request.node.add_report_section("call", "partition summary", summary)
    if not result.ok:
        request.node.add_report_section("call", "peer logs", result.logs)
    assert result.ok, "\n".join(result.failures + result.verdict.problems)
    # The run did what it claims, or its verdict would mean little.
    assert all(result.faults[kind] == 1 for kind in NETWORK_KINDS), result.faults
    assert result.faults["kill"] == result.faults["pause"] == 1, result.faults
    assert result.verdict.acknowledged >= 50, result.verdict
    assert result.verdict.lost == result.verdict.wrong_reads == result.verdict.stale_reads == 0
    assert result.uploads["ok"] >= 50 and result.downloads["ok"] >= 50, (result.uploads, result.downloads)
    # Every kind of partition was judged on calls made while it held, on each of its sides.
    assert set(result.judged_episodes) == set(NETWORK_KINDS), result.judged_episodes
    assert result.convergence_s is not None and result.convergence_s <= BOUNDED.convergence_bound_s
    assert result.redundancy_s is not None and result.redundancy_s <= result.redundancy_bound_s
    assert result.cleanup_s is not None
    shutil.rmtree(base, ignore_errors=True)


def test_the_hosts_network_is_private_and_leaves_nothing_behind() -> None:
    """The test network reaches nothing beyond this machine (a private /24 on a bridge whose only
    ports are the hosts' veth ends), and closing it removes every namespace, link and the bridge."""
    require_netns()
    network = Network().create(hosts=2)
    try:
        names = [host.ns for host in network.hosts]
        assert all(ipaddress.ip_address(host.addr).is_private for host in network.hosts)
        ports = subprocess.run(["ip", "-o", "link", "show", "master", network.bridge], capture_output=True,
                               text=True, check=True).stdout
        enslaved = {line.split(":")[1].strip().split("@")[0] for line in ports.splitlines()}
        assert enslaved == {host.veth for host in network.hosts}  # no uplink to any real interface
        assert set(names) <= set(_namespaces())
    finally:
        network.close()
    assert not set(names) & set(_namespaces())
    assert subprocess.run(["ip", "link", "show", network.bridge], capture_output=True).returncode != 0
    assert all(subprocess.run(["ip", "link", "show", host.veth], capture_output=True).returncode != 0
               for host in network.hosts)


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]
