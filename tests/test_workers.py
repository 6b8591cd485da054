"""The background-work runner, driven by ManualClock, and what `dfs status` shows of each peer's workers.

Time only moves when a test advances the clock, so "idle until the interval" is checked exactly:
nothing runs a hair before it, the worker runs once it is reached. The last tests start a real
2-peer cluster and read the workers of every member through the SDK and the `dfs` command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from peer.clock import ManualClock, SystemClock
from peer.errors import MetadataUnavailable
from peer.housekeeping import Housekeeping
from peer.membership.state import MembershipView
from peer.workers import BUSY, IDLE, STOPPED, WorkerRunner, WorkerState
from tests.cluster import Cluster, shared_cluster
from tests.test_cli_integration import dfs, json_out, ok

INTERVAL_S = 10.0
PROMPT_S = 2.0  # a stopped runner that takes longer than this has missed the stop signal


class Scripted:
    """A worker whose units follow a script: True (busy), False (idle), or an exception to raise."""

    def __init__(self, name: str, script: list[bool | Exception] | None = None) -> None:
        self.name = name
        self.script = list(script or [])
        self.calls = 0

    async def work_once(self) -> bool:
        self.calls += 1
        step = self.script.pop(0) if self.script else False
        if isinstance(step, Exception):
            raise step
        return step


@asynccontextmanager
async def running(runner: WorkerRunner, stop: asyncio.Event) -> AsyncIterator[asyncio.Task[None]]:
    """Runs `runner` for the body, then stops it and requires a prompt end."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(PROMPT_S):
            await task


