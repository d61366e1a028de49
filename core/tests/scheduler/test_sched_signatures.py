"""Pod scheduling signatures: per-node reuse of Filter and Score results (Sign), with
hand-written plugins; NodeInfo generations; freeze."""

import asyncio
import random

import pytest

from pilothouse.interfaces.scheduler import (Code, CycleState, NodeInfo, Sign, Status, freeze,
                                             pod_requests)
from pilothouse.scheduler import Framework, ProfilePlugin
from pilothouse.scheduler._cache import Cache
from pilothouse.scheduler._framework import SIGNATURE_KEY, FitError
from pilothouse.scheduler.testing import CycleRunner, node, pod


class Fit:
    """Filter + Score + Sign on cpu: fits when the request fits the room left; scores the
    room left (0..100); optional taint check (``dedicated`` taints need a toleration)."""

    def __init__(self, calls=None):
        self.calls = calls if calls is not None else []

    def filter(self, state, pod, node):
        self.calls.append(("filter", node.name))
        want = pod_requests(pod).get("cpu", 0)
        for taint in node.taints:
            if not any(t.get("key") == taint["key"] for t in pod["spec"].get("tolerations") or []):
                return Status.unschedulable(f"node(s) had untolerated taint {taint['key']}")
        if node.labels.get("tier") == "broken":
            return Status.unschedulable("node(s) are broken", resolvable=False)
        if want > node.allocatable.get("cpu", 0) - node.requested.get("cpu", 0):
            return Status.unschedulable("Insufficient cpu")
        return Status()

    def score(self, state, pod, node):
        self.calls.append(("score", node.name))
        alloc = node.allocatable.get("cpu", 0) or 1
        return max(0, (alloc - node.requested.get("cpu", 0)) * 100 // alloc)

    def normalize_scores(self, state, pod, scores):
        return scores

    def sign(self, state, pod):
        return pod_requests(pod).get("cpu", 0), freeze(pod["spec"].get("tolerations") or [])


class Zone:
    """Score + Sign: prefers the zone named in the pod's ``zone`` label (normalized x2)."""

    def score(self, state, pod, node):
        return 50 if node.labels.get("zone") == pod["metadata"]["labels"].get("zone") else 0

    def normalize_scores(self, state, pod, scores):
        return {n: 2 * s for n, s in scores.items()}

    def sign(self, state, pod):
        return pod["metadata"]["labels"].get("zone")


class NoSign:
    """The same Score, without Sign (a third-party plugin written for 0.1)."""

    score, normalize_scores = Zone.score, Zone.normalize_scores


class Refuses(Zone):
    def sign(self, state, pod):
        return None


_n = [0]


def mkpod(cpu="500m", zone="a", tolerations=None, name=None):
    _n[0] += 1
    p = pod(name or f"p{_n[0]}", cpu=cpu, labels={"zone": zone}, tolerations=tolerations)
    p["metadata"]["uid"] = f"uid-{_n[0]}"
    p["spec"]["priority"] = 0
    return p


def cluster(runner, count=150):
    for i in range(count):
        taints = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}] if i % 7 == 0 \
            else None
        runner.add_node(node(f"n{i}", cpu=str(2 + i % 3), labels={"zone": "abc"[i % 3]},
                             taints=taints))


def workload():
    rng = random.Random(7)
    pods = []
    for i in range(400):
        kind = rng.random()
        if kind < 0.6:
            pods.append(mkpod("500m", rng.choice("abc")))
        elif kind < 0.8:
            pods.append(mkpod("1", "a", tolerations=[{"key": "dedicated", "operator": "Exists"}]))
        elif kind < 0.95:
            pods.append(mkpod("1500m", "b"))
        else:
            pods.append(mkpod("9", "c"))  # fits nowhere: the message counts every node
    return pods


