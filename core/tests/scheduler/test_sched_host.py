"""The scheduler host end to end with small plugins written here (the core's tests do not
depend on pilothouse-sched-default): a real API server on the memory store, Node objects
created through the API, the real host in a thread."""

import asyncio
import time

import pytest

from pilothouse.hooks import hookimpl
from pilothouse.interfaces.scheduler import Code, Status, pod_priority, pod_requests
from pilothouse.model import errors
from pilothouse.plugins import make_plugin_manager
from pilothouse.scheduler import ProfilePlugin, Scheduler, Settings
from pilothouse.scheduler.testing import SchedulerThread, node, pod, priority_class

API_DOC = {"store": {"plugin": "memory"}, "scheduler": {"profiles": []}}


class FIFO:
    def less(self, a, b):
        return pod_priority(a) > pod_priority(b)


class CpuFit:
    def filter(self, state, p, info):
        want = pod_requests(p).get("cpu", 0)
        if info.requested.get("cpu", 0) + want > info.allocatable.get("cpu", 0):
            return Status.unschedulable("Insufficient cpu")
        return Status()

    def events_to_register(self):
        return ["Pod/Delete", "Node/Add", "Node/UpdateAllocatable"]


class MostFree:
    def score(self, state, p, info):
        return max(0, info.allocatable.get("cpu", 0) - info.requested.get("cpu", 0)) // 100

    def normalize_scores(self, state, p, scores):
        top = max(scores.values()) or 1
        return {n: 100 * s // top for n, s in scores.items()}


class Binder:
    def __init__(self, fail_first=0, error=False):
        self.fail_first, self.error, self.calls = fail_first, error, 0

    async def bind(self, state, p, node_name, client):
        self.calls += 1
        if self.calls <= self.fail_first:
            return Status.error("injected failure") if self.error else \
                Status.unschedulable("injected conflict")
        m = p["metadata"]
        try:
            await client.resource("v1", "Pod").bind(m["name"], m["namespace"], node_name)
        except errors.Conflict as exc:
            return Status.unschedulable(str(exc))
        return Status()


class Reserver:
    def __init__(self):
        self.reserved, self.unreserved = [], []

    def reserve(self, state, p, node_name):
        self.reserved.append((p["metadata"]["name"], node_name))
        return Status()

    def unreserve(self, state, p, node_name):
        self.unreserved.append((p["metadata"]["name"], node_name))


def profile(*extra, binder=None):
    return [ProfilePlugin("FIFO", FIFO()), ProfilePlugin("CpuFit", CpuFit()),
            ProfilePlugin("MostFree", MostFree()), *extra,
            ProfilePlugin("Binder", binder or Binder())]


@pytest.fixture
def api(start_apiserver):
    return start_apiserver(API_DOC)


def test_binds_and_records_scheduled_event(api):
    with SchedulerThread(api.url, {"default-scheduler": profile()}) as s:
        s.create(node("small", cpu="1"))
        s.create(node("big", cpu="8"))
        s.create(pod("web", cpu="500m"))
        assert s.wait_bound("web") == "big"
        p = s.get_pod("web")
        cond = s.scheduled_condition("web")
        assert cond["status"] == "True"
        s.wait_for(lambda: [e for e in s.events_for("web") if e["reason"] == "Scheduled"])
        (ev,) = [e for e in s.events_for("web") if e["reason"] == "Scheduled"]
        assert ev["message"] == "Successfully assigned default/web to big"
        assert ev["type"] == "Normal" and ev["source"]["component"] == "default-scheduler"
        assert ev["involvedObject"]["uid"] == p["metadata"]["uid"]
        # the informers keep no managedFields (the API server does)
        assert p["metadata"].get("managedFields")
        kept = s.call(lambda: [s.scheduler.pods.get("default/web"),
                               s.scheduler.nodes.get("big")])
        assert all("managedFields" not in o["metadata"] for o in kept)


def test_unschedulable_pod_gets_condition_and_event_and_waits_for_a_node(api):
    with SchedulerThread(api.url, {"default-scheduler": profile()}) as s:
        s.create(node("n1", cpu="1"))
        s.create(node("n2", cpu="1"))
        s.create(pod("huge", cpu="3"))
        msg = s.wait_unschedulable("huge")
        assert msg == "0/2 nodes are available: 2 Insufficient cpu."
        cond = s.scheduled_condition("huge")
        assert cond["reason"] == "Unschedulable"
        s.wait_for(lambda: [e for e in s.events_for("huge") if e["reason"] == "FailedScheduling"])
        (ev,) = [e for e in s.events_for("huge") if e["reason"] == "FailedScheduling"]
        assert ev["type"] == "Warning" and ev["message"] == msg
        attempts = s.stats()["attempts"]
        time.sleep(1.0)  # nothing relevant changes: no retries (no busy polling)
        s.update_node("n1", lambda n: n["metadata"]["labels"].update({"irrelevant": "yes"}))
        time.sleep(0.3)  # a label change is not an event CpuFit registered
        assert s.stats()["attempts"] == attempts
        assert s.call(lambda: s.scheduler.queue.counts()["unschedulable"]) == 1
        s.create(node("n3", cpu="4"))  # Node/Add: retried at once
        assert s.wait_bound("huge") == "n3"


def test_a_node_growing_its_allocatable_wakes_the_pod(api):
    with SchedulerThread(api.url, {"default-scheduler": profile()}) as s:
        s.create(node("n1", cpu="1"))
        s.create(pod("p", cpu="2"))
        s.wait_unschedulable("p")

        def grow(n):
            n["status"]["allocatable"]["cpu"] = "4"
        s.update_node("n1", grow)  # spec update path keeps status; patch status instead
        s.run(s.client.resource("v1", "Node").patch(
            "n1", {"status": {"allocatable": {"cpu": "4"}}}, subresource="status"))
        assert s.wait_bound("p") == "n1"


def test_deleting_an_assigned_pod_frees_room_for_a_waiting_pod(api):
    with SchedulerThread(api.url, {"default-scheduler": profile()}) as s:
        s.create(node("n1", cpu="1"))
        s.create(pod("first", cpu="800m"))
        s.wait_bound("first")
        s.create(pod("second", cpu="800m"))
        s.wait_unschedulable("second")
        s.delete("v1", "Pod", "first", "default")
        assert s.wait_bound("second") == "n1"


def test_priority_is_resolved_from_the_priority_class(api):
    seen = {}

    class Record:
        def filter(self, state, p, info):
            seen[p["metadata"]["name"]] = (pod_priority(p), p["spec"].get("preemptionPolicy"))
            return Status()
    with SchedulerThread(api.url, {"default-scheduler": profile(
            ProfilePlugin("Record", Record()))}) as s:
        s.create(priority_class("gold", 5000, preemption_policy="Never"))
        s.create(priority_class("everyone", 7, global_default=True))
        s.create(node("n1"))
        s.wait_for(lambda: s.call(lambda: len(s.scheduler.priority_classes.cache)) == 2)
        s.create(pod("a", priority_class="gold"))
        s.create(pod("b"))
        s.create(pod("c", priority_class="system-node-critical"))
        for name in "abc":
            s.wait_bound(name)
    assert seen == {"a": (5000, "Never"), "b": (7, "PreemptLowerPriority"),
                    "c": (2000001000, None)}


def test_a_scheduler_started_over_existing_objects_resolves_priorities_and_counts_bound_pods(
        api):
    # PriorityClasses sync before the pods; nodes and pods are listed at the same time, so a
    # bound pod may come before its node: either way it counts once the node is there
    seen = {}

    class Record:
        def filter(self, state, p, info):
            seen[p["metadata"]["name"]] = pod_priority(p)
            return Status()
    with SchedulerThread(api.url, {"elsewhere": profile()}) as s:  # only creates objects
        s.create(priority_class("gold", 5000))
        s.create(priority_class("everyone", 7, global_default=True))
        s.create(node("n1", cpu="1"))
        bound = pod("old", cpu="800m")
        bound["spec"]["nodeName"] = "n1"
        s.create(bound)
        s.create(pod("a", cpu="100m", priority_class="gold"))
        s.create(pod("b", cpu="100m"))
        s.create(pod("big", cpu="800m"))
    with SchedulerThread(api.url, {"default-scheduler": profile(
            ProfilePlugin("Record", Record()))}) as s:
        assert s.wait_bound("a") == "n1" and s.wait_bound("b") == "n1"
        s.wait_unschedulable("big")
    assert seen["a"] == 5000 and seen["b"] == 7


def test_failed_bind_unreserves_forgets_and_retries(api):
    reserver = Reserver()
    binder = Binder(fail_first=1, error=True)
    with SchedulerThread(api.url, {"default-scheduler": profile(
            ProfilePlugin("Reserver", reserver), binder=binder)}) as s:
        s.create(node("n1", cpu="1"))
        s.create(pod("p", cpu="800m"))
        assert s.wait_bound("p") == "n1"
        assert reserver.unreserved == [("p", "n1")]
        assert reserver.reserved == [("p", "n1"), ("p", "n1")]
        assert s.stats()["bind_failures"] == 1
        # the failed assumption was forgotten: the node counts the pod once
        requested = s.call(lambda: s.scheduler.cache.infos["n1"].requested["cpu"])
        assert requested == 800


def test_permit_wait_then_allow_or_timeout(api):
    class Gate:
        def __init__(self):
            self.handle = None

        def set_handle(self, handle):
            self.handle = handle

        def permit(self, state, p, node_name):
            if p["metadata"]["name"].startswith("gated"):
                return Status(Code.WAIT), 0.5 if "timeout" in p["metadata"]["name"] else 30
            return Status(), 0
    gate, reserver = Gate(), Reserver()
    with SchedulerThread(api.url, {"default-scheduler": profile(
            ProfilePlugin("Reserver", reserver), ProfilePlugin("Gate", gate))}) as s:
        s.create(node("n1", cpu="4"))
        s.create(pod("gated", cpu="1"))
        s.wait_for(lambda: s.call(lambda: [w["metadata"]["name"]
                                           for w in gate.handle.waiting_pods()]) == ["gated"])
        assert not (s.get_pod("gated")["spec"].get("nodeName"))
        uid = s.get_pod("gated")["metadata"]["uid"]
        s.call(lambda: gate.handle.allow_waiting_pod(uid, "Gate"))
        assert s.wait_bound("gated") == "n1"
        s.create(pod("gated-timeout", cpu="1"))
        msg = s.wait_unschedulable("gated-timeout")
        assert "rejected due to timeout after waiting 0.5s at plugin Gate" in msg
        assert ("gated-timeout", "n1") in reserver.unreserved


def test_two_scheduler_processes_never_double_book(api):
    """Two hosts serve the same profile without leader election: every pod is bound once,
    binds that lost the race are retried by following the API, and both caches end up
    agreeing with the API."""
    nodes = [node(f"n{i}", cpu="100") for i in range(4)]
    a = SchedulerThread(api.url, {"default-scheduler": profile()}, identity="a").start()
    b = SchedulerThread(api.url, {"default-scheduler": profile()}, identity="b").start()
    try:
        for n in nodes:
            a.create(n)
        names = [f"p{i}" for i in range(40)]
        for name in names:
            a.create(pod(name, cpu="1"))
        placed = {name: a.wait_bound(name) for name in names}
        expected = {n["metadata"]["name"]: 0 for n in nodes}
        for name, n in placed.items():
            expected[n] += 1000
        for s in (a, b):
            def per_node(s=s):
                return {n: s.scheduler.cache.infos[n].requested.get("cpu", 0)
                        for n in s.scheduler.cache.infos}
            s.wait_for(lambda s=s: s.call(per_node) == expected and
                       s.call(lambda: len(s.scheduler.queue)) == 0,
                       what=f"scheduler {s.identity}'s cache to agree with the API")
        total = a.stats()["scheduled"] + b.stats()["scheduled"]
        assert total == len(names)  # each pod bound by exactly one of them
    finally:
        a.stop()
        b.stop()


def test_leader_election_lets_one_host_schedule(api):
    settings = {"leaderElect": True, "leaseDuration": 3, "renewDeadline": 2,
                "retryPeriod": 0.2, "leaseName": "test-scheduler"}
    a = SchedulerThread(api.url, {"default-scheduler": profile()}, settings=settings,
                        identity="a").start()
    b = SchedulerThread(api.url, {"default-scheduler": profile()}, settings=settings,
                        identity="b").start()
    try:
        a.create(node("n1", cpu="100"))
        for i in range(10):
            a.create(pod(f"p{i}", cpu="1"))
        for i in range(10):
            a.wait_bound(f"p{i}")
        stats = [a.stats()["attempts"], b.stats()["attempts"]]
        assert sorted(stats)[0] == 0 and sorted(stats)[1] >= 10
        leader, follower = (a, b) if stats[0] else (b, a)
        leader.stop()  # releases the lease: the other takes over
        follower.create(pod("after", cpu="1"))
        assert follower.wait_bound("after", timeout=20) == "n1"
    finally:
        a.stop()
        b.stop()


def test_profiles_pick_pods_by_scheduler_name_and_foreign_pods_are_left_alone(api):
    class Only:
        def __init__(self, name):
            self.name = name

        def filter(self, state, p, info):
            return Status() if info.name == self.name else Status.unschedulable("wrong node")
    with SchedulerThread(api.url, {
            "default-scheduler": profile(ProfilePlugin("Only", Only("a"))),
            "other": profile(ProfilePlugin("Only", Only("b")))}) as s:
        s.create(node("a"))
        s.create(node("b"))
        s.create(pod("d"))
        s.create(pod("o", scheduler_name="other"))
        s.create(pod("x", scheduler_name="somebody-else"))
        assert s.wait_bound("d") == "a"
        assert s.wait_bound("o") == "b"
        time.sleep(0.5)
        x = s.get_pod("x")
        assert not x["spec"].get("nodeName") and not (x.get("status") or {}).get("conditions")


def test_no_nodes_message_and_broadcast_hooks(api):
    calls = []

    class Hooks:
        @hookimpl
        def pilothouse_pod_scheduled(self, pod, node_name, profile):
            calls.append(("scheduled", pod["metadata"]["name"], node_name, profile))

        @hookimpl
        def pilothouse_pod_unschedulable(self, pod, message, profile):
            calls.append(("unschedulable", pod["metadata"]["name"], message, profile))
    pm = make_plugin_manager()
    pm.register(Hooks())

    async def main():
        from pilothouse.client import Client
        async with Client(api.url) as client:
            sched = Scheduler(client, {"default-scheduler": profile()},
                              Settings(podInitialBackoffSeconds=0.05, podMaxBackoffSeconds=0.2),
                              pm=pm)
            await sched.start()
            try:
                pods = client.resource("v1", "Pod")
                await pods.create(pod("lonely"), "default")
                for _ in range(200):
                    if calls:
                        break
                    await asyncio.sleep(0.02)
                await client.resource("v1", "Node").create(node("n1"))
                for _ in range(200):
                    if len(calls) > 1:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await sched.stop()
    asyncio.run(main())
    assert calls == [("unschedulable", "lonely", "no nodes available to schedule pods",
                      "default-scheduler"),
                     ("scheduled", "lonely", "n1", "default-scheduler")]



def test_the_scheduled_hook_reaches_implementations_registered_while_running(api):
    """The host skips the pilothouse_pod_scheduled call while no plugin implements it; one
    registered later is called for the pods bound from then on."""
    calls = []

    class Hooks:
        @hookimpl
        def pilothouse_pod_scheduled(self, pod, node_name, profile):
            calls.append((pod["metadata"]["name"], node_name))
    pm = make_plugin_manager()

    async def main():
        from pilothouse.client import Client
        async with Client(api.url) as client:
            await client.resource("v1", "Node").create(node("n1"))
            sched = Scheduler(client, {"default-scheduler": profile()}, Settings(), pm=pm)
            await sched.start()
            try:
                pods = client.resource("v1", "Pod")
                await pods.create(pod("before"), "default")
                for _ in range(200):
                    if sched.stats["scheduled"]:
                        break
                    await asyncio.sleep(0.02)
                pm.register(Hooks())
                await pods.create(pod("after"), "default")
                for _ in range(200):
                    if calls:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await sched.stop()
            return sched.stats["scheduled"]
    assert asyncio.run(main()) == 2
    assert calls == [("after", "n1")]

def test_from_config_loads_plugins_by_entry_point_and_checks_profiles(api, fake_dist):
    fake_dist("pilothouse-toysched", {"pilothouse.scheduler": {
        "ToySort": "toysched:ToySort", "ToyBind": "toysched:ToyBind"}}, {"toysched.py": '''
from pilothouse.interfaces.scheduler import Status, pod_priority
class ToySort:
    def less(self, a, b):
        return pod_priority(a) > pod_priority(b)
class ToyBind:
    async def bind(self, state, pod, node, client):
        m = pod["metadata"]
        await client.resource("v1", "Pod").bind(m["name"], m["namespace"], node)
        return Status()
'''})
    doc = {"scheduler": {"profiles": [
        {"schedulerName": "toy", "plugins": [{"name": "ToySort"}, {"name": "ToyBind"}]},
        {"schedulerName": "unused", "plugins": [{"name": "NotInstalledAnywhere"}]}]},
        "components": {"scheduler": {"profiles": ["toy"]}}}
    with SchedulerThread(api.url, config_doc=doc) as s:
        assert list(s.scheduler.frameworks) == ["toy"]
        s.create(node("n1"))
        s.create(pod("t", scheduler_name="toy"))
        assert s.wait_bound("t") == "n1"
    from pilothouse.config import ConfigError, parse_config
    bad = parse_config({**doc, "components": {"scheduler": {"profiles": ["nope"]}}})
    with pytest.raises(ConfigError, match="no profile named 'nope'"):
        Scheduler.from_config(bad, client=None)
    mixed = parse_config({"scheduler": {"profiles": [
        {"schedulerName": "a", "plugins": [{"name": "ToySort"}, {"name": "ToyBind"}]},
        {"schedulerName": "b", "plugins": [{"name": "ToyBind"}]}]}})

    class FakeClient:
        def resource(self, *a):
            return None
    with pytest.raises(ConfigError, match="same QueueSort"):
        Scheduler.from_config(mixed, client=FakeClient())


def test_a_stale_failure_never_marks_a_bound_pod_unschedulable(api):
    """The PodScheduled=False write carries the resourceVersion the scheduler saw: if a rival
    bound the pod meanwhile, the write is dropped instead of contradicting the binding."""
    with SchedulerThread(api.url, {"other-profile": profile()}) as s:
        s.create(node("n1"))
        created = s.create(pod("raced"))  # nobody serves default-scheduler here
        s.wait_for(lambda: s.call(lambda: s.scheduler.pods.get("default/raced")))
        s.run(s.client.resource("v1", "Pod").bind("raced", "default", "n1"))  # the rival
        s.call(lambda: setattr(s.scheduler.pods, "get", lambda key: created))  # stale view
        s.run(s.scheduler._patch_status(created, "Unschedulable", "0/1 nodes are available",
                                        None))
        cond = s.scheduled_condition("raced")
        assert cond["status"] == "True"
