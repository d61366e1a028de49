"""How work crosses between the event loop and the tick thread: submitters wake the tick
thread only while it sleeps, and many applied batches reach the loop with few wake-ups."""

from __future__ import annotations

import asyncio

from pysyncobj import FAIL_REASON
from pysyncobj.fast_queue import FastQueue

from pilothouse_store_raft import _node
from raft_testing import make_store


class _FakeNode:
    """The attributes of _Node that submit and _WakeablePoller use."""

    def __init__(self, *, lone=False, leader=False, queue_size=100):
        self._commands = FastQueue(queue_size)
        self._idle = self._submitted = self._commit_pending = self._wake_sent = False
        self._lone, self._leader = lone, leader
        self.wakes = 0

    def _isLeader(self):
        return self._leader

    def wake(self):
        self._wake_sent = True
        self.wakes += 1


class _FakePoller:
    def __init__(self, node):
        self.node = node
        self.calls = []  # (timeout, node._idle during the call)

    def subscribe(self, *args):
        pass

    def unsubscribe(self, *args):
        pass

    def poll(self, timeout):
        self.calls.append((timeout, self.node._idle))


def test_submit_wakes_the_tick_thread_only_while_it_sleeps():
    node = _FakeNode()
    results = []
    _node._Node.submit(node, b"busy", lambda *a: results.append(a))
    assert node.wakes == 0 and node._submitted  # busy: the tick will see it
    node._idle = True
    _node._Node.submit(node, b"one", lambda *a: results.append(a))
    _node._Node.submit(node, b"two", lambda *a: results.append(a))
    assert node.wakes == 1  # one wake-up per sleep
    queued = [node._commands.get_nowait()[0] for _ in range(3)]
    assert queued == [_node._REGULAR_COMMAND + c for c in (b"busy", b"one", b"two")]
    assert results == []


def test_submit_to_a_full_queue_fails_at_once():
    node = _FakeNode(queue_size=1)
    results = []
    _node._Node.submit(node, b"a", lambda *a: results.append(a))
    _node._Node.submit(node, b"b", lambda *a: results.append(a))
    assert results == [(None, FAIL_REASON.QUEUE_FULL)]


def test_poller_does_not_sleep_with_work_pending():
    node = _FakeNode(lone=True, leader=True)
    inner = _FakePoller(node)
    poller = _node._WakeablePoller(inner, node)
    node._submitted = True  # a submit raced with the end of the tick
    poller.poll(0.01)
    node._submitted, node._commit_pending = False, True  # lone leader: commit next tick
    poller.poll(0.01)
    node._commit_pending = False
    poller.poll(0.01)  # idle lone leader: only pysyncobj's timers to run
    poller.poll(0.0)  # an explicit zero stays zero
    node._leader = False
    poller.poll(0.01)  # not leading yet: the election timer needs the short wait
    assert inner.calls == [(0.0, True), (0.0, True), (_node._LONE_IDLE_WAIT, True),
                           (0.0, True), (0.01, True)]
    assert node._idle is False


def test_many_batches_applied_together_reach_the_loop_together(tmp_path, run):
    async def body():
        store = make_store({"data_dir": str(tmp_path / "s"), "max_batch_ops": 1,
                            "max_inflight_batches": 200})
        await store.open()
        try:
            wakes = 0
            inner = store._wake

            def counting_wake():
                nonlocal wakes
                wakes += 1
                inner()

            store._wake = counting_wake
            syncs = store.member.journal.syncs
            kvs = await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(200)))
            assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 201))
            # 200 raft entries, each its own batch: far fewer fdatasyncs and far fewer
            # hand-overs to the event loop than entries.
            assert store.member.journal.syncs - syncs < 100
            assert wakes < 100
        finally:
            await store.close()
    run(body())