def run_sequence(plugins_factory, reuse, pods, mutate=None):
    random.seed(1234)  # select_host breaks ties at random: same draws in both runs
    calls = []
    runner = CycleRunner(plugins_factory(calls), reuse=reuse)
    cluster(runner)
    out = []
    for i, p in enumerate(pods):
        if mutate is not None:
            mutate(runner, i)
        out.append(runner.schedule(p))
    return out, calls, runner


def default_plugins(calls):
    return [ProfilePlugin("Fit", Fit(calls), weight=2), ProfilePlugin("Zone", Zone())]


def test_reuse_gives_the_same_placements_and_messages_with_far_fewer_calls():
    pods = workload()
    with_reuse, calls_reuse, runner = run_sequence(default_plugins, True, pods)
    without, calls_plain, _ = run_sequence(default_plugins, False, pods)
    assert with_reuse == without
    assert any(r.startswith("0/150 nodes are available") for r in without)
    assert runner.framework.signers is not None
    assert len(calls_reuse) < len(calls_plain) / 3


def test_node_changes_invalidate_their_entries():
    """Pods added and removed, labels, taints and allocatable changed between cycles: the
    same answers as without reuse, because each change gives the node a new generation."""
    def mutate(runner, i):
        if i % 25 == 3:
            runner.add_node(node(f"n{i % 150}", cpu="8", labels={"zone": "c", "tier": "x"}))
        if i % 25 == 9:  # taint added
            runner.add_node(node(f"n{(i * 7) % 150}", cpu="3", labels={"zone": "a"},
                                 taints=[{"key": "dedicated", "effect": "NoSchedule"}]))
        if i % 25 == 14:  # label that makes Filter fail
            runner.add_node(node(f"n{(i * 11) % 150}", labels={"zone": "b", "tier": "broken"}))
        if i % 25 == 20:  # allocatable shrinks below what is there
            runner.add_node(node(f"n{(i * 13) % 150}", cpu="1", labels={"zone": "a"}))
        if i % 40 == 30:  # a pod of another scheduler lands on a node
            other = mkpod("1")
            other["spec"]["nodeName"] = f"n{(i * 3) % 150}"
            runner.add_pod(other)
        if i % 50 == 45:  # node removed, then back (a fresh NodeInfo)
            runner.remove_node(node(f"n{(i * 17) % 150}"))
        if i % 50 == 47:
            j = ((i - 2) * 17) % 150
            runner.add_node(node(f"n{j}", cpu=str(2 + j % 3), labels={"zone": "abc"[j % 3]}))
    pods = workload()
    with_reuse, _, _ = run_sequence(default_plugins, True, pods, mutate)
    without, _, _ = run_sequence(default_plugins, False, pods, mutate)
    assert with_reuse == without


def test_a_changed_node_is_filtered_and_scored_again_and_only_it():
    calls = []
    runner = CycleRunner([ProfilePlugin("Fit", Fit(calls))])
    for i in range(3):
        runner.add_node(node(f"n{i}", cpu="4"))
    tolerate = [{"key": "k", "operator": "Exists"}]
    first = runner.schedule(mkpod(tolerations=tolerate))
    assert sorted(calls) == sorted([(k, f"n{i}") for k in ("filter", "score") for i in range(3)])
    calls.clear()
    last = runner.schedule(mkpod(tolerations=tolerate))
    assert sorted(calls) == [("filter", first), ("score", first)]  # only it changed
    for change in (dict(labels={"tier": "x"}),
                   dict(taints=[{"key": "k", "effect": "NoSchedule"}]),
                   dict(cpu="6")):
        calls.clear()
        runner.add_node(node("n2", **change))
        placed = runner.schedule(mkpod(tolerations=tolerate))
        assert ("filter", "n2") in calls and ("score", "n2") in calls
        assert {n for _, n in calls} <= {"n2", last}  # the changed node, the last placement
        last = placed


