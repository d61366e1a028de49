"""An in-memory store driver: the reference implementation of the store contract.

:class:`MemoryStore` implements all of :class:`pilothouse.interfaces.store.Store` (MVCC
history, compare-and-swap, compaction, watches with progress events) inside one process and
one event loop. It is meant for unit tests of other components and for throwaway clusters.
It is **not durable**: nothing is written anywhere, and a new instance always starts empty at
revision 0. It passes :class:`pilothouse.testing.store.StoreConformance` with
``durable = False``.

It registers no entry point; use it as a class::

    from pilothouse.testing import build_driver
    from pilothouse.testing.memory_store import MemoryStore
    store = build_driver("store", MemoryStore)
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator

from pilothouse.interfaces.store import (
    Compacted,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    Store,
    StoreError,
    StoreUnavailable,
    WatchBuffer,
    WatchEvent,
    WatchHub,
)

__all__ = ["MemoryStore"]


def _version_revision(version: tuple[int, KeyValue | None]) -> int:
    return version[0]


#: Most events a watch holds for a consumer that does not take them; beyond that it drops
#: them and reads history again when the consumer comes back.
_MAX_PENDING = 4096


class MemoryStore(Store):
    """A correct, single-process, non-durable :class:`~pilothouse.interfaces.store.Store`.

    For unit tests and throwaway clusters only: all data lives in this object and is gone
    when it is closed or the process exits. It takes no options.

    Every method yields to the event loop once before doing its work, so concurrent callers
    interleave as they would against a real store; the work itself is atomic.
    """

    def __init__(self, options: object = None) -> None:
        self._revision = 0
        self._compacted = 0
        # key -> [(revision, state or None for a deletion)], oldest first.
        self._versions: dict[str, list[tuple[int, KeyValue | None]]] = {}
        self._keys: list[str] = []  # sorted keys of _versions, rebuilt when _keys_dirty
        self._keys_dirty = False
        # One event per revision: _events[i].revision == _compacted + 1 + i.
        self._events: list[WatchEvent] = []
        self._opened = False
        self._closed = False
        # the watches that are caught up, by prefix (see _watch)
        self._watchers = WatchHub(_MAX_PENDING)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise StoreUnavailable("this MemoryStore was closed; construct a new one")
        self._opened = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notify()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the memory store is closed")
        if not self._opened:
            raise StoreUnavailable("the memory store is not open; call open() first")

    async def _enter(self) -> None:
        await asyncio.sleep(0)  # let concurrent callers interleave between operations
        self._check_open()

    def _notify(self) -> None:
        """Wake every caught-up watch (on close)."""
        self._watchers.wake_all()

    # -- reads -----------------------------------------------------------------------------

    async def current_revision(self) -> int:
        await self._enter()
        return self._revision

    async def compacted_revision(self) -> int:
        return self._compacted

    def _read_revision(self, revision: int) -> int:
        if not isinstance(revision, int) or revision < 0:
            raise StoreError(f"revision must be a non-negative integer, got {revision!r}")
        if revision == 0:
            return self._revision
        if revision > self._revision:
            raise StoreError(
                f"revision {revision} is newer than the current revision {self._revision}")
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)
        return revision

    def _state_at(self, key: str, revision: int) -> KeyValue | None:
        versions = self._versions.get(key)
        if not versions:
            return None
        i = bisect.bisect_right(versions, revision, key=_version_revision)
        return versions[i - 1][1] if i else None

    def _current(self, key: str) -> KeyValue | None:
        versions = self._versions.get(key)
        return versions[-1][1] if versions else None

    def _sorted_keys(self) -> list[str]:
        # str order is code point order, which is the UTF-8 byte order the contract asks for.
        if self._keys_dirty:
            self._keys = sorted(self._versions)
            self._keys_dirty = False
        return self._keys

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        await self._enter()
        return self._state_at(key, self._read_revision(revision))

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> ListResult:
        await self._enter()
        if not isinstance(limit, int) or limit < 0:
            raise StoreError(f"limit must be a non-negative integer, got {limit!r}")
        at = self._read_revision(revision)
        keys = self._sorted_keys()
        i = bisect.bisect_left(keys, prefix)
        if start_after is not None:
            i = max(i, bisect.bisect_right(keys, start_after))
        items: list[KeyValue] = []
        more = False
        for key in keys[i:]:
            if not key.startswith(prefix):
                break
            kv = self._state_at(key, at)
            if kv is None:
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(kv)
        # Counting is only free when this call scanned the whole prefix.
        count = len(items) if start_after is None and not more else None
        return ListResult(items=items, revision=at, more=more, count=count)

    # -- writes ----------------------------------------------------------------------------

    @staticmethod
    def _check_write(key: str, value: bytes | None = None) -> None:
        if not isinstance(key, str):
            raise StoreError(f"keys are str, got {type(key).__name__}")
        if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
            raise StoreError(f"values are bytes, got {type(value).__name__}")

    def _commit(self, key: str, state: KeyValue | None, event: WatchEvent) -> None:
        self._revision = event.revision
        versions = self._versions.get(key)
        if versions is None:
            versions = self._versions[key] = []
            if not self._keys_dirty and (not self._keys or key > self._keys[-1]):
                self._keys.append(key)
            else:
                self._keys_dirty = True
        versions.append((event.revision, state))
        self._events.append(event)
        if self._watchers:
            self._watchers.push(key, event)

    async def create(self, key: str, value: bytes) -> KeyValue:
        await self._enter()
        self._check_write(key, value)
        current = self._current(key)
        if current is not None:
            raise KeyExists(key, current)
        revision = self._revision + 1
        kv = KeyValue(key, bytes(value), revision, revision)
        self._commit(key, kv, WatchEvent(EventType.PUT, revision, kv, None))
        return kv

    def _check_expected(self, key: str, expected_revision: int) -> KeyValue:
        current = self._current(key)
        if current is None:
            raise KeyNotFound(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise RevisionConflict(key, expected_revision, current)
        return current

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        await self._enter()
        self._check_write(key, value)
        current = self._check_expected(key, expected_revision)
        revision = self._revision + 1
        kv = KeyValue(key, bytes(value), current.create_revision, revision)
        self._commit(key, kv, WatchEvent(EventType.PUT, revision, kv, current))
        return kv

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        await self._enter()
        self._check_write(key)
        current = self._check_expected(key, expected_revision)
        revision = self._revision + 1
        self._commit(key, None, WatchEvent(EventType.DELETE, revision, None, current))
        return current

    # -- compaction ------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        await self._enter()
        if not isinstance(revision, int) or revision > self._revision:
            raise StoreError(
                f"cannot compact to {revision!r}: the current revision is {self._revision}")
        if revision <= self._compacted:
            return
        del self._events[:revision - self._compacted]
        self._compacted = revision
        for key in list(self._versions):
            versions = self._versions[key]
            # Keep the state as of `revision` (the newest version at or below it) and later.
            i = bisect.bisect_right(versions, revision, key=_version_revision) - 1
            if i >= 0 and versions[i][1] is None:
                i += 1  # a deletion at or below `revision` leaves nothing to read there
            if i > 0:
                del versions[:i]
            if not versions:
                del self._versions[key]
                self._keys_dirty = True

    # -- watch -----------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int,
              progress_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        return self._watch(prefix, after_revision, progress_interval)

    async def _watch(self, prefix: str, after_revision: int,
                     progress_interval: float | None) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return
        self._check_open()
        if after_revision < self._compacted:
            raise Compacted(after_revision, self._compacted)
        if after_revision > self._revision:
            raise StoreError(f"cannot watch after revision {after_revision}: the current "
                             f"revision is {self._revision}")
        # A watch reads history until it has considered every event, then attaches: from
        # then on _commit pushes each matching event to it (it is not woken for others)
        # and a caught-up watch needs no history, so compaction does not end it.
        watcher = WatchBuffer(asyncio.get_running_loop(), prefix, progress_interval)
        seen = after_revision  # every matching event up to here has been delivered
        try:
            while not self._closed:
                pending = watcher.pending
                if pending:
                    event = pending.popleft()
                    seen = event.revision
                    watcher.delivered = True
                    yield event
                    continue
                if not watcher.live:
                    if seen < self._compacted:
                        raise Compacted(seen, self._compacted)
                    if seen < self._revision:
                        event = self._events[seen - self._compacted]
                        seen = event.revision
                        if (event.kv or event.prev_kv).key.startswith(prefix):
                            watcher.delivered = True
                            yield event
                        continue
                    self._watchers.attach(watcher)
                elif seen < self._revision:
                    seen = self._revision  # later writes elsewhere: nothing for this watch
                progress = await watcher.idle(seen)
                if progress is not None:
                    yield progress
        finally:
            watcher.stop()
            self._watchers.detach(watcher)
