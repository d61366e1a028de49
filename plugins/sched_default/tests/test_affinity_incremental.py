"""Unit tests: InterPodAffinity's counts kept across cycles give the same answers as counting
from scratch, its no-affinity fast path, and the ``sign`` answers of InterPodAffinity and
PodTopologySpread."""

import random

import pytest
from sched_testlib import node, pod

from pilothouse.interfaces.scheduler import Code, CycleState, Status
from pilothouse.scheduler.testing import node as node_obj
from pilothouse_sched_default import InterPodAffinity, PodTopologySpread
from pilothouse_sched_default._helpers import PodAffinityInfo

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
NAMESPACES = {"default": {"metadata": {"name": "default", "labels": {}}},
              "other": {"metadata": {"name": "other", "labels": {"team": "x"}}}}


class Handle:
    """The parts of the framework Handle these plugins use: the snapshot and informers."""

    def __init__(self, nodes, informers=None, with_affinity=False):
        self.nodes = nodes
        self.informers = informers or {}
        if with_affinity:  # the optional fast lookup a host may offer
            self.node_infos_with_pod_affinity = \
                lambda: [n for n in self.nodes if n.pods_with_affinity]

    def node_infos(self):
        return self.nodes

    def informer(self, api_version, kind):
        return self.informers.get(kind, Lister({}))


class Lister:
    """A cache-only informer: ``get(key)``, ``list()`` and indexes."""

    def __init__(self, objects):
        self.cache = dict(objects)
        self.indexers = {}

    def get(self, key):
        return self.cache.get(key)

    def list(self):
        return list(self.cache.values())

    def add_index(self, name, func):
        self.indexers[name] = func

    def by_index(self, name, value):
        return [o for o in self.cache.values() if value in self.indexers[name](o)]


def plugin_with(nodes, namespaces=NAMESPACES, **options):
    plugin = InterPodAffinity(InterPodAffinity.Options(**options))
    handle = Handle(nodes, {"Namespace": Lister(namespaces)})
    plugin.set_handle(handle)
    return plugin, handle


# ---------------------------------------------------------------------- a reference

def same_domain(a, b, key):
    return key in a.labels and a.labels.get(key) == b.labels.get(key)


def reference_filter(p, nodes, ns_labels):
    """Kubernetes' InterPodAffinity Filter, pod by pod, node by node."""
    info = PodAffinityInfo.of(p)
    placed = [(m, e) for m in nodes for e in m.pods]

    def matches_all(terms, e):
        return bool(terms) and all(t.matches(e, ns_labels) for t in terms)

    any_match = any(matches_all(info.required_affinity, e) and
                    any(t.topology_key in m.labels for t in info.required_affinity)
                    for m, e in placed)
    out = {}
    for n in nodes:
        status = Status()
        if info.required_affinity:
            if any(t.topology_key not in n.labels for t in info.required_affinity):
                status = Status.unschedulable("node(s) didn't match pod affinity rules",
                                              resolvable=False)
            elif not all(any(same_domain(m, n, t.topology_key) and
                             matches_all(info.required_affinity, e) for m, e in placed)
                         for t in info.required_affinity):
                if any_match or not matches_all(info.required_affinity, p):
                    status = Status.unschedulable("node(s) didn't match pod affinity rules",
                                                  resolvable=False)
        if status.ok and any(same_domain(m, n, t.topology_key) and t.matches(e, ns_labels)
                             for t in info.required_anti for m, e in placed):
            status = Status.unschedulable("node(s) didn't match pod anti-affinity rules")
        if status.ok and any(same_domain(m, n, t.topology_key) and t.matches(p, ns_labels)
                             for m, e in placed
                             for t in PodAffinityInfo.of(e).required_anti):
            status = Status.unschedulable(
                "node(s) didn't satisfy existing pods anti-affinity rules")
        out[n.name] = status
    return out


def reference_scores(p, nodes, ns_labels, hard=1, ignore_existing=False):
    """Raw InterPodAffinity scores: weights of matching terms over each node's domains."""
    info = PodAffinityInfo.of(p)
    if ignore_existing and not (info.preferred_affinity or info.preferred_anti):
        return dict.fromkeys((n.name for n in nodes), 0)  # kube-scheduler skips then
    out = {}
    for n in nodes:
        total = 0
        for m in nodes:
            for e in m.pods:
                other = PodAffinityInfo.of(e)
                weighted = [(t, t.weight, e) for t in info.preferred_affinity] + \
                           [(t, -t.weight, e) for t in info.preferred_anti] + \
                           [(t, hard, p) for t in other.required_affinity]
                if not ignore_existing:
                    weighted += [(t, t.weight, p) for t in other.preferred_affinity] + \
                                [(t, -t.weight, p) for t in other.preferred_anti]
                for t, w, target in weighted:
                    if same_domain(m, n, t.topology_key) and t.matches(target, ns_labels):
                        total += w
        out[n.name] = total
    return out