def test_a_plugin_that_returns_none_or_does_not_sign_disables_reuse():
    for extra in (Refuses(), NoSign()):
        calls = []
        runner = CycleRunner([ProfilePlugin("Fit", Fit(calls)), ProfilePlugin("X", extra)])
        for i in range(5):
            runner.add_node(node(f"n{i}"))
        runner.schedule(mkpod())
        runner.schedule(mkpod())
        assert [c for c in calls if c[0] == "filter"].count(("filter", "n4")) == 2
    assert not isinstance(NoSign(), Sign)
    assert CycleRunner([ProfilePlugin("X", NoSign())]).framework.signers is None


def test_a_plugin_without_sign_is_fine_when_it_neither_filters_nor_scores():
    class Bind:
        async def bind(self, state, pod, node, client):
            return Status()
    fw = Framework("p", [ProfilePlugin("Fit", Fit()), ProfilePlugin("B", Bind()),
                         ProfilePlugin("Z", NoSign(), weight=0)])
    assert fw.signers is not None and [s[0] for s in fw.signers] == ["Fit"]


def test_a_skipped_filter_only_plugin_is_not_asked():
    asked = []

    class Skipper:
        def pre_filter(self, state, pod, nodes):
            return Status.skip()

        def filter(self, state, pod, node):
            raise AssertionError("skipped")

        def sign(self, state, pod):
            asked.append("Skipper")
            return None  # would disable reuse if asked
    runner = CycleRunner([ProfilePlugin("S", Skipper()), ProfilePlugin("Fit", Fit())])
    runner.add_node(node("n1"))
    state = CycleState()
    assert asyncio.run(runner.framework.run_pre_filter(state, mkpod(), [])).ok
    assert asked == [] and state.get(SIGNATURE_KEY) is not None


def test_sign_errors_and_unhashable_fragments_only_disable_reuse(caplog):
    class Boom(Zone):
        def sign(self, state, pod):
            raise RuntimeError("boom")

    class Unhashable(Zone):
        def sign(self, state, pod):
            return ["a list"]
    for plugin in (Boom(), Unhashable()):
        runner = CycleRunner([ProfilePlugin("Fit", Fit()), ProfilePlugin("X", plugin)])
        runner.add_node(node("n1"))
        state = CycleState()
        assert asyncio.run(runner.framework.run_pre_filter(state, mkpod(), [])).ok
        assert state.get(SIGNATURE_KEY) is None
        assert runner.schedule(mkpod()) == "n1"


def test_nominated_pods_bypass_stored_results():
    """A node with a pod nominated to it is filtered with that pod every cycle (and then
    without), never from a stored status."""
    calls = []
    runner = CycleRunner([ProfilePlugin("Fit", Fit(calls))])
    runner.add_node(node("n1", cpu="1"))
    runner.add_node(node("n2", cpu="1"))
    runner.schedule(mkpod("300m"), assume=False)  # stores both nodes' results
    big = mkpod("900m")
    big["spec"]["priority"] = 10
    runner.nominate(big, "n1")
    calls.clear()
    assert runner.schedule(mkpod("300m"), assume=False) == "n2"
    assert ("filter", "n1") in calls and ("filter", "n2") not in calls
    calls.clear()
    assert runner.schedule(mkpod("300m"), assume=False) == "n2"
    assert calls.count(("filter", "n1")) == 1  # again: with the nominated pod, it fails
    runner.scheduler.queue.nominator.delete(big)
    calls.clear()
    runner.schedule(mkpod("300m"), assume=False)
    assert ("filter", "n1") in calls  # its entry was dropped while nominated


