"""Generation slots: a bounded number of answers in flight, and a first event fetched before any byte is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from api.errors import ApiError

T = TypeVar("T")


class GenerationSlots:
    """Limits concurrent answers; a request waits for a slot at most ``timeout_s``, then gets 429.

    Args:
        limit: answers generated at once.
        timeout_s: how long a request waits for a slot.
    """

    def __init__(self, limit: int, timeout_s: float) -> None:
        self._sem = asyncio.Semaphore(limit)
        self.timeout_s = timeout_s

    async def _acquire(self) -> None:
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(429, "too many questions in flight; retry shortly", "rate_limit_error", None, "busy") from None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run a blocking call inside a slot (off the event loop).

        Raises:
            ApiError: 429 when no slot frees up in time.
        """
        await self._acquire()
        try:
            return await run_in_threadpool(fn)
        finally:
            self._sem.release()

    async def stream(self, events: Iterator[T]) -> Iterator[T]:
        """Take a slot and the stream's first event, so errors before any byte is sent become HTTP errors.

        The returned iterator yields every event, the first one included, and gives the slot back
        when it is exhausted or closed.

        Raises:
            ApiError: 429 when no slot frees up in time; whatever the first event raised.
        """
        await self._acquire()
        try:
            first = await run_in_threadpool(next, events)
        except BaseException:
            self._sem.release()
            raise
        return self._rest(first, events)

    def _rest(self, first: T, events: Iterator[T]) -> Iterator[T]:
        try:
            yield first
            yield from events
        finally:
            self._sem.release()
