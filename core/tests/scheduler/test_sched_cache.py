"""The scheduler cache: NodeInfo accounting, assumed pods, incremental snapshots."""

from pilothouse.interfaces.scheduler import (DEFAULT_MEMORY_REQUEST, NodeInfo, pod_requests,
                                             resource_amounts)
from pilothouse.scheduler._cache import Cache, Snapshot


def node(name, cpu="4", memory="8Gi", images=()):
    return {"metadata": {"name": name, "labels": {}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "images": [{"names": [i], "sizeBytes": 100} for i in images]}}


def pod(name, cpu=None, memory=None, node_name=None, uid=None, **spec):
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    c = {"name": "c", "image": "x"}
    if req:
        c["resources"] = {"requests": req}
    s = {"containers": [c], **spec}
    if node_name:
        s["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default", "uid": uid or f"u-{name}"},
            "spec": s}


def test_resource_amounts_units():
    assert resource_amounts({"cpu": "1.5", "memory": "1Gi", "pods": "110",
                             "example.com/gpu": "2"}) == {
        "cpu": 1500, "memory": 1024 ** 3, "pods": 110, "example.com/gpu": 2}


def test_pod_requests_take_init_containers_sidecars_and_overhead_into_account():
    p = pod("p", cpu="500m", memory="1Gi")
    p["spec"]["initContainers"] = [
        {"name": "sidecar", "restartPolicy": "Always",
         "resources": {"requests": {"cpu": "100m"}}},
        {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "100Mi"}}},
    ]
    p["spec"]["overhead"] = {"cpu": "10m"}
    # max(500m + 100m sidecar, 2 + 100m sidecar while migrating) + 10m overhead
    assert pod_requests(p) == {"cpu": 2110, "memory": 1024 ** 3}
    empty = pod("e")
    assert pod_requests(empty) == {}
    assert pod_requests(empty, non_zero=True) == {"cpu": 100, "memory": DEFAULT_MEMORY_REQUEST}


def test_nodeinfo_add_remove_clone():
    info = NodeInfo(node("n1"), [pod("a", cpu="1")])
    assert info.requested == {"cpu": 1000}
    assert info.allocatable["cpu"] == 4000
    copy = info.clone()
    copy.add_pod(pod("b", cpu="500m", affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "x"}]}}))
    assert copy.requested["cpu"] == 1500 and info.requested["cpu"] == 1000
    assert len(copy.pods_with_required_anti_affinity) == 1 and not info.pods_with_affinity
    assert copy.remove_pod(pod("b"))
    assert copy.requested["cpu"] == 1000 and not copy.pods_with_affinity
    assert not copy.remove_pod(pod("zzz"))


def test_assumed_pod_counts_until_forgotten_or_confirmed_elsewhere():
    cache, snap = Cache(), Snapshot()
    cache.add_node(node("n1"))
    cache.add_node(node("n2"))
    p = pod("p", cpu="1")
    cache.assume_pod({**p, "spec": {**p["spec"], "nodeName": "n1"}}, "n1")
    cache.update_snapshot(snap)
    assert snap.get("n1").requested["cpu"] == 1000
    cache.forget_pod(p)
    cache.update_snapshot(snap)
    assert snap.get("n1").requested.get("cpu") == 0
    # assumed on n1 but the informer says n2 (another scheduler won): follow the API
    cache.assume_pod(p, "n1")
    cache.add_pod(pod("p", cpu="1", node_name="n2"))
    cache.update_snapshot(snap)
    assert snap.get("n1").requested.get("cpu") == 0
    assert snap.get("n2").requested["cpu"] == 1000
    assert not cache.is_assumed(p)
    cache.forget_pod(p)  # no-op once confirmed
    assert cache.node_of(p) == "n2"


def test_unconfirmed_assumption_expires_after_binding_finished():
    now = [0.0]
    cache = Cache(assumed_ttl=30, clock=lambda: now[0])
    cache.add_node(node("n1"))
    p = pod("p", cpu="1")
    cache.assume_pod(p, "n1")
    now[0] = 100
    assert cache.cleanup_expired() == 0  # binding not finished: never expires
    cache.finish_binding(p)
    now[0] = 120
    assert cache.cleanup_expired() == 0
    now[0] = 131
    assert cache.cleanup_expired() == 1
    assert cache.infos["n1"].requested.get("cpu") == 0


def test_snapshot_copies_only_changed_nodes():
    cache, snap = Cache(), Snapshot()
    for i in range(5):
        cache.add_node(node(f"n{i}"))
    cache.update_snapshot(snap)
    before = list(snap.nodes)
    cache.add_pod(pod("p", cpu="1", node_name="n3"))
    cache.update_snapshot(snap)
    assert [a is b for a, b in zip(before, snap.nodes)] == [True, True, True, False, True]
    assert snap.nodes[3].requested["cpu"] == 1000
    assert before[3].requested.get("cpu") is None  # the old snapshot entry was not touched


