"""The framework runner: configured order, weights, normalization, sampling, messages."""

import asyncio
import collections

import pytest

from pilothouse.interfaces.scheduler import (Code, CycleState, NodeInfo, Status,
                                             fit_error_message)
from pilothouse.scheduler import Framework, ProfilePlugin
from pilothouse.scheduler._queue import Nominator


def node(name, **labels):
    return NodeInfo({"metadata": {"name": name, "labels": labels},
                     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})


POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u-p"},
       "spec": {"containers": [], "priority": 0}}


class LabelScore:
    """Score = the node's integer label ``key``; normalized by doubling."""

    def __init__(self, key, calls=None):
        self.key, self.calls = key, calls

    def score(self, state, pod, node):
        if self.calls is not None:
            self.calls.append((self.key, node.name))
        return int(node.labels.get(self.key, 0))

    def normalize_scores(self, state, pod, scores):
        return {n: min(100, 2 * s) for n, s in scores.items()}


class OnlyLabel:
    def __init__(self, key, calls=None):
        self.key, self.calls = key, calls

    def filter(self, state, pod, node):
        if self.calls is not None:
            self.calls.append(node.name)
        if self.key in node.labels:
            return Status()
        return Status.unschedulable(f"node(s) lack {self.key}")


def run(coro):
    return asyncio.run(coro)


def test_weighted_sum_of_normalized_scores_picks_the_best():
    fw = Framework("p", [ProfilePlugin("A", LabelScore("a"), weight=1),
                         ProfilePlugin("B", LabelScore("b"), weight=3)])
    nodes = [node("n1", a="40", b="5"), node("n2", a="0", b="20"), node("n3", a="10", b="10")]
    totals = run(fw.run_score(CycleState(), POD, nodes, set()))
    # n1: 80*1 + 10*3 = 110; n2: 0 + 40*3 = 120; n3: 20 + 20*3 = 80
    assert totals == {"n1": 110, "n2": 120, "n3": 80}
    assert fw.select_host(totals) == "n2"


def test_zero_weight_and_skipped_plugins_do_not_score():
    calls = []
    fw = Framework("p", [ProfilePlugin("A", LabelScore("a", calls), weight=0),
                         ProfilePlugin("B", LabelScore("b", calls), weight=1)])
    totals = run(fw.run_score(CycleState(), POD, [node("n1", a="1", b="1")], {"B"}))
    assert totals == {"n1": 0} and calls == []


def test_normalized_scores_out_of_range_are_an_error():
    class Bad:
        def score(self, state, pod, node):
            return 500

        def normalize_scores(self, state, pod, scores):
            return scores
    fw = Framework("p", [ProfilePlugin("Bad", Bad())])
    with pytest.raises(ValueError, match="outside"):
        run(fw.run_score(CycleState(), POD, [node("n1")], set()))


def test_scores_normalized_plugins_are_not_normalized_but_still_checked():
    class InRange:
        scores_normalized = True

        def __init__(self, value=40):
            self.value = value

        def score(self, state, pod, node):
            return self.value + int(node.labels.get("a", "0"))

        def normalize_scores(self, state, pod, scores):
            raise AssertionError("called")
    fw = Framework("p", [ProfilePlugin("S", InRange(), weight=2)])
    nodes = [node("n1", a="1"), node("n2", a="5")]
    assert run(fw.run_score(CycleState(), POD, nodes, set())) == {"n1": 82, "n2": 90}
    fw = Framework("p", [ProfilePlugin("S", InRange(500))])
    with pytest.raises(ValueError, match="outside"):
        run(fw.run_score(CycleState(), POD, nodes, set()))


def test_ties_are_broken_at_random_among_the_best_only():
    seen = collections.Counter(Framework.select_host({"a": 5, "b": 7, "c": 7, "d": 7})
                               for _ in range(3000))
    assert set(seen) == {"b", "c", "d"}
    assert min(seen.values()) > 800  # roughly uniform


def test_filters_run_in_configured_order_and_stop_at_the_first_failure():
    calls = []

    class Record:
        def __init__(self, name, ok):
            self.name, self.ok = name, ok

        def filter(self, state, pod, node):
            calls.append(self.name)
            return Status() if self.ok else Status.unschedulable(f"{self.name} says no")
    fw = Framework("p", [ProfilePlugin("Z", Record("Z", True)),
                         ProfilePlugin("A", Record("A", False)),
                         ProfilePlugin("M", Record("M", True))])
    state = CycleState()
    run(fw.run_pre_filter(state, POD, []))
    status = fw.run_filters(state, POD, node("n1"))
    assert calls == ["Z", "A"]
    assert (status.code, status.reasons, status.plugin) == (Code.UNSCHEDULABLE, ("A says no",), "A")


def test_pre_filter_skip_skips_that_plugins_filter():
    class SkipMe:
        def pre_filter(self, state, pod, nodes):
            return Status.skip()

        def filter(self, state, pod, node):
            raise AssertionError("must not be called")
    fw = Framework("p", [ProfilePlugin("S", SkipMe())])
    state = CycleState()
    assert run(fw.run_pre_filter(state, POD, [])).ok
    assert fw.run_filters(state, POD, node("n1")).ok