def run(plugin, p, nodes):
    """One cycle as the framework runs it: (filter statuses, raw scores, sign)."""
    state = CycleState()
    s = plugin.pre_filter(state, p, nodes)
    statuses = {n.name: Status() if s.code is Code.SKIP else plugin.filter(state, p, n)
                for n in nodes}
    sig = plugin.sign(state, p)
    s = plugin.pre_score(state, p, nodes)
    raw = {n.name: 0 if s.code is Code.SKIP else plugin.score(state, p, n) for n in nodes}
    return statuses, raw, sig


# ---------------------------------------------------------------------- a mixed cluster

def term(key, app, weight=None, **extra):
    t = {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}, **extra}
    return {"weight": weight, "podAffinityTerm": t} if weight else t


def random_affinity(rnd):
    def some_term(weight=None):
        extra = rnd.choice([{}, {}, {"namespaces": ["other"]}, {"namespaceSelector": {}},
                            {"namespaceSelector": {"matchLabels": {"team": "x"}}}])
        return term(rnd.choice([HOST, ZONE]), rnd.choice(["web", "db", "cache"]),
                    weight, **extra)

    out = {}
    if rnd.random() < 0.25:
        out.setdefault("podAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = \
            [some_term()]
    if rnd.random() < 0.4:
        out.setdefault("podAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = \
            [some_term(rnd.randint(1, 20))]
    if rnd.random() < 0.5:
        out.setdefault("podAntiAffinity", {})[
            "requiredDuringSchedulingIgnoredDuringExecution"] = [some_term()]
    if rnd.random() < 0.4:
        out.setdefault("podAntiAffinity", {})[
            "preferredDuringSchedulingIgnoredDuringExecution"] = [some_term(rnd.randint(1, 20))]
    return out


def random_pod(rnd, i, with_affinity=0.5):
    return pod(f"p{i}", namespace=rnd.choice(["default", "default", "other"]),
               labels={"app": rnd.choice(["web", "db", "cache"])},
               affinity=random_affinity(rnd) if rnd.random() < with_affinity else None)


def placed(p, name):
    return dict(p, spec={**p["spec"], "nodeName": name})


def random_node(rnd, name):
    zone = rnd.choice(["a", "b", "c", None])
    return node_obj(name, labels={ZONE: zone} if zone else {})


def change(rnd, nodes, i):
    """One change as the snapshot makes it: a changed node is a new NodeInfo."""
    what = rnd.random()
    k = rnd.randrange(len(nodes))
    if what < 0.45:
        info = nodes[k].clone()
        info.add_pod(placed(random_pod(rnd, i), info.name))
        nodes[k] = info
    elif what < 0.65 and nodes[k].pods:
        info = nodes[k].clone()
        info.remove_pod(rnd.choice(info.pods))
        nodes[k] = info
    elif what < 0.8:
        info = nodes[k].clone()
        info.set_node(random_node(rnd, info.name))
        nodes[k] = info
    elif what < 0.9 and len(nodes) > 3:
        del nodes[k]
    else:
        nodes.append(node(f"extra{i}", labels={ZONE: rnd.choice("abc")}))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("options", [{}, {"hardPodAffinityWeight": 7},
                                     {"ignorePreferredTermsOfExistingPods": True}])
def test_counts_kept_across_cycles_match_counting_from_scratch(seed, options):
    rnd = random.Random(seed)
    nodes = []
    for i in range(8):
        info = node(f"n{i}")
        info.set_node(random_node(rnd, f"n{i}"))
        for j in range(rnd.randint(0, 3)):
            info.add_pod(placed(random_pod(rnd, f"{i}-{j}"), info.name))
        nodes.append(info)
    kept, handle = plugin_with(nodes, **options)
    namespaces = {k: dict(v) for k, v in NAMESPACES.items()}
    kept.set_handle(Handle(nodes, {"Namespace": Lister(namespaces)}, with_affinity=seed % 2))

    def ns_labels(name):
        return namespaces[name]["metadata"].get("labels") or {}

    for step in range(30):
        change(rnd, nodes, f"c{step}")
        if step == 15:  # namespace labels change without any node changing
            namespaces["other"] = {"metadata": {"name": "other", "labels": {}}}
            kept._namespaces.cache = namespaces
        for k in range(3):
            p = random_pod(rnd, f"in{step}-{k}", with_affinity=0.7)
            fresh, _ = plugin_with(nodes, namespaces, **options)
            got = run(kept, p, nodes)
            assert got == run(fresh, p, nodes)
            if got[2] == ("none",):  # signed: every node passes, nothing scores
                assert all(s.ok for s in got[0].values()) and not any(got[1].values())
            elif got[2] is not None:  # signed node-locally: each node decides alone
                assert got[2][0] == "hostname-local" and not any(got[1].values())
                assert got[0] == {n.name: reference_filter(p, [n], ns_labels)[n.name]
                                  for n in nodes}
            assert got[0] == reference_filter(p, nodes, ns_labels)
            assert got[1] == reference_scores(
                p, nodes, ns_labels, options.get("hardPodAffinityWeight", 1),
                options.get("ignorePreferredTermsOfExistingPods", False))


# ---------------------------------------------------------------------- anti-affinity

def anti_pod(name):
    return pod(name, labels={"color": "anti"},
               affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                   term(HOST, "x") | {"labelSelector": {"matchLabels": {"color": "anti"}}}]}})


