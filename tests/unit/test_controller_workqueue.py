"""The work queue keeps client-go's promises: once, never twice at once, backoff, never dropped."""

from __future__ import annotations

import asyncio

import pytest

from troupe_operator.controller.workqueue import QueueShutDown, WorkQueue

Queue = WorkQueue[str]


async def next_key(queue: Queue, timeout: float = 5.0) -> str:
    key, _ = await asyncio.wait_for(queue.get(), timeout)
    return key


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: Queue = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert [await next_key(queue), await next_key(queue)] == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_added_while_processed_comes_back_once_after_done() -> None:
    queue: Queue = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "handed out again while still being processed"
    queue.done("a")
    assert await next_key(queue) == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_the_sooner_of_two_pending_wakeups_wins() -> None:
    queue: Queue = WorkQueue()
    queue.add_after("a", 60)
    queue.add_after("a", 0.01)
    queue.add_after("a", 30)
    assert await next_key(queue) == "a"


async def test_backoff_doubles_per_key_is_capped_and_resets_when_forgotten() -> None:
    queue: Queue = WorkQueue(base_delay=0.005, max_delay=0.04)
    delays = [queue.add_rate_limited("a") for _ in range(6)]
    assert delays == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04]
    assert queue.add_rate_limited("b") == 0.005, "backoff is per key"
    queue.forget("a")
    assert queue.add_rate_limited("a") == 0.005


async def test_a_wait_the_server_asked_for_wins_over_a_shorter_backoff() -> None:
    queue: Queue = WorkQueue(base_delay=0.005)
    queue.add_after("a", 0.001)
    assert queue.add_rate_limited("a", at_least=0.2) == 0.2
    with pytest.raises(TimeoutError):
        await next_key(queue, timeout=0.05)
    assert await next_key(queue) == "a"


async def test_a_sooner_pending_wakeup_is_kept_when_a_backoff_is_longer() -> None:
    queue: Queue = WorkQueue(base_delay=60)
    queue.add_after("a", 0.01)
    assert queue.add_rate_limited("a") == 60
    assert await next_key(queue) == "a"


async def test_a_retried_key_is_not_dropped_and_a_discarded_one_is() -> None:
    queue: Queue = WorkQueue(base_delay=0.001)
    queue.add("a")
    key = await next_key(queue)
    queue.add_rate_limited(key)
    queue.done(key)
    assert await next_key(queue) == "a"
    queue.add_after("b", 0.01)
    queue.discard("b")
    queue.add("c")
    queue.discard("c")
    with pytest.raises(TimeoutError):
        await next_key(queue, timeout=0.1)


async def test_shutting_down_releases_waiting_workers() -> None:
    queue: Queue = WorkQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(QueueShutDown):
        await asyncio.wait_for(waiting, 5)
