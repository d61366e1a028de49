"""A work queue of keys with client-go's semantics and per-item rate-limited retries.

* A key added while queued is queued once (dedup).
* A key added while being processed is re-queued when :meth:`WorkQueue.done` is called, so
  one key is never processed by two workers at once.
* :meth:`add_rate_limited` re-adds after an exponential per-item delay (``base * 2**n``,
  capped at ``max_delay``); :meth:`forget` resets the item's count after a success.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable


class WorkQueue:
    def __init__(self, base_delay: float = 0.005, max_delay: float = 300.0):
        self.base_delay, self.max_delay = base_delay, max_delay
        self._queue: collections.deque = collections.deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._cond = asyncio.Condition()
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        """Queue ``key`` unless it is already waiting."""
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._cond:
            self._cond.notify()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending add wins)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()

        def fire():
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = loop.call_later(delay, fire)

    def add_rate_limited(self, key: Hashable) -> float:
        """Re-queue after this item's back-off; returns the delay used."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.base_delay * (2 ** n), self.max_delay)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        """Reset the item's back-off (call after it was processed successfully)."""
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> Hashable | None:
        """Wait for a key; None after :meth:`shutdown`. Call :meth:`done` when finished."""
        async with self._cond:
            await self._cond.wait_for(lambda: self._queue or self._shutdown)
            if not self._queue:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            asyncio.get_running_loop().create_task(self._wake())

    async def shutdown(self) -> None:
        self._shutdown = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        async with self._cond:
            self._cond.notify_all()
