"""End to end: a real API server (memory store), the real scheduler host in-process with the
default profile (these plugins, by entry point), Node objects created through the API (no
node agent: a node is an object with capacity and allocatable)."""

import time

import pytest

from pilothouse.scheduler.testing import SchedulerThread, node, pod, priority_class

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.fixture
def cluster(start_apiserver):
    """The default profile's scheduler against a fresh API server."""
    api = start_apiserver({"store": {"plugin": "memory"}})
    sched = SchedulerThread(api.url, config_doc={}).start()
    yield sched
    sched.stop()


def bound_nodes(s, names):
    return {n: s.wait_bound(n) for n in names}


def test_default_profile_is_loaded_in_order(cluster):
    fw = cluster.scheduler.frameworks["default-scheduler"]
    assert [name for name, _ in fw.filter] == [
        "NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity", "NodeResourcesFit",
        "PodTopologySpread", "InterPodAffinity"]
    assert [(name, w) for name, _, _, w in fw.score] == [
        ("TaintToleration", 3), ("NodeAffinity", 2), ("NodeResourcesFit", 1),
        ("PodTopologySpread", 2), ("InterPodAffinity", 2), ("ImageLocality", 1)]


def test_resources_fit_and_least_allocated_spreads(cluster):
    s = cluster
    s.create(node("small", cpu="1", memory="2Gi"))
    s.create(node("big-a", cpu="4", memory="8Gi"))
    s.create(node("big-b", cpu="4", memory="8Gi"))
    s.create(pod("wide", cpu="3", memory="1Gi"))
    assert s.wait_bound("wide") in ("big-a", "big-b")
    s.create(pod("second", cpu="2", memory="1Gi"))
    # LeastAllocated: the empty big node, not the one with 3 cpu taken (nor the small one)
    assert s.wait_bound("second") == ({"big-a", "big-b"} - {s.wait_bound("wide")}).pop()
    s.create(pod("memory-hog", memory="7Gi"))
    assert s.wait_bound("memory-hog") in ("big-a", "big-b")
    s.create(pod("too-big", cpu="5"))
    msg = s.wait_unschedulable("too-big")
    assert msg == ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
                   "available: 3 No preemption victims found for incoming pod.")


def test_pod_count_is_a_resource(cluster):
    s = cluster
    s.create(node("tiny", pods=2))
    for i in range(3):
        s.create(pod(f"p{i}"))
    s.wait_for(lambda: sum(1 for i in range(3) if (s.get_pod(f"p{i}")["spec"].get("nodeName")))
               == 2)
    pending = [f"p{i}" for i in range(3) if not s.get_pod(f"p{i}")["spec"].get("nodeName")]
    assert s.wait_unschedulable(pending[0]).startswith(
        "0/1 nodes are available: 1 Too many pods.")


def test_the_issue_example_message_event_and_retry_on_node_add(cluster):
    s = cluster
    s.create(node("n1", cpu="1"))
    s.create(node("gpu-1", cpu="8", taints=[GPU_TAINT]))
    s.create(node("gpu-2", cpu="8", taints=[GPU_TAINT]))
    s.create(pod("filler", cpu="800m"))
    assert s.wait_bound("filler") == "n1"
    s.create(pod("web", cpu="500m"))
    expected = ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated "
                "taint {dedicated: gpu}. preemption: 0/3 nodes are available: 1 No preemption "
                "victims found for incoming pod, 2 Preemption is not helpful for scheduling.")
    assert s.wait_unschedulable("web") == expected
    cond = s.scheduled_condition("web")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    events = s.wait_for(lambda: [e for e in s.events_for("web")
                                 if e["reason"] == "FailedScheduling"])
    assert events[0]["message"] == expected and events[0]["type"] == "Warning"
    # the taint is tolerated by this pod
    s.create(pod("trainer", cpu="4", tolerations=[{"key": "dedicated", "operator": "Equal",
                                                   "value": "gpu", "effect": "NoSchedule"}]))
    assert s.wait_bound("trainer") in ("gpu-1", "gpu-2")
    attempts = s.stats()["attempts"]
    time.sleep(0.5)
    assert s.stats()["attempts"] == attempts  # web waits for an event, it is not polled
    s.create(node("n2", cpu="2"))
    assert s.wait_bound("web") == "n2"
    s.wait_for(lambda: [e for e in s.events_for("web") if e["reason"] == "Scheduled"])


