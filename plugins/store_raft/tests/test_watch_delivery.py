"""How the driver hands events to watches and times requests out on the event loop:
caught-up watches get only matching events pushed to them, a consumer that stops taking
events falls back to history, and one watchdog timer fails late requests and resubmits
stalled batches."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.interfaces.store import EventType, StoreUnavailable
from pilothouse_store_raft import store as raft_store
from pilothouse.interfaces.store import WatchBuffer
from raft_testing import make_store


def test_only_watches_of_the_written_prefix_are_woken(tmp_path, run, monkeypatch):
    wakes = []
    inner_wake = WatchBuffer.wake

    def counting(watcher):
        wakes.append(watcher.prefix)
        inner_wake(watcher)

    monkeypatch.setattr(WatchBuffer, "wake", counting)

    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            a = s.watch("/a/", after_revision=0)
            b = s.watch("/b/", after_revision=0)
            ta = asyncio.ensure_future(a.__anext__())
            tb = asyncio.ensure_future(b.__anext__())
            await asyncio.sleep(0.01)
            assert set(s._watchers.groups) == {"/a/", "/b/"}  # caught up and attached
            await asyncio.gather(*(s.create(f"/a/{i}", b"x") for i in range(3)))
            assert (await ta).kv.key == "/a/0"
            assert "/b/" not in wakes and not tb.done()
            rest = [await a.__anext__() for _ in range(2)]
            assert [e.revision for e in rest] == [2, 3]
            await s.create("/b/0", b"y")
            assert (await tb).kv.key == "/b/0"
            await a.aclose()
            await b.aclose()
            assert s._watchers.groups == {}
        finally:
            await s.close()

    run(main())


def test_a_consumer_that_falls_behind_reads_history_and_misses_nothing(tmp_path, run,
                                                                       monkeypatch):
    monkeypatch.setattr(raft_store, "MAX_PENDING_EVENTS", 5)

    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            w = s.watch("/k/", after_revision=0, progress_interval=60.0)
            first = asyncio.ensure_future(w.__anext__())
            await asyncio.sleep(0.01)
            for i in range(20):
                await s.create(f"/k/{i}", b"v")
                await s.create(f"/other/{i}", b"v")
            assert (await first).revision == 1
            assert s._watchers.groups == {}  # dropped its buffer: reads history now
            revs = [(await w.__anext__()).revision for _ in range(19)]
            assert revs == list(range(3, 41, 2))
            nxt = asyncio.ensure_future(w.__anext__())
            await asyncio.sleep(0.01)
            assert "/k/" in s._watchers.groups  # caught up again
            await s.delete("/k/3")
            ev = await nxt
            assert (ev.type, ev.prev_kv.key, ev.revision) == (EventType.DELETE, "/k/3", 41)
            await w.aclose()
        finally:
            await s.close()

    run(main())


def test_progress_of_an_attached_watch_reaches_writes_elsewhere(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            await s.create("/k/0", b"v")
            w = s.watch("/k/", after_revision=1, progress_interval=0.05)
            nxt = asyncio.ensure_future(w.__anext__())
            await asyncio.sleep(0.01)
            await s.create("/other/0", b"v")
            await s.create("/other/1", b"v")
            ev = await nxt
            assert (ev.type, ev.revision) == (EventType.PROGRESS, 3)
            await s.create("/k/1", b"v")
            assert (await w.__anext__()).revision == 4
            ev = await w.__anext__()
            assert (ev.type, ev.revision) == (EventType.PROGRESS, 4)
            await w.aclose()
        finally:
            await s.close()

    run(main())


def test_watchdog_resubmits_a_stalled_batch(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            s._stall_timeout = 0.05
            member = s.member
            inner, dropped = member.submit, []

            def drop_first(blob, callback, batch=None):
                if not dropped:
                    dropped.append(blob)  # never reaches raft, never answered
                    return
                inner(blob, callback, batch)

            member.submit = drop_first
            kv = await s.create("/k", b"v")
            assert dropped and kv.mod_revision == 1
            assert s._batches == {}
        finally:
            await s.close()

    run(main())


def test_watchdog_fails_requests_past_their_deadline(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path), "request_timeout": 0.1})
        await s.open()
        try:
            member = s.member
            inner = member.submit
            member.submit = lambda *args: None  # every submission is lost
            results = await asyncio.gather(s.create("/a", b"v"), s.create("/b", b"v"),
                                           return_exceptions=True)
            assert all(isinstance(r, StoreUnavailable) and "no quorum" in str(r)
                       for r in results), results
            member.submit = inner
            s._on_watchdog()  # whatever is still in flight is resubmitted or finished
            await asyncio.sleep(0.05)
            assert (await s.create("/c", b"v")).key == "/c"
        finally:
            await s.close()

    run(main())


def test_a_cancelled_request_is_skipped(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            task = asyncio.ensure_future(s.create("/gone", b"v"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await s.create("/kept", b"v")).mod_revision == 1
            assert await s.get("/gone") is None
        finally:
            await s.close()

    run(main())
