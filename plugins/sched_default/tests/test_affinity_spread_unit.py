"""Unit tests: InterPodAffinity and PodTopologySpread against NodeInfo fixtures."""

from sched_testlib import feasible, filter_all, node, pod, reasons, scores

from pilothouse.interfaces.scheduler import Code, CycleState, Status
from pilothouse_sched_default import InterPodAffinity, PodTopologySpread

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def term(key, labels, weight=None, **extra):
    t = {"topologyKey": key, "labelSelector": {"matchLabels": labels}, **extra}
    return {"weight": weight, "podAffinityTerm": t} if weight else t


def affinity(required=(), anti=(), preferred=(), preferred_anti=()):
    out = {}
    if required or preferred:
        out["podAffinity"] = {}
        if required:
            out["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = list(required)
        if preferred:
            out["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = list(preferred)
    if anti or preferred_anti:
        out["podAntiAffinity"] = {}
        if anti:
            out["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = list(anti)
        if preferred_anti:
            out["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = \
                list(preferred_anti)
    return out


def cluster(db_on="a1", web_on=None):
    pods = {"a1": [], "a2": [], "b1": []}
    pods[db_on].append(pod("db", labels={"app": "db"}))
    if web_on:
        pods[web_on].append(pod("web0", labels={"app": "web"}, affinity=affinity(
            anti=[term(HOST, {"app": "web"})])))
    zones = {"a1": "a", "a2": "a", "b1": "b"}
    return [node(n, pods=pods[n], labels={ZONE: zones[n]}) for n in ("a1", "a2", "b1")]


def test_required_affinity_follows_the_topology_of_matching_pods():
    p = pod("web", labels={"app": "web"}, affinity=affinity(required=[term(ZONE, {"app": "db"})]))
    statuses = filter_all(InterPodAffinity(), p, cluster(db_on="a1"))
    assert reasons(statuses) == {"b1": ("node(s) didn't match pod affinity rules",)}
    assert statuses["b1"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    host = pod("web", affinity=affinity(required=[term(HOST, {"app": "db"})]))
    assert feasible(InterPodAffinity(), host, cluster(db_on="b1")) == ["b1"]


def test_first_pod_of_a_self_affine_group_may_go_anywhere():
    p = pod("g0", labels={"group": "g"}, affinity=affinity(required=[term(ZONE, {"group": "g"})]))
    assert feasible(InterPodAffinity(), p, cluster()) == ["a1", "a2", "b1"]
    other = pod("x", affinity=affinity(required=[term(ZONE, {"group": "g"})]))
    assert feasible(InterPodAffinity(), other, cluster()) == []


def test_required_anti_affinity_and_existing_pods_anti_affinity():
    p = pod("web1", labels={"app": "web"}, affinity=affinity(anti=[term(ZONE, {"app": "db"})]))
    statuses = filter_all(InterPodAffinity(), p, cluster(db_on="a1"))
    assert reasons(statuses) == {"a1": ("node(s) didn't match pod anti-affinity rules",),
                                 "a2": ("node(s) didn't match pod anti-affinity rules",)}
    assert statuses["a1"].code is Code.UNSCHEDULABLE
    # web0 on a2 refuses other web pods on its host; the new pod has no terms itself
    plain = pod("web1", labels={"app": "web"})
    assert reasons(filter_all(InterPodAffinity(), plain, cluster(web_on="a2"))) == {
        "a2": ("node(s) didn't satisfy existing pods anti-affinity rules",)}


def test_namespaces_limit_which_pods_a_term_sees():
    nodes = [node("n1", pods=[pod("db", namespace="other", labels={"app": "db"})],
                  labels={ZONE: "a"}),
             node("n2", labels={ZONE: "b"})]
    same_ns = pod("p", affinity=affinity(anti=[term(ZONE, {"app": "db"})]))
    assert feasible(InterPodAffinity(), same_ns, nodes) == ["n1", "n2"]
    listed = pod("p", affinity=affinity(anti=[term(ZONE, {"app": "db"}, namespaces=["other"])]))
    assert feasible(InterPodAffinity(), listed, nodes) == ["n2"]
    everywhere = pod("p", affinity=affinity(anti=[term(ZONE, {"app": "db"},
                                                       namespaceSelector={})]))
    assert feasible(InterPodAffinity(), everywhere, nodes) == ["n2"]


def test_pre_filter_skips_pods_without_affinity_in_a_cluster_without_anti_affinity():
    assert InterPodAffinity().pre_filter(CycleState(), pod("p"), cluster()).code is Code.SKIP


def test_pre_filter_extensions_track_added_and_removed_pods():
    plugin = InterPodAffinity()
    p = pod("web1", labels={"app": "web"}, affinity=affinity(anti=[term(HOST, {"app": "db"})]))
    nodes = cluster(db_on="a1")
    state = CycleState()
    plugin.pre_filter(state, p, nodes)
    assert not plugin.filter(state, p, nodes[0]).ok
    victim = nodes[0].pods[0]
    copy, info = state.clone(), nodes[0].clone()
    info.remove_pod(victim)
    plugin.pre_filter_remove_pod(copy, p, victim, info)
    assert plugin.filter(copy, p, info).ok
    assert not plugin.filter(state, p, nodes[0]).ok  # the original state is untouched
    plugin.pre_filter_add_pod(copy, p, victim, info)
    assert not plugin.filter(copy, p, info).ok


def test_preferred_affinity_and_anti_affinity_scores():
    p = pod("web", affinity=affinity(preferred=[term(ZONE, {"app": "db"}, weight=10)],
                                     preferred_anti=[term(HOST, {"app": "db"}, weight=5)]))
    # zone a: +10 for a1 and a2; host a1: -5 -> raw a1 5, a2 10, b1 0 -> min-max
    assert scores(InterPodAffinity(), p, cluster(db_on="a1")) == {"a1": 50, "a2": 100, "b1": 0}


def test_existing_pods_required_affinity_attracts_with_hard_weight():
    nodes = [node("n1", pods=[pod("fan", affinity=affinity(required=[term(HOST, {"app": "x"})]))]),
             node("n2")]
    p = pod("star", labels={"app": "x"})
    assert scores(InterPodAffinity(), p, nodes) == {"n1": 100, "n2": 0}
    off = InterPodAffinity(InterPodAffinity.Options(hardPodAffinityWeight=0))
    assert scores(off, p, nodes) == {}  # nothing to score: PreScore skips


# ---------------------------------------------------------------------- topology spread

def spread(key, max_skew=1, when="DoNotSchedule", labels=None, **extra):
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": labels or {"app": "web"}}, **extra}


def zones_with(counts):
    """Nodes a1, a2 (zone a), b1 (zone b), c1 (zone c) with web pods per node."""
    zones = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
    out = []
    for name, zone in zones.items():
        pods = [pod(f"{name}-w{i}", labels={"app": "web"}) for i in range(counts.get(name, 0))]
        out.append(node(name, pods=pods, labels={ZONE: zone}))
    return out


def test_spread_filter_keeps_skew_within_max_skew():
    p = pod("web", labels={"app": "web"}, spread=[spread(ZONE)])
    nodes = zones_with({"a1": 1, "b1": 1})  # a: 1, b: 1, c: 0
    statuses = filter_all(PodTopologySpread(), p, nodes)
    assert reasons(statuses) == {n: ("node(s) didn't match pod topology spread constraints",)
                                 for n in ("a1", "a2", "b1")}
    assert statuses["a1"].code is Code.UNSCHEDULABLE
    loose = pod("web", labels={"app": "web"}, spread=[spread(ZONE, max_skew=2)])
    assert feasible(PodTopologySpread(), loose, nodes) == ["a1", "a2", "b1", "c1"]


def test_spread_missing_label_and_min_domains():
    nodes = zones_with({"a1": 1}) + [node("nolabel")]
    p = pod("web", labels={"app": "web"}, spread=[spread(ZONE, max_skew=1)])
    statuses = filter_all(PodTopologySpread(), p, nodes)
    assert statuses["nolabel"].reasons == (
        "node(s) didn't match pod topology spread constraints (missing required label)",)
    assert statuses["nolabel"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    # with only zones a and b eligible, minDomains 3 makes the global minimum 0
    two = [n for n in zones_with({"a1": 1, "b1": 1}) if n.name != "c1"]
    loose = pod("web", labels={"app": "web"}, spread=[spread(ZONE, max_skew=1)])
    assert feasible(PodTopologySpread(), loose, two) == ["a1", "a2", "b1"]
    strict = pod("web", labels={"app": "web"}, spread=[spread(ZONE, max_skew=1, minDomains=3)])
    assert feasible(PodTopologySpread(), strict, two) == []


def test_spread_honours_node_affinity_by_default():
    nodes = zones_with({"a1": 1, "b1": 1})  # zone c is empty but excluded by the selector
    p = pod("web", labels={"app": "web"}, spread=[spread(ZONE)],
            affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": ZONE, "operator": "In", "values": ["a", "b"]}]}]}}})
    assert feasible(PodTopologySpread(), p, nodes) == ["a1", "a2", "b1", "c1"]
    ignore = pod("web", labels={"app": "web"},
                 spread=[spread(ZONE, nodeAffinityPolicy="Ignore")],
                 affinity=p["spec"]["affinity"])
    assert feasible(PodTopologySpread(), ignore, nodes) == ["c1"]


def test_match_label_keys_split_counting_by_revision():
    nodes = [node("n1", pods=[pod("old", labels={"app": "web", "rev": "1"})], labels={ZONE: "a"}),
             node("n2", labels={ZONE: "b"})]
    p = pod("new", labels={"app": "web", "rev": "2"},
            spread=[spread(ZONE, matchLabelKeys=["rev"])])
    assert feasible(PodTopologySpread(), p, nodes) == ["n1", "n2"]


def test_spread_score_prefers_emptier_domains():
    p = pod("web", labels={"app": "web"},
            spread=[spread(ZONE, when="ScheduleAnyway"), spread(HOST, when="ScheduleAnyway")])
    result = scores(PodTopologySpread(), p, zones_with({"a1": 2, "a2": 1, "b1": 1}))
    assert result["c1"] == 100
    assert result["b1"] > result["a2"] > result["a1"]


def test_system_default_constraints_need_a_selecting_owner():
    plugin = PodTopologySpread()
    assert plugin.pre_score(CycleState(), pod("p", labels={"app": "web"}),
                            zones_with({})).code is Code.SKIP
    listed = PodTopologySpread(PodTopologySpread.Options(defaultingType="List", defaultConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]))
    assert listed.pre_filter(CycleState(), pod("p"), zones_with({})).code is Code.SKIP


def test_spread_extensions_update_counts():
    plugin = PodTopologySpread()
    p = pod("web", labels={"app": "web"}, spread=[spread(ZONE)])
    nodes = zones_with({"a1": 1, "b1": 1, "c1": 1})
    state = CycleState()
    plugin.pre_filter(state, p, nodes)
    assert plugin.filter(state, p, nodes[0]).ok
    copy = state.clone()
    extra = pod("extra", labels={"app": "web"})
    plugin.pre_filter_add_pod(copy, p, extra, nodes[0])
    assert plugin.filter(copy, p, nodes[0]) == Status.unschedulable(
        "node(s) didn't match pod topology spread constraints")
    assert plugin.filter(state, p, nodes[0]).ok
