"""The background worker loop and its rate limiter.

A worker does one unit of work per call and says whether more is waiting (busy) or not (idle); the
loop runs busy workers again at once and lets idle ones sleep until their interval passes or the
peer stops. Each unit runs behind a failsafe: an exception is logged and the loop goes on, because a
repair worker that dies silently is worse than one that retries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from peer.clock import Clock

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    async def work_once(self) -> bool:
        """Does one unit of work; True when more work is already waiting."""
        ...


async def run_worker(worker: Worker, stop: asyncio.Event, idle_s: float, clock: Clock) -> None:
    while not stop.is_set():
        try:
            busy = await worker.work_once()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the failsafe: log, back off, carry on
            log.exception("%s worker failed; retrying in %.1f s", worker.name, idle_s)
            busy = False
        if busy:
            await asyncio.sleep(0)
            continue
        try:
            await asyncio.wait_for(stop.wait(), idle_s)
        except TimeoutError:
            pass


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
