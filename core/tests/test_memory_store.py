"""MemoryStore watch delivery: caught-up watches are handed matching events only, a consumer
that stops taking events falls back to history, and progress comes from one timer."""

import asyncio

import pytest

from pilothouse.interfaces.store import Compacted, EventType
from pilothouse.interfaces.store import WatchBuffer
from pilothouse.testing.memory_store import MemoryStore
import pilothouse.testing.memory_store as memory_store


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _opened() -> MemoryStore:
    store = MemoryStore()
    await store.open()
    return store


def test_watch_of_another_prefix_is_not_woken_by_a_write():
    async def main():
        store = await _opened()
        wakes = []
        inner_wake = WatchBuffer.wake

        def counting(watcher):
            wakes.append(watcher.prefix)
            inner_wake(watcher)

        WatchBuffer.wake = counting
        try:
            a = store.watch("/a/", after_revision=0)
            b = store.watch("/b/", after_revision=0)
            ta = asyncio.ensure_future(a.__anext__())
            tb = asyncio.ensure_future(b.__anext__())
            await asyncio.sleep(0)  # both caught up and asleep
            for i in range(3):
                await store.create(f"/a/{i}", b"x")
            ev = await ta
            assert ev.kv.key == "/a/0"
            assert "/b/" not in wakes and not tb.done()
            assert [(await a.__anext__()).kv.key for _ in range(2)] == ["/a/1", "/a/2"]
            await store.create("/b/0", b"y")
            assert (await tb).kv.key == "/b/0"
            await a.aclose()
            await b.aclose()
            assert store._watchers.groups == {}  # closed watches detach
        finally:
            WatchBuffer.wake = inner_wake
            await store.close()

    run(main())


def test_a_consumer_that_falls_behind_reads_history_and_misses_nothing(monkeypatch):
    monkeypatch.setattr(memory_store, "_MAX_PENDING", 5)

    async def main():
        store = await _opened()
        watch = store.watch("/k/", after_revision=0)
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        for i in range(20):
            await store.create(f"/k/{i}", b"v")
            await store.create(f"/other/{i}", b"v")
        assert (await first).revision == 1
        assert store._watchers.groups == {}  # dropped its buffer; reads history now
        revs = [(await watch.__anext__()).revision for _ in range(19)]
        assert revs == list(range(3, 41, 2))
        nxt = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        assert "/k/" in store._watchers.groups  # caught up again
        await store.create("/k/x", b"v")
        assert (await nxt).kv.key == "/k/x"
        await watch.aclose()
        await store.close()

    run(main())


def test_a_lagging_consumer_dropped_behind_a_compaction_gets_compacted(monkeypatch):
    monkeypatch.setattr(memory_store, "_MAX_PENDING", 2)

    async def main():
        store = await _opened()
        watch = store.watch("/k/", after_revision=0)
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        for i in range(5):
            await store.create(f"/k/{i}", b"v")
        assert (await first).revision == 1
        await store.compact(4)
        with pytest.raises(Compacted):
            await watch.__anext__()
        await store.close()

    run(main())


def test_caught_up_watch_keeps_its_events_across_a_compaction():
    async def main():
        store = await _opened()
        watch = store.watch("/k/", after_revision=0)
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        for i in range(3):
            await store.create(f"/k/{i}", b"v")
        await store.compact(3)
        assert [(await first).revision] + [(await watch.__anext__()).revision
                                           for _ in range(2)] == [1, 2, 3]
        await watch.aclose()
        await store.close()

    run(main())


def test_progress_reaches_writes_elsewhere_and_follows_deliveries():
    async def main():
        store = await _opened()
        await store.create("/k/0", b"v")
        watch = store.watch("/k/", after_revision=1, progress_interval=0.05)
        nxt = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        await store.create("/other/0", b"v")
        await store.create("/other/1", b"v")
        ev = await nxt
        assert (ev.type, ev.revision) == (EventType.PROGRESS, 3)
        await store.create("/k/1", b"v")
        assert (await watch.__anext__()).revision == 4
        ev = await watch.__anext__()
        assert (ev.type, ev.revision) == (EventType.PROGRESS, 4)
        await watch.aclose()
        await store.close()

    run(main())


def test_close_ends_sleeping_watches():
    async def main():
        store = await _opened()
        watch = store.watch("", after_revision=0, progress_interval=10.0)
        nxt = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await nxt

    run(main())
