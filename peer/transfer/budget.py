"""A peer-wide budget of upload bytes in flight, shared by every concurrent upload.

Counting bytes rather than chunks lets many small uploads proceed together while a few large ones
are bounded by the same memory. A request larger than the whole budget still proceeds once nothing
else holds any, so no chunk can wait forever.
"""

from __future__ import annotations

import asyncio


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
