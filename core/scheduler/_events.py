"""core/v1 Events for scheduling decisions, written in the background.

:meth:`EventRecorder.record` never waits: events go through a bounded queue to a few writer
tasks (when the API server cannot keep up, the overflow is dropped and counted, as
client-go's recorder does). A repeat of the same (object, reason, message) within ten
minutes patches ``count`` and ``lastTimestamp`` of the existing Event instead of creating
another, so a pod retried many times does not flood the namespace.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import time
from typing import Any

from pilothouse.model import errors

log = logging.getLogger("pilothouse.scheduler")

_MAX_MESSAGE = 1024
_AGGREGATE_WINDOW = 600.0


_stamp: tuple[int, str] = (-1, "")
#: Event name suffixes: 16 random hex digits from a private generator seeded from the OS
#: (again in a forked child), so names stay unique without a system call per Event and the
#: global random module's draws (the framework's tie-breaks) are left alone.
_names = random.Random()
os.register_at_fork(after_in_child=_names.seed)


def _now() -> str:
    """The current UTC time to the second, RFC 3339 (formatted once per second)."""
    global _stamp
    second = int(time.time())
    if second != _stamp[0]:
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _stamp[1]


def truncate(message: str) -> str:
    """Kubernetes' limit on event and condition messages."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[:_MAX_MESSAGE - 3] + "..."


class EventRecorder:
    def __init__(self, client: Any, component: str, instance: str, *,
                 max_pending: int = 10000, writers: int = 4):
        self.events = client.resource("v1", "Event")
        self.component, self.instance = component, instance
        self.max_pending, self.writers = max_pending, writers
        self.dropped = 0
        self.written = 0
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._seen: collections.OrderedDict = collections.OrderedDict()

    def start(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self.max_pending)
            self._tasks = [asyncio.create_task(self._writer(), name="scheduler events")
                           for _ in range(self.writers)]

    async def stop(self, drain: float = 2.0) -> None:
        if self._queue is not None and drain > 0:
            try:
                await asyncio.wait_for(self._queue.join(), drain)
            except asyncio.TimeoutError:
                pass
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks, self._queue = [], None

    def record(self, obj: dict, type: str, reason: str, message: str,
               action: str = "Scheduling", component: str | None = None) -> None:
        if self._queue is None:
            self.start()
        try:
            self._queue.put_nowait((obj, type, reason, truncate(message), action,
                                    component or self.component))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _writer(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
                self.written += 1
            except errors.StatusError as exc:
                log.debug("event not written: %s", exc)
            except Exception:
                log.exception("event not written")
            finally:
                self._queue.task_done()

    async def _write(self, obj: dict, type: str, reason: str, message: str, action: str,
                     component: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid") or meta.get("name"), reason, message)
        seen = self._seen.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[2] < _AGGREGATE_WINDOW:
            name, count, _ = seen
            try:
                await self.events.patch(name, {"count": count + 1, "lastTimestamp": _now()}, ns)
                self._seen[key] = (name, count + 1, now)
                self._seen.move_to_end(key)
                return
            except errors.NotFound:
                pass
        name = f"{meta.get('name')}.{_names.getrandbits(64):016x}"
        stamp = _now()
        # the created Event is not read: raw skips decoding it (one per scheduled pod)
        await self.events.client.request("POST", self.events.path(ns), raw=True, body={
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"apiVersion": obj.get("apiVersion") or "v1",
                               "kind": obj.get("kind") or "Pod", "namespace": ns,
                               "name": meta.get("name"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type, "action": action,
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": self.instance,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "count": 1})
        self._seen[key] = (name, 1, now)
        if len(self._seen) > 4096:
            self._seen.popitem(last=False)
