"""The watch cache: one store watch per resource, fanned out to every API watcher.

Each cache lists its resource's prefix once, then follows one store watch from that revision,
keeping the current objects and a window of recent events. API watches and ``resourceVersion=0``
lists are served from memory, so a thousand watchers cost one store watch. Each event is
serialised once and the same bytes go to every JSON watcher.

A watcher that falls more than ``QUEUE_LIMIT`` events behind is ended (its client re-watches
from the last resourceVersion it saw, as informers do); a resumption older than the window
gets 410 Expired and the client re-lists.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import dataclasses
import logging
from collections.abc import Callable

from pilothouse.interfaces import store as st
from pilothouse.model import errors

from pilothouse.apiserver import _json
from pilothouse.apiserver.storage import ResourceStorage, api_json, decode

log = logging.getLogger(__name__)

WINDOW = 50_000  # events kept for resumption, per resource
QUEUE_LIMIT = 10_000  # events a single watcher may lag before it is ended


@dataclasses.dataclass(slots=True)
class Event:
    """One change: ``type`` ADDED/MODIFIED/DELETED, the object (for DELETED its last state,
    with the deletion's resourceVersion), the previous object (None for ADDED)."""

    type: str
    obj: dict
    prev: dict | None
    revision: int
    _json: bytes | None = None

    def json_line(self) -> bytes:
        """``{"type":...,"object":...}\\n``, encoded once and shared by every watcher."""
        if self._json is None:
            start = _LINE_START.get(self.type) or b'{"type":%s,"object":' % _json.dumps(self.type)
            self._json = b"".join((start, api_json(self.obj), b"}\n"))
        return self._json


_LINE_START = {t: b'{"type":"%s","object":' % t.encode() for t in ("ADDED", "MODIFIED", "DELETED")}

Filter = Callable[[dict], bool]


class Watcher:
    """One API watch on a cache: a queue of events (or None when the watch must end)."""

    def __init__(self, cache: "WatchCache", after: int, namespace: str, match: Filter | None):
        self.cache, self.after, self.namespace, self.match = cache, after, namespace, match
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.closed = False

    def _visible(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.match is None or self.match(obj)

    def offer(self, event: Event) -> None:
        """Deliver ``event`` as this watcher sees it (selector transitions become ADDED or
        DELETED, as in Kubernetes)."""
        if self.closed or event.revision <= self.after:
            return
        if self.namespace == "" and self.match is None:
            self._put(event)
            return
        now, before = self._visible(event.obj), self._visible(event.prev)
        if event.type == "DELETED":
            if now:
                self._put(event)
        elif now and before:
            self._put(event)
        elif now:
            self._put(Event("ADDED", event.obj, None, event.revision))
        elif before:
            self._put(Event("DELETED", event.obj, event.prev, event.revision))

    def _put(self, event: Event) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            log.warning("watcher on %s fell %d events behind; ending it", self.cache.prefix,
                        QUEUE_LIMIT)
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cache.watchers.discard(self)
            self.queue.put_nowait(None)


class WatchCache:
    """Current objects and recent events of one resource, fed by one store watch."""

    def __init__(self, storage: ResourceStorage, progress_interval: float = 1.0,
                 window: int = WINDOW):
        self.storage = storage
        self.prefix = storage.prefix()
        self.progress_interval = progress_interval
        self.objects: dict[str, dict] = {}
        self.events: collections.deque[Event] = collections.deque(maxlen=window)
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[Event], None]] = []  # in-process observers (CRDs)
        self.revision = 0  # every change up to here is applied
        self.oldest = 0  # events after this revision are in the window
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._waiters: list[tuple[int, int, asyncio.Future]] = []  # (revision, seq, future)
        self._seq = 0

    @property
    def ready(self) -> bool:
        """Whether the cache has loaded its resource (its objects are then served)."""
        return self._ready.is_set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watchcache {self.prefix}")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for w in list(self.watchers):
            w.close()

    async def _load(self) -> None:
        result = await self.storage.store.list(self.prefix)
        self.objects = {kv.key: decode(kv) for kv in result.items}
        self.oldest = result.revision
        self.events.clear()
        self.revision = 0
        self._advance(result.revision)

    async def _run(self) -> None:
        backoff, loaded = 0.1, False
        while True:
            try:
                if not loaded:
                    await self._load()
                    loaded = True
                    self._ready.set()
                async for ev in self.storage.store.watch(
                        self.prefix, after_revision=self.revision,
                        progress_interval=self.progress_interval):
                    self._apply(ev)
                    backoff = 0.1
                return  # the store closed
            except asyncio.CancelledError:
                raise
            except st.Compacted:
                log.warning("watch cache %s: history compacted; relisting", self.prefix)
                for w in list(self.watchers):
                    w.close()
                loaded = False
            except Exception as exc:  # store hiccup: retry with back-off, keep serving
                log.warning("watch cache %s: %s; retrying in %.1fs", self.prefix, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _apply(self, ev: st.WatchEvent) -> None:
        if ev.type is st.EventType.PROGRESS or ev.revision <= self.revision:
            self._advance(ev.revision)
            return
        if ev.type is st.EventType.PUT:
            obj = self.storage.written(ev.kv)  # this server's own write: decoded already
            if obj is None:
                obj = decode(ev.kv)
            prev = self.objects.get(ev.kv.key)
            self.objects[ev.kv.key] = obj
            event = Event("MODIFIED" if prev is not None else "ADDED", obj, prev, ev.revision)
        else:
            prev = self.objects.pop(ev.prev_kv.key, None) if ev.prev_kv else None
            if prev is None and ev.prev_kv is not None:
                prev = decode(ev.prev_kv)
            if prev is None:
                self._advance(ev.revision)
                return
            obj = {**prev, "metadata": {**prev["metadata"], "resourceVersion": str(ev.revision)}}
            event = Event("DELETED", obj, prev, ev.revision)
        if len(self.events) == self.events.maxlen:
            self.oldest = self.events[0].revision
        self.events.append(event)
        for w in list(self.watchers):
            w.offer(event)
        for listener in self.listeners:
            listener(event)
        self._advance(ev.revision)

    def _advance(self, revision: int) -> None:
        self.revision = max(self.revision, revision)
        while self._waiters and self._waiters[0][0] <= self.revision:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, revision: int, timeout: float = 3.0) -> None:
        """Wait until the cache has applied ``revision``; 504 Timeout if it does not."""
        if self.revision >= revision:
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (revision, self._seq, fut))
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise errors.Timeout(f"Too large resource version: {revision}, current: "
                                 f"{self.revision}", retry_after_seconds=1) from None

    def snapshot(self, namespace: str = "", match: Filter | None = None) -> list[dict]:
        """The current objects (sorted by key), filtered like a list."""
        prefix = self.storage.prefix(namespace)
        return [obj for key, obj in sorted(self.objects.items())
                if key.startswith(prefix) and (match is None or match(obj))]

    def watch(self, after: int, namespace: str = "", match: Filter | None = None,
              initial: bool = False) -> Watcher:
        """Register a watcher for changes after ``after``. ``initial``: first an ADDED event
        for every current object (``after`` is then the cache's revision). Raises 410 Gone
        when ``after`` is older than the window."""
        if initial:
            after = self.revision
        elif after < self.oldest:
            raise errors.Gone(f"too old resource version: {after} ({self.oldest})")
        w = Watcher(self, after, namespace, match)
        if initial:
            for obj in self.snapshot(namespace, match):
                w.queue.put_nowait(Event("ADDED", obj, None, int(obj["metadata"]["resourceVersion"])))
        else:
            for event in self.events:
                if event.revision > after:
                    w.offer(event)
        self.watchers.add(w)
        return w
