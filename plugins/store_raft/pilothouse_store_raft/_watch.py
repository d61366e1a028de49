"""Delivery state of one open watch on the event loop.

A caught-up watch is *attached*: the driver pushes every matching event into its
``pending`` buffer and wakes its consumer, which sleeps on one future per sleep however many
events arrive meanwhile. Progress deadlines use one timer per watch that is armed when the
consumer sleeps and re-armed only when it fires before the deadline (deliveries move the
deadline without touching the timer).
"""

from __future__ import annotations

import asyncio
import collections

from pilothouse.interfaces.store import WatchEvent


class Watcher:
    __slots__ = ("loop", "prefix", "interval", "pending", "waiter", "live", "timer",
                 "idle_since", "progress_due")

    def __init__(self, loop: asyncio.AbstractEventLoop, prefix: str,
                 interval: float | None) -> None:
        self.loop, self.prefix, self.interval = loop, prefix, interval
        self.pending: collections.deque[WatchEvent] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.live = False  # attached: new matching events are pushed into `pending`
        self.timer: asyncio.TimerHandle | None = None
        self.idle_since = loop.time()  # the last delivery, as the consumer came back
        self.progress_due = False  # set by the timer: nothing delivered for `interval`

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self) -> None:
        """Wait for a wake-up or (with an interval) the progress deadline."""
        if self.interval is not None and self.timer is None:
            self.timer = self.loop.call_at(self.idle_since + self.interval, self._on_timer)
        waiter = self.waiter = self.loop.create_future()
        await waiter

    def _on_timer(self) -> None:
        self.timer = None
        if self.waiter is None:
            return  # the consumer is busy; it arms the timer when it sleeps again
        due = self.idle_since + self.interval
        if self.loop.time() >= due:
            self.progress_due = True
            self.wake()
        else:
            self.timer = self.loop.call_at(due, self._on_timer)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
