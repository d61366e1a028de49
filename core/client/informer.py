"""Informers: list+watch one resource into a local, indexed cache and call handlers.

An informer lists, then watches from the list's resourceVersion; when the watch ends it
re-watches from the last resourceVersion it saw (bookmarks included), and when the server
answers 410 Expired it lists again, replacing the cache and calling handlers for the
differences. Every ``resync`` seconds it calls ``on_update(obj, obj)`` for every cached
object, so level-triggered controllers re-check state even without changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pilothouse.model import errors

from pilothouse.client._rest import Client, Resource

log = logging.getLogger(__name__)
Handler = Callable[..., None]


def object_key(obj: dict) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects."""
    m = obj["metadata"]
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]


def drop_managed_fields(obj: dict) -> dict:
    """An informer ``transform``: ``obj`` without ``metadata.managedFields`` (changed in
    place and returned), which most components never read and which is often the larger
    part of an object kept in a cache (kube-scheduler's informers drop it too). Since 0.2."""
    meta = obj.get("metadata")
    if meta is not None and "managedFields" in meta:
        del meta["managedFields"]
    return obj


class Informer:
    """List+watch of one resource (optionally one namespace and selectors).

    ``transform`` (since 0.2), when given, is applied to every object the list and the watch
    deliver, before it is cached and handed to the handlers (e.g.
    :func:`drop_managed_fields`): it receives the freshly decoded object, may change it in
    place, and returns the object to keep, which must keep ``metadata.name``,
    ``namespace`` and ``resourceVersion``. It can also be set as the ``transform`` attribute
    before the informer starts (a shared informer transforms for every user)."""

    def __init__(self, resource: Resource, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 resync: float = 0.0, transform: Callable[[dict], dict] | None = None):
        self.resource, self.namespace = resource, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync = resync
        self.transform = transform
        self.cache: dict[str, dict] = {}
        self.indexers: dict[str, Callable[[dict], list[str]]] = {}
        self.indexes: dict[str, dict[str, set[str]]] = {}
        self.handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._task: asyncio.Task | None = None

    def add_handlers(self, on_add: Handler | None = None, on_update: Handler | None = None,
                     on_delete: Handler | None = None) -> None:
        """``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``; called on the loop,
        must not block. A handler added after sync gets ``on_add`` for cached objects."""
        self.handlers.append((on_add, on_update, on_delete))
        if self.synced.is_set() and on_add:
            for obj in list(self.cache.values()):
                on_add(obj)

    def add_index(self, name: str, func: Callable[[dict], list[str]]) -> None:
        """Maintain an index: ``by_index(name, value)`` returns objects whose ``func`` lists
        ``value``."""
        self.indexers[name] = func
        self.indexes[name] = {}
        for key, obj in self.cache.items():
            self._index(key, None, obj)

    def by_index(self, name: str, value: str) -> list[dict]:
        return [self.cache[k] for k in self.indexes.get(name, {}).get(value, ()) if k in self.cache]

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)

    def list(self) -> list[dict]:
        return list(self.cache.values())

    def _index(self, key: str, old: dict | None, new: dict | None) -> None:
        for name, func in self.indexers.items():
            idx = self.indexes[name]
            for value in func(old) if old else ():
                idx.get(value, set()).discard(key)
            for value in func(new) if new else ():
                idx.setdefault(value, set()).add(key)

    def _emit(self, which: int, *args) -> None:
        for handlers in self.handlers:
            h = handlers[which]
            if h is not None:
                try:
                    h(*args)
                except Exception:
                    log.exception("informer handler failed")

    def _set(self, obj: dict) -> None:
        # (every watch event of every informer comes here: object_key inline, no index
        # call without indexers, handlers called here)
        if self.transform is not None:
            obj = self.transform(obj)
        m = obj["metadata"]
        key = f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]
        cache = self.cache
        old = cache.get(key)
        cache[key] = obj
        if self.indexers:
            self._index(key, old, obj)
        if old is None:
            for handlers in self.handlers:
                h = handlers[0]
                if h is not None:
                    try:
                        h(obj)
                    except Exception:
                        log.exception("informer handler failed")
        else:
            for handlers in self.handlers:
                h = handlers[1]
                if h is not None:
                    try:
                        h(old, obj)
                    except Exception:
                        log.exception("informer handler failed")

    def _remove(self, obj: dict) -> None:
        key = object_key(obj)
        old = self.cache.pop(key, None)
        self._index(key, old, None)
        if old is None and self.transform is not None:
            obj = self.transform(obj)
        self._emit(2, old or obj)

    async def _relist(self) -> None:
        result = await self.resource.list(self.namespace, label_selector=self.label_selector,
                                          field_selector=self.field_selector, limit=500)
        fresh = {object_key(o): o for o in result["items"]}
        for key in list(self.cache):
            if key not in fresh:
                self._remove(self.cache[key])
        for obj in fresh.values():
            old = self.cache.get(object_key(obj))
            if old is None or old["metadata"].get("resourceVersion") != \
                    obj["metadata"].get("resourceVersion"):
                self._set(obj)
        self.resource_version = result["metadata"]["resourceVersion"]
        self.synced.set()

    async def run(self) -> None:
        """List and watch until cancelled."""
        backoff = 0.2
        need_list = not self.synced.is_set()  # a restarted informer resumes its watch
        resync_task = asyncio.create_task(self._resync()) if self.resync > 0 else None
        try:
            while True:
                try:
                    if need_list:
                        await self._relist()
                        need_list = False
                    async for ev in self.resource.watch(
                            self.namespace, resource_version=self.resource_version,
                            label_selector=self.label_selector,
                            field_selector=self.field_selector, timeout_seconds=300):
                        rv = ev.object.get("metadata", {}).get("resourceVersion")
                        if ev.type == "BOOKMARK":
                            self.resource_version = rv or self.resource_version
                            continue
                        if ev.type == "DELETED":
                            self._remove(ev.object)
                        else:
                            self._set(ev.object)
                        self.resource_version = rv or self.resource_version
                        backoff = 0.2
                except errors.Gone:
                    need_list = True
                except (errors.StatusError, OSError) as exc:
                    log.debug("informer %s: %s; retrying in %.1fs", self.resource.kind.plural,
                              exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            if resync_task:
                resync_task.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for obj in list(self.cache.values()):
                self._emit(1, obj, obj)

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer {self.resource.kind.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


class InformerFactory:
    """Shared informers: one per (kind, namespace, selectors) for every controller in a
    process."""

    def __init__(self, client: Client, resync: float = 0.0):
        self.client, self.resync = client, resync
        self._informers: dict[tuple, Informer] = {}

    def informer(self, api_version: str, kind: str, namespace: str | None = None, *,
                 label_selector: str | None = None,
                 field_selector: str | None = None) -> Informer:
        key = (api_version, kind, namespace, label_selector, field_selector)
        if key not in self._informers:
            self._informers[key] = Informer(self.client.resource(api_version, kind), namespace,
                                            label_selector=label_selector,
                                            field_selector=field_selector, resync=self.resync)
        return self._informers[key]

    def start(self) -> None:
        for inf in self._informers.values():
            inf.start()

    async def wait_for_sync(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait()
                                                for i in self._informers.values())), timeout)

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
