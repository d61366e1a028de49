"""The scheduling queue: order, back-off, parking unschedulable pods until a relevant event."""

import asyncio

from pilothouse.scheduler._queue import (ACTIVE, BACKOFF, IN_FLIGHT, UNSCHEDULABLE,
                                         SchedulingQueue, event_matches)


def pod(name, priority=0, labels=None, nominated=None):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                      "labels": labels or {}},
         "spec": {"priority": priority, "containers": []}, "status": {}}
    if nominated:
        p["status"]["nominatedNodeName"] = nominated
    return p


def by_priority(a, b):
    return a["spec"]["priority"] > b["spec"]["priority"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_pop_follows_queue_sort_and_keeps_arrival_order_for_ties():
    async def main():
        q = SchedulingQueue(by_priority)
        for name, prio in [("a", 0), ("b", 10), ("c", 0), ("d", 10), ("e", 5)]:
            q.add(pod(name, prio))
        return [(await q.pop()).pod["metadata"]["name"] for _ in range(5)]
    assert run(main()) == ["b", "d", "e", "a", "c"]


def test_without_queue_sort_the_queue_is_fifo():
    async def main():
        q = SchedulingQueue(None)
        for name in "xyz":
            q.add(pod(name))
        return [(await q.pop()).key for _ in range(3)]
    assert run(main()) == ["default/x", "default/y", "default/z"]


def test_pop_waits_for_a_pod_and_close_ends_it():
    async def main():
        q = SchedulingQueue(by_priority)
        waiter = asyncio.create_task(q.pop())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        q.add(pod("late"))
        got = await asyncio.wait_for(waiter, 1)
        closing = asyncio.create_task(q.pop())
        await asyncio.sleep(0.01)
        q.close()
        return got.key, await asyncio.wait_for(closing, 1)
    assert run(main()) == ("default/late", None)


def test_unschedulable_pod_waits_for_an_event_its_plugins_registered():
    async def main():
        clock = Clock()
        q = SchedulingQueue(by_priority, plugin_events={"Fit": frozenset({"Pod/Delete",
                                                                          "Node/Add"})},
                            clock=clock)
        q.add(pod("p"))
        qp = await q.pop()
        assert qp.where == IN_FLIGHT
        q.add_unschedulable(qp, {"Fit"})
        assert q.where("default/p") == UNSCHEDULABLE
        clock.now += 100  # long past any back-off
        assert q.move_all("Node/UpdateLabel") == 0  # Fit did not register label changes
        assert q.where("default/p") == UNSCHEDULABLE
        assert q.move_all("Pod/Delete") == 1
        assert q.where("default/p") == ACTIVE
        return (await q.pop()).attempts
    assert run(main()) == 2


def test_a_plugin_without_registered_events_is_woken_by_every_event():
    async def main():
        clock = Clock()
        q = SchedulingQueue(None, clock=clock)
        q.add(pod("p"))
        qp = await q.pop()
        q.add_unschedulable(qp, {"Custom"})
        clock.now += 100
        q.move_all("Node/UpdateLabel")
        return q.where("default/p")
    assert run(main()) == ACTIVE


def test_event_during_the_cycle_sends_the_pod_to_backoff_not_unschedulable():
    async def main():
        q = SchedulingQueue(None, initial_backoff=0.05, max_backoff=0.05,
                            plugin_events={"Fit": frozenset({"Node/Add"})})
        q.add(pod("p"))
        qp = await q.pop()
        q.move_all("Node/Add")  # e.g. a node was added while the pod was being scheduled
        q.add_unschedulable(qp, {"Fit"})
        assert q.where("default/p") == BACKOFF
        await asyncio.sleep(0.1)  # the back-off timer moves it, nobody polls
        return q.where("default/p")
    assert run(main()) == ACTIVE


def test_backoff_grows_per_attempt_and_is_capped():
    async def main():
        clock = Clock()
        q = SchedulingQueue(None, initial_backoff=1, max_backoff=4, clock=clock)
        q.add(pod("p"))
        durations = []
        for _ in range(5):
            qp = await q.pop()
            durations.append(q._backoff_duration(qp))
            q.add_backoff(qp)
            clock.now += 10
            q._backoff_expired(qp, qp.token)
        return durations
    assert run(main()) == [1, 2, 4, 4, 4]


def test_update_of_an_unschedulable_pod_retries_it_but_status_only_changes_do_not():
    async def main():
        clock = Clock()
        q = SchedulingQueue(None, plugin_events={"Fit": frozenset()}, clock=clock)
        p = pod("p")
        q.add(p)
        qp = await q.pop()
        q.add_unschedulable(qp, {"Fit"})
        clock.now += 100
        status_only = {**p, "status": {"conditions": [{"type": "PodScheduled"}]}}
        q.update(p, status_only)
        assert q.where("default/p") == UNSCHEDULABLE
        relabelled = {**p, "metadata": {**p["metadata"], "labels": {"x": "y"}}}
        q.update(status_only, relabelled)
        return q.where("default/p")
    assert run(main()) == ACTIVE


def test_deleted_or_bound_pods_leave_the_queue_and_are_not_requeued():
    async def main():
        q = SchedulingQueue(None)
        q.add(pod("p"))
        qp = await q.pop()
        q.delete(qp.pod)
        q.add_unschedulable(qp, {"Fit"})
        q.add_backoff(qp)
        return len(q), q.counts()
    assert run(main()) == (0, {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, IN_FLIGHT: 0})


def test_leftover_unschedulable_pods_are_retried_after_the_maximum_wait():
    async def main():
        q = SchedulingQueue(None, max_unschedulable=2.0, plugin_events={"Fit": frozenset()})
        q.add(pod("p"))
        qp = await q.pop()
        q.add_unschedulable(qp, {"Fit"})
        q.move_all("Node/Add")
        assert q.where("default/p") == UNSCHEDULABLE
        await asyncio.sleep(3.2)
        return q.where("default/p")
    assert run(main()) in (ACTIVE, BACKOFF)


def test_nominator_follows_status_and_local_nominations():
    async def main():
        q = SchedulingQueue(None)
        q.add(pod("a", nominated="n1"))
        q.add(pod("b"))
        assert [p["metadata"]["name"] for p in q.nominator.pods_on("n1")] == ["a"]
        q.nominator.add(pod("b"), "n2")
        q.update(pod("b"), pod("b", labels={"v": "2"}))  # still nominated by us
        assert q.nominator.pods_on("n2")[0]["metadata"]["labels"] == {"v": "2"}
        q.update(pod("a", nominated="n1"), pod("a"))  # status cleared by someone else
        q.delete(pod("b"))
        return q.nominator.by_node
    assert run(main()) == {}


def test_event_names_match_their_families():
    assert event_matches("*", "Pod/Add")
    assert event_matches("Node/Update", "Node/UpdateTaint")
    assert event_matches("Node/*", "Node/Delete")
    assert not event_matches("Node/UpdateLabel", "Node/UpdateTaint")
    assert not event_matches("Pod/Delete", "Pod/Add")


def test_pop_order_is_queue_sort_then_arrival_with_one_less_call_per_comparison():
    """Random priorities, pods added and popped interleaved: the pops follow (priority
    descending, arrival); the entries' comparisons ask ``less`` once each."""
    import random

    from pilothouse.interfaces.scheduler import pod_priority

    calls = [0]

    def less(a, b):
        calls[0] += 1
        return pod_priority(a) > pod_priority(b)

    async def main():
        rng = random.Random(3)
        q = SchedulingQueue(less)
        waiting, got, want = [], [], []
        for i in range(600):
            p = pod(f"p{i}", rng.choice((0, 0, 0, 5, 10, None)))
            if p["spec"]["priority"] is None:
                del p["spec"]["priority"]
            if i % 97 == 0:
                p["spec"] = None if i % 2 else {}
            q.add(p)
            waiting.append((-pod_priority(p), i, p["metadata"]["name"]))
            if rng.random() < 0.4:
                waiting.sort()
                want.append(waiting.pop(0)[2])
                got.append((await q.pop()).pod["metadata"]["name"])
        waiting.sort()
        want += [w[2] for w in waiting]
        got += [(await q.pop()).pod["metadata"]["name"] for _ in waiting]
        return got, want
    got, want = run(main())
    assert got == want
    assert calls[0] < 600 * 12  # one per comparison (two each would be ~10,700 here)


def test_nominator_delete_and_update_with_and_without_nominations():
    from pilothouse.scheduler._queue import Nominator
    n = Nominator()
    n.delete(pod("x"))  # nothing nominated: a no-op
    n.update(None, pod("x"))
    assert n.by_node == {} and n.node_of == {}
    n.add(pod("a"), "n1")
    n.update(None, pod("b"))  # another pod: untouched
    n.update(None, pod("a", labels={"v": "2"}))  # ours, not in the API yet: new object kept
    assert n.pods_on("n1")[0]["metadata"]["labels"] == {"v": "2"}
    n.delete(pod("b"))
    assert n.node_of == {"default/a": "n1"}
    n.delete(pod("a"))
    assert n.by_node == {} and n.node_of == {}
