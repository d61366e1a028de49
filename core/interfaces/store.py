"""The store driver interface: a revisioned key-value store with compare-and-swap and watch.

Exactly one store driver is active per cluster (config slot ``store``, entry-point group
``pilothouse.store``). Only the API server uses it (ARCHITECTURE.md rule 1); every other
component reaches cluster state through the REST API.

The model is etcd v3's, reduced to what a Kubernetes API server needs:

* One **global revision**, an integer that increases with every successful write (create,
  update or delete) anywhere in the store: by exactly one on a dedicated backend; a driver
  whose backend is shared (several clusters under prefixes of one etcd) may skip numbers
  that other clusters used. A fresh store is at revision 0 and its first write gets revision
  1. Revisions are never reused, not even across restarts.
* Every key remembers its ``create_revision`` (the revision of the write that created it)
  and ``mod_revision`` (the revision of its last write). The API server exposes
  ``mod_revision`` as ``metadata.resourceVersion``.
* Writes are single-key and conditional (compare-and-swap). There are no multi-key
  transactions (rule 5).
* Reads at a fixed past revision are served from retained history until that history is
  compacted; a read or watch that needs compacted history fails with :class:`Compacted`.

Keys are non-empty ``str`` of at most 3 KiB (the API server uses
``/registry/<resource>/<namespace>/<name>``); values are ``bytes`` of up to at least 1.5 MiB
(a larger value than a driver accepts raises :class:`StoreError`). Keys sort by their UTF-8
bytes. Revisions, limits and ``expected_revision`` are never negative.

After :meth:`Store.close`, every other method raises :class:`StoreUnavailable` and every open
watch finishes. History across a restart: :meth:`Store.compacted_revision` may rise when a
store reopens (it kept less history), never fall; reads at or above it stay correct.

All methods are coroutines run on the API server's event loop. A driver whose library
blocks (threads, synchronous RPC) must move that work off the loop itself; a method must not
block the loop for longer than a disk sync.

**Durability.** A write is *acknowledged* when its coroutine returns. An acknowledged write
must survive ``kill -9`` of the process (and, for replicated drivers, of any minority of
members): it is on stable storage (fsynced) before the call returns.

**Errors.** Methods raise only the exceptions defined here (all subclasses of
:class:`StoreError`). Anything else escaping a driver is a driver bug; the API server turns it
into a 500 and logs it.

Conformance: :mod:`pilothouse.testing.store` holds the suite every store driver must pass.

Version history: all of this appeared in 0.1, except :class:`WatchBuffer` and :class:`WatchHub`
(delivery helpers for drivers' watches, since 0.2).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import enum
from collections.abc import AsyncIterator, Callable

__all__ = [
    "Compacted",
    "EventType",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "ListResult",
    "RevisionConflict",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "WatchBuffer",
    "WatchEvent",
    "WatchHub",
]


@dataclasses.dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision.

    ``create_revision`` is the revision of the write that created the key (it changes when
    the key is deleted and created again); ``mod_revision`` the revision of its latest write.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclasses.dataclass(frozen=True, slots=True)
class ListResult:
    """The answer to :meth:`Store.list`.

    ``items`` are sorted by key. ``revision`` is the revision the list was read at (the
    store's current revision for a current read). ``more`` is true when ``limit`` cut the
    list short: the caller continues with ``start_after=items[-1].key`` and
    ``revision=result.revision`` to read the next page at the same revision. ``count`` is the
    total number of keys under the prefix at that revision (regardless of ``start_after`` and
    ``limit``), or ``None`` when the driver cannot count cheaply.
    """

    items: list[KeyValue]
    revision: int
    more: bool = False
    count: int | None = None


class EventType(enum.Enum):
    """Kinds of :class:`WatchEvent`."""

    PUT = "PUT"  #: a key was created or updated; ``kv`` is its new state
    DELETE = "DELETE"  #: a key was deleted; ``prev_kv`` is its last state, ``kv`` is None
    PROGRESS = "PROGRESS"  #: no event for this watch up to ``revision``; no ``kv``


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event on a watch stream.

    ``revision`` is the revision of the write (for PROGRESS: every write up to and including
    ``revision`` that matches the watch has already been delivered). For PUT, ``prev_kv`` is
    the key's state before the write, or None when the write created it; for DELETE it is the
    deleted state. ``prev_kv`` lets the API server evaluate selectors on the old object.
    """

    type: EventType
    revision: int
    kv: KeyValue | None = None
    prev_kv: KeyValue | None = None


class StoreError(Exception):
    """Base class of every error a store driver may raise."""


class KeyExists(StoreError):
    """:meth:`Store.create` found the key present. ``kv`` is the existing state; drivers
    must pass it (it is optional only so that a transport that lost it can still raise)."""

    def __init__(self, key: str, kv: KeyValue | None = None):
        super().__init__(f"key {key!r} already exists")
        self.key, self.kv = key, kv


class KeyNotFound(StoreError):
    """An update or delete named a key that does not exist."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} not found")
        self.key = key


class RevisionConflict(StoreError):
    """A compare-and-swap failed: the key's ``mod_revision`` was not the expected one.

    ``kv`` is the key's current state, so the caller can retry without another read.
    """

    def __init__(self, key: str, expected: int, kv: KeyValue):
        super().__init__(
            f"key {key!r}: expected mod_revision {expected}, found {kv.mod_revision}")
        self.key, self.expected, self.kv = key, expected, kv


class Compacted(StoreError):
    """The requested revision is older than the history the store retains.

    ``compact_revision`` is the oldest revision that can still be read or watched from.
    The API server answers 410 Gone / Expired, and clients relist.
    """

    def __init__(self, requested: int, compact_revision: int):
        super().__init__(
            f"revision {requested} has been compacted; oldest available is {compact_revision}")
        self.requested, self.compact_revision = requested, compact_revision


class StoreUnavailable(StoreError):
    """The store cannot serve the request now (no quorum, no leader, shutting down).

    The outcome of a write that raises this is unknown: it may or may not have been applied.
    The API server answers 503/504 and the client retries.
    """


class Store(abc.ABC):
    """A revisioned key-value store with compare-and-swap, watch and compaction.

    A driver class is constructed by the plugin loader as ``cls(options)`` where ``options``
    is an instance of the class's ``Options`` dataclass (see :mod:`pilothouse.plugins`).
    Construction must not do I/O; :meth:`open` does.
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect to or start the store. Called once by the API server before any other
        method. For embedded stores this recovers state from disk (replaying whatever was
        acknowledged before a crash); for remote stores it connects and checks the server.

        Raises :class:`StoreUnavailable` with a message saying what to fix when the store
        cannot be reached or its data directory cannot be used.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource: stop background threads, close files and connections,
        end every open watch (their iterators finish). Idempotent. After close, an embedded
        store's data directory can be opened again by a new instance."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """Return the store's current revision with a linearizable (consistent) read: every
        write acknowledged before this call started is included. 0 for an empty store."""

    @abc.abstractmethod
    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """Return the key's state, or None when absent.

        ``revision=0`` is a linearizable read of the current state. A positive ``revision``
        reads the key as it was at that revision; raises :class:`Compacted` when that
        revision is older than retained history, and :class:`StoreError` for a revision newer
        than the current one.
        """

    @abc.abstractmethod
    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> ListResult:
        """List keys that start with ``prefix`` (``""`` lists everything), sorted by key.

        ``revision=0`` reads the current revision linearizably; a positive ``revision`` reads
        the snapshot at that revision (:class:`Compacted` if compacted). ``limit=0`` means no
        limit. ``start_after`` resumes after that key (exclusive). Reading the pages of one
        list at the revision of the first page gives every key exactly once, however many
        writes happen meanwhile (stable pagination).
        """

    @abc.abstractmethod
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key`` if it is absent and return its new state (``create_revision ==
        mod_revision ==`` the new global revision). Raises :class:`KeyExists` if present.
        Of concurrent creates of one key exactly one succeeds."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace the value of ``key`` if its ``mod_revision`` equals
        ``expected_revision`` (compare-and-swap) and return the new state.

        ``expected_revision=0`` makes the update unconditional (the key must still exist).
        Raises :class:`KeyNotFound` if the key is absent, :class:`RevisionConflict` (carrying
        the current state) if the revision differs. Of concurrent updates expecting the same
        revision exactly one succeeds.
        """

    @abc.abstractmethod
    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` and return its last state. ``expected_revision`` as in
        :meth:`update` (0 = unconditional). Raises :class:`KeyNotFound` or
        :class:`RevisionConflict`. A delete is a write: it takes a new global revision, which
        the returned value does not show (watchers see it as the event's ``revision``)."""

    @abc.abstractmethod
    def watch(self, prefix: str, *, after_revision: int,
              progress_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        """Stream every change under ``prefix`` with revision greater than
        ``after_revision``, in revision order, each exactly once, then live changes as they
        are committed.

        Returns an async iterator (usually an async generator). The first ``__anext__``
        raises :class:`Compacted` when ``after_revision`` is older than the compacted
        revision (``after_revision < compact_revision``; stricter by one than etcd, whose
        drivers must check it themselves). ``after_revision`` may be the current revision
        (only new changes); a greater one raises :class:`StoreError` on the first
        ``__anext__``.

        ``progress_interval`` (seconds): when set, the stream yields a PROGRESS event at least
        that often while nothing else is delivered, carrying a revision up to which the watch
        is complete; the API server turns these into watch bookmarks. A PROGRESS revision is
        at least ``after_revision`` and at most the store's current revision, never lower
        than an earlier event of the same watch, and eventually reaches writes made outside
        the prefix (so an idle prefix's watcher learns the store moved on). With
        ``progress_interval=None`` a driver need not send PROGRESS events. Events are only
        delivered once committed (they would be returned by a linearizable read).

        The caller ends a watch by closing the iterator (``aclose()``) or abandoning it; a
        driver must not leak resources for abandoned watches beyond the next event. When the
        store closes, the iterator finishes. A watch that falls too far behind may end with
        :class:`Compacted`; the caller re-lists.
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Discard history older than ``revision``: afterwards reads at revisions below
        ``revision`` and watches with ``after_revision < revision`` raise :class:`Compacted`.
        Current state is never discarded. Compacting to a revision at or below the current
        compacted revision is a no-op; above the current revision raises
        :class:`StoreError`. Who calls it: the API server, periodically."""

    async def compacted_revision(self) -> int:
        """Return the oldest revision still readable (0 if never compacted). Called by the
        API server's compactor. Every driver that compacts must override this (the default,
        0, is only right for a store that never compacts); the conformance suite checks it."""
        return 0


class WatchBuffer:
    """Delivery state of one open watch on the event loop: a helper for drivers (the memory
    and raft stores use it), not part of what a driver must implement. Since 0.2.

    A driver's watch generator reads history until it is caught up, then *attaches* the
    buffer (``live = True``) to the prefix; from then on the driver pushes each matching
    event into ``pending`` and calls :meth:`wake`. The consumer sleeps on one future per
    sleep however many events arrive meanwhile (:meth:`sleep`). Progress: with an
    ``interval``, one timer per watch is armed when the consumer sleeps and re-armed only
    when it fires before ``idle_since + interval``; when nothing was delivered for that long
    it sets ``progress_due`` and wakes the consumer, which yields a PROGRESS event. The
    consumer sets ``delivered`` whenever it yields an event, calls :meth:`idle` when it has
    nothing to yield, and :meth:`stop` when the watch ends.
    """

    __slots__ = ("loop", "prefix", "interval", "pending", "waiter", "live", "timer",
                 "idle_since", "progress_due", "delivered")

    def __init__(self, loop: asyncio.AbstractEventLoop, prefix: str,
                 interval: float | None) -> None:
        self.loop, self.prefix, self.interval = loop, prefix, interval
        self.pending: collections.deque[WatchEvent] = collections.deque()
        self.waiter: asyncio.Future | None = None
        self.live = False  # attached: new matching events are pushed into `pending`
        self.timer: asyncio.TimerHandle | None = None
        self.idle_since = loop.time()  # the last delivery, as the consumer came back
        self.progress_due = False  # set by the timer: nothing delivered for `interval`
        self.delivered = False  # the consumer yielded something since it last slept

    def wake(self) -> None:
        """Wake the sleeping consumer (events were pushed, or the store is closing)."""
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

    async def idle(self, revision: int) -> WatchEvent | None:
        """Called by the consumer with nothing to yield, having considered every event up
        to ``revision``: a PROGRESS event at ``revision`` to yield when one is due and
        nothing was delivered since the last sleep; else sleep until woken and None."""
        if self.progress_due:
            self.progress_due = False
            if not self.delivered:
                self.delivered = True
                return WatchEvent(EventType.PROGRESS, revision)
        if self.delivered:
            self.delivered = False
            self.idle_since = self.loop.time()
        await self.sleep()
        return None

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
        """Cancel the progress timer (the watch ended)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class WatchHub:
    """The attached (caught-up) :class:`WatchBuffer` objects of one driver, by prefix: a
    helper for drivers, like :class:`WatchBuffer`. Since 0.2.

    The driver calls :meth:`push` for every committed event; a buffer holding more than
    ``max_pending`` events its consumer has not taken is *dropped behind*: detached, emptied
    and woken, so its consumer reads history again (and ends with :class:`Compacted` when
    that history is gone). A hub is true while any buffer is attached.

    Which prefixes a key falls under is remembered per key (at most ``MAX_ROUTES`` keys,
    forgotten all at once when full, and whenever a prefix gains its first or loses its
    last buffer), so a key written again costs one lookup rather than a test of every
    prefix.
    """

    #: Most keys whose matching prefixes are remembered at once.
    MAX_ROUTES = 16384

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.groups: dict[str, list[WatchBuffer]] = {}
        # key -> the lists of `groups` whose prefix the key starts with
        self._routes: dict[str, tuple[list[WatchBuffer], ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.groups)

    def attach(self, watcher: WatchBuffer) -> None:
        """From now on, events under ``watcher.prefix`` are pushed to ``watcher``."""
        watcher.live = True
        group = self.groups.get(watcher.prefix)
        if group is None:
            group = self.groups[watcher.prefix] = []
            self._routes.clear()
        group.append(watcher)

    def detach(self, watcher: WatchBuffer) -> None:
        """Stop pushing to ``watcher`` (no-op when it is not attached)."""
        if watcher.live:
            watcher.live = False
            group = self.groups[watcher.prefix]
            group.remove(watcher)
            if not group:
                del self.groups[watcher.prefix]
                self._routes.clear()

    def drop_behind(self, watcher: WatchBuffer) -> None:
        """Detach ``watcher`` and forget what it was handed: it reads history again."""
        self.detach(watcher)
        watcher.pending.clear()
        watcher.wake()

    def drop_all(self) -> None:
        """Drop every buffer behind (e.g. a snapshot replaced history not yet pushed)."""
        for group in list(self.groups.values()):
            for watcher in list(group):
                self.drop_behind(watcher)

    def wake_all(self) -> None:
        """Wake every attached consumer (e.g. the store is closing)."""
        for group in self.groups.values():
            for watcher in group:
                watcher.wake()

    def _route(self, key: str) -> tuple[list[WatchBuffer], ...]:
        routes = self._routes
        if len(routes) >= self.MAX_ROUTES:
            routes.clear()
        route = routes[key] = tuple(
            group for prefix, group in self.groups.items() if key.startswith(prefix))
        return route

    def push(self, key: str, event: "WatchEvent | Callable[..., WatchEvent]",
             *args) -> None:
        """Append the event of a write to ``key`` to every buffer whose prefix matches and
        wake their consumers. ``event`` may be a function making it, called (with
        ``args``) at most once and only when some prefix matches."""
        route = self._routes.get(key)
        if route is None:
            route = self._route(key)
        if not route:
            return
        if not isinstance(event, WatchEvent):
            event = event(*args)
        dropped = None
        limit = self.max_pending
        for group in route:
            for watcher in group:
                pending = watcher.pending
                pending.append(event)
                if len(pending) > limit:
                    dropped = (dropped or []) + [watcher]
                else:
                    watcher.wake()
        for watcher in dropped or ():
            self.drop_behind(watcher)