def test_pods_of_unknown_nodes_wait_for_the_node_and_removed_nodes_leave_the_snapshot():
    cache, snap = Cache(), Snapshot()
    cache.add_pod(pod("early", cpu="1", node_name="late"))
    cache.update_snapshot(snap)
    assert len(snap) == 0
    cache.add_node(node("late"))
    cache.update_snapshot(snap)
    assert snap.get("late").requested["cpu"] == 1000
    cache.remove_node(node("late"))
    cache.update_snapshot(snap)
    assert len(snap) == 0 and snap.get("late") is None


def test_image_counts_follow_nodes():
    cache = Cache()
    cache.add_node(node("n1", images=["nginx"]))
    cache.add_node(node("n2", images=["nginx:latest", "redis:7"]))
    assert cache.image_nodes == {"nginx:latest": 2, "redis:7": 1}
    cache.update_node(node("n2", images=["redis:7"]))
    cache.remove_node(node("n1"))
    assert cache.image_nodes == {"redis:7": 1}


def test_snapshot_lists_the_nodes_with_pod_affinity_incrementally():
    cache, snap = Cache(), Snapshot()
    for i in range(4):
        cache.add_node(node(f"n{i}"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    soft = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": {"labelSelector": {}, "topologyKey": "zone"}}]}}
    cache.update_snapshot(snap)
    assert snap.with_pod_affinity() == [] and snap.with_required_anti_affinity() == []
    cache.add_pod(pod("x", node_name="n3", affinity=anti))
    cache.add_pod(pod("y", node_name="n1", affinity=soft))
    cache.add_pod(pod("z", node_name="n2"))
    cache.update_snapshot(snap)
    assert [i.name for i in snap.with_pod_affinity()] == ["n1", "n3"]
    assert [i.name for i in snap.with_required_anti_affinity()] == ["n3"]
    assert all(i is snap.get(i.name) for i in snap.with_pod_affinity())
    cache.remove_pod(pod("x", node_name="n3"))
    cache.remove_node(node("n1"))
    cache.update_snapshot(snap)
    assert snap.with_pod_affinity() == [] and snap.with_required_anti_affinity() == []
    cache.add_node(node("n1"))
    cache.update_snapshot(snap)
    assert [i.name for i in snap.with_pod_affinity()] == ["n1"]  # its pod is still there


def test_snapshot_lists_put_replaced_node_infos_in_place_and_sort_only_for_new_members():
    cache, snap = Cache(), Snapshot()
    for i in range(5):
        n = node(f"n{i}")
        if i % 2 == 0:
            n["spec"] = {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}
        cache.add_node(n)
    cache.update_snapshot(snap)
    before = snap.with_taints()
    assert [i.name for i in before] == ["n0", "n2", "n4"]
    cache.add_pod(pod("p", cpu="1", node_name="n2"))  # n2 gets a new NodeInfo
    cache.update_snapshot(snap)
    after = snap.with_taints()
    assert [i.name for i in after] == ["n0", "n2", "n4"]
    assert all(i is snap.get(i.name) for i in after)
    assert before[1] is not after[1] and before[1].name == "n2"  # an old list is left as it was
    untainted = node("n2")
    cache.update_node(untainted)  # n2 leaves the list, n1 joins it
    tainted = node("n1")
    tainted["spec"] = {"taints": [{"key": "k", "effect": "NoSchedule"}]}
    cache.update_node(tainted)
    cache.update_snapshot(snap)
    assert [i.name for i in snap.with_taints()] == ["n0", "n1", "n4"]
    assert all(i is snap.get(i.name) for i in snap.with_taints())


def _version(p, rv, **status):
    """``p`` as a later watch event shows it: another resourceVersion and status."""
    return {**p, "metadata": {**p["metadata"], "resourceVersion": rv},
            "status": {**(p.get("status") or {}), **status}}


def test_confirming_an_unchanged_pod_keeps_the_accounting_and_the_generation():
    cache, snap = Cache(), Snapshot()
    cache.add_node(node("n1"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    p = pod("p", cpu="1", node_name="n1", affinity=anti)
    cache.assume_pod(p, "n1")
    cache.update_snapshot(snap)
    generation, copy = snap.get("n1").generation, snap.get("n1")
    # the binding's confirmation (generation bumped by the API server: spec unchanged)
    bound = _version(p, "2", conditions=[{"type": "PodScheduled", "status": "True"}])
    bound["metadata"]["generation"] = 2
    cache.add_pod(bound)
    assert not cache.is_assumed(p) and cache.node_of(p) == "n1"
    info = cache.infos["n1"]
    assert info.generation == generation and info.requested == {"cpu": 1000}
    assert info.pods[0] is bound and info.pods_with_affinity[0] is bound
    assert info.pods_with_required_anti_affinity[0] is bound
    cache.update_snapshot(snap)
    # the snapshot's NodeInfo keeps its generation and gets the newer objects
    assert snap.get("n1") is copy and copy.generation == generation
    assert copy.pods == [bound] and copy.pods[0] is bound
    assert copy.pods_with_required_anti_affinity[0] is bound
    # a kubelet's Running report: the same
    running = _version(bound, "3", phase="Running", startTime="2026-01-01T00:00:00Z")
    cache.update_pod(running)
    cache.update_snapshot(snap)
    assert snap.get("n1").generation == generation and snap.get("n1").pods[0] is running
    # a confirmed pod no longer expires
    cache.finish_binding(running)
    cache.clock = lambda: 1e12
    assert cache.cleanup_expired() == 0


def test_a_pod_update_scheduling_reads_rebuilds_the_node():
    cache, snap = Cache(), Snapshot()
    cache.add_node(node("n1"))
    cache.add_node(node("n2"))
    p = pod("p", cpu="1", node_name="n1")
    cache.add_pod(p)
    cache.update_snapshot(snap)
    generation = snap.get("n1").generation
    relabelled = _version(p, "2")
    relabelled["metadata"]["labels"] = {"app": "x"}
    cache.update_pod(relabelled)
    cache.update_snapshot(snap)
    assert snap.get("n1").generation != generation
    assert snap.get("n1").pods[0]["metadata"]["labels"] == {"app": "x"}
    generation = snap.get("n1").generation
    terminating = _version(relabelled, "3")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    cache.update_pod(terminating)
    cache.update_snapshot(snap)
    assert snap.get("n1").generation != generation
    resized = pod("p", cpu="2", node_name="n1")
    resized["metadata"] = terminating["metadata"]
    cache.update_pod(resized)
    cache.update_snapshot(snap)
    assert snap.get("n1").requested["cpu"] == 2000
    moved = pod("p", cpu="2", node_name="n2")
    cache.update_pod(moved)
    cache.update_snapshot(snap)
    assert snap.get("n1").requested.get("cpu") == 0 and snap.get("n2").requested["cpu"] == 2000


def test_same_for_scheduling_ignores_only_status_and_bookkeeping_metadata():
    from pilothouse.scheduler._cache import same_for_scheduling
    p = pod("p", cpu="1", node_name="n1")
    p["metadata"].update(resourceVersion="1", generation=1, labels={"a": "b"})
    assert same_for_scheduling(p, p)
    later = _version(p, "9", phase="Running")
    later["metadata"].update(generation=2, managedFields=[{"manager": "kubelet"}])
    assert same_for_scheduling(p, later) and same_for_scheduling(later, p)
    for key, value in (("labels", {"a": "c"}), ("annotations", {"x": "y"}),
                       ("deletionTimestamp", "2026-01-01T00:00:00Z"),
                       ("ownerReferences", [{"kind": "ReplicaSet", "name": "r"}])):
        other = _version(p, "9")
        other["metadata"][key] = value
        assert not same_for_scheduling(p, other) and not same_for_scheduling(other, p), key
    other = _version(p, "9")
    other["spec"] = {**p["spec"], "priority": 10}
    assert not same_for_scheduling(p, other)


def test_snapshot_change_feed_names_the_replaced_positions():
    cache, snap = Cache(), Snapshot()
    for i in range(3):
        cache.add_node(node(f"n{i}"))
    cache.update_snapshot(snap)
    epoch, position = snap.epoch, snap.position
    assert snap.names == ["n0", "n1", "n2"] and snap.index_of("n2") == 2
    assert snap.changes_since(epoch, position) == []
    cache.add_pod(pod("a", cpu="1", node_name="n2"))
    cache.update_snapshot(snap)
    assert snap.changes_since(epoch, position) == [2]
    mid = snap.position
    cache.update_node(node("n0", cpu="8"))
    cache.update_snapshot(snap)
    assert snap.changes_since(epoch, position) == [2, 0]
    assert snap.changes_since(epoch, mid) == [0]
    assert snap.changes_since(epoch + 999, mid) is None
    cache.add_node(node("n3"))  # positions may move: a new epoch, the old feed is gone
    cache.update_snapshot(snap)
    assert snap.epoch != epoch and snap.changes_since(epoch, mid) is None
    assert snap.names == ["n0", "n1", "n2", "n3"]
    epoch, position = snap.epoch, snap.position
    for k in range(3 * Snapshot.MIN_FEED):  # a long feed is trimmed; far-behind readers learn it
        cache.update_node(node("n1", cpu=str(1 + k % 5)))
        cache.update_snapshot(snap)
    assert snap.changes_since(epoch, position) is None
    assert snap.changes_since(snap.epoch, snap.position - 5) == [1] * 5
