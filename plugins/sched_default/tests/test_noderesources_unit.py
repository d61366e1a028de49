"""Unit tests: NodeResourcesFit filter reasons, options and the three scoring strategies."""

import pytest
from sched_testlib import filter_all, node, pod, reasons, scores

from pilothouse.interfaces.scheduler import Code
from pilothouse_sched_default import NodeResourcesFit


def test_fits_against_allocatable_minus_requested():
    nodes = [node("busy", cpu="2", memory="4Gi", pods=[pod("x", cpu="1500m", memory="1Gi")]),
             node("free", cpu="2", memory="4Gi")]
    statuses = filter_all(NodeResourcesFit(), pod("p", cpu="1", memory="1Gi"), nodes)
    assert reasons(statuses) == {"busy": ("Insufficient cpu",)}
    assert statuses["busy"].code is Code.UNSCHEDULABLE  # preemption may help


def test_reports_every_insufficient_resource_and_pod_count():
    full = node("full", cpu="1", memory="1Gi", pods=[pod("x", cpu="500m")],
                extra={"pods": "1", "example.com/gpu": "1"})
    p = pod("p", cpu="1", memory="2Gi", extra_requests={"example.com/gpu": "2"})
    assert reasons(filter_all(NodeResourcesFit(), p, [full])) == {"full": (
        "Too many pods", "Insufficient cpu", "Insufficient memory",
        "Insufficient example.com/gpu")}


def test_pods_without_requests_only_need_a_pod_slot():
    nodes = [node("tiny", cpu="0", memory="0"), node("full", pods=[pod("x")], extra={"pods": "1"})]
    assert reasons(filter_all(NodeResourcesFit(), pod("p"), nodes)) == {
        "full": ("Too many pods",)}


def test_ignored_extended_resources():
    plugin = NodeResourcesFit(NodeResourcesFit.Options(ignoredResources=["example.com/a"],
                                                       ignoredResourceGroups=["vendor.io"]))
    p = pod("p", extra_requests={"example.com/a": "1", "vendor.io/b": "1",
                                 "example.com/c": "1"})
    assert reasons(filter_all(plugin, p, [node("n")])) == {"n": ("Insufficient example.com/c",)}


def test_init_containers_and_sidecars_count():
    p = pod("p", cpu="500m", spec={"initContainers": [
        {"name": "init", "image": "x", "resources": {"requests": {"cpu": "3"}}}]})
    assert reasons(filter_all(NodeResourcesFit(), p, [node("n", cpu="2")])) == {
        "n": ("Insufficient cpu",)}


def scoring_nodes():
    # allocatable 4 cpu / 10000M; after the incoming pod: 3000m and 5000M requested
    return [node("n", cpu="4", memory="10000M", pods=[pod("x", cpu="2", memory="3000M")])]


INCOMING = dict(cpu="1", memory="2000M")