def test_anti_affinity_counts_follow_node_changes_recounting_only_changed_nodes():
    nodes = [node(f"n{i}") for i in range(6)]
    plugin, _ = plugin_with(nodes)
    recounts = []
    count = plugin._existing.count
    plugin._existing.count = lambda n: recounts.append(n.name) or count(n)
    names = [n.name for n in nodes]
    for i in range(6):
        p = anti_pod(f"a{i}")
        free = [n.name for n in nodes if not n.pods]
        statuses, _, sig = run(plugin, p, nodes)
        assert [name for name, s in statuses.items() if s.ok] == free
        assert sig[0] == "hostname-local"  # one node per hostname: each node decides alone
        k = names.index(free[0])
        info = nodes[k].clone()
        info.add_pod(placed(p, info.name))
        nodes[k] = info
        if i:  # after the first cycle, only the node that changed is recounted
            recounts.clear()
            statuses, _, _ = run(plugin, pod("plain"), nodes)
            assert recounts == [info.name]
    assert not any(s.ok for s in run(plugin, anti_pod("late"), nodes)[0].values())
    # a pod leaves n3: n3 (only) takes an anti pod again; an unrelated pod is not refused
    info = nodes[3].clone()
    info.remove_pod(info.pods[0])
    nodes[3] = info
    statuses = run(plugin, anti_pod("again"), nodes)[0]
    assert [name for name, s in statuses.items() if s.ok] == ["n3"]
    assert all(s.ok for s in run(plugin, pod("plain2"), nodes)[0].values())


def test_preemption_what_ifs_do_not_change_the_kept_counts():
    nodes = [node("n0", pods=[anti_pod("a0")]), node("n1", pods=[anti_pod("a1")]), node("n2")]
    plugin, _ = plugin_with(nodes)
    p = anti_pod("new")
    state = CycleState()
    plugin.pre_filter(state, p, nodes)
    assert [plugin.filter(state, p, n).ok for n in nodes] == [False, False, True]
    victim = nodes[0].pods[0]
    info = nodes[0].clone()
    info.remove_pod(victim)
    # the framework clones the state for what-ifs; changing the cycle's own state must not
    # leak into the counts either
    for what_if in (state.clone(), state):
        plugin.pre_filter_remove_pod(what_if, p, victim, info)
        assert plugin.filter(what_if, p, info).ok
        assert not plugin.filter(what_if, p, nodes[1]).ok
    statuses = run(plugin, p, nodes)[0]
    assert [s.ok for s in statuses.values()] == [False, False, True]
    copy = state.clone()
    plugin.pre_filter_add_pod(copy, p, anti_pod("other"), nodes[2])
    assert not plugin.filter(copy, p, nodes[2]).ok
    assert [s.ok for s in run(plugin, p, nodes)[0].values()] == [False, False, True]


# ---------------------------------------------------------------------- fast path and sign

class Untouchable(list):
    """A node list that fails the test if a plugin walks it."""

    def __iter__(self):
        raise AssertionError("the plugin walked every node")


