"""The delivery helpers the driver builds its watches on: WatchHub's routing of a key to
the prefixes it falls under (remembered per key) and the driver's own makers of KeyValue
and WatchEvent objects, which must make exactly the dataclasses' objects."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle

import pytest

from pilothouse.interfaces.store import EventType, KeyValue, WatchBuffer, WatchEvent, WatchHub
from pilothouse_store_raft import _state as S
from pilothouse_store_raft import store as raft_store


def _buffers(loop, *prefixes):
    return [WatchBuffer(loop, p, None) for p in prefixes]


def _pending(watcher):
    return [ev.revision for ev in watcher.pending]


def _put(rev):
    return WatchEvent(EventType.PUT, rev, KeyValue("/k", b"", rev, rev))


def test_push_reaches_every_matching_prefix_and_makes_the_event_once():
    loop = asyncio.new_event_loop()
    try:
        hub = WatchHub(100)
        a, a2, ab, b = _buffers(loop, "/a/", "/a/", "/a/b/", "/b/")
        for w in (a, a2, ab, b):
            hub.attach(w)
        made = []

        def make(rev, tag):
            made.append((rev, tag))
            return _put(rev)

        hub.push("/a/b/1", make, 1, "x")
        hub.push("/c/1", make, 2, "y")  # no prefix: never made
        hub.push("/a/b/1", _put(3))  # an event object as before
        hub.push("/a/1", make, 4, "z")
        assert made == [(1, "x"), (4, "z")]
        assert [_pending(w) for w in (a, a2, ab, b)] == [[1, 3, 4], [1, 3, 4], [1, 3], []]
        assert a.pending[0] is ab.pending[0]  # one object for every watch
    finally:
        loop.close()


def test_remembered_routes_follow_attach_and_detach():
    loop = asyncio.new_event_loop()
    try:
        hub = WatchHub(100)
        a, = _buffers(loop, "/a/")
        hub.attach(a)
        hub.push("/a/1", _put(1))  # the key's route is remembered: one prefix
        hub.push("/z/1", _put(2))  # and this one's: none
        late, = _buffers(loop, "/")
        hub.attach(late)  # a new prefix: both keys now reach it too
        hub.push("/a/1", _put(3))
        hub.push("/z/1", _put(4))
        assert _pending(a) == [1, 3] and _pending(late) == [3, 4]
        second, = _buffers(loop, "/a/")
        hub.attach(second)  # a prefix already routed to: the same group
        hub.push("/a/1", _put(5))
        assert _pending(second) == [5]
        hub.detach(a)
        hub.detach(second)  # "/a/" has no buffer left
        hub.push("/a/1", _put(6))
        assert _pending(a) == [1, 3, 5] and _pending(second) == [5]
        assert _pending(late) == [3, 4, 5, 6]
        again, = _buffers(loop, "/a/")
        hub.attach(again)  # a new group for an old prefix
        hub.push("/a/1", _put(7))
        assert _pending(again) == [7] and _pending(late)[-1] == 7
        hub.detach(late)
        assert set(hub.groups) == {"/a/"} and bool(hub)
        hub.detach(again)
        assert hub.groups == {} and not hub
    finally:
        loop.close()


def test_routes_are_bounded(monkeypatch):
    loop = asyncio.new_event_loop()
    try:
        monkeypatch.setattr(WatchHub, "MAX_ROUTES", 10)
        hub = WatchHub(1000)
        w, = _buffers(loop, "/k/")
        hub.attach(w)
        for i in range(95):
            hub.push(f"/k/{i}", _put(i + 1))
            assert len(hub._routes) <= 10
        assert _pending(w) == list(range(1, 96))
    finally:
        loop.close()


def test_a_buffer_past_max_pending_is_dropped_behind():
    loop = asyncio.new_event_loop()
    try:
        hub = WatchHub(2)
        slow, fast = _buffers(loop, "/k/", "/")
        hub.attach(slow)
        hub.attach(fast)
        for rev in (1, 2, 3):
            hub.push("/k/x", _put(rev))
            if rev < 3:
                fast.pending.clear()  # this consumer keeps up
        assert not slow.live and not slow.pending and "/k/" not in hub.groups
        assert fast.live and _pending(fast) == [3]
        hub.push("/k/x", _put(4))  # the dropped buffer's route is gone
        assert not slow.pending and _pending(fast) == [3, 4]
    finally:
        loop.close()


@pytest.mark.parametrize("cr, mr", [(1, 1), (3, 9)])
def test_made_key_values_and_events_are_the_dataclasses_objects(cr, mr):
    kv = raft_store._make_kv("/k/x", b"v", cr, mr)
    ref = KeyValue("/k/x", b"v", cr, mr)
    assert type(kv) is KeyValue and kv == ref and hash(kv) == hash(ref)
    assert repr(kv) == repr(ref) and dataclasses.astuple(kv) == dataclasses.astuple(ref)
    assert pickle.loads(pickle.dumps(kv)) == ref
    assert dataclasses.replace(kv, value=b"w") == KeyValue("/k/x", b"w", cr, mr)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kv.value = b"w"
    ev = raft_store._make_event(EventType.PUT, mr, kv, None)
    ref_ev = WatchEvent(EventType.PUT, mr, ref, None)
    assert type(ev) is WatchEvent and ev == ref_ev and hash(ev) == hash(ref_ev)
    assert repr(ev) == repr(ref_ev)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.revision = 0


def test_events_of_the_state_machine_become_watch_events():
    prev = ("/k/x", b"1", 4, 4)
    cur = ("/k/x", b"2", 4, 7)
    assert raft_store._event(7, S.EV_PUT, cur, prev) == WatchEvent(
        EventType.PUT, 7, KeyValue(*cur), KeyValue(*prev))
    assert raft_store._event(4, S.EV_PUT, prev, None) == WatchEvent(
        EventType.PUT, 4, KeyValue(*prev), None)
    assert raft_store._event(9, S.EV_DELETE, None, cur) == WatchEvent(
        EventType.DELETE, 9, None, KeyValue(*cur))
