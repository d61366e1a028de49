"""Unit tests: PrioritySort, NodeName, NodeUnschedulable, TaintToleration, NodeAffinity,
ImageLocality, against NodeInfo fixtures."""

import pytest
from sched_testlib import feasible, filter_all, node, pod, reasons, scores

from pilothouse.interfaces.scheduler import Code, CycleState
from pilothouse_sched_default import (ImageLocality, NodeAffinity, NodeName, NodeUnschedulable,
                                      PrioritySort, TaintToleration)


def test_priority_sort_puts_higher_priority_first():
    sort = PrioritySort()
    assert sort.less(pod("a", priority=10), pod("b", priority=1))
    assert not sort.less(pod("a", priority=1), pod("b", priority=10))
    assert not sort.less(pod("a"), pod("b")) and not sort.less(pod("b"), pod("a"))


def test_node_name():
    p = pod("p", spec={"nodeName": "n2"})
    result = filter_all(NodeName(), p, [node("n1"), node("n2")])
    assert result["n2"].ok
    assert result["n1"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert result["n1"].reasons == ("node(s) didn't match the requested node name",)


def test_node_unschedulable_unless_tolerated():
    nodes = [node("cordoned", unschedulable=True), node("open")]
    assert feasible(NodeUnschedulable(), pod("p"), nodes) == ["open"]
    assert reasons(filter_all(NodeUnschedulable(), pod("p"), nodes)) == {
        "cordoned": ("node(s) were unschedulable",)}
    tolerant = pod("t", tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                      "operator": "Exists", "effect": "NoSchedule"}])
    assert feasible(NodeUnschedulable(), tolerant, nodes) == ["cordoned", "open"]


GPU = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize("toleration,fits", [
    ({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, True),
    ({"key": "dedicated", "value": "gpu"}, True),  # any effect
    ({"key": "dedicated", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),  # tolerates everything
    ({"key": "dedicated", "value": "cpu"}, False),
    ({"key": "dedicated", "value": "gpu", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, False),
])
def test_tolerations_match_like_kubernetes(toleration, fits):
    p = pod("p", tolerations=[toleration])
    assert bool(feasible(TaintToleration(), p, [node("n", taints=[GPU])])) is fits


def test_taint_toleration_filter_message_and_prefer_no_schedule_ignored_by_filter():
    nodes = [node("gpu", taints=[GPU]),
             node("soft", taints=[{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]),
             node("plain")]
    statuses = filter_all(TaintToleration(), pod("p"), nodes)
    assert reasons(statuses) == {"gpu": ("node(s) had untolerated taint {dedicated: gpu}",)}
    assert statuses["gpu"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_taint_toleration_score_prefers_fewer_intolerable_prefer_no_schedule_taints():
    soft = {"effect": "PreferNoSchedule"}
    nodes = [node("two", taints=[{"key": "a", **soft}, {"key": "b", **soft}]),
             node("one", taints=[{"key": "a", **soft}]), node("none")]
    assert scores(TaintToleration(), pod("p"), nodes) == {"two": 0, "one": 50, "none": 100}
    tolerant = pod("t", tolerations=[{"key": "a", "operator": "Exists",
                                      "effect": "PreferNoSchedule"}])
    assert scores(TaintToleration(), tolerant, nodes) == {"two": 0, "one": 100, "none": 100}


class TaintedHandle:
    """The handle's view of every node's taints (node_infos_with_taints)."""

    def __init__(self, nodes):
        self.nodes, self.asked = nodes, 0

    def node_infos_with_taints(self):
        self.asked += 1
        return [n for n in self.nodes if n.taints]


class Untouchable(list):
    """Feasible nodes that must not be read."""

    def __iter__(self):
        raise AssertionError("read the feasible nodes")


def test_taint_toleration_pre_score_asks_the_handle_before_reading_feasible_nodes():
    soft = {"key": "a", "effect": "PreferNoSchedule"}
    cluster = [node("hard", taints=[GPU]), node("plain")]
    tt = TaintToleration()
    tt.set_handle(TaintedHandle(cluster))
    assert tt.pre_score(CycleState(), pod("p"), Untouchable(cluster)).code is Code.SKIP
    nodes = [node("one", taints=[soft]), node("none")]
    tt.set_handle(TaintedHandle([*cluster, *nodes]))
    assert scores(tt, pod("p"), nodes) == {"one": 0, "none": 100}
    # a PreferNoSchedule taint elsewhere: the feasible nodes still decide (all the same)
    assert scores(tt, pod("p"), [node("x"), node("y")]) == {}


def test_taint_toleration_pre_score_reads_the_shorter_of_tainted_and_feasible_nodes():
    class Counted(list):
        reads = 0

        def __iter__(self):
            Counted.reads += 1
            return super().__iter__()
    soft = {"key": "a", "effect": "PreferNoSchedule"}
    hard = Counted(node(f"hard{i}", taints=[GPU]) for i in range(50))
    handle = TaintedHandle(hard)
    handle.node_infos_with_taints = lambda: hard  # every node tainted, none softly
    tt = TaintToleration()
    tt.set_handle(handle)
    feasible_nodes = [node("plain"), hard[0]]
    assert tt.pre_score(CycleState(), pod("p"), feasible_nodes).code is Code.SKIP
    assert Counted.reads == 0  # 50 tainted nodes, 2 feasible: only the feasible ones read
    nodes = [node("one", taints=[soft]), node("none")]
    assert scores(tt, pod("p"), nodes) == {"one": 0, "none": 100}


def zone_nodes():
    return [node("a1", labels={"zone": "a", "disk": "ssd", "gen": "3"}),
            node("a2", labels={"zone": "a", "gen": "5"}),
            node("b1", labels={"zone": "b", "disk": "ssd"})]


def required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}


def test_node_selector_and_required_affinity():
    plugin = NodeAffinity()
    assert feasible(plugin, pod("p", node_selector={"disk": "ssd"}), zone_nodes()) == ["a1", "b1"]
    both = pod("p", node_selector={"disk": "ssd"}, affinity=required(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}))
    assert feasible(plugin, both, zone_nodes()) == ["a1"]
    ored = pod("p", affinity=required(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}))
    assert feasible(plugin, ored, zone_nodes()) == ["a2", "b1"]
    ops = pod("p", affinity=required({"matchExpressions": [
        {"key": "disk", "operator": "DoesNotExist"},
        {"key": "gen", "operator": "Lt", "values": ["9"]},
        {"key": "zone", "operator": "NotIn", "values": ["b"]}]}))
    assert feasible(plugin, ops, zone_nodes()) == ["a2"]
    by_name = pod("p", affinity=required({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["b1"]}]}))
    assert feasible(plugin, by_name, zone_nodes()) == ["b1"]
    statuses = filter_all(plugin, pod("p", affinity=required({})), zone_nodes())
    assert reasons(statuses)["a1"] == ("node(s) didn't match Pod's node affinity/selector",)
    assert statuses["a1"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_node_affinity_skips_pods_without_constraints():
    state = CycleState()
    assert NodeAffinity().pre_filter(state, pod("p"), zone_nodes()).code is Code.SKIP


def test_preferred_node_affinity_scores_by_matched_weights():
    p = pod("p", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}},
        {"weight": 20, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "Exists"}]}}]}})
    assert scores(NodeAffinity(), p, zone_nodes()) == {"a1": 100, "a2": 80, "b1": 20}