async def settled(pred: Callable[[], bool], what: str) -> None:
    """Lets the event loop run (time stands still) until `pred` holds."""
    for _ in range(1000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def parked(clock: ManualClock, waiters: int) -> None:
    """Until `waiters` loops wait on the clock: only then is stepping time exact."""
    await settled(lambda: clock.waiting == waiters, f"{waiters} loops waiting, {clock.waiting} are")


def state_of(runner: WorkerRunner, name: str) -> WorkerState:
    return next(s for s in runner.states() if s.name == name)


async def test_an_idle_worker_waits_for_its_interval_on_the_clock() -> None:
    clock, stop = ManualClock(), asyncio.Event()
    runner = WorkerRunner(clock, stop)
    worker = Scripted("idle")
    runner.add(worker, INTERVAL_S)
    async with running(runner, stop):
        await parked(clock, 1)
        assert worker.calls == 1
        assert state_of(runner, "idle").state == IDLE
        clock.advance(INTERVAL_S - 1.0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert worker.calls == 1
        clock.advance(1.0)
        await settled(lambda: worker.calls == 2, "the second unit")
        await parked(clock, 1)
    state = state_of(runner, "idle")
    assert (state.runs, state.errors, state.state) == (2, 0, STOPPED)
    assert state.last_run_at == clock.monotonic()


async def test_a_busy_worker_runs_again_without_waiting() -> None:
    clock, stop = ManualClock(), asyncio.Event()
    runner = WorkerRunner(clock, stop)
    worker = Scripted("busy", [True, True, True, False])
    runner.add(worker, INTERVAL_S)
    async with running(runner, stop):
        await parked(clock, 1)
        assert worker.calls == 4  # three busy units, then the idle one; no time passed
        assert state_of(runner, "busy").runs == 4


async def test_an_exception_is_counted_and_the_worker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock, stop = ManualClock(), asyncio.Event()
    runner = WorkerRunner(clock, stop)
    worker = Scripted("flaky", [RuntimeError("disk on fire"), True, False])
    runner.add(worker, INTERVAL_S)
    async with running(runner, stop):
        await parked(clock, 1)
        failed = state_of(runner, "flaky")
        assert (failed.runs, failed.errors) == (1, 1)  # a failure reads as idle: it waits before retrying
        assert failed.last_error == "RuntimeError: disk on fire"
        assert failed.last_error_at == clock.monotonic()
        assert "flaky worker failed" in caplog.text and "disk on fire" in caplog.text
        clock.advance(INTERVAL_S)
        await settled(lambda: worker.calls == 3, "the retry, busy, then idle")
        await parked(clock, 1)
        state = state_of(runner, "flaky")
        assert (state.runs, state.errors, worker.calls) == (3, 1, 3)
        report = state.report(clock.monotonic() + 5.0)
        assert report["last_error_s"] == pytest.approx(INTERVAL_S + 5.0)
        assert report["last_run_s"] == pytest.approx(5.0)


async def test_stop_ends_every_worker_promptly_without_moving_time() -> None:
    clock, stop = ManualClock(), asyncio.Event()
    runner = WorkerRunner(clock, stop)
    for name in ("gossip", "housekeeping", "anti-entropy", "scrub", "gc"):
        runner.add(Scripted(name), 3600.0)
    task = asyncio.create_task(runner.run())
    await parked(clock, 5)
    before = clock.monotonic()
    stop.set()
    async with asyncio.timeout(PROMPT_S):
        await task
    assert clock.monotonic() == before
    assert [s.state for s in runner.states()] == [STOPPED] * 5
    assert clock.waiting == 0


async def test_a_unit_in_progress_finishes_before_its_loop_ends() -> None:
    clock, stop = ManualClock(), asyncio.Event()
    runner = WorkerRunner(clock, stop)
    release = asyncio.Event()

    class Slow:
        name = "slow"
        finished = False

        async def work_once(self) -> bool:
            await release.wait()
            self.finished = True
            return True

    worker = Slow()
    runner.add(worker, INTERVAL_S)
    task = asyncio.create_task(runner.run())
    await settled(lambda: state_of(runner, "slow").state == BUSY, "the unit under way")
    stop.set()
    await asyncio.sleep(0)
    assert not task.done()
    release.set()
    async with asyncio.timeout(PROMPT_S):
        await task
    assert worker.finished and state_of(runner, "slow").runs == 1


async def test_system_clock_wait_ends_on_the_event_or_the_timeout() -> None:
    clock, event = SystemClock(), asyncio.Event()
    assert await clock.wait(event, 0.01) is False
    event.set()
    async with asyncio.timeout(PROMPT_S):
        assert await clock.wait(event, 3600.0) is True


# ------------------------------------------------------------------------------------ housekeeping


class FlakyMetadata:
    backend = "sqlite"

    def __init__(self) -> None:
        self.down = False
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.down:
            raise MetadataUnavailable(self.backend, "database is locked")


async def test_housekeeping_publishes_disk_usage_and_tracks_metadata_health() -> None:
    clock = ManualClock()
    view = MembershipView("me", "me:1", "me:2", incarnation=1, now=clock.monotonic(),
                          suspect_timeout_s=1.0, dead_timeout_s=2.0)
    refreshed: list[None] = []
    metadata = FlakyMetadata()
    chores = Housekeeping(view, lambda: (3, 300), lambda: refreshed.append(None), metadata,  # type: ignore[arg-type]
                          clock, ping_interval_s=2.0)
    assert await chores.work_once() is False
    assert (view.local.chunk_count, view.local.chunk_bytes, len(refreshed), metadata.pings) == (3, 300, 1, 1)
    metadata.down = True
    await chores.work_once()
    assert metadata.pings == 1  # pinged at most every ping interval
    clock.advance(2.0)
    await chores.work_once()
    assert chores.metadata_health() == (False, "database is locked")
    assert chores.health_doc("me") == {"status": "degraded", "node_id": "me", "metadata_error": "database is locked"}
    metadata.down = False
    clock.advance(2.0)
    await chores.work_once()
    assert chores.metadata_health() == (True, "")
    assert chores.health_doc("me") == {"status": "ok", "node_id": "me", "metadata_error": ""}


# ------------------------------------------------------------------------ the workers in `dfs status`

WORKER_NAMES = {"gossip", "housekeeping", "anti-entropy", "scrub", "rebuild", "gc"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory, request, "workers", peers=2, replicas=2) as cluster:
        yield cluster


def test_cluster_status_shows_the_workers_of_every_peer(cluster: Cluster) -> None:
    with cluster.peers[0].client() as client:
        status = client.status()
    assert {m.node_id for m in status.members} == {p.node_id for p in cluster.peers}
    for member in status.members:
        workers = {w.name: w for w in member.workers}
        assert set(workers) == WORKER_NAMES, member
        assert all(w.state in {BUSY, IDLE} and w.runs >= 1 and w.errors == 0 for w in workers.values()), workers
        assert all(w.last_run_s >= 0 and w.last_error_s == -1 for w in workers.values()), workers


def test_dfs_status_prints_the_workers_of_every_peer(cluster: Cluster) -> None:
    doc = json_out(dfs(cluster.peers[1], "--json", "status"))
    for member in doc["members"]:
        assert {w["name"] for w in member["workers"]} == WORKER_NAMES
        assert all(set(w) >= {"state", "runs", "errors", "last_error", "last_run_s"} for w in member["workers"])
    text = ok(dfs(cluster.peers[1], "status")).decode()
    workers = text.split("workers (each member's background work)\n", 1)[1].splitlines()
    assert workers[0].split()[:5] == ["NODE", "WORKER", "STATE", "RUNS", "ERRORS"]
    for peer in cluster.peers:
        rows = [line.split() for line in workers[1:] if line.startswith(peer.node_id[:12])]
        assert {row[1] if row[1] != "*" else row[2] for row in rows} == WORKER_NAMES, rows