@pytest.mark.parametrize("strategy,expected", [
    ({"type": "LeastAllocated"}, 37),  # cpu 25, memory 50
    ({"type": "MostAllocated"}, 62),  # cpu 75, memory 50
    ({"type": "RequestedToCapacityRatio", "requestedToCapacityRatio": {"shape": [
        {"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}, 63),
    ({"type": "RequestedToCapacityRatio", "requestedToCapacityRatio": {"shape": [
        {"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}, 38),
    ({"type": "MostAllocated", "resources": [{"name": "cpu", "weight": 3},
                                             {"name": "memory", "weight": 1}]}, 68),
])
def test_scoring_strategies(strategy, expected):
    plugin = NodeResourcesFit(NodeResourcesFit.Options(scoringStrategy=strategy))
    assert scores(plugin, pod("p", **INCOMING), scoring_nodes()) == {"n": expected}


def test_least_allocated_spreads_and_most_allocated_packs():
    nodes = [node("empty", cpu="4", memory="8Gi"),
             node("half", cpu="4", memory="8Gi", pods=[pod("x", cpu="2", memory="4Gi")])]
    least = scores(NodeResourcesFit(), pod("p", cpu="1", memory="1Gi"), nodes)
    most = scores(NodeResourcesFit(NodeResourcesFit.Options(
        scoringStrategy={"type": "MostAllocated"})), pod("p", cpu="1", memory="1Gi"), nodes)
    assert least["empty"] > least["half"] and most["half"] > most["empty"]


def test_request_less_pods_score_with_default_requests():
    nodes = [node("n", cpu="1", memory="1000Mi")]
    # 100m of 1000m and 200Mi of 1000Mi: (90 + 80) / 2
    assert scores(NodeResourcesFit(), pod("p"), nodes) == {"n": 85}


@pytest.mark.parametrize("options,error", [
    ({"scoringStrategy": {"type": "Random"}}, "scoringStrategy.type must be one of"),
    ({"scoringStrategy": {"type": "RequestedToCapacityRatio"}}, "shape is required"),
    ({"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu",
                                                                   "weight": 0}]}}, "weight"),
    ({"scoringStrategy": {"type": "RequestedToCapacityRatio", "requestedToCapacityRatio": {
        "shape": [{"utilization": 50, "score": 1}, {"utilization": 10, "score": 2}]}}},
     "increase"),
    ({"scoringStrategy": {"type": "MostAllocated", "shapes": []}}, "unknown key"),
])
def test_bad_options_are_config_errors(pilothouse_plugins, options, error):
    from pilothouse.config import ConfigError
    doc = {"scheduler": {"profiles": [{"schedulerName": "s", "plugins": [
        {"name": "NodeResourcesFit", "options": options}]}]}}
    with pytest.raises(ConfigError, match=error):
        pilothouse_plugins(doc, base="none")


def test_options_load_through_the_entry_point(pilothouse_plugins):
    doc = {"scheduler": {"profiles": [{"schedulerName": "s", "plugins": [
        {"name": "NodeResourcesFit", "weight": 5,
         "options": {"scoringStrategy": {"type": "MostAllocated"}}}]}]}}
    (lp,) = pilothouse_plugins(doc, base="none").profiles["s"]
    assert isinstance(lp.instance, NodeResourcesFit) and lp.instance.strategy == "MostAllocated"
    assert lp.ref.weight == 5


def test_remembered_requests_match_a_fresh_computation_for_every_shape():
    """_compute remembers what it made of a pod's request fields: each pod, seen after
    others of other shapes (and again), gets what a fresh plugin computes for it."""
    import copy

    from pilothouse_sched_default import noderesources

    def shaped(i):
        p = pod(f"p{i}", cpu=("100m", "1", "250m")[i % 3], memory=("1Gi", None)[i % 2])
        spec = p["spec"]
        if i % 4 == 1:
            spec["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]
        if i % 4 == 2:
            spec["initContainers"] = [{"name": "s", "restartPolicy": "Always",
                                       "resources": {"requests": {"cpu": "300m"}}},
                                      {"name": "i", "resources": {"requests": {"cpu": "1"}}}]
        if i % 5 == 3:
            spec["overhead"] = {"cpu": "50m", "memory": "10Mi"}
        if i % 7 == 4:  # not strings: computed each time, never remembered
            spec["containers"][0]["resources"]["requests"]["cpu"] = 2
        if i % 11 == 5:
            spec["containers"].append({"name": "b"})
        return p
    pods = [shaped(i) for i in range(60)]
    plugin = NodeResourcesFit()
    for p in pods + pods[::-1]:
        got = plugin._compute(copy.deepcopy(p))
        want = NodeResourcesFit()._compute(p)
        assert (got.request, got.non_zero, got.checks, got.scoring) == \
            (want.request, want.non_zero, want.checks, want.scoring)
    assert 0 < len(plugin._computed) < 60
    assert noderesources._requests_key(pods[4]) is None
    assert noderesources._requests_key(pods[1]) != noderesources._requests_key(pods[2])