def test_coroutine_plugins_are_awaited():
    class AsyncFilter:
        async def filter(self, state, pod, node):
            await asyncio.sleep(0)
            return Status() if node.name != "n2" else Status.unschedulable("no")

    class AsyncScore:
        async def score(self, state, pod, node):
            return 10 if node.name == "n3" else 1

        async def normalize_scores(self, state, pod, scores):
            return scores
    fw = Framework("p", [ProfilePlugin("F", AsyncFilter()), ProfilePlugin("S", AsyncScore())])
    assert fw.filter_async

    async def main():
        state = CycleState()
        nodes = [node("n1"), node("n2"), node("n3")]
        feasible, statuses = await fw.find_feasible(state, POD, nodes, Nominator(), 0)
        totals = await fw.run_score(state, POD, feasible, set())
        return [n.name for n in feasible], set(statuses), fw.select_host(totals)
    assert run(main()) == (["n1", "n3"], {"n2"}, "n3")


@pytest.mark.parametrize("total,percentage,expected", [
    (50, 0, 50), (99, 10, 99), (100, 0, 100), (400, 0, 188), (1000, 0, 420), (5000, 0, 500),
    (20000, 0, 1000), (5000, 100, 5000), (5000, 1, 100), (5000, 30, 1500)])
def test_number_of_feasible_nodes_to_find(total, percentage, expected):
    assert Framework.num_feasible_nodes_to_find(total, percentage) == expected


def test_sampling_stops_early_and_rotates_the_start():
    calls = []
    fw = Framework("p", [ProfilePlugin("F", OnlyLabel("ok", calls))])
    nodes = [node(f"n{i:03}", ok="1") for i in range(300)]

    async def main():
        first, _ = await fw.find_feasible(CycleState(), POD, nodes, Nominator(), 10)
        second, _ = await fw.find_feasible(CycleState(), POD, nodes, Nominator(), 10)
        return first, second
    first, second = run(main())
    assert len(first) == len(second) == 100 and len(calls) == 200
    assert first[0].name == "n000" and second[0].name == "n100"


def test_nominated_pods_of_higher_priority_hold_their_room():
    class CpuFit:
        def filter(self, state, pod, node):
            used = node.requested.get("cpu", 0)
            want = int(pod["spec"].get("cpuMilli", 0))
            return Status() if used + want <= 1000 else Status.unschedulable("Insufficient cpu")
    fw = Framework("p", [ProfilePlugin("Fit", CpuFit())])
    low = {"metadata": {"name": "low", "uid": "u-low", "namespace": "default"},
           "spec": {"priority": 0, "cpuMilli": 600, "containers": []}}
    big = {"metadata": {"name": "big", "uid": "u-big", "namespace": "default"},
           "spec": {"priority": 100, "containers": [
               {"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}}
    nominator = Nominator()
    nominator.add(big, "n1")
    n1 = NodeInfo({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "1"}}})

    async def main():
        return await fw.find_feasible(CycleState(), low, [n1], nominator, 0)
    feasible, statuses = run(main())
    assert not feasible and statuses["n1"].reasons == ("Insufficient cpu",)
    # the nominated pod itself, or one of higher priority, is not held back by it
    higher = {**low, "spec": {**low["spec"], "priority": 1000}}
    feasible, _ = run(fw.find_feasible(CycleState(), higher, [n1], nominator, 0))
    assert [n.name for n in feasible] == ["n1"]


def test_fit_error_message_is_worded_like_kubernetes():
    statuses = {"a": Status.unschedulable("Insufficient cpu"),
                "b": Status.unschedulable("node(s) had untolerated taint {dedicated: gpu}",
                                          resolvable=False),
                "c": Status.unschedulable("node(s) had untolerated taint {dedicated: gpu}"),
                "d": Status.unschedulable("Insufficient cpu", "Insufficient memory")}
    # counted per reason, "<count> <reason>" sorted as strings (as kube-scheduler does)
    assert fit_error_message(4, statuses) == (
        "0/4 nodes are available: 1 Insufficient memory, 2 Insufficient cpu, "
        "2 node(s) had untolerated taint {dedicated: gpu}.")
    assert fit_error_message(1, {"a": statuses["a"]},
                             post_filter_msg="preemption: 0/1 nodes are available: 1 No "
                             "preemption victims found for incoming pod.") == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.")
    assert fit_error_message(3, {}, pre_filter_msg="pod has unbound PVCs") == \
        "0/3 nodes are available: pod has unbound PVCs."
    assert fit_error_message(0, {}) == "no nodes available to schedule pods"


def test_reserve_failure_and_unreserve_run_in_reverse_order():
    calls = []

    class R:
        def __init__(self, name, ok=True):
            self.name, self.ok = name, ok

        def reserve(self, state, pod, node):
            calls.append(("reserve", self.name))
            return Status() if self.ok else Status.unschedulable("full")

        def unreserve(self, state, pod, node):
            calls.append(("unreserve", self.name))
    fw = Framework("p", [ProfilePlugin("A", R("A")), ProfilePlugin("B", R("B", False)),
                         ProfilePlugin("C", R("C"))])

    async def main():
        status = await fw.run_reserve(CycleState(), POD, "n1")
        await fw.run_unreserve(CycleState(), POD, "n1")
        return status
    status = run(main())
    assert status.plugin == "B" and not status.ok
    assert calls == [("reserve", "A"), ("reserve", "B"), ("unreserve", "C"),
                     ("unreserve", "B"), ("unreserve", "A")]
