"""Writes pod statuses through ``pods/status``: only when a status changed, one write in
flight per pod, always the newest status (intermediate ones are skipped), retried with
back-off. The pod worker never waits for a write, except :meth:`StatusManager.flush`
before it deletes a pod."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pilothouse.client import Client
from pilothouse.model import errors

__all__ = ["StatusManager", "status_patch"]

log = logging.getLogger("pilothouse.node.status")


def status_patch(old: dict | None, new: dict) -> dict:
    """A JSON merge patch turning status ``old`` into ``new``: lists and maps are sent
    whole, keys that ``new`` lacks are nulled."""
    patch: dict = dict(new)
    for key in old or {}:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = (old or {}).get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = status_patch(before, value)
    return patch


class _Entry:
    __slots__ = ("namespace", "name", "desired", "written", "task", "pod", "done")

    def __init__(self, namespace: str, name: str, written: dict | None):
        self.namespace, self.name = namespace, name
        self.desired: dict | None = None
        self.written = written
        self.task: asyncio.Task | None = None
        self.pod: dict | None = None
        self.done = asyncio.Event()
        self.done.set()


class StatusManager:
    def __init__(self, client: Client,
                 on_written: Callable[[dict, dict], None] | None = None):
        self.pods = client.resource("v1", "Pod")
        self.on_written = on_written or (lambda pod, status: None)
        self._entries: dict[str, _Entry] = {}

    def seed(self, uid: str, pod: dict) -> None:
        """Remember what the API already holds for a pod (so an unchanged status is not
        written again after an agent restart)."""
        if uid not in self._entries:
            m = pod["metadata"]
            self._entries[uid] = _Entry(m.get("namespace", ""), m["name"],
                                        pod.get("status") or None)

    def last_written(self, uid: str) -> dict | None:
        entry = self._entries.get(uid)
        return entry.written if entry else None

    def set(self, uid: str, pod: dict, status: dict) -> None:
        """Make ``status`` the pod's status in the API, soon."""
        entry = self._entries.get(uid)
        if entry is None:
            self.seed(uid, pod)
            entry = self._entries[uid]
        entry.pod = pod
        if status == entry.written and entry.task is None:
            entry.desired = None
            return
        entry.desired = status
        if entry.task is None:
            entry.done.clear()
            entry.task = asyncio.create_task(self._write(uid, entry),
                                             name=f"status {entry.namespace}/{entry.name}")

    async def flush(self, uid: str, timeout: float = 30.0) -> None:
        """Wait until the newest status of the pod is written (or given up)."""
        entry = self._entries.get(uid)
        if entry is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(entry.done.wait(), timeout)

    def forget(self, uid: str) -> None:
        entry = self._entries.pop(uid, None)
        if entry is not None and entry.task is not None:
            entry.task.cancel()

    async def stop(self) -> None:
        for entry in self._entries.values():
            if entry.task is not None:
                entry.task.cancel()
        self._entries.clear()

    async def _write(self, uid: str, entry: _Entry) -> None:
        delay = 0.2
        try:
            while entry.desired is not None and entry.desired != entry.written:
                status = entry.desired
                try:
                    await self.pods.patch(entry.name, {"status": status_patch(entry.written,
                                                                              status)},
                                          entry.namespace, subresource="status")
                except errors.NotFound:
                    entry.desired = None
                    break
                except (errors.StatusError, OSError) as exc:
                    log.debug("status of %s/%s not written: %s; retrying in %.1fs",
                              entry.namespace, entry.name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                entry.written = status
                if entry.desired is status:
                    entry.desired = None
                delay = 0.2
                try:
                    self.on_written(entry.pod, status)
                except Exception:
                    log.exception("pod status hook failed")
        finally:
            entry.task = None
            entry.done.set()
