"""Sign fragments of the default plugins, and whole profiles scheduling the same pods with
and without per-node result reuse (pilothouse.scheduler.testing.CycleRunner)."""

import random

import pytest

from pilothouse.interfaces.scheduler import CycleState, Sign
from pilothouse.scheduler import ProfilePlugin
from pilothouse.scheduler.testing import CycleRunner
from pilothouse.scheduler.testing import node as node_api_obj

from pilothouse_sched_default import (DefaultBinder, DefaultPreemption, ImageLocality,
                                      InterPodAffinity, NodeAffinity, NodeName,
                                      NodeResourcesFit, NodeUnschedulable, PodTopologySpread,
                                      PrioritySort, TaintToleration)
from sched_testlib import pod

IMAGE = "registry.local/big:1"
IMAGE2 = "registry.local/huge:2"


def signed(plugin, p):
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        plugin.pre_filter(state, p, [])
    return plugin.sign(state, p)


def test_node_name_and_node_unschedulable():
    assert signed(NodeName(), pod("a")) == signed(NodeName(), pod("b")) == ""
    assert signed(NodeName(), pod("a", node_name="n1")) == "n1"
    cordon = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]
    assert signed(NodeUnschedulable(), pod("a")) is False
    assert signed(NodeUnschedulable(), pod("a", tolerations=cordon)) is True


def test_node_resources_fit_signs_the_request_vector():
    fit = NodeResourcesFit()
    assert signed(fit, pod("a", cpu="100m", memory="1Gi")) == \
        signed(fit, pod("b", cpu="100m", memory="1Gi", labels={"x": "y"}))
    assert signed(fit, pod("a", cpu="100m")) != signed(fit, pod("a", cpu="200m"))
    # request-less and explicit zero requests filter and score alike (scoring defaults)
    assert signed(fit, pod("a")) == signed(fit, pod("a", cpu="0", memory="0"))
    assert signed(fit, pod("a")) != signed(fit, pod("a", cpu="100m"))  # filter differs
    assert signed(fit, pod("a", extra_requests={"example.com/gpu": "1"})) != signed(fit, pod("a"))


def test_node_affinity_and_taint_toleration_sign_their_pod_fields():
    na, tt = NodeAffinity(), TaintToleration()
    assert signed(na, pod("a", node_selector={"disk": "ssd", "zone": "a"})) == \
        signed(na, pod("b", node_selector={"zone": "a", "disk": "ssd"}))
    assert signed(na, pod("a", node_selector={"disk": "ssd"})) != signed(na, pod("a"))
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 5, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    assert signed(na, pod("a", affinity=pref)) != signed(na, pod("a"))
    tol = [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
    assert signed(tt, pod("a", tolerations=tol)) == signed(tt, pod("b", tolerations=tol))
    assert signed(tt, pod("a", tolerations=tol)) != signed(tt, pod("a"))


class FakeHandle:
    def __init__(self, counts, total):
        self.counts, self.total = counts, total

    def node_infos(self):
        return [None] * self.total

    def nodes_with_image(self, image):
        return self.counts.get(image, 0)


def test_image_locality_signs_images_and_their_spread():
    il = ImageLocality()
    assert signed(il, pod("a")) is None  # no handle: spread over the feasible nodes
    il.set_handle(FakeHandle({IMAGE: 2}, 10))
    a = signed(il, pod("a", image=IMAGE))
    assert a == signed(il, pod("b", image=IMAGE)) != signed(il, pod("a"))
    il.set_handle(FakeHandle({IMAGE: 3}, 10))
    assert signed(il, pod("a", image=IMAGE)) != a  # one more node holds it
    il.set_handle(FakeHandle({IMAGE: 2}, 11))
    assert signed(il, pod("a", image=IMAGE)) != a  # one more node in the cluster


def test_every_filter_and_score_plugin_here_signs_and_the_others_need_not():
    for plugin in (NodeName(), NodeUnschedulable(), NodeResourcesFit(), NodeAffinity(),
                   TaintToleration(), ImageLocality()):
        assert isinstance(plugin, Sign), type(plugin).__name__
    for plugin in (PrioritySort(), DefaultBinder(), DefaultPreemption()):
        assert not isinstance(plugin, Sign)


# ------------------------------------------------------------------ whole profiles


def profile():
    return [ProfilePlugin("PrioritySort", PrioritySort()),
            ProfilePlugin("NodeUnschedulable", NodeUnschedulable()),
            ProfilePlugin("NodeName", NodeName()),
            ProfilePlugin("TaintToleration", TaintToleration(), 3),
            ProfilePlugin("NodeAffinity", NodeAffinity(), 2),
            ProfilePlugin("NodeResourcesFit", NodeResourcesFit(), 1),
            ProfilePlugin("DefaultPreemption", DefaultPreemption()),
            ProfilePlugin("ImageLocality", ImageLocality(), 1),
            ProfilePlugin("DefaultBinder", DefaultBinder())]


def node_obj(i, variant=0):
    rng = random.Random(i * 31 + variant)
    taints = []
    if i % 9 == 0:
        taints.append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    if i % 5 == 0:
        taints.append({"key": "spot", "effect": "PreferNoSchedule"})
    labels = {"topology.kubernetes.io/zone": f"z{i % 3}",
              "disk": rng.choice(["ssd", "hdd"]), "rank": str(i % 10)}
    images = [(IMAGE, 400 * 1024 * 1024)] if i % 4 == 0 else []
    if i % 3 == 1:
        images.append((IMAGE2, 900 * 1024 * 1024))
    if i % 17 == 0:  # cordoned, and the roomiest: pods tolerating that go there
        return node_api_obj(f"n{i}", cpu="16", memory="32Gi", labels=labels,
                            unschedulable=True)
    return node_api_obj(f"n{i}", cpu=str(rng.choice([2, 4, 8])),
                        memory=rng.choice(["4Gi", "8Gi"]), pods=rng.choice([5, 110]),
                        labels=labels, taints=taints, images=images)


def pods_mix(count=300):
    rng = random.Random(11)
    gpu = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    spot = [{"key": "spot", "operator": "Exists"}]
    cordon = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 20, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    require = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "rank", "operator": "Gt", "values": ["6"]}]}]}}}
    # mostly the same requests, so that only the other fields tell the signatures apart
    small = dict(cpu="250m", memory="256Mi")
    shapes = [small, dict(cpu="1", memory="1Gi"), dict(small, tolerations=gpu),
              dict(small, tolerations=spot), dict(small, tolerations=gpu + spot),
              dict(small, node_selector={"disk": "ssd"}), dict(small, affinity=prefer),
              dict(small, affinity=require), dict(small, image=IMAGE),
              dict(small, image=IMAGE2), dict(small, tolerations=cordon), dict(), dict(cpu="64"),
              dict(small, node_selector={"disk": "nvme"})]
    out = []
    for i in range(count):
        shape = dict(rng.choice(shapes))
        p = pod(f"p{i}", **shape)
        p["spec"]["priority"] = 0
        if i % 37 == 0:
            p["spec"]["nodeName"] = f"n{i % 120}"
        out.append(p)
    return out


