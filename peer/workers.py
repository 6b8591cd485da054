"""Background work: one runner drives every Worker of a peer on the injected clock, with one stop signal.

A worker does one unit of work per call and says whether more is already waiting (busy) or not
(idle); the runner calls a busy worker again at once and lets an idle one wait until its interval
passes or the peer stops. Each unit runs behind a failsafe: an exception is logged, counted in the
worker's state, and the loop goes on, because a repair worker that dies silently is worse than one
that retries. Stopping never interrupts a unit: the one in progress finishes, then the loop ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from peer.clock import Clock

log = logging.getLogger(__name__)

BUSY = "busy"
IDLE = "idle"
STOPPED = "stopped"


class Worker(Protocol):
    name: str

    async def work_once(self) -> bool:
        """Does one unit of work; True when more work is already waiting."""
        ...


@dataclass
class WorkerState:
    """What a peer reports of one worker. Times are the runner clock's monotonic seconds, -1 for never."""

    name: str
    interval_s: float
    state: str = IDLE
    """busy (a unit runs, or more work waits), idle (waiting for the interval) or stopped."""
    runs: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_at: float = -1.0
    last_run_at: float = -1.0

    def report(self, now: float) -> dict[str, Any]:
        """The PeerStats.workers entry: ages instead of clock readings, which mean nothing elsewhere."""
        return {
            "name": self.name,
            "state": self.state,
            "runs": self.runs,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_s": _age(self.last_error_at, now),
            "last_run_s": _age(self.last_run_at, now),
        }


def _age(at: float, now: float) -> float:
    return -1.0 if at < 0 else max(0.0, now - at)


class WorkerRunner:
    """Runs each added worker in its own loop until `stop` is set; `states()` shows how each is doing."""

    def __init__(self, clock: Clock, stop: asyncio.Event) -> None:
        self._clock = clock
        self._stop = stop
        self._workers: list[tuple[Worker, WorkerState]] = []

    def add(self, worker: Worker, interval_s: float) -> None:
        """Registers `worker`, which waits `interval_s` after each unit that found nothing more to do."""
        self._workers.append((worker, WorkerState(worker.name, interval_s)))

    def states(self) -> list[WorkerState]:
        """Copies, in the order the workers were added."""
        return [dataclasses.replace(state) for _, state in self._workers]

    def report(self) -> list[dict[str, Any]]:
        now = self._clock.monotonic()
        return [state.report(now) for _, state in self._workers]

    async def run(self) -> None:
        """Returns once every loop has ended: after `stop`, when each unit in progress has finished."""
        async with asyncio.TaskGroup() as tasks:
            for worker, state in self._workers:
                tasks.create_task(self._loop(worker, state), name=f"worker {worker.name}")

    async def _loop(self, worker: Worker, state: WorkerState) -> None:
        try:
            while not self._stop.is_set():
                if await self._failsafe(worker, state):
                    await asyncio.sleep(0)  # busy: run again, but let the rest of the peer in first
                    continue
                state.state = IDLE
                await self._clock.wait(self._stop, state.interval_s)
        finally:
            state.state = STOPPED

    async def _failsafe(self, worker: Worker, state: WorkerState) -> bool:
        """One unit of work; an exception is logged and counted, and reads as "nothing more waiting"."""
        state.state = BUSY
        try:
            return await worker.work_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the failsafe: log, count, carry on
            state.errors += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            state.last_error_at = self._clock.monotonic()
            log.exception("%s worker failed; retrying in %.1f s", worker.name, state.interval_s)
            return False
        finally:
            state.runs += 1
            state.last_run_at = self._clock.monotonic()


class RateLimiter:
    """Spreads work at `rate` units per second: after each step, sleeps as long as the step's size
    at that rate exceeds the time the step took."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock

    async def pace(self, units: int, started: float) -> None:
        if self._rate <= 0:
            return
        wait = units / self._rate - (self._clock.monotonic() - started)
        if wait > 0:
            await self._clock.sleep(wait)