def test_no_affinity_anywhere_skips_without_walking_the_nodes():
    nodes = Untouchable([node("n0", pods=[pod("x")]), node("n1")])
    plugin = InterPodAffinity()
    handle = Handle(nodes, with_affinity=True)
    handle.node_infos_with_pod_affinity = lambda: []
    plugin.set_handle(handle)
    state = CycleState()
    assert plugin.pre_filter(state, pod("p"), nodes).code is Code.SKIP
    assert plugin.sign(state, pod("p")) == ("none",)
    assert plugin.pre_score(state, pod("p"), nodes).code is Code.SKIP


def test_sign_of_inter_pod_affinity():
    plain = [node("n0", pods=[pod("x", labels={"app": "db"})]), node("n1")]
    plugin = InterPodAffinity()  # no handle: one pass over the nodes
    state = CycleState()
    assert plugin.pre_filter(state, pod("p"), plain).code is Code.SKIP
    assert plugin.sign(state, pod("p")) == ("none",)
    assert plugin.sign(CycleState(), pod("q")) is None  # no PreFilter this cycle: no promise
    # the pod has terms (even only preferred ones): results depend on other nodes
    preferring = pod("p", affinity={"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [term(ZONE, "db", 5)]}})
    state = CycleState()
    assert plugin.pre_filter(state, preferring, plain).code is Code.SKIP
    assert plugin.sign(state, preferring) is None
    # existing pods have affinity, but no term of theirs selects this pod
    def fan(kind, app):
        return pod(f"fan-{app}", affinity={kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [term(HOST, app)]}})

    others = plain + [node("n2", pods=[fan("podAffinity", "web"),
                                       fan("podAntiAffinity", "cache")])]
    state = CycleState()
    assert plugin.pre_filter(state, pod("p", labels={"app": "db"}), others).code is Code.SKIP
    assert plugin.sign(state, pod("p", labels={"app": "db"})) == ("none",)
    # one does: its required affinity scores (hardPodAffinityWeight) ...
    web = pod("w", labels={"app": "web"})
    state = CycleState()
    assert plugin.pre_filter(state, web, others).code is Code.SKIP
    assert plugin.sign(state, web) is None
    assert plugin.pre_score(state, web, others).code is Code.SUCCESS
    # ... its required anti-affinity filters
    cache = pod("c", labels={"app": "cache"})
    state = CycleState()
    assert plugin.pre_filter(state, cache, others).code is Code.SUCCESS
    local = plugin.sign(state, cache)  # over hostnames: node-local
    assert local[0] == "hostname-local"
    # the same term over zones: no longer node-local
    zonal = plain + [node("n2", labels={ZONE: "a"}, pods=[pod("fan-z", affinity={
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term(ZONE, "cache")]}})])]
    state = CycleState()
    assert plugin.pre_filter(state, cache, zonal).code is Code.SUCCESS
    assert plugin.sign(state, cache) is None
    # two nodes with one hostname: not node-local either
    twins = others + [node("n3", labels={HOST: "n2"})]
    state = CycleState()
    assert plugin.pre_filter(state, cache, twins).code is Code.SUCCESS
    assert plugin.sign(state, cache) is None


def test_sign_of_pod_topology_spread():
    nodes = [node("n0"), node("n1")]
    plugin = PodTopologySpread()
    state = CycleState()
    assert plugin.pre_filter(state, pod("p"), nodes).code is Code.SKIP
    assert plugin.sign(state, pod("p")) == ("none",)
    spread = pod("p", labels={"app": "web"}, spread=[{
        "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "web"}}}])
    assert plugin.sign(CycleState(), spread) is None
    # system defaults apply to a pod a Service in its namespace selects
    services = Lister({"default/web": {"metadata": {"name": "web", "namespace": "default"},
                                       "spec": {"selector": {"app": "web"}}},
                       "other/db": {"metadata": {"name": "db", "namespace": "other"},
                                    "spec": {"selector": {"app": "db"}}}})
    plugin.set_handle(Handle(nodes, {"Service": services}))
    assert services.indexers  # Services are looked up by namespace
    state = CycleState()
    web = pod("w", labels={"app": "web"})
    assert plugin.pre_filter(state, web, nodes).code is Code.SKIP
    assert plugin.sign(state, web) is None
    assert plugin.pre_score(state, web, nodes).code is Code.SUCCESS
    state = CycleState()
    db = pod("d", labels={"app": "db"})  # the db Service is in another namespace
    assert plugin.pre_filter(state, db, nodes).code is Code.SKIP
    assert plugin.sign(state, db) == ("none",)
    assert plugin.pre_score(state, db, nodes).code is Code.SKIP
