"""Waiting on conditions with a deadline, never with fixed sleeps (memberlist `retry.Run`).

On timeout the error carries the last observed state, so a failed convergence says what it saw.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


async def wait_until(
    pred: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    interval: float = 0.025,
    describe: Callable[[], str] | None = None,
) -> None:
    """Polls `pred` (sync or async) every `interval` s until it is true, or raises WaitTimeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = pred()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise WaitTimeout(_message(timeout, result, describe))
        await asyncio.sleep(interval)


def wait_until_sync(
    pred: Callable[[], bool],
    timeout: float,
    interval: float = 0.025,
    describe: Callable[[], str] | None = None,
) -> None:
    """The blocking twin of wait_until, for tests that drive subprocesses."""
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if result:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(_message(timeout, result, describe))
        time.sleep(interval)


def _message(timeout: float, result: object, describe: Callable[[], str] | None) -> str:
    state = describe() if describe is not None else f"last result {result!r}"
    return f"condition not met within {timeout} s; {state}"
