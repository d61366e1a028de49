"""Events about pods (``kubectl describe pod`` shows them): Pulled, Created, Started,
Killing, BackOff, Unhealthy, Failed... Recorded without blocking the caller; a repeat of the
same event within ten minutes bumps its ``count`` instead of creating a new one, like
client-go's event correlator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pilothouse.client import Client
from pilothouse.model import errors
from pilothouse.model.meta import now_rfc3339

__all__ = ["EventRecorder"]

log = logging.getLogger("pilothouse.node.events")
_WINDOW = 600.0


class EventRecorder:
    def __init__(self, client: Client, node_name: str, component: str = "kubelet",
                 max_queue: int = 1000):
        self.client, self.node_name, self.component = client, node_name, component
        self._queue: asyncio.Queue = asyncio.Queue(max_queue)
        self._seen: dict[tuple, tuple[str, int, float]] = {}
        self._task: asyncio.Task | None = None
        self._events = client.resource("v1", "Event")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="node events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def event(self, obj: dict, type_: str, reason: str, message: str,
              field_path: str = "") -> None:
        """Record an event about ``obj`` (a Pod or the Node). Never blocks or raises."""
        try:
            self._queue.put_nowait((obj, type_, reason, message, field_path, time.time()))
        except asyncio.QueueFull:
            log.debug("event queue full; dropped %s %s", reason, message)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
            except (errors.StatusError, OSError) as exc:
                log.debug("cannot record event: %s", exc)
            except Exception:
                log.exception("recording an event failed")

    async def _write(self, obj, type_, reason, message, field_path, when) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        involved = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", "Pod"),
                    "name": meta.get("name", ""), "uid": meta.get("uid", "")}
        if meta.get("namespace"):
            involved["namespace"] = namespace
        if field_path:
            involved["fieldPath"] = field_path
        key = (involved["uid"], field_path, type_, reason, message)
        now = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None and when - seen[2] < _WINDOW:
            name, count, _ = seen
            try:
                await self._events.patch(name, {"count": count + 1, "lastTimestamp": now},
                                         namespace)
                self._seen[key] = (name, count + 1, when)
                return
            except errors.NotFound:
                pass
        name = f"{involved['name'] or 'node'}.{time.time_ns():x}"
        await self._events.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message,
            "type": type_, "source": {"component": self.component, "host": self.node_name},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": None, "reportingComponent": self.component,
            "reportingInstance": self.node_name}, namespace)
        self._seen[key] = (name, 1, when)
        if len(self._seen) > 4096:
            cutoff = time.time() - _WINDOW
            self._seen = {k: v for k, v in self._seen.items() if v[2] > cutoff}
