"""The peer-wide upload byte budget: bounds bytes in flight, lets small chunks share it, never starves."""

from __future__ import annotations

import asyncio

from peer.transfer.budget import ByteBudget
from tests.waiting import wait_until


async def test_waits_while_full_and_resumes_on_release() -> None:
    budget = ByteBudget(100)
    await budget.acquire(60)
    blocked = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0.01)  # bounded: shows the second acquire does not go through while full
    assert not blocked.done()
    budget.release(60)
    await asyncio.wait_for(blocked, 1)
    assert budget.used == 50


async def test_many_small_requests_fit_together() -> None:
    budget = ByteBudget(1024 * 1024)
    await asyncio.wait_for(asyncio.gather(*(budget.acquire(64 * 1024) for _ in range(16))), 1)
    assert budget.used == 16 * 64 * 1024


async def test_a_request_larger_than_the_budget_proceeds_when_nothing_else_holds_any() -> None:
    budget = ByteBudget(10)
    await budget.acquire(5)
    big = asyncio.create_task(budget.acquire(50))
    budget.release(5)
    await wait_until(big.done, 1)
    assert budget.used == 50