def test_prescore_skip_and_normalize_still_run_every_cycle():
    normalized, skip = [], [False]

    class Tracked(Zone):
        def pre_score(self, state, pod, nodes):
            return Status.skip() if skip[0] else Status()

        def normalize_scores(self, state, pod, scores):
            normalized.append(dict(scores))
            return {n: 2 * s for n, s in scores.items()}
    runner = CycleRunner([ProfilePlugin("Fit", Fit()), ProfilePlugin("Z", Tracked(), weight=5)])
    for i in range(4):
        runner.add_node(node(f"n{i}", labels={"zone": "b" if i == 3 else "a"}))
    assert runner.schedule(mkpod(zone="b"), assume=False) == "n3"
    assert runner.schedule(mkpod(zone="b"), assume=False) == "n3"
    assert len(normalized) == 2 and normalized[0] == normalized[1]
    skip[0] = True  # now the zone no longer counts: Fit's scores (all equal) decide
    results = {runner.schedule(mkpod(zone="b"), assume=False) for _ in range(30)}
    assert len(normalized) == 2 and len(results) > 1


def test_error_statuses_are_not_stored():
    calls = []

    class Flaky(Fit):
        def filter(self, state, pod, node):
            self.calls.append(("filter", node.name))
            return Status.error("temporary")
    runner = CycleRunner([ProfilePlugin("F", Flaky(calls))])
    runner.add_node(node("n1"))
    fw = runner.framework
    for _ in range(2):
        state = CycleState()
        asyncio.run(fw.run_pre_filter(state, mkpod(), []))
        feasible, statuses = asyncio.run(fw.find_feasible(
            state, mkpod(), runner.scheduler.snapshot.nodes or [NodeInfo(node("n1"))],
            runner.scheduler.queue.nominator, 0))
        assert statuses["n1"].code is Code.ERROR
    assert calls == [("filter", "n1")] * 2


def test_signatures_are_kept_in_a_bounded_lru():
    runner = CycleRunner([ProfilePlugin("Fit", Fit())], settings={"signatureCacheSize": 3})
    runner.add_node(node("n1", cpu="64"))
    for cpu in ("1", "2", "3", "1", "4"):
        runner.schedule(mkpod(cpu), assume=False)
    kept = list(runner.framework._results)
    assert len(kept) == 3
    assert [k[0][1][0] for k in kept] == [3000, 1000, 4000]  # 2 was least recently used


def test_what_if_paths_never_read_stored_results():
    calls = []
    runner = CycleRunner([ProfilePlugin("Fit", Fit(calls))])
    runner.add_node(node("n1"))
    runner.schedule(mkpod(), assume=False)
    calls.clear()
    runner.scheduler.cache.update_snapshot(runner.scheduler.snapshot)
    info = runner.scheduler.snapshot.get("n1")
    state = CycleState()
    p = mkpod()
    asyncio.run(runner.framework.run_pre_filter(state, p, [info]))
    assert state.get(SIGNATURE_KEY) is not None
    handle = runner.framework.handle
    assert handle.run_filter_plugins(state, p, info).ok
    assert handle.run_filter_plugins(state.clone(), p, info.clone()).ok
    assert calls == [("filter", "n1")] * 2


# ---------------------------------------------------------------- generations, freeze


def test_generations_are_unique_across_nodeinfos_and_kept_by_clone():
    obj = node("g1")
    a, b = NodeInfo(obj), NodeInfo(obj)
    assert a.generation != b.generation and a == b  # equality is about content
    c = a.clone()
    assert c.generation == a.generation
    c.add_pod(mkpod())
    a.add_pod(mkpod())
    assert len({a.generation, b.generation, c.generation}) == 3
    before = a.generation
    a.set_node(obj)
    assert a.generation > before
    assert (a.name, a.labels, a.taints) == ("g1", {"kubernetes.io/hostname": "g1"}, [])


def test_a_deleted_and_re_added_node_never_repeats_a_generation():
    cache = Cache()
    cache.add_node(node("r1"))
    seen = {cache.infos["r1"].generation}
    cache.remove_node(node("r1"))
    cache.add_node(node("r1"))
    assert cache.infos["r1"].generation not in seen


