"""Unit tests: DefaultPreemption's eligibility, victim selection and candidate choice."""

import asyncio

from sched_testlib import FakeHandle, filter_all, node, pod

from pilothouse.interfaces.scheduler import Code, CycleState, Status
from pilothouse_sched_default import DefaultPreemption, InterPodAffinity, NodeResourcesFit
from pilothouse_sched_default.preemption import Candidate


def setup(nodes, preemptor, plugins=None):
    plugins = plugins or [NodeResourcesFit()]
    handle = FakeHandle(nodes, plugins)
    plugin = DefaultPreemption()
    plugin.set_handle(handle)
    state = CycleState()
    handle.pre_filter(state, preemptor)
    return plugin, handle, state


def test_victims_are_the_fewest_lowest_priority_pods():
    n = node("n", cpu="4", pods=[pod("low1", cpu="1", priority=1), pod("low2", cpu="1", priority=2),
                                 pod("mid", cpu="1", priority=50), pod("high", cpu="1",
                                                                       priority=1000)])
    big = pod("big", cpu="2", priority=100)
    plugin, handle, state = setup([n], big)
    victims, status = plugin.select_victims(state, big, n)
    # removing low1 and low2 frees 2 cpu; mid (more important) is reprieved first
    assert status.ok and sorted(v["metadata"]["name"] for v in victims) == ["low1", "low2"]
    # the snapshot's NodeInfo was not changed by the what-if
    assert len(n.pods) == 4 and n.requested["cpu"] == 4000


def test_no_victims_and_not_helpful_messages():
    nodes = [node("equal", cpu="1", pods=[pod("same", cpu="1", priority=5)]),
             node("tainted", cpu="8", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])]
    p = pod("p", cpu="1", priority=5)
    plugin, handle, state = setup(nodes, p)
    statuses = {"equal": Status.unschedulable("Insufficient cpu"),
                "tainted": Status.unschedulable("node(s) had untolerated taint {k: v}",
                                                resolvable=False)}
    status, nominated = asyncio.run(plugin.post_filter(state, p, statuses))
    assert nominated is None and status.code is Code.UNSCHEDULABLE
    assert status.message == (
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
        "1 Preemption is not helpful for scheduling.")


def test_removing_every_lower_priority_pod_must_be_enough():
    n = node("n", cpu="2", pods=[pod("low", cpu="1", priority=1), pod("vip", cpu="1",
                                                                      priority=999)])
    p = pod("p", cpu="2", priority=100)
    plugin, handle, state = setup([n], p)
    victims, status = plugin.select_victims(state, p, n)
    assert victims is None and status.reasons == ("Insufficient cpu",)


def test_eligibility():
    never = pod("p", priority=100, spec={"preemptionPolicy": "Never"})
    plugin, handle, state = setup([node("n")], never)
    assert plugin.eligible(never, {}) == "not eligible due to preemptionPolicy=Never."
    terminating = pod("old", priority=1)
    terminating["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    n = node("n", pods=[terminating])
    waiting = pod("w", priority=100)
    waiting["status"] = {"nominatedNodeName": "n"}
    plugin, handle, state = setup([n], waiting)
    assert plugin.eligible(waiting, {}) == \
        "not eligible due to a terminating pod on the nominated node."
    unresolvable = {"n": Status.unschedulable("x", resolvable=False)}
    assert plugin.eligible(waiting, unresolvable) is None


def test_pick_prefers_lower_priority_then_fewer_victims_then_later_start():
    def victims(*prios, start="2024-01-01T00:00:00Z"):
        out = []
        for p in prios:
            v = pod(f"v{p}", priority=p)
            v["status"] = {"startTime": start}
            out.append(v)
        return out
    a = Candidate("a", victims(10, 1))
    b = Candidate("b", victims(5, 5))
    c = Candidate("c", victims(5, 1, 1))
    # highest victim 5 beats 10; then the sum of priorities, each offset by 2**31 as
    # kube-scheduler does, so fewer victims weigh more than their priorities: b
    assert DefaultPreemption.pick([a, b, c]).node == "b"
    d = Candidate("d", victims(5, 1))
    assert DefaultPreemption.pick([b, c, d]).node == "d"
    early = Candidate("early", victims(3, start="2024-01-01T00:00:00Z"))
    late = Candidate("late", victims(3, start="2024-06-01T00:00:00Z"))
    assert DefaultPreemption.pick([early, late]).node == "late"


def test_preemption_respects_anti_affinity_through_the_extensions():
    # the low-priority pod that the preemptor's anti-affinity forbids is the victim
    enemy = pod("enemy", cpu="100m", priority=0, labels={"app": "enemy"})
    n = node("n", cpu="4", labels={"kubernetes.io/hostname": "n"}, pods=[enemy])
    p = pod("p", cpu="100m", priority=10, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname",
             "labelSelector": {"matchLabels": {"app": "enemy"}}}]}})
    plugins = [NodeResourcesFit(), InterPodAffinity()]
    assert not filter_all(InterPodAffinity(), p, [n])["n"].ok
    plugin, handle, state = setup([n], p, plugins)
    victims, status = plugin.select_victims(state, p, n)
    assert status.ok and [v["metadata"]["name"] for v in victims] == ["enemy"]