def test_added_affinity_applies_to_every_pod():
    plugin = NodeAffinity(NodeAffinity.Options(addedAffinity={
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [
                {"key": "gen", "operator": "In", "values": ["5"]}]}}]}))
    assert feasible(plugin, pod("p"), zone_nodes()) == ["a1", "a2"]
    assert scores(plugin, pod("p"), zone_nodes()[:2]) == {"a1": 0, "a2": 100}


MB = 1024 * 1024


def test_image_locality_scores_by_size_and_spread():
    nodes = [node("has-big", images=[("registry.local/big:1", 500 * MB)]),
             node("has-small", images=[("registry.local/small:1", 50 * MB)]),
             node("none")]
    p = pod("p", image="registry.local/big:1")
    # 500 MiB on 1 of 3 nodes: 166.7 MiB -> 100 * (166.7 - 23) / (1000 - 23) = 14
    assert scores(ImageLocality(), p, nodes) == {"has-big": 14, "has-small": 0, "none": 0}
    everywhere = [node(f"n{i}", images=[("registry.local/big", 900 * MB)]) for i in range(2)]
    latest = pod("q", image="registry.local/big")  # both normalize to :latest
    assert scores(ImageLocality(), latest, everywhere) == {"n0": 89, "n1": 89}


def test_default_binder_binds_through_the_client_it_is_given():
    import asyncio

    from pilothouse.interfaces.scheduler import Code, CycleState
    from pilothouse.model import errors
    from pilothouse_sched_default import DefaultBinder

    class Pods:
        def __init__(self, log, fail=None):
            self.log, self.fail = log, fail

        async def bind(self, name, namespace, node):
            if self.fail:
                raise self.fail
            self.log.append((name, namespace, node))

    class Client:
        def __init__(self, fail=None):
            self.log, self.fail, self.lookups = [], fail, 0

        def resource(self, api_version, kind):
            assert (api_version, kind) == ("v1", "Pod")
            self.lookups += 1
            return Pods(self.log, self.fail)

    binder = DefaultBinder()
    a, b = Client(), Client(errors.Conflict("pods", "web", "already bound"))
    p = {"metadata": {"name": "web", "namespace": "prod"}}

    async def main():
        out = []
        for client in (a, a, b, a):
            out.append(await binder.bind(CycleState(), p, "n1", client))
        return out
    out = asyncio.run(main())
    assert [s.code for s in out] == [Code.SUCCESS, Code.SUCCESS, Code.UNSCHEDULABLE,
                                     Code.SUCCESS]
    assert a.log == [("web", "prod", "n1")] * 3 and b.log == []
    assert a.lookups == 2 and b.lookups == 1


def test_priority_sort_orders_by_pod_priority():
    from pilothouse.interfaces.scheduler import pod_priority
    from pilothouse_sched_default import PrioritySort

    pods = [{"spec": {"priority": 5}}, {"spec": {"priority": 0}}, {"spec": {}}, {"spec": None},
            {}, {"spec": {"priority": None}}, {"spec": {"priority": -3}},
            {"spec": {"priority": 2000000000}}]
    sort = PrioritySort()
    for a in pods:
        for b in pods:
            assert sort.less(a, b) == (pod_priority(a) > pod_priority(b))