def test_freeze():
    assert freeze({"a": 1, "b": [1, 2]}) == freeze({"b": [1, 2], "a": 1})
    assert freeze([1, 2]) != freeze([2, 1])
    assert freeze({"a": True}) != freeze({"a": 1}) != freeze({"a": 1.0})
    assert freeze(["bool", 1]) != freeze(True)
    assert freeze({"a": [1]}) != freeze({"a": {"1": None}}) and freeze({}) != freeze([])
    hash(freeze([{"key": "k", "operator": "Exists", "tolerationSeconds": 300}, None, "x"]))


@pytest.mark.parametrize("reuse", [True, False])
def test_unschedulable_message_counts_every_node(reuse):
    runner = CycleRunner([ProfilePlugin("Fit", Fit())], reuse=reuse)
    for i in range(120):
        runner.add_node(node(f"m{i}", cpu="1", labels={"tier": "broken"} if i < 20 else None))
    for _ in range(2):
        assert runner.schedule(mkpod("2")) == \
            "0/120 nodes are available: 100 Insufficient cpu, 20 node(s) are broken."


def test_the_handle_lists_nodes_with_pod_affinity_from_the_snapshot():
    runner = CycleRunner([ProfilePlugin("Fit", Fit())])
    for i in range(3):
        runner.add_node(node(f"n{i}"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    other = pod("other", affinity=anti)
    other["spec"]["nodeName"] = "n2"
    runner.add_pod(other)
    runner.schedule(mkpod())
    handle = runner.framework.handle
    assert [i.name for i in handle.node_infos_with_pod_affinity()] == ["n2"]
    assert handle.node_infos_with_required_anti_affinity() == \
        [runner.scheduler.snapshot.get("n2")]


# ---------------------------------------------------------------- signature tables


class AsyncFit(Fit):
    """Fit with coroutine Filter and Score (the framework's awaiting paths)."""

    async def filter(self, state, pod, node):
        return Fit.filter(self, state, pod, node)

    async def score(self, state, pod, node):
        return Fit.score(self, state, pod, node)


class Spread:
    """Score + Sign with a normalization over the feasible set (min-max) and a reversed
    range, so a wrong feasible set or a stale raw score changes the totals."""

    def score(self, state, pod, node):
        return len(node.pods) * 3 + int(node.labels.get("rack", "0"))

    def normalize_scores(self, state, pod, scores):
        lo, hi = min(scores.values()), max(scores.values())
        return {n: 100 * (hi - s) // (hi - lo) if hi > lo else 100 for n, s in scores.items()}

    def sign(self, state, pod):
        return "spread"


def _random_cycle_run(seed, reuse, *, profile="plain", percentage=0, nodes=160, pods=260):
    """One randomized run: a cluster, pods of a few shapes, and between cycles nodes
    changed, removed and re-added, foreign pods placed and deleted, pods nominated. Returns
    per cycle: the placement or the full per-node statuses of a FitError, and where the next
    cycle starts."""
    rng = random.Random(seed)
    fit = AsyncFit() if profile == "async" else Fit()
    if profile == "in-range":
        fit.scores_normalized = True  # Fit's scores are 0..100 and normalize returns them
    plugins = [ProfilePlugin("Fit", fit, weight=2), ProfilePlugin("Zone", Zone()),
               ProfilePlugin("Spread", Spread(), weight=3)]
    if profile == "unsigned":
        plugins.append(ProfilePlugin("NoSign", NoSign()))
    runner = CycleRunner(plugins, reuse=reuse,
                         settings={"percentageOfNodesToScore": percentage})
    sched, fw = runner.scheduler, runner.framework

    def make_node(i):
        taints = [{"key": "dedicated", "effect": "NoSchedule"}] if rng.random() < 0.1 else None
        labels = {"zone": rng.choice("abc"), "rack": str(rng.randrange(4))}
        if rng.random() < 0.05:
            labels["tier"] = "broken"
        return node(f"n{i}", cpu=str(rng.choice((1, 2, 4))), labels=labels, taints=taints)
    names = list(range(nodes))
    for i in names:
        runner.add_node(make_node(i))
    placed, foreign, out = [], [], []
    random.seed(seed)  # select_host's tie-breaking draws: the same in both runs
    for step in range(pods):
        r = rng.random()
        if r < 0.08:
            runner.add_node(make_node(rng.randrange(nodes)))
        elif r < 0.11:  # removed (its pods stay: a NodeInfo without Node), maybe back later
            gone = node(f"n{rng.randrange(nodes)}")
            runner.remove_node(gone)
        elif r < 0.14:
            runner.add_node(make_node(rng.randrange(nodes)))
        elif r < 0.18 and placed:
            runner.remove_pod(placed.pop(rng.randrange(len(placed))))
        elif r < 0.21:
            other = mkpod(rng.choice(("250m", "1")))
            other["spec"]["nodeName"] = f"n{rng.randrange(nodes)}"
            runner.add_pod(other)
            foreign.append(other)
        elif r < 0.25:
            big = mkpod(rng.choice(("500m", "1500m")))
            big["spec"]["priority"] = rng.choice((0, 5, 100))
            runner.nominate(big, f"n{rng.randrange(nodes)}")
            foreign.append(big)
        elif r < 0.28 and foreign:
            sched.queue.nominator.delete(foreign[rng.randrange(len(foreign))])
        kind = rng.random()
        p = mkpod(rng.choice(("250m", "500m", "1")) if kind < 0.7 else
                  rng.choice(("1500m", "3", "9")), rng.choice("abc"),
                  tolerations=[{"key": "dedicated", "operator": "Exists"}]
                  if kind < 0.2 else None)
        p["spec"]["priority"] = rng.choice((0, 10))
        sched.cache.update_snapshot(sched.snapshot)
        try:
            chosen = asyncio.run(sched._schedule_pod(fw, CycleState(), p))
        except FitError as fit_error:
            out.append(("unschedulable", dict(fit_error.statuses), fw._next_start))
            continue
        assumed = {**p, "spec": {**p["spec"], "nodeName": chosen}}
        sched.cache.assume_pod(assumed, chosen)
        placed.append(assumed)
        out.append((chosen, fw._next_start))
    return out, runner


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("profile,percentage", [("plain", 0), ("plain", 100), ("async", 0),
                                                ("unsigned", 0), ("in-range", 0)])
def test_signature_tables_decide_as_the_plain_walk_on_random_clusters(seed, profile,
                                                                      percentage):
    """Placements, the unschedulable statuses of every node, and the rotating start: the
    same with the tables (reuse) as with signatureCacheSize 0, under churn between cycles."""
    with_reuse, runner = _random_cycle_run(seed, True, profile=profile, percentage=percentage)
    without, _ = _random_cycle_run(seed, False, profile=profile, percentage=percentage)
    assert with_reuse == without
    assert any(r[0] == "unschedulable" for r in without)
    assert sum(r[0] != "unschedulable" for r in without) > 100
    if profile == "in-range":  # normalize_scores not called: the same as calling it
        assert with_reuse == _random_cycle_run(seed, False, percentage=percentage)[0]
    if profile != "unsigned":
        assert runner.framework._results  # the tables were used


def test_a_table_filters_only_what_changed():
    """On 1,000 nodes with sampling (420 to find), after the first pass a cycle filters the
    nodes changed since the signature's previous cycle, not the nodes it visits."""
    calls = []
    runner = CycleRunner([ProfilePlugin("Fit", Fit(calls))])
    for i in range(1000):
        runner.add_node(node(f"n{i:04}", cpu="64"))
    for _ in range(3):  # the first cycles see every node once
        runner.schedule(mkpod("100m"))
    calls.clear()
    for _ in range(20):
        runner.schedule(mkpod("100m"))
    filters = [c for c in calls if c[0] == "filter"]
    assert len(filters) <= 20  # one node per placement changed
    runner.add_node(node("n0500", cpu="64", labels={"tier": "broken"}))
    calls.clear()
    first = runner.framework._next_start
    runner.schedule(mkpod("100m"), assume=False)
    assert {n for _, n in calls} <= {"n0500"} | {f"n{i:04}" for i in range(first, first + 430)}


def test_a_table_is_rebuilt_when_nodes_come_and_go():
    runner = CycleRunner([ProfilePlugin("Fit", Fit())])
    for i in range(5):
        runner.add_node(node(f"n{i}", cpu="1"))
    assert runner.schedule(mkpod("600m")) in {f"n{i}" for i in range(5)}
    runner.remove_node(node("n0"))
    runner.add_node(node("n9", cpu="8"))
    seen = {runner.schedule(mkpod("600m")) for _ in range(4)}
    assert "n0" not in seen and "n9" in seen
    assert runner.schedule(mkpod("9")).startswith("0/5 nodes are available: 5 Insufficient")


def test_the_handle_lists_tainted_nodes_from_the_snapshot():
    runner = CycleRunner([ProfilePlugin("Fit", Fit())])
    for i in range(3):
        runner.add_node(node(f"n{i}"))
    handle = runner.framework.handle
    runner.schedule(mkpod())
    assert handle.node_infos_with_taints() == []
    runner.add_node(node("n1", taints=[{"key": "k", "effect": "PreferNoSchedule"}]))
    runner.schedule(mkpod(tolerations=[{"key": "k", "operator": "Exists"}]))
    assert handle.node_infos_with_taints() == [runner.scheduler.snapshot.get("n1")]
    runner.add_node(node("n1"))
    runner.schedule(mkpod())
    assert handle.node_infos_with_taints() == []


def test_the_handle_reports_node_changes_since_a_cursor():
    runner = CycleRunner([ProfilePlugin("Fit", Fit())])
    for i in range(4):
        runner.add_node(node(f"n{i}", cpu="8"))
    handle = runner.framework.handle
    first = runner.schedule(mkpod())
    cursor, names = handle.node_changes(None)
    assert names is None  # no cursor: rescan
    assert handle.node_changes(cursor) == (cursor, frozenset())
    second = runner.schedule(mkpod())
    runner.add_node(node("n3", cpu="4"))
    runner.scheduler.cache.update_snapshot(runner.scheduler.snapshot)
    cursor2, names = handle.node_changes(cursor)
    assert names == {first, second, "n3"} and cursor2 != cursor  # first: assumed after it
    runner.add_node(node("n9"))  # membership: positions move, names unknown
    runner.scheduler.cache.update_snapshot(runner.scheduler.snapshot)
    assert handle.node_changes(cursor2)[1] is None


def test_a_filter_raising_midway_leaves_the_table_consistent():
    """Failures found before a plugin raised are kept as failures (never as feasible)."""
    outcomes = []
    for reuse in (True, False):
        boom = {"on": False}

        class Raising(Fit):
            def filter(self, state, pod, node):
                if boom["on"] and node.name == "n7":
                    raise RuntimeError("plugin bug")
                return Fit.filter(self, state, pod, node)
        random.seed(5)
        runner = CycleRunner([ProfilePlugin("Fit", Raising())], reuse=reuse)
        for i in range(10):
            runner.add_node(node(f"n{i}", cpu="1", labels={"tier": "broken"} if i < 5 else None))
        out = []
        for step in range(12):
            boom["on"] = step == 3
            if step == 3:  # both changed: filtered again, n2 fails, then n7 raises
                runner.add_node(node("n2", cpu="1", labels={"tier": "broken", "v": "2"}))
                runner.add_node(node("n7", cpu="1", labels={"v": "2"}))
            try:
                out.append(runner.schedule(mkpod("400m")))
            except RuntimeError:
                out.append("raised")
        outcomes.append(out)
    assert outcomes[0] == outcomes[1] and "raised" in outcomes[0]