def run(reuse, pods, mutate=True):
    random.seed(99)
    runner = CycleRunner(profile(), reuse=reuse)
    for i in range(120):
        runner.add_node(node_obj(i))
    out = []
    for i, p in enumerate(pods):
        if mutate and i % 20 == 10:
            runner.add_node(node_obj(i % 120, variant=i))  # labels, taints, size change
        if mutate and i % 45 == 30:
            runner.remove_node(node_obj(i % 120))
        if mutate and i % 45 == 40:
            runner.add_node(node_obj((i - 10) % 120))
        out.append(runner.schedule(p))
    return out, runner


def test_default_plugins_place_the_same_with_and_without_reuse():
    pods = pods_mix()
    with_reuse, runner = run(True, pods)
    without, _ = run(False, pods)
    assert with_reuse == without
    assert runner.framework.signers is not None and runner.framework._results
    assert any(r.startswith("0/") for r in without)  # some messages compared too
    assert sum(not r.startswith("0/") for r in without) > 100


def _anti(color, key):
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"color": color}}, "topologyKey": key}]}}


HOST, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"


def affinity_pods(count=260):
    rng = random.Random(5)
    near = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                                           "topologyKey": ZONE}}]}}
    out = []
    for i in range(count):
        kind = rng.random()
        labels = {"app": rng.choice(["web", "db"])}
        extra = {}
        if kind < 0.25:
            labels["color"] = "red"
            extra["affinity"] = _anti("red", HOST)
        elif kind < 0.3:
            labels["color"] = "blue"
            extra["affinity"] = _anti("blue", ZONE)
        elif kind < 0.4:
            extra["affinity"] = near
        p = pod(f"a{i}", cpu="250m", memory="256Mi", labels=labels, **extra)
        p["spec"]["priority"] = 0
        out.append(p)
    return out


def affinity_node(i, variant=0, shared_hostnames=False):
    obj = node_obj(i, variant)
    if shared_hostnames and i % 10 < 2:  # n0/n1, n10/n11, ...: one hostname for two nodes
        obj["metadata"]["labels"]["kubernetes.io/hostname"] = f"shared-{i // 10}"
    return obj