def test_cordoned_node_and_node_selector_and_affinity(cluster):
    s = cluster
    s.create(node("a", labels={ZONE: "z1", "disk": "ssd"}, unschedulable=True))
    s.create(node("b", labels={ZONE: "z1", "disk": "hdd"}))
    s.create(node("c", labels={ZONE: "z2", "disk": "ssd"}))
    s.create(pod("ssd", node_selector={"disk": "ssd"}))
    assert s.wait_bound("ssd") == "c"
    s.create(pod("z1", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["z1"]}]}]}}}))
    assert s.wait_bound("z1") == "b"
    s.create(pod("nowhere", node_selector={"disk": "nvme"}))
    assert s.wait_unschedulable("nowhere") == (
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's "
        "node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not "
        "helpful for scheduling.")
    # labelling a node is an event NodeAffinity registered: the pod is retried at once
    s.update_node("b", lambda n: n["metadata"]["labels"].update({"disk": "nvme"}))
    assert s.wait_bound("nowhere") == "b"
    s.create(pod("prefers-z2", affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": ZONE, "operator": "In", "values": ["z2"]}]}}]}}))
    assert s.wait_bound("prefers-z2") == "c"


def test_pod_anti_affinity_one_replica_per_node(cluster):
    s = cluster
    for n in ("n1", "n2", "n3"):
        s.create(node(n))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": HOST, "labelSelector": {"matchLabels": {"app": "web"}}}]}}
    for i in range(3):
        s.create(pod(f"web-{i}", labels={"app": "web"}, affinity=anti))
    placed = bound_nodes(s, [f"web-{i}" for i in range(3)])
    assert sorted(placed.values()) == ["n1", "n2", "n3"]
    s.create(pod("web-3", labels={"app": "web"}, affinity=anti))
    assert s.wait_unschedulable("web-3") == (
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: "
        "0/3 nodes are available: 3 No preemption victims found for incoming pod.")
    # a pod without the label is not affected by the replicas' anti-affinity
    s.create(pod("other"))
    s.wait_bound("other")
    s.delete("v1", "Pod", "web-1", "default")  # Pod/Delete: InterPodAffinity retries web-3
    assert s.wait_bound("web-3") == placed["web-1"]


def test_pod_affinity_follows_the_database_zone(cluster):
    s = cluster
    s.create(node("a1", labels={ZONE: "a"}))
    s.create(node("a2", labels={ZONE: "a"}))
    s.create(node("b1", labels={ZONE: "b"}))
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": ZONE, "labelSelector": {"matchLabels": {"app": "db"}}}]}}
    s.create(pod("app", affinity=aff))
    msg = s.wait_unschedulable("app")
    assert msg.startswith("0/3 nodes are available: 3 node(s) didn't match pod affinity rules.")
    s.create(pod("db", labels={"app": "db"}, node_selector={HOST: "b1"}))
    assert s.wait_bound("db") == "b1"
    assert s.wait_bound("app") == "b1"  # Pod/Add of the db wakes it; zone b has one node
    s.create(pod("app2", affinity=aff))
    assert s.wait_bound("app2") == "b1"


def test_topology_spread_across_zones(cluster):
    s = cluster
    for n, z in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")):
        s.create(node(n, labels={ZONE: z}))
    constraint = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                   "labelSelector": {"matchLabels": {"app": "spread"}}}]
    names = [f"s{i}" for i in range(6)]
    for name in names:
        s.create(pod(name, labels={"app": "spread"}, spread=constraint))
        s.wait_bound(name)  # one at a time: each sees the previous placements
    zones = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
    per_zone = {}
    for name in names:
        z = zones[s.get_pod(name)["spec"]["nodeName"]]
        per_zone[z] = per_zone.get(z, 0) + 1
    assert per_zone == {"a": 2, "b": 2, "c": 2}


