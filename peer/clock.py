"""Time, injected: monotonic time drives timeouts, wall time only stamps records.

Pure code (membership state, placement) takes `now` as an argument; loops ask a Clock for it, and
wait on it ("until this event is set or that long has passed"), so tests can drive time with
ManualClock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Returns once `event` is set or `timeout_s` has passed on this clock; True if the event is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            pass
        return event.is_set()


class ManualClock:
    """A clock that only moves when a test calls advance() (or code sleeps on it: sleeping jumps
    ahead at once). A wait() ends when its event is set or advance() reaches its deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return 1_700_000_000.0 + self._now

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        if event.is_set() or timeout_s <= 0:
            return event.is_set()
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now + timeout_s, timer)
        self._timers.append(entry)
        setter: asyncio.Future[None] = asyncio.ensure_future(self._until(event))
        try:
            await asyncio.wait({timer, setter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            setter.cancel()
            timer.cancel()
            self._timers.remove(entry)
        return event.is_set()

    @staticmethod
    async def _until(event: asyncio.Event) -> None:
        await event.wait()

    @property
    def waiting(self) -> int:
        """How many wait() calls are pending: a test steps time once the loops it drives are parked."""
        return len(self._timers)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        for deadline, timer in self._timers:
            if deadline <= self._now and not timer.done():
                timer.set_result(None)