@pytest.mark.parametrize("shared_hostnames", [False, True])
def test_inter_pod_affinity_follows_the_snapshot_feed_as_a_full_rescan_would(
        shared_hostnames):
    """InterPodAffinity keeps its topology counts from Handle.node_changes and signs
    hostname-only anti-affinity node-locally; the same placements as when it compares every
    node each cycle and signs nothing (no reuse), with nodes changing, leaving and coming
    back, and with hostnames that are not unique."""
    pods = affinity_pods()
    results, filtered = [], []
    for reuse, feed in ((True, True), (False, False), (True, False)):
        random.seed(3)
        calls = []

        class Counting(InterPodAffinity):
            def filter(self, state, pod, node):
                calls.append(node.name)
                return super().filter(state, pod, node)
        runner = CycleRunner(profile()[:6] + [
            ProfilePlugin("PodTopologySpread", PodTopologySpread(), 2),
            ProfilePlugin("InterPodAffinity", Counting(), 2)] + profile()[6:],
            reuse=reuse)
        if not feed:
            runner.framework.handle.node_changes = None
        for i in range(120):
            runner.add_node(affinity_node(i, shared_hostnames=shared_hostnames))
        out = []
        for i, p in enumerate(pods):
            if i % 20 == 10:
                runner.add_node(affinity_node(i % 120, i, shared_hostnames))
            if i % 45 == 30:
                runner.remove_node(node_obj(i % 120))
            if i % 45 == 40:
                runner.add_node(affinity_node((i - 10) % 120, 0, shared_hostnames))
            if i == 130:  # two nodes come to share a hostname, then part again
                runner.add_node(affinity_node(57, i, True) | {"metadata": {
                    **node_obj(57)["metadata"], "labels": {
                        **node_obj(57)["metadata"]["labels"],
                        "kubernetes.io/hostname": "n58"}}})
            if i == 190:
                runner.add_node(affinity_node(57, i, shared_hostnames))
            out.append(runner.schedule(p))
        results.append(out)
        filtered.append(len(calls))
    assert results[0] == results[1] == results[2]
    assert sum(not r.startswith("0/") for r in results[0]) > 100
    if not shared_hostnames:
        assert filtered[0] < filtered[1]  # anti-affinity pods reused their results


def _affinity_runner(reuse):
    random.seed(17)
    return CycleRunner([ProfilePlugin("NodeResourcesFit", NodeResourcesFit(), 1),
                        ProfilePlugin("InterPodAffinity", InterPodAffinity(), 2)], reuse=reuse)


def _place(runner, name, node, **kw):
    p = pod(name, cpu="1", **kw)
    p["spec"]["priority"], p["spec"]["nodeName"] = 0, node
    runner.add_pod(p)


def _nodes(runner, *specs):
    for name, cpu, labels in specs:  # distinct sizes: no ties between scores
        runner.add_node(node_api_obj(name, cpu=cpu, labels=labels))


def _shared_hostname(runner):
    """A and B share a hostname: once a red pod runs on A, B is in its domain too (with
    stored results, B would still pass: it did not change)."""
    _nodes(runner, ("x", "64", {HOST: "hx"}), ("a", "16", {HOST: "h"}),
           ("b", "8", {HOST: "h"}), ("c", "4", {HOST: "hc"}))
    red = dict(labels={"color": "red"}, affinity=_anti("red", HOST))
    return [runner.schedule(pod(f"r{i}", cpu="1", **red)) for i in range(3)]


def _existing_zone_term(runner):
    """Green pods' own term is node-local, but existing guards' zone terms select them: a
    guard arriving on D rules out C, which did not change."""
    _nodes(runner, ("a", "64", {ZONE: "z0"}), ("b", "16", {ZONE: "z0"}),
           ("c", "8", {ZONE: "z1"}), ("d", "4", {ZONE: "z1"}), ("e", "2", {ZONE: "z2"}))
    _place(runner, "guard1", "e", labels={"role": "guard"}, affinity=_anti("green", ZONE))
    green = dict(labels={"color": "green"}, affinity=_anti("green", HOST))
    out = [runner.schedule(pod("g1", cpu="1", **green)),
           runner.schedule(pod("g2", cpu="1", **green))]
    _place(runner, "guard2", "d", labels={"role": "guard"}, affinity=_anti("green", ZONE))
    out.append(runner.schedule(pod("g3", cpu="1", **green)))
    return out


def _own_zone_term(runner):
    """The pod's own term is over zones: a yellow pod arriving on D rules out C too."""
    _nodes(runner, ("f", "64", {ZONE: "z2"}), ("a", "8", {ZONE: "z0"}),
           ("c", "20", {ZONE: "z1"}), ("d", "4", {ZONE: "z1"}))  # F 97, C 96, then F 95
    averse = dict(labels={"app": "w"}, affinity=_anti("yellow", ZONE))
    out = [runner.schedule(pod("w1", cpu="1", **averse))]
    _place(runner, "y1", "d", labels={"color": "yellow"})
    out.append(runner.schedule(pod("w2", cpu="1", **averse)))  # C would be the best
    return out


@pytest.mark.parametrize("scenario,expected", [
    (_shared_hostname, ["x", "a", "c"]),
    (_existing_zone_term, ["a", "b", "0/5 nodes are available: 2 node(s) didn't match pod "
                           "anti-affinity rules, 3 node(s) didn't satisfy existing pods "
                           "anti-affinity rules."]),
    (_own_zone_term, ["f", "f"])])
def test_inter_pod_affinity_signs_node_locally_only_when_domains_are_nodes(scenario,
                                                                           expected):
    """Where a domain spans nodes, a change on one node changes what Filter says on others:
    no node-local signature then (stored results would place the third pod wrongly)."""
    assert scenario(_affinity_runner(True)) == scenario(_affinity_runner(False)) == expected
