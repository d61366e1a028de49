"""The store conformance suite: what every :class:`~pilothouse.interfaces.store.Store` passes.

A store driver's test module runs the whole suite by subclassing :class:`StoreConformance`::

    from pilothouse.testing.store import StoreConformance

    class TestRaftStore(StoreConformance):
        plugin = "raft"      # entry-point name, or a Store subclass (bypasses entry points)

        def store_options(self, tmp_path):          # optional; default {}
            return {"data_dir": str(tmp_path / "d")}

pytest collects every ``test_*`` method of the subclass. Each test gets a fresh store:
:meth:`StoreConformance.make_store` builds it with
:func:`pilothouse.testing.build_driver` from ``plugin`` and ``store_options(tmp_path)``, the
test opens it, and closes it at the end. Tests are plain synchronous methods that run their
body with :func:`asyncio.run`; pytest-asyncio is not needed.

**What a subclass may set or override** (the suite's stable API):

``plugin``
    The driver: an entry-point name in group ``pilothouse.store`` (loaded exactly as the
    config file would load it, options checked) or a :class:`Store` subclass.
``store_options(self, tmp_path) -> dict``
    The driver's options for this test. Called once per store built, and again with the
    same ``tmp_path`` by :meth:`~StoreConformance.restart`, so it must return options that
    reopen the same data. Each test's store must start empty; a shared server should get a
    fresh data directory or a fresh key namespace per ``tmp_path``.
``durable = True``
    Whether a restarted store keeps its data. ``False`` skips the durability tests, with a
    reason naming this capability.
``max_value_size = 1_572_864``
    The largest value the large-value test writes (1.5 MiB, the contract's minimum).
    Lowering it below 1.5 MiB means the driver does not conform.
``event_timeout = 10.0``
    Seconds a single awaited watch event or call may take before the test fails instead of
    hanging. A guard against hangs only: no test asserts how fast anything is.
``async restart(self, store, tmp_path) -> Store``
    Restart the store and return the new, open instance. The default closes ``store``,
    builds a new instance with :meth:`make_store` and opens it. Override it when the data
    lives elsewhere (e.g. restart an etcd server). The contract promises more than a clean
    close: acknowledged writes survive ``kill -9``. A driver that can run in a child process
    should override ``restart`` to kill it with SIGKILL and start it again, which makes every
    durability test a crash test.
``make_store(self, tmp_path) -> Store``
    Construct (not open) one store; the default calls ``build_driver("store", plugin,
    store_options(tmp_path))``. Override to wrap the driver (the gRPC kit,
    :mod:`pilothouse.testing.store_grpc`, serves it behind a loopback server here).
``async open_store(self, tmp_path) -> Store``
    ``make_store`` then ``open``; what every test and the default ``restart`` use.

Helpers for a driver's own extra tests: ``run_with_store(tmp_path, body)`` opens a fresh
store, awaits ``body(store)`` in a new event loop and closes the store;
``watch(store, prefix, after_revision, progress_interval=None)`` opens a watch whose
``next()``, ``take(n)`` and ``close()`` fail with a message instead of hanging.

Fixtures: a subclass may define its own autouse fixtures (e.g. one that starts a server and
stores its address on ``self`` for ``store_options`` to use); pytest runs them on the same
instance before each test.

The tests compute revisions relative to the revision the fresh store reports
(:meth:`Store.current_revision`), so that one mistake in the starting revision fails
``test_fresh_store_is_empty_at_revision_zero`` rather than every test; every other revision
clause is checked exactly. The 100,000-key test is marked ``slow``
(``pytest -m "not slow"`` leaves it out).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

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
    WatchEvent,
)
from pilothouse.testing._drivers import build_driver

__all__ = ["StoreConformance"]

_END = object()  # returned by _Watch.next_raw when the stream finished


class _Watch:
    """One watch stream under test, with timeouts that turn hangs into assertion failures."""

    def __init__(self, store: Store, prefix: str, after_revision: int, timeout: float,
                 progress_interval: float | None = None):
        self.prefix, self.after, self.timeout = prefix, after_revision, timeout
        self.iterator = store.watch(prefix, after_revision=after_revision,
                                    progress_interval=progress_interval)
        self.last_revision = after_revision
        self.progress: list[WatchEvent] = []

    async def next_raw(self) -> Any:
        """The next item, PROGRESS included, or ``_END`` when the iterator finished."""
        try:
            return await asyncio.wait_for(anext(self.iterator), self.timeout)
        except StopAsyncIteration:
            return _END
        except TimeoutError:
            raise AssertionError(
                f"watch({self.prefix!r}, after_revision={self.after}): no event within "
                f"{self.timeout}s after revision {self.last_revision}") from None

    async def next(self, *, progress: bool = False) -> WatchEvent:
        """The next event; PROGRESS events are checked and skipped unless ``progress``."""
        while True:
            event = await self.next_raw()
            assert event is not _END, (
                f"watch({self.prefix!r}, after_revision={self.after}) ended unexpectedly "
                f"after revision {self.last_revision}")
            assert isinstance(event, WatchEvent), f"watch yielded {event!r}, not a WatchEvent"
            if event.type is EventType.PROGRESS:
                assert event.kv is None and event.prev_kv is None, (
                    f"PROGRESS events carry no kv: {event!r}")
                assert event.revision >= self.last_revision, (
                    f"PROGRESS at {event.revision} after an event or progress at "
                    f"{self.last_revision}: watch revisions never go back")
                self.last_revision = event.revision
                self.progress.append(event)
                if progress:
                    return event
                continue
            assert event.revision > self.last_revision, (
                f"event at revision {event.revision} after revision {self.last_revision}: "
                f"events come in increasing revision order, each once, and never at or below "
                f"a PROGRESS revision ({event!r})")
            key = (event.kv or event.prev_kv).key if (event.kv or event.prev_kv) else None
            assert key is not None and key.startswith(self.prefix), (
                f"watch({self.prefix!r}) delivered an event for key {key!r}: {event!r}")
            self.last_revision = event.revision
            return event

    async def take(self, n: int) -> list[WatchEvent]:
        return [await self.next() for _ in range(n)]

    async def close(self) -> None:
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(StoreError, StopAsyncIteration):
                await asyncio.wait_for(aclose(), self.timeout)


class _Model:
    """The suite's own model of a store, fed with acknowledged writes in revision order.

    Used by sequential tests: each write through it asserts the contract's return values and
    that it took exactly the next revision, and records the expected watch event and the
    expected snapshot at every revision.
    """

    def __init__(self, base_revision: int):
        self.base = self.revision = base_revision
        self.state: dict[str, KeyValue] = {}
        self.events: list[WatchEvent] = []
        self.snapshots: dict[int, dict[str, KeyValue]] = {base_revision: {}}

    def _record(self, event: WatchEvent, key: str, kv: KeyValue | None) -> None:
        self.revision = event.revision
        if kv is None:
            self.state.pop(key, None)
        else:
            self.state[key] = kv
        self.events.append(event)
        self.snapshots[event.revision] = dict(self.state)

    async def create(self, store: Store, key: str, value: bytes) -> KeyValue:
        kv = await store.create(key, value)
        rev = self.revision + 1
        _eq(kv, KeyValue(key, value, rev, rev),
            f"create({key!r}): create_revision == mod_revision == the previous revision "
            f"{self.revision} plus one")
        self._record(WatchEvent(EventType.PUT, rev, kv, None), key, kv)
        return kv

    async def update(self, store: Store, key: str, value: bytes,
                     expected_revision: int | None = None) -> KeyValue:
        prev = self.state[key]
        expected = prev.mod_revision if expected_revision is None else expected_revision
        kv = await store.update(key, value, expected_revision=expected)
        rev = self.revision + 1
        _eq(kv, KeyValue(key, value, prev.create_revision, rev),
            f"update({key!r}): the new value, create_revision unchanged, mod_revision == the "
            f"previous revision {self.revision} plus one")
        self._record(WatchEvent(EventType.PUT, rev, kv, prev), key, kv)
        return kv

    async def delete(self, store: Store, key: str,
                     expected_revision: int | None = None) -> KeyValue:
        prev = self.state[key]
        expected = prev.mod_revision if expected_revision is None else expected_revision
        kv = await store.delete(key, expected_revision=expected)
        _eq(kv, prev, f"delete({key!r}) returns the key's last state")
        self._record(WatchEvent(EventType.DELETE, self.revision + 1, None, prev), key, None)
        return kv

    def events_after(self, revision: int, prefix: str = "") -> list[WatchEvent]:
        return [e for e in self.events if e.revision > revision
                and (e.kv or e.prev_kv).key.startswith(prefix)]

    def listing(self, revision: int, prefix: str = "") -> list[KeyValue]:
        snap = self.snapshots[revision]
        return [snap[k] for k in sorted(snap, key=_utf8) if k.startswith(prefix)]


def _short(value: Any) -> str:
    """repr() with long bytes shortened, so a 1.5 MiB value does not flood the report."""
    if isinstance(value, (bytes, bytearray)) and len(value) > 64:
        return f"<{len(value)} bytes {bytes(value[:16])!r}...>"
    if isinstance(value, KeyValue):
        return (f"KeyValue({value.key!r}, {_short(value.value)}, "
                f"create_revision={value.create_revision}, mod_revision={value.mod_revision})")
    if isinstance(value, WatchEvent):
        return (f"WatchEvent({value.type.name}, revision={value.revision}, "
                f"kv={_short(value.kv)}, prev_kv={_short(value.prev_kv)})")
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_short(v) for v in value[:20])
        return f"[{shown}{', ...' if len(value) > 20 else ''}] ({len(value)} items)"
    text = repr(value)
    return text if len(text) <= 2000 else text[:2000] + "..."


def _eq(got: Any, expected: Any, what: str = "") -> None:
    """Assert ``got == expected`` with a report that shows both (and, for lists, the first
    difference); plain asserts in an installed module are not rewritten by pytest."""
    if got == expected:
        return
    where = f"{what}: " if what else ""
    if isinstance(got, list) and isinstance(expected, list):
        i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
        raise AssertionError(
            f"{where}lists differ at index {i} (got {len(got)} items, expected "
            f"{len(expected)}):\n  got      {_short(got[i:i + 3])}\n"
            f"  expected {_short(expected[i:i + 3])}")
    raise AssertionError(f"{where}\n  got      {_short(got)}\n  expected {_short(expected)}")


class _Caught:
    value: BaseException


@contextlib.contextmanager
def _raises(exc_type: type[BaseException]):
    """Like ``pytest.raises`` but a miss is an :class:`AssertionError`, so that every
    contract violation fails the same way, and a wrong exception type names both."""
    caught = _Caught()
    try:
        yield caught
    except exc_type as exc:
        caught.value = exc
    except Exception as exc:
        raise AssertionError(f"expected {exc_type.__name__}, the store raised "
                             f"{type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError(f"expected {exc_type.__name__}, nothing was raised")


def _utf8(key: str) -> bytes:
    return key.encode("utf-8")


async def _check_current(store: Store, expected: int, why: str) -> None:
    got = await store.current_revision()
    _eq(got, expected, f"current_revision() ({why})")


class StoreConformance:
    """The conformance suite for store drivers. Subclass it as ``Test<Driver>``; see the
    module docstring for the attributes and hooks a subclass sets."""

    #: entry-point name (group ``pilothouse.store``) or a Store subclass
    plugin: str | type[Store] | None = None
    #: whether data survives :meth:`restart`
    durable: bool = True
    #: the largest value written by the large-value test (contract minimum: 1.5 MiB)
    max_value_size: int = 1_572_864
    #: seconds before a single awaited event or call fails the test instead of hanging
    event_timeout: float = 10.0

    # -- hooks for driver authors --------------------------------------------------------------

    def store_options(self, tmp_path) -> dict:
        """The driver's options for a store under ``tmp_path`` (default: none)."""
        return {}

    def make_store(self, tmp_path) -> Store:
        """Construct (not open) a store from ``plugin`` and :meth:`store_options`."""
        if self.plugin is None:
            raise TypeError(f"{type(self).__name__} must set `plugin` to an entry-point name "
                            f"or a Store subclass")
        return build_driver("store", self.plugin, self.store_options(tmp_path))

    async def open_store(self, tmp_path) -> Store:
        """Construct and open a store."""
        store = self.make_store(tmp_path)
        assert isinstance(store, Store), f"{store!r} is not a pilothouse Store"
        await store.open()
        return store

    async def restart(self, store: Store, tmp_path) -> Store:
        """Restart ``store``: close it, then build and open a new instance on the same
        options. Return the new, open store. Override for stores whose data lives in a
        separate server or process."""
        await store.close()
        return await self.open_store(tmp_path)

    # -- helpers ---------------------------------------------------------------------------

    def run_with_store(self, tmp_path, body: Callable[[Store], Awaitable[None]]) -> None:
        """Open a fresh store, run ``body(store)`` in a new event loop, close the store. A
        :class:`StoreError` escaping ``body`` fails the test as an AssertionError."""

        async def main() -> None:
            store = await self.open_store(tmp_path)
            try:
                await body(store)
            except StoreError as exc:
                # Every test expects its store errors explicitly; one escaping is a failure.
                raise AssertionError(f"the store raised {type(exc).__name__}: {exc}, where "
                                     f"the contract requires success") from exc
            finally:
                await store.close()

        asyncio.run(main())

    def watch(self, store: Store, prefix: str, after_revision: int,
              progress_interval: float | None = None) -> _Watch:
        return _Watch(store, prefix, after_revision, self.event_timeout, progress_interval)

    def _require_durable(self) -> None:
        if not self.durable:
            pytest.skip(f"{type(self).__name__} declares durable = False: the store does not "
                        f"keep data across restarts, so the durability clauses do not apply")

    async def _mixed_history(self, store: Store, model: _Model, prefix: str) -> None:
        """Write a history that exercises every kind of write: creates, CAS and
        unconditional updates, deletes, re-creation of a deleted key, and writes outside
        ``prefix``."""
        a, b, c, d = (f"{prefix}{n}" for n in ("a", "b", "c/d", "d"))
        other = "/conformance-other/x"
        await model.create(store, a, b"a1")
        await model.create(store, b, b"b1")
        await model.create(store, other, b"o1")
        await model.update(store, a, b"a2")
        await model.create(store, c, b"c1")
        await model.update(store, b, b"b2", expected_revision=0)
        await model.delete(store, a)
        await model.update(store, other, b"o2")
        await model.create(store, a, b"a3")  # re-created: new create_revision
        await model.update(store, c, b"c2")
        await model.delete(store, b, expected_revision=0)
        await model.create(store, d, b"")
        await model.update(store, a, b"a4")
        await model.delete(store, other)
        await model.update(store, d, bytes(range(256)))
        await model.delete(store, c)
        await model.create(store, b, b"b3")
        await model.update(store, b, b"b4")

    # == basics ====================================================================================

    def test_fresh_store_is_empty_at_revision_zero(self, tmp_path):
        """Contract: "A fresh store is at revision 0 and its first write gets revision 1";
        ``compacted_revision()`` is 0 when nothing was compacted; an empty store lists
        nothing at revision 0 and gets nothing."""

        async def body(store: Store) -> None:
            await _check_current(store, 0, "a fresh store is at revision 0")
            _eq(await store.compacted_revision(), 0)
            result = await store.list("")
            assert isinstance(result, ListResult), f"list() returned {result!r}, not a ListResult"
            _eq((result.items, result.revision, result.more), ([], 0, False),
                "list('') of a fresh store: (items, revision, more)")
            assert result.count in (None, 0), f"count of an empty list is {result.count!r}"
            _eq(await store.get("/nothing"), None, "get of an absent key")
            kv = await store.create("/first", b"1")
            _eq(kv, KeyValue("/first", b"1", 1, 1), "the first write gets revision 1")
            await _check_current(store, 1, "one write")

        self.run_with_store(tmp_path, body)

    def test_create_returns_new_state(self, tmp_path):
        """``create`` returns the key's new state with ``create_revision == mod_revision ==``
        the new global revision (current + 1), and ``get`` then returns exactly that state."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            kv = await model.create(store, "/k/a", b"hello")
            await _check_current(store, model.revision, "a create is a write")
            _eq(await store.get("/k/a"), kv)
            kv2 = await model.create(store, "/k/b", b"world")
            _eq(kv2.mod_revision, kv.mod_revision + 1)
            _eq(await store.get("/k/b"), kv2)
            _eq(await store.get("/k/a"), kv)

        self.run_with_store(tmp_path, body)

    def test_create_existing_key_raises_key_exists_with_kv(self, tmp_path):
        """``create`` of a present key raises :class:`KeyExists` whose ``key`` is the key and
        whose ``kv`` is the existing state; the value and the revision are unchanged (a
        failed write takes no revision)."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            kv = await model.create(store, "/k/a", b"one")
            await model.update(store, "/k/a", b"two")
            current = model.state["/k/a"]
            with _raises(KeyExists) as info:
                await store.create("/k/a", b"three")
            _eq(info.value.key, "/k/a")
            _eq(info.value.kv, current, "KeyExists.kv is the existing state")
            _eq(await store.get("/k/a"), current)
            await _check_current(store, model.revision, "a failed create is not a write")
            _eq(kv.create_revision, current.create_revision)

        self.run_with_store(tmp_path, body)

    def test_update_compare_and_swap(self, tmp_path):
        """``update`` with ``expected_revision`` equal to the key's ``mod_revision`` replaces
        the value, keeps ``create_revision`` and sets ``mod_revision`` to the new global
        revision. With any other non-zero ``expected_revision`` it raises
        :class:`RevisionConflict` carrying ``key``, ``expected`` and the current state
        (``kv``), and changes nothing."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            first = await model.create(store, "/k/a", b"v1")
            await model.create(store, "/k/other", b"x")
            second = await model.update(store, "/k/a", b"v2", expected_revision=first.mod_revision)
            for stale in (first.mod_revision, second.mod_revision + 1, model.revision + 100):
                with _raises(RevisionConflict) as info:
                    await store.update("/k/a", b"lost", expected_revision=stale)
                _eq(info.value.key, "/k/a")
                _eq(info.value.expected, stale)
                _eq(info.value.kv, second, "RevisionConflict.kv is the current state")
            _eq(await store.get("/k/a"), second)
            await _check_current(store, model.revision, "failed updates are not writes")
            # Retrying from the conflict's kv, without another read, succeeds.
            with _raises(RevisionConflict) as info:
                await store.update("/k/a", b"v3", expected_revision=first.mod_revision)
            await model.update(store, "/k/a", b"v3", expected_revision=info.value.kv.mod_revision)
            _eq(await store.get("/k/a"), model.state["/k/a"])

        self.run_with_store(tmp_path, body)

    def test_update_unconditional_with_expected_revision_zero(self, tmp_path):
        """``expected_revision=0`` makes ``update`` unconditional: it succeeds whatever the
        key's ``mod_revision`` is, and it is a write like any other."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/k/a", b"v1")
            await model.create(store, "/k/b", b"x")
            await model.update(store, "/k/b", b"y")
            kv = await model.update(store, "/k/a", b"v2", expected_revision=0)
            kv = await model.update(store, "/k/a", b"v3", expected_revision=0)
            _eq(await store.get("/k/a"), kv)
            await _check_current(store, model.revision, "each update is one write")

        self.run_with_store(tmp_path, body)

    def test_update_missing_key_raises_key_not_found(self, tmp_path):
        """``update`` of an absent key raises :class:`KeyNotFound` (with ``key``), whatever
        ``expected_revision`` is, including a key that existed and was deleted; it does not
        create the key and takes no revision."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            for expected in (0, 1, 5):
                with _raises(KeyNotFound) as info:
                    await store.update("/k/missing", b"v", expected_revision=expected)
                _eq(info.value.key, "/k/missing")
            kv = await model.create(store, "/k/gone", b"v")
            await model.delete(store, "/k/gone")
            for expected in (0, kv.mod_revision):
                with _raises(KeyNotFound):
                    await store.update("/k/gone", b"v", expected_revision=expected)
            _eq(await store.get("/k/missing"), None, "a failed update creates nothing")
            _eq(await store.get("/k/gone"), None, "a failed update re-creates nothing")
            await _check_current(store, model.revision, "failed updates are not writes")

        self.run_with_store(tmp_path, body)

    def test_delete_returns_last_state_and_takes_a_revision(self, tmp_path):
        """``delete`` removes the key and returns its last state (whose ``mod_revision`` is
        the last write's, not the delete's); the delete itself takes the next global
        revision. Deleting again raises :class:`KeyNotFound`."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/k/a", b"v1")
            kv = await model.update(store, "/k/a", b"v2")
            before = model.revision
            last = await model.delete(store, "/k/a")
            _eq(last, kv)
            await _check_current(store, before + 1, "a delete is a write")
            _eq(await store.get("/k/a"), None, "get after delete")
            _eq((await store.list("/k/")).items, [], "list after delete")
            with _raises(KeyNotFound) as info:
                await store.delete("/k/a")
            _eq(info.value.key, "/k/a")
            with _raises(KeyNotFound):
                await store.delete("/k/never", expected_revision=3)
            await _check_current(store, before + 1, "failed deletes are not writes")

        self.run_with_store(tmp_path, body)

    def test_delete_compare_and_swap(self, tmp_path):
        """``delete`` with a non-zero ``expected_revision`` other than the key's
        ``mod_revision`` raises :class:`RevisionConflict` carrying the current state and
        deletes nothing; with the right one it deletes; 0 is unconditional."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            first = await model.create(store, "/k/a", b"v1")
            second = await model.update(store, "/k/a", b"v2")
            with _raises(RevisionConflict) as info:
                await store.delete("/k/a", expected_revision=first.mod_revision)
            _eq((info.value.key, info.value.expected), ("/k/a", first.mod_revision),
                "RevisionConflict (key, expected)")
            _eq(info.value.kv, second)
            _eq(await store.get("/k/a"), second)
            await _check_current(store, model.revision, "a failed delete is not a write")
            await model.delete(store, "/k/a", expected_revision=second.mod_revision)
            _eq(await store.get("/k/a"), None, "get after a CAS delete")
            await model.create(store, "/k/b", b"x")
            await model.update(store, "/k/b", b"y")
            await model.delete(store, "/k/b", expected_revision=0)
            await _check_current(store, model.revision, "each delete is one write")

        self.run_with_store(tmp_path, body)

    def test_recreate_after_delete_gets_new_create_revision(self, tmp_path):
        """``create_revision`` "changes when the key is deleted and created again": a
        re-created key has ``create_revision == mod_revision ==`` the new revision."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            old = await model.create(store, "/k/a", b"v1")
            await model.delete(store, "/k/a")
            new = await model.create(store, "/k/a", b"v2")
            _eq(new.create_revision, old.create_revision + 2)
            _eq(await store.get("/k/a"), new)

        self.run_with_store(tmp_path, body)

    def test_revision_increases_by_exactly_one_per_write_and_never_on_failures(self, tmp_path):
        """The global revision "increases by exactly one with every successful write
        (create, update or delete) anywhere in the store", and failed writes
        (:class:`KeyExists`, :class:`KeyNotFound`, :class:`RevisionConflict`) and reads
        never move it. Checked after every single operation of a mixed sequence."""

        async def body(store: Store) -> None:
            rev = await store.current_revision()
            live: dict[str, KeyValue] = {}
            rng = random.Random(7)
            for step in range(200):
                key = f"/r/{rng.randrange(6)}"
                op = rng.choice(["create", "update", "cas", "stale", "delete", "read"])
                kv = live.get(key)
                wrote = False
                if op == "create":
                    if kv is None:
                        live[key] = await store.create(key, b"%d" % step)
                        wrote = True
                    else:
                        with _raises(KeyExists):
                            await store.create(key, b"x")
                elif op in ("update", "cas"):
                    expected = 0 if op == "update" or kv is None else kv.mod_revision
                    if kv is None:
                        with _raises(KeyNotFound):
                            await store.update(key, b"x", expected_revision=expected)
                    else:
                        live[key] = await store.update(key, b"%d" % step,
                                                       expected_revision=expected)
                        wrote = True
                elif op == "stale":
                    if kv is None:
                        with _raises(KeyNotFound):
                            await store.delete(key, expected_revision=rev)
                    else:
                        with _raises(RevisionConflict):
                            await store.update(key, b"x", expected_revision=kv.mod_revision + 1)
                        with _raises(RevisionConflict):
                            await store.delete(key, expected_revision=kv.mod_revision + 1)
                elif op == "delete":
                    if kv is None:
                        with _raises(KeyNotFound):
                            await store.delete(key)
                    else:
                        _eq(await store.delete(key), live.pop(key))
                        wrote = True
                else:
                    _eq(await store.get(key), kv)
                    await store.list("/r/")
                if wrote:
                    rev += 1
                    if key in live:
                        _eq(live[key].mod_revision, rev, f"step {step} ({op} {key}): took revision "
                            f"{live[key].mod_revision}, expected {rev}")
                await _check_current(store, rev, f"after step {step} ({op} {key}, "
                                                 f"{'a write' if wrote else 'not a write'})")

        self.run_with_store(tmp_path, body)

    # == reads at revisions ========================================================================

    def test_get_at_every_past_revision(self, tmp_path):
        """``get(key, revision=r)`` returns the key as it was at revision ``r`` (None where it
        did not exist: before its creation, after its deletion), for every retained ``r``;
        ``revision=0`` is the current state."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/g/")
            keys = sorted({k for snap in model.snapshots.values() for k in snap})
            for r in range(max(model.base, 1), model.revision + 1):
                for key in keys:
                    _eq(await store.get(key, revision=r), model.snapshots[r].get(key),
                        f"get({key!r}, revision={r})")
            for key in keys:
                _eq(await store.get(key), model.state.get(key))

        self.run_with_store(tmp_path, body)

    def test_get_and_list_at_future_revision_raise_store_error(self, tmp_path):
        """``get`` and ``list`` at a revision newer than the current one raise
        :class:`StoreError` (not :class:`Compacted`, and not an empty answer)."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/f/a", b"v")
            for future in (model.revision + 1, model.revision + 1000):
                with _raises(StoreError) as info:
                    await store.get("/f/a", revision=future)
                assert not isinstance(info.value, Compacted), "a future revision is not compacted"
                with _raises(StoreError) as info:
                    await store.list("/f/", revision=future)
                assert not isinstance(info.value, Compacted), "a future revision is not compacted"

        self.run_with_store(tmp_path, body)

    def test_list_prefix_sorted_by_utf8_bytes(self, tmp_path):
        """``list(prefix)`` returns exactly the keys that start with ``prefix`` (the key equal
        to the prefix included; ``""`` lists everything), sorted by their UTF-8 bytes, each
        with its current state; ``revision`` is the current revision; ``more`` is false
        without a limit; ``count``, when given, is the number of keys under the prefix."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            keys = ["/p/b", "/p/a", "/p/a/x", "/p/ab", "/p/a-", "/p/", "/p", "/q/a", "/p/Z",
                    "/p/\u00e9", "/p/z", "/p/\u4e2d", "/p/\U0001f600", "/p/a/x/y", "/pa"]
            for i, key in enumerate(keys):
                await model.create(store, key, b"%d" % i)
            await model.delete(store, "/p/z")
            for prefix in ("/p/", "/p/a", "/p", "/q/", "/nothing/", ""):
                result = await store.list(prefix)
                expected = model.listing(model.revision, prefix)
                _eq(result.items, expected, f"list({prefix!r})")
                _eq([_utf8(kv.key) for kv in result.items], sorted(
                    _utf8(kv.key) for kv in result.items))
                _eq(result.revision, model.revision, "a current list reports the current revision")
                _eq(result.more, False, "more without a limit")
                assert result.count in (None, len(expected)), f"list({prefix!r}).count"

        self.run_with_store(tmp_path, body)

    def test_list_at_past_revisions(self, tmp_path):
        """A positive ``revision`` lists the snapshot at that revision (keys deleted later are
        present, keys created later absent, values as they were), and reports that revision
        in ``ListResult.revision``."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/lp/")
            for r in range(max(model.base, 1), model.revision + 1):
                for prefix in ("/lp/", ""):
                    result = await store.list(prefix, revision=r)
                    expected = model.listing(r, prefix)
                    _eq(result.items, expected, f"list({prefix!r}, revision={r})")
                    _eq(result.revision, r)
                    _eq(result.more, False, "more without a limit")

        self.run_with_store(tmp_path, body)

    def test_list_limit_start_after_and_more(self, tmp_path):
        """``limit`` caps the page and ``more`` says whether it cut the list short (false when
        exactly ``limit`` keys remained); ``start_after`` resumes after that key, exclusive,
        whether or not the key exists; ``limit=0`` means no limit. Walking pages with
        ``start_after=items[-1].key`` and the first page's revision yields every key once."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            keys = [f"/lim/{i:02d}" for i in range(10)]
            for key in keys:
                await model.create(store, key, key.encode())
            await model.create(store, "/lim0", b"outside")  # sorts after the prefix range
            all_items = model.listing(model.revision, "/lim/")

            page = await store.list("/lim/", limit=5)
            _eq((page.items, page.more), (all_items[:5], True),
                "list(limit=5) of 10: (items, more)")
            assert page.count in (None, 10), "count is the total under the prefix, not the page"
            page2 = await store.list("/lim/", limit=5, start_after=page.items[-1].key,
                                     revision=page.revision)
            _eq(page2.items, all_items[5:], "the second page is the rest")
            assert page2.more is False, "more is false when exactly `limit` keys remained"
            _eq(page2.revision, page.revision)

            whole = await store.list("/lim/", limit=10)
            _eq((whole.items, whole.more), (all_items, False),
                "list(limit=10) of 10: (items, more)")
            _eq((await store.list("/lim/", limit=0)).items, all_items)
            _eq((await store.list("/lim/", limit=100)).items, all_items)

            after = await store.list("/lim/", start_after="/lim/045")  # absent key
            _eq(after.items, all_items[5:])
            after = await store.list("/lim/", start_after="/lim/09")
            _eq((after.items, after.more), ([], False), "start_after the last key: (items, more)")
            after = await store.list("/lim/", start_after="/a")  # before the prefix
            _eq(after.items, all_items)

            for size in (1, 3, 7):
                got, start, revision = [], None, 0
                while True:
                    page = await store.list("/lim/", limit=size, start_after=start,
                                            revision=revision)
                    assert len(page.items) <= size, f"{len(page.items)} items with limit={size}"
                    got += page.items
                    revision = page.revision
                    if not page.more:
                        break
                    _eq(len(page.items), size, "a page cut short is a full page")
                    start = page.items[-1].key
                _eq(got, all_items, f"paging with limit={size}")

        self.run_with_store(tmp_path, body)

    def test_list_pagination_is_stable_under_concurrent_writes(self, tmp_path):
        """Stable pagination: "Reading the pages of one list at the revision of the first
        page gives every key exactly once, however many writes happen meanwhile". A writer
        task creates (before, between and after existing keys), updates and deletes keys
        while the pages are read; the pages return exactly the first page's snapshot."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            for i in range(0, 200, 2):
                await model.create(store, f"/pg/{i:03d}", b"%d" % i)
            first = await store.list("/pg/", limit=7)
            snapshot = model.listing(first.revision, "/pg/")
            _eq(first.revision, model.revision)
            stop = asyncio.Event()
            writes = 0

            async def writer() -> None:
                nonlocal writes
                rng = random.Random(11)
                while not stop.is_set():
                    i = rng.randrange(200)
                    key = f"/pg/{i:03d}"
                    try:
                        if i % 2:
                            await store.create(key, b"new")
                        elif rng.random() < 0.5:
                            await store.update(key, b"changed", expected_revision=0)
                        else:
                            await store.delete(key)
                        writes += 1
                    except (KeyExists, KeyNotFound):
                        pass
                    await asyncio.sleep(0)

            async def reader() -> list[KeyValue]:
                got, page = list(first.items), first
                while page.more:
                    await asyncio.sleep(0)
                    page = await store.list("/pg/", limit=7, start_after=page.items[-1].key,
                                            revision=first.revision)
                    _eq(page.revision, first.revision)
                    got += page.items
                return got

            writer_task = asyncio.create_task(writer())
            try:
                got = await reader()
            finally:
                stop.set()
                await writer_task
            _eq([kv.key for kv in got], [kv.key for kv in snapshot],
                "every key of the snapshot exactly once, in order")
            _eq(got, snapshot, "values and revisions as of the first page's revision")
            assert writes > 0, "the writer wrote while the pages were read"

        self.run_with_store(tmp_path, body)

    # == concurrency ===============================================================================

    def test_concurrent_creates_of_one_key_have_exactly_one_winner(self, tmp_path):
        """"Of concurrent creates of one key exactly one succeeds": every other create raises
        :class:`KeyExists`; the stored value is the winner's; one revision was taken."""

        async def body(store: Store) -> None:
            for round_ in range(5):
                base = await store.current_revision()
                key = f"/cc/{round_}"
                results = await asyncio.gather(
                    *(store.create(key, b"%d" % i) for i in range(20)), return_exceptions=True)
                winners = [r for r in results if isinstance(r, KeyValue)]
                losers = [r for r in results if not isinstance(r, KeyValue)]
                _eq(len(winners), 1, f"{len(winners)} creates of {key} succeeded")
                assert all(isinstance(r, KeyExists) for r in losers), losers
                _eq(winners[0].mod_revision, base + 1)
                _eq(await store.get(key), winners[0])
                await _check_current(store, base + 1, "exactly one create succeeded")

        self.run_with_store(tmp_path, body)

    def test_concurrent_updates_expecting_one_revision_have_exactly_one_winner(self, tmp_path):
        """"Of concurrent updates expecting the same revision exactly one succeeds"; the others
        raise :class:`RevisionConflict` carrying the winner's state. Same for deletes."""

        async def body(store: Store) -> None:
            kv = await store.create("/cu/a", b"0")
            results = await asyncio.gather(
                *(store.update("/cu/a", b"%d" % i, expected_revision=kv.mod_revision)
                  for i in range(20)), return_exceptions=True)
            winners = [r for r in results if isinstance(r, KeyValue)]
            _eq(len(winners), 1, f"{len(winners)} updates expecting one revision succeeded")
            for r in results:
                if not isinstance(r, KeyValue):
                    assert isinstance(r, RevisionConflict), r
                    _eq(r.kv, winners[0], "the conflict carries the winner's state")
            _eq(await store.get("/cu/a"), winners[0])
            await _check_current(store, winners[0].mod_revision, "one update succeeded")

            results = await asyncio.gather(
                *(store.delete("/cu/a", expected_revision=winners[0].mod_revision)
                  for _ in range(20)), return_exceptions=True)
            deleted = [r for r in results if isinstance(r, KeyValue)]
            _eq(deleted, [winners[0]], f"{len(deleted)} deletes succeeded")
            for r in results:
                assert isinstance(r, (KeyValue, KeyNotFound, RevisionConflict)), (
                    f"a losing CAS delete raised {r!r}, not KeyNotFound or RevisionConflict")

        self.run_with_store(tmp_path, body)

    def test_concurrent_compare_and_swap_counter(self, tmp_path):
        """Many tasks increment one counter with read-modify-write CAS, retrying from
        ``RevisionConflict.kv``: exactly one winner per revision (no two successful updates
        expected the same revision), the winners took consecutive revisions, and the final
        value counts every success (no lost update)."""

        async def body(store: Store) -> None:
            tasks, increments = 10, 15
            start = await store.create("/cas/counter", b"0")
            wins: list[tuple[int, int]] = []

            async def incrementer() -> None:
                kv = await store.get("/cas/counter")
                done = 0
                while done < increments:
                    new = b"%d" % (int(kv.value) + 1)
                    try:
                        result = await store.update("/cas/counter", new,
                                                    expected_revision=kv.mod_revision)
                    except RevisionConflict as exc:
                        assert exc.kv.mod_revision != kv.mod_revision, (
                            f"RevisionConflict with the expected revision: {exc.kv!r}")
                        kv = exc.kv
                        continue
                    wins.append((kv.mod_revision, result.mod_revision))
                    _eq((result.value, result.create_revision), (new, start.mod_revision),
                        "update result (value, create_revision)")
                    kv, done = result, done + 1

            await asyncio.gather(*(incrementer() for _ in range(tasks)))
            total = tasks * increments
            final = await store.get("/cas/counter")
            _eq(final.value, b"%d" % total, "no lost updates")
            expected_revs = [w[0] for w in wins]
            _eq(len(set(expected_revs)), total, "two updates succeeded expecting the same revision")
            _eq(sorted(w[1] for w in wins), list(
                range(start.mod_revision + 1, start.mod_revision + total + 1)))
            _eq(final.mod_revision, start.mod_revision + total)
            await _check_current(store, final.mod_revision, "only the counter was written")

        self.run_with_store(tmp_path, body)

    def test_concurrent_writes_take_distinct_consecutive_revisions(self, tmp_path):
        """Concurrent writes to different keys each take their own revision: the revisions of
        N concurrent creates are exactly the N revisions after the starting one."""

        async def body(store: Store) -> None:
            base = await store.current_revision()
            kvs = await asyncio.gather(*(store.create(f"/cw/{i:03d}", b"v") for i in range(300)))
            _eq(sorted(kv.mod_revision for kv in kvs), list(range(base + 1, base + 301)))
            await _check_current(store, base + 300, "300 creates")
            listed = await store.list("/cw/")
            _eq(listed.items, sorted(kvs, key=lambda kv: _utf8(kv.key)))

        self.run_with_store(tmp_path, body)

    # == watch =====================================================================================

    def test_watch_from_every_revision(self, tmp_path):
        """For a history of N writes, ``watch(prefix, after_revision=r)`` for every ``r`` from
        the start to N yields exactly the matching events ``r+1..N`` in order (``r = N``: none),
        and then live events: the next write is the next event of every watch (nothing
        missing, nothing repeated, no event at or below ``r``). Events are exact: PUT carries
        the new ``kv`` and ``prev_kv`` (None on create), DELETE carries ``prev_kv`` and no
        ``kv``."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/w/")
            watches = [(r, prefix, self.watch(store, prefix, r))
                       for r in range(model.base, model.revision + 1) for prefix in ("/w/", "")]
            try:
                for r, prefix, w in watches:
                    expected = model.events_after(r, prefix)
                    got = await w.take(len(expected))
                    _eq(got, expected, f"watch({prefix!r}, after_revision={r})")
                await model.create(store, "/w/live", b"live")
                await model.update(store, "/w/a", b"live2")
                for r, prefix, w in watches:
                    _eq(await w.take(2), model.events[-2:],
                        f"watch({prefix!r}, after_revision={r}): the live events follow the "
                        f"history, once each")
            finally:
                for _, _, w in watches:
                    await w.close()

        self.run_with_store(tmp_path, body)

    def test_watch_prefix_filtering(self, tmp_path):
        """A watch delivers only changes to keys that start with its prefix (the key equal to
        the prefix included), in revision order with their exact events."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            prefixes = ["/wp/a/", "/wp/a", "/wp/b/", "/wp/"]
            watches = {p: self.watch(store, p, model.revision) for p in prefixes}
            try:
                for key in ["/wp/a/1", "/wp/ab", "/wp/b/1", "/wp/a", "/wp/b", "/wpx", "/wp/a/2"]:
                    await model.create(store, key, key.encode())
                await model.update(store, "/wp/a/1", b"x")
                await model.delete(store, "/wp/b/1")
                await model.delete(store, "/wpx")
                await model.create(store, "/wp/end", b"sentinel")  # matches only "/wp/"
                await model.create(store, "/wp/a/end", b"sentinel")  # matches three
                for prefix, w in watches.items():
                    expected = model.events_after(model.base, prefix)
                    _eq(await w.take(len(expected)), expected, f"watch({prefix!r})")
            finally:
                for w in watches.values():
                    await w.close()

        self.run_with_store(tmp_path, body)

    def test_watch_delete_and_put_events_carry_prev_kv(self, tmp_path):
        """DELETE events carry ``prev_kv`` (the deleted state, ``mod_revision`` of the last
        write) and ``kv=None``, with ``revision`` the delete's own revision; PUT events carry
        ``prev_kv`` (the state before an update, None for a create, also for a key re-created
        after a delete)."""

        async def body(store: Store) -> None:
            base = await store.current_revision()
            w = self.watch(store, "/pk/", base)
            try:
                created = await store.create("/pk/a", b"1")
                updated = await store.update("/pk/a", b"2", expected_revision=0)
                await store.delete("/pk/a")
                again = await store.create("/pk/a", b"3")
                events = await w.take(4)
            finally:
                await w.close()
            _eq(events[0], WatchEvent(EventType.PUT, base + 1, created, None))
            _eq(events[1], WatchEvent(EventType.PUT, base + 2, updated, created))
            _eq(events[2], WatchEvent(EventType.DELETE, base + 3, None, updated))
            _eq(events[3], WatchEvent(EventType.PUT, base + 4, again, None))

        self.run_with_store(tmp_path, body)

    def test_watch_at_current_revision_sees_only_new_changes(self, tmp_path):
        """``after_revision`` may be the current revision: the watch yields only changes made
        after it, starting with the very next write."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/wc/old", b"old")
            await model.update(store, "/wc/old", b"older")
            w = self.watch(store, "/wc/", model.revision)
            try:
                await model.create(store, "/wc/new", b"new")
                _eq(await w.next(), model.events[-1])
                await model.delete(store, "/wc/old")
                _eq(await w.next(), model.events[-1])
            finally:
                await w.close()

        self.run_with_store(tmp_path, body)

    def test_watch_no_loss_or_duplication_under_concurrent_writes(self, tmp_path):
        """Under concurrent writers, every watch (started before the writes, or in the middle
        of them from the starting revision, so that its catch-up races live writes) yields
        every committed change exactly once in strictly consecutive revision order; each
        event matches an acknowledged write and its ``prev_kv`` is the key's previous
        state; a prefix watch sees exactly the matching subsequence."""

        async def body(store: Store) -> None:
            base = await store.current_revision()
            writers, per_writer = 8, 40
            total = writers * per_writer
            puts: list[KeyValue] = []
            deletes: list[KeyValue] = []
            progress = {"writes": 0}
            half = asyncio.Event()

            async def writer(t: int) -> None:
                rng = random.Random(t)
                mine: dict[str, KeyValue] = {}
                for i in range(per_writer):
                    key = f"/wn/{t}/{rng.randrange(4)}"
                    kv = mine.get(key)
                    if kv is None:
                        kv = await store.create(key, b"%d-%d" % (t, i))
                        mine[key] = kv
                        puts.append(kv)
                    elif rng.random() < 0.3:
                        deletes.append(await store.delete(key, expected_revision=kv.mod_revision))
                        del mine[key]
                    else:
                        kv = await store.update(key, b"%d-%d" % (t, i),
                                                expected_revision=kv.mod_revision)
                        mine[key] = kv
                        puts.append(kv)
                    progress["writes"] += 1
                    if progress["writes"] >= total // 2:
                        half.set()
                    if rng.random() < 0.5:
                        await asyncio.sleep(0)

            async def collect(prefix: str, n: int | None, late: bool) -> list[WatchEvent]:
                if late:
                    await half.wait()
                w = self.watch(store, prefix, base)
                try:
                    if n is None:  # prefix watch: read up to the sentinel
                        got = []
                        while True:
                            event = await w.next()
                            if event.kv is not None and event.kv.key == "/wn/3/sentinel":
                                return got
                            got.append(event)
                    return await w.take(n)
                finally:
                    await w.close()

            collectors = [asyncio.create_task(collect("/wn/", total, late=False)),
                          asyncio.create_task(collect("", total, late=False)),
                          asyncio.create_task(collect("/wn/", total, late=True)),
                          asyncio.create_task(collect("/wn/3/", None, late=False))]
            await asyncio.sleep(0)
            await asyncio.gather(*(writer(t) for t in range(writers)))
            await store.create("/wn/3/sentinel", b"end")
            streams = await asyncio.gather(*collectors)
            full = streams[0]
            _eq([e.revision for e in full], list(range(base + 1, base + total + 1)),
                "every revision exactly once, in order")
            by_revision = lambda kv: kv.mod_revision  # noqa: E731
            _eq(sorted((e.kv for e in full if e.type is EventType.PUT), key=by_revision),
                sorted(puts, key=by_revision), "PUT events are the acknowledged writes")
            _eq(sorted((e.prev_kv for e in full if e.type is EventType.DELETE), key=by_revision),
                sorted(deletes, key=by_revision), "DELETE events carry the deleted states")
            state: dict[str, KeyValue] = {}
            for e in full:
                key = (e.kv or e.prev_kv).key
                _eq(e.prev_kv, state.get(key), f"prev_kv of {e!r}")
                if e.type is EventType.PUT:
                    state[key] = e.kv
                else:
                    del state[key]
            _eq(streams[1], full, "a watch of everything sees the same stream")
            _eq(streams[2], full, "a watch started mid-way from the start sees the same")
            _eq(streams[3], [e for e in full if (e.kv or e.prev_kv).key.startswith(
                "/wn/3/")], "a prefix watch sees exactly the matching events")

        self.run_with_store(tmp_path, body)

    def test_watch_events_are_committed(self, tmp_path):
        """"Events are only delivered once committed (they would be returned by a
        linearizable read)": as each event arrives, under concurrent writers,
        ``current_revision()`` is at least its revision and ``get(key, revision=...)`` at its
        revision returns its ``kv`` (None for a DELETE)."""

        async def body(store: Store) -> None:
            base = await store.current_revision()
            total = 120
            w = self.watch(store, "/ec/", base)

            async def writer(t: int) -> None:
                for i in range(total // 4):
                    key = f"/ec/{t}/{i % 3}"
                    kv = await store.get(key)
                    if kv is None:
                        await store.create(key, b"%d" % i)
                    elif i % 4 == 0:
                        await store.delete(key, expected_revision=kv.mod_revision)
                    else:
                        await store.update(key, b"%d" % i, expected_revision=kv.mod_revision)

            async def checker() -> None:
                for _ in range(total):
                    event = await w.next()
                    current = await store.current_revision()
                    assert current >= event.revision, (
                        f"event at revision {event.revision} delivered while "
                        f"current_revision() is {current}")
                    key = (event.kv or event.prev_kv).key
                    _eq(await store.get(key, revision=event.revision), event.kv,
                        f"get({key!r}, revision={event.revision}) against its watch event")

            try:
                await asyncio.gather(checker(), *(writer(t) for t in range(4)))
            finally:
                await w.close()

        self.run_with_store(tmp_path, body)

    def test_many_watchers_of_one_prefix(self, tmp_path):
        """Watches are independent: fifty watchers of one prefix, opened before the writes and
        read one after another (so most lag far behind), each receive the full stream."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            watches = [self.watch(store, "/mw/", model.revision) for _ in range(50)]
            try:
                for i in range(30):
                    await model.create(store, f"/mw/{i}", b"v")
                for i, w in enumerate(watches):
                    if i % 5 == 0:
                        await asyncio.sleep(0)
                    _eq(await w.take(30), model.events)
            finally:
                for w in watches:
                    await w.close()

        self.run_with_store(tmp_path, body)

    def test_watch_closed_by_caller(self, tmp_path):
        """The caller ends a watch with ``aclose()``; the store keeps working and other
        watches are unaffected."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            keep = self.watch(store, "/wx/", model.revision)
            for _ in range(3):
                gone = self.watch(store, "/wx/", model.revision)
                await model.create(store, f"/wx/{model.revision}", b"v")
                await gone.next()
                await gone.close()
            abandoned = self.watch(store, "/wx/", model.revision)
            del abandoned
            await model.create(store, "/wx/last", b"v")
            try:
                _eq(await keep.take(4), model.events)
            finally:
                await keep.close()

        self.run_with_store(tmp_path, body)

    def test_watch_progress_events(self, tmp_path):
        """With ``progress_interval`` set, a watch with nothing to deliver yields PROGRESS
        events (no ``kv``) whose revision says every matching write up to it was delivered:
        it is at least ``after_revision``, at most the current revision, it reaches a write
        made outside the prefix, never goes back, and no later event has a revision at or
        below it."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/pr/a", b"1")
            w = self.watch(store, "/pr/", model.revision, progress_interval=0.05)
            try:
                event = await w.next(progress=True)
                _eq(event.type, EventType.PROGRESS, "nothing was written: only progress")
                current = await store.current_revision()
                assert model.revision <= event.revision <= current, (
                    f"PROGRESS revision {event.revision} outside [after_revision "
                    f"{model.revision}, current revision {current}]")
                await model.create(store, "/other/x", b"not watched")
                outside = model.revision
                while (await w.next(progress=True)).revision < outside:
                    pass  # progress catches up with writes made outside the prefix
                await model.create(store, "/pr/b", b"2")
                event = await w.next()
                _eq(event, model.events[-1])
                assert all(p.revision < event.revision for p in w.progress[-1:]), (
                    "a PROGRESS revision promises every write up to it was delivered")
                event = await w.next(progress=True)
                _eq(event.type, EventType.PROGRESS, "nothing more was written under the prefix")
                assert event.revision >= model.revision, (
                    f"PROGRESS at {event.revision} after an event at {model.revision}")
                revisions = [p.revision for p in w.progress]
                _eq(revisions, sorted(revisions))
            finally:
                await w.close()

        self.run_with_store(tmp_path, body)

    def test_closing_the_store_ends_watches(self, tmp_path):
        """``close()`` ends every open watch: an iterator blocked waiting for an event
        finishes (StopAsyncIteration), and so does one that is between events."""

        async def body(store: Store) -> None:
            base = await store.current_revision()
            waiting = self.watch(store, "/cl/", base)
            idle = self.watch(store, "/cl/", base)
            progress = self.watch(store, "/cl/", base, progress_interval=0.05)
            await store.create("/cl/a", b"1")
            await idle.next()
            await progress.next()
            await waiting.next()

            async def drain(w: _Watch) -> None:
                while (event := await w.next_raw()) is not _END:
                    assert event.type is EventType.PROGRESS, (
                        f"{event!r} delivered though nothing was written")

            pending = asyncio.create_task(drain(waiting))
            await asyncio.sleep(0.05)  # let it block waiting for an event
            await store.close()
            await pending  # a watch blocked waiting for an event finishes when the store closes
            await drain(idle)  # so does a watch between events
            await drain(progress)  # and one that yields progress events

        self.run_with_store(tmp_path, body)

    def test_close_is_idempotent(self, tmp_path):
        """``close()`` may be called more than once."""

        async def body(store: Store) -> None:
            await store.create("/ci/a", b"1")
            await store.close()
            await store.close()

        self.run_with_store(tmp_path, body)

    # == compaction ================================================================================

    def test_compaction(self, tmp_path):
        """After ``compact(r)``: reads (get, list) below ``r`` raise :class:`Compacted` with
        ``requested`` and ``compact_revision == r``; reads at ``r`` and later are intact;
        current state is untouched (keys last written before ``r`` keep their values and
        revisions; keys deleted before ``r`` stay deleted); ``compacted_revision()`` is ``r``;
        compaction is not a write (the revision does not move)."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/cp/")
            r = model.base + 8
            await store.compact(r)
            await _check_current(store, model.revision, "compaction is not a write")
            _eq(await store.compacted_revision(), r)
            keys = sorted({k for snap in model.snapshots.values() for k in snap})
            for below in range(max(1, model.base), r):
                with _raises(Compacted) as info:
                    await store.get(keys[0], revision=below)
                _eq((info.value.requested, info.value.compact_revision), (below, r),
                    "Compacted (requested, compact_revision)")
                with _raises(Compacted) as info:
                    await store.list("/cp/", revision=below)
                _eq(info.value.compact_revision, r)
            for at in range(r, model.revision + 1):
                _eq((await store.list("/cp/", revision=at)).items, model.listing(at, "/cp/"))
                for key in keys:
                    _eq(await store.get(key, revision=at), model.snapshots[at].get(key))
            current = await store.list("/cp/")
            _eq(current.items, model.listing(model.revision, "/cp/"))
            for key in keys:
                _eq(await store.get(key), model.state.get(key))
            # The store keeps working: new writes, reads, and a second compaction.
            await model.update(store, "/cp/a", b"after")
            await store.compact(model.revision)
            _eq(await store.compacted_revision(), model.revision)
            _eq(await store.get("/cp/a"), model.state["/cp/a"])
            _eq((await store.list("/cp/")).items, model.listing(model.revision, "/cp/"))

        self.run_with_store(tmp_path, body)

    def test_compact_to_lower_or_equal_revision_is_a_no_op(self, tmp_path):
        """Compacting to a revision at or below the compacted revision is a no-op, not an
        error: ``compacted_revision()`` stays, and readable history stays readable."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            for i in range(6):
                await model.create(store, f"/cn/{i}", b"v")
            r = model.base + 4
            await store.compact(r)
            for lower in (r, r - 1, 1, 0):
                await store.compact(lower)
                _eq(await store.compacted_revision(), r)
            _eq(await store.get("/cn/3", revision=r), model.snapshots[r]["/cn/3"])
            await _check_current(store, model.revision, "compaction is not a write")

        self.run_with_store(tmp_path, body)

    def test_compact_above_current_revision_raises_store_error(self, tmp_path):
        """Compacting above the current revision raises :class:`StoreError` and changes
        nothing; compacting to exactly the current revision is allowed and keeps the
        current state readable at that revision."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/ca/a", b"v")
            await model.create(store, "/ca/b", b"v")
            before = await store.compacted_revision()
            with _raises(StoreError):
                await store.compact(model.revision + 1)
            _eq(await store.compacted_revision(), before)
            _eq(await store.get("/ca/a", revision=model.revision - 1), model.snapshots[
                model.revision - 1]["/ca/a"])
            await store.compact(model.revision)
            _eq(await store.compacted_revision(), model.revision)
            result = await store.list("/ca/", revision=model.revision)
            _eq(result.items, model.listing(model.revision, "/ca/"))

        self.run_with_store(tmp_path, body)

    def test_watch_below_compaction_raises_compacted(self, tmp_path):
        """After ``compact(r)``, a watch with ``after_revision < r`` raises
        :class:`Compacted` (``compact_revision == r``) on its first ``__anext__``; a watch
        with ``after_revision == r`` (or later) yields the events after it, then live ones."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/wcp/")
            r = model.base + 10
            await store.compact(r)
            for after in sorted({model.base, r - 1}):
                w = self.watch(store, "/wcp/", after)
                try:
                    with _raises(Compacted) as info:
                        await w.next()
                    _eq(info.value.compact_revision, r)
                    _eq(info.value.requested, after)
                finally:
                    await w.close()
            for after in (r, r + 1, model.revision):
                w = self.watch(store, "/wcp/", after)
                try:
                    expected = model.events_after(after, "/wcp/")
                    _eq(await w.take(len(expected)), expected)
                    await model.create(store, f"/wcp/live{after}", b"v")
                    _eq(await w.next(), model.events[-1])
                finally:
                    await w.close()

        self.run_with_store(tmp_path, body)

    def test_compaction_keeps_caught_up_watches_running(self, tmp_path):
        """Compaction only ends watches that still need compacted history: a watch that has
        delivered everything up to the compaction revision keeps delivering live events,
        and a watch opened at the compaction revision works."""

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            w = self.watch(store, "/wk/", model.revision)
            try:
                for i in range(5):
                    await model.create(store, f"/wk/{i}", b"v")
                _eq(await w.take(5), model.events, "events before the compaction")
                await store.compact(model.revision)
                later = self.watch(store, "/wk/", model.revision)
                try:
                    await model.update(store, "/wk/0", b"after")
                    await model.delete(store, "/wk/1")
                    _eq(await w.take(2), model.events[-2:],
                        "a caught-up watch continues after compaction")
                    _eq(await later.take(2), model.events[-2:],
                        "a watch from the compaction revision")
                finally:
                    await later.close()
            finally:
                await w.close()

        self.run_with_store(tmp_path, body)

    # == values and keys ===========================================================================

    def test_large_values_round_trip(self, tmp_path):
        """Values "of up to at least 1.5 MiB" round-trip byte for byte through create, get,
        get at a revision, list, update, watch events and delete."""

        async def body(store: Store) -> None:
            size = self.max_value_size
            assert size >= 1_572_864, "the contract requires values of at least 1.5 MiB"
            big1, big2 = os.urandom(size), os.urandom(size)
            base = await store.current_revision()
            w = self.watch(store, "/big/", base)
            try:
                kv1 = await store.create("/big/a", big1)
                _eq(kv1.value, big1)
                _eq((await store.get("/big/a")).value, big1)
                kv2 = await store.update("/big/a", big2, expected_revision=kv1.mod_revision)
                _eq((await store.get("/big/a", revision=kv1.mod_revision)).value, big1)
                await store.create("/big/b", big1)
                listed = await store.list("/big/")
                _eq([kv.value for kv in listed.items], [big2, big1])
                _eq((await store.delete("/big/a")).value, big2)
                events = await w.take(4)
                _eq(events[0].kv.value, big1)
                _eq((events[1].kv.value, events[1].prev_kv.value), (big2, big1),
                    "update event values")
                _eq(events[2].kv.value, big1)
                _eq((events[3].type, events[3].prev_kv), (EventType.DELETE, kv2), "delete event")
            finally:
                await w.close()

        self.run_with_store(tmp_path, body)

    def test_binary_and_empty_values(self, tmp_path):
        """Values are arbitrary ``bytes``: every byte value, NULs and the empty value
        round-trip exactly (an empty value is a present key, not an absent one)."""

        async def body(store: Store) -> None:
            values = {"/bin/all": bytes(range(256)) * 4, "/bin/nul": b"\0\0\0",
                      "/bin/empty": b"", "/bin/utf": "\u00e9\u4e2d".encode()}
            for key, value in values.items():
                kv = await store.create(key, value)
                _eq(kv.value, value)
                got = await store.get(key)
                assert got is not None and isinstance(got.value, bytes), (
                    f"get({key!r}) returned {got!r}")
                _eq(got.value, value, f"get({key!r}).value")
            listed = await store.list("/bin/")
            _eq({kv.key: kv.value for kv in listed.items}, values)
            kv = await store.update("/bin/all", b"", expected_revision=0)
            _eq((await store.get("/bin/all")).value, b"")
            _eq((await store.get("/bin/all", revision=kv.mod_revision - 1)).value,
                bytes(range(256)) * 4, "the value before the update, read at its revision")

        self.run_with_store(tmp_path, body)

    def test_unicode_keys(self, tmp_path):
        """Keys are ``str``; non-ASCII keys round-trip, are found by prefix and sort by their
        UTF-8 bytes."""

        async def body(store: Store) -> None:
            keys = ["/u/\u00e9t\u00e9", "/u/\u4e2d\u6587", "/u/\U0001f600", "/u/z", "/u/A",
                    "/u/\u00e9/x"]
            for key in keys:
                await store.create(key, key.encode())
            listed = await store.list("/u/")
            _eq([kv.key for kv in listed.items], sorted(keys, key=_utf8))
            _eq([kv.key for kv in (await store.list("/u/\u00e9")).items], sorted(
                [k for k in keys if k.startswith("/u/\u00e9")], key=_utf8))
            for key in keys:
                _eq((await store.get(key)).value, key.encode())

        self.run_with_store(tmp_path, body)

    # == scale =====================================================================================

    @pytest.mark.slow
    def test_100k_keys(self, tmp_path):
        """A store holds 100,000 keys: they are created (concurrently, in batches), listed in
        one call and page by page at one revision, each exactly once, in order."""

        async def body(store: Store) -> None:
            n, batch = 100_000, 1_000
            base = await store.current_revision()
            keys = [f"/many/{i:06d}" for i in range(n)]
            for start in range(0, n, batch):
                await asyncio.gather(*(store.create(k, b"v") for k in keys[start:start + batch]))
            await _check_current(store, base + n, "100,000 creates")
            whole = await store.list("/many/")
            _eq((len(whole.items), whole.more), (n, False),
                "list without limit: (len(items), more)")
            _eq([kv.key for kv in whole.items], keys)
            _eq(sorted(kv.mod_revision for kv in whole.items), list(
                range(base + 1, base + n + 1)))
            assert whole.count in (None, n), f"count is {whole.count!r}"
            seen, page = [], await store.list("/many/", limit=5_000)
            seen += page.items
            while page.more:
                page = await store.list("/many/", limit=5_000, start_after=page.items[-1].key,
                                        revision=whole.revision)
                seen += page.items
            _eq(seen, whole.items)
            _eq(len((await store.list("")).items), n)

        self.run_with_store(tmp_path, body)

    # == durability ================================================================================

    def test_restart_keeps_acknowledged_writes(self, tmp_path):
        """Durability: every acknowledged write is present after a restart, with the same
        values and revisions; the current revision is the same; the revision counter
        continues (the next write takes the next revision, never a reused one)."""
        self._require_durable()

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/d/")
            kvs = await asyncio.gather(*(store.create(f"/d/c/{i:03d}", b"%d" % i)
                                         for i in range(100)))
            model.revision += len(kvs)
            model.state.update((kv.key, kv) for kv in kvs)
            store = await self.restart(store, tmp_path)
            try:
                await _check_current(store, model.revision, "a restart keeps the revision")
                listed = await store.list("")
                _eq(listed.items, [model.state[k] for k in sorted(model.state, key=_utf8)])
                for key, kv in model.state.items():
                    _eq(await store.get(key), kv)
                new = await store.create("/d/after", b"x")
                _eq(new.mod_revision, model.revision + 1, "revisions continue")
            finally:
                await store.close()

        self.run_with_store(tmp_path, body)

    def test_restart_never_reuses_a_revision(self, tmp_path):
        """"Revisions are never reused, not even across restarts": when the last writes
        before a restart were deletes (so no live key shows the latest revision), the
        revision after the restart is still the last one, and the next write takes the
        one after it."""
        self._require_durable()

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await model.create(store, "/nr/a", b"1")
            await model.create(store, "/nr/b", b"1")
            await model.update(store, "/nr/b", b"2")
            await model.delete(store, "/nr/b")
            await model.delete(store, "/nr/a")
            store = await self.restart(store, tmp_path)
            try:
                await _check_current(store, model.revision, "deletes count after a restart")
                kv = await store.create("/nr/c", b"1")
                _eq(kv.mod_revision, model.revision + 1, "a revision was reused")
                _eq((await store.get("/nr/a"), await store.get("/nr/b")), (None, None),
                    "deleted keys stay deleted")
            finally:
                await store.close()

        self.run_with_store(tmp_path, body)

    def test_restart_repeatedly_and_history(self, tmp_path):
        """Across several restarts with writes in between, state and revisions carry over;
        past revisions that are not compacted (``>= compacted_revision()``) read as they
        were, and a compaction made before a restart still holds after it."""
        self._require_durable()

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            opened = [store]
            try:
                for round_ in range(3):
                    for i in range(5):
                        key = f"/rr/{i}"
                        if key in model.state:
                            await model.update(store, key, b"%d" % round_)
                        else:
                            await model.create(store, key, b"%d" % round_)
                    if round_ == 1:
                        await model.delete(store, "/rr/0")
                        compact_to = model.revision - 3
                        await store.compact(compact_to)
                    store = await self.restart(store, tmp_path)
                    opened.append(store)
                    await _check_current(store, model.revision, f"after restart {round_ + 1}")
                compacted = await store.compacted_revision()
                assert compacted >= compact_to, "a compaction survives a restart"
                with _raises(Compacted):
                    await store.get("/rr/1", revision=compact_to - 1)
                for r in range(max(compacted, 1), model.revision + 1):
                    _eq((await store.list("/rr/", revision=r)).items, model.listing(
                        r, "/rr/"), f"list at revision {r} after restarts")
                _eq((await store.list("/rr/")).items, model.listing(model.revision, "/rr/"))
                kv = await store.create("/rr/new", b"x")
                _eq(kv.mod_revision, model.revision + 1, "revisions continue")
            finally:
                await opened[-1].close()

        self.run_with_store(tmp_path, body)

    def test_watch_resumes_across_restart(self, tmp_path):
        """A watch opened after a restart from a revision before it yields the same events
        it would have before (unless that history was compacted, in which case it raises
        :class:`Compacted`, as the contract allows) and then live events."""
        self._require_durable()

        async def body(store: Store) -> None:
            model = _Model(await store.current_revision())
            await self._mixed_history(store, model, "/wr/")
            store = await self.restart(store, tmp_path)
            try:
                after = model.base + 5
                w = self.watch(store, "/wr/", after)
                try:
                    if after < await store.compacted_revision():
                        with _raises(Compacted):
                            await w.next()
                        return
                    expected = model.events_after(after, "/wr/")
                    _eq(await w.take(len(expected)), expected)
                    await model.create(store, "/wr/live", b"v")
                    _eq(await w.next(), model.events[-1])
                finally:
                    await w.close()
            finally:
                await store.close()

        self.run_with_store(tmp_path, body)