def test_system_default_spreading_for_pods_of_a_service(cluster):
    s = cluster
    for n in ("n1", "n2", "n3"):
        s.create(node(n, cpu="16", memory="32Gi"))
    s.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc",
                                                                  "namespace": "default"},
              "spec": {"selector": {"app": "svc"}, "ports": [{"port": 80}]}})
    time.sleep(0.3)
    names = [f"r{i}" for i in range(6)]
    for name in names:
        s.create(pod(name, labels={"app": "svc"}))
        s.wait_bound(name)
    counts = {}
    for name in names:
        n = s.get_pod(name)["spec"]["nodeName"]
        counts[n] = counts.get(n, 0) + 1
    assert sorted(counts.values()) == [2, 2, 2]


def test_preemption_with_priority_class_and_nominated_node(cluster):
    s = cluster
    s.create(priority_class("low", 10))
    s.create(priority_class("high", 1000))
    s.create(node("n1", cpu="2"))
    s.create(node("n2", cpu="2"))
    # victims on n1 keep a grace period: with no node agent they stay Terminating, so the
    # preemptor is seen waiting with its nomination
    s.create(pod("low-1", cpu="1500m", priority_class="low", grace=30,
                 node_selector={HOST: "n1"}))
    s.create(pod("low-2", cpu="1", priority_class="low", node_selector={HOST: "n2"}))
    s.create(pod("keep", cpu="1", priority_class="high", node_selector={HOST: "n2"}))
    bound_nodes(s, ["low-1", "low-2", "keep"])
    s.create(pod("vip", cpu="2", priority_class="high"))
    # n2 would need a high-priority eviction; n1 frees 2 cpu by evicting low-1
    nominated = s.wait_for(lambda: (s.get_pod("vip").get("status") or {}).get(
        "nominatedNodeName"), what="nominatedNodeName")
    assert nominated == "n1"
    victim = s.get_pod("low-1")
    assert victim["metadata"].get("deletionTimestamp")
    assert any(c["type"] == "DisruptionTarget" and c["reason"] == "PreemptionByScheduler"
               for c in victim["status"]["conditions"])
    s.wait_for(lambda: [e for e in s.events_for("low-1") if e["reason"] == "Preempted"])
    assert not s.get_pod("vip")["spec"].get("nodeName")
    # a lower-priority pod may not take the room the preemptor is waiting for
    s.create(pod("sneaky", cpu="500m", priority_class="low", node_selector={HOST: "n1"}))
    s.wait_unschedulable("sneaky")
    # the "kubelet" finishes the victim: the preemptor lands on its nominated node
    s.delete("v1", "Pod", "low-1", "default", grace_period_seconds=0)
    assert s.wait_bound("vip") == "n1"
    assert s.get_pod("low-2") is not None and s.get_pod("keep") is not None
    assert s.stats()["preemptions"] >= 1


def test_preemption_policy_never_does_not_preempt(cluster):
    s = cluster
    s.create(priority_class("low", 10))
    s.create(priority_class("polite", 1000, preemption_policy="Never"))
    s.create(node("n1", cpu="1"))
    s.create(pod("low", cpu="1", priority_class="low"))
    s.wait_bound("low")
    s.create(pod("polite", cpu="1", priority_class="polite"))
    assert s.wait_unschedulable("polite") == (
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to "
        "preemptionPolicy=Never.")
    assert s.get_pod("low") is not None


def test_higher_priority_pods_are_scheduled_first(cluster):
    s = cluster
    s.create(priority_class("high", 1000))
    s.create(node("n1", cpu="1"))
    # both pods wait while the node is cordoned; when it opens, the higher priority goes first
    s.update_node("n1", lambda n: n["spec"].update({"unschedulable": True}))
    s.create(pod("first-low", cpu="1"))
    s.create(pod("later-high", cpu="1", priority_class="high"))
    s.wait_unschedulable("first-low")
    s.wait_unschedulable("later-high")
    time.sleep(0.6)  # past both pods' back-off, so the uncordon moves both to the active queue
    s.update_node("n1", lambda n: n["spec"].pop("unschedulable"))
    assert s.wait_bound("later-high") == "n1"
    time.sleep(0.3)
    assert not s.get_pod("first-low")["spec"].get("nodeName")
