"""Pure decisions of the other controllers: garbage collection verdicts and plans, the
order a ReplicaSet scales down in, taints and eviction times, endpoint slices, namespace
conditions, pod GC."""

from __future__ import annotations

import datetime

from pilothouse_controllers import endpointslice as es
from pilothouse_controllers import garbagecollector as gc
from pilothouse_controllers import namespace as nsc
from pilothouse_controllers import nodelifecycle as nl
from pilothouse_controllers import podgc
from pilothouse_controllers.replicaset import deletion_order, pod_from_template

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def obj(name, uid=None, refs=(), finalizers=(), deleting=False, **extra):
    m = {"name": name, "uid": uid or f"uid-{name}", "namespace": "default"}
    if refs:
        m["ownerReferences"] = list(refs)
    if finalizers:
        m["finalizers"] = list(finalizers)
    if deleting:
        m["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": m, **extra}


def ref(owner, block=True):
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block}


# ------------------------------------------------------------------ garbage collector


def test_owner_verdicts():
    owner = obj("o")
    r = ref(owner)
    assert gc.owner_verdict(r, owner) == gc.SOLID
    assert gc.owner_verdict(r, None) == gc.DANGLING
    assert gc.owner_verdict(r, obj("o", uid="someone-else")) == gc.DANGLING
    assert gc.owner_verdict(r, obj("o", deleting=True, finalizers=["foregroundDeletion"])) \
        == gc.WAITING
    # being deleted in the background or orphaning: still an owner until it is gone
    assert gc.owner_verdict(r, obj("o", deleting=True, finalizers=["orphan"])) == gc.SOLID


def test_plans_for_dependents():
    dep = obj("d")
    assert gc.plan_for_dependent(dep, {"a": gc.SOLID}, False) == gc.Plan("keep")
    assert gc.plan_for_dependent(dep, {"a": gc.DANGLING}, False) == \
        gc.Plan("delete", policy="Background")
    assert gc.plan_for_dependent(dep, {"a": gc.SOLID, "b": gc.DANGLING, "c": gc.WAITING},
                                 False) == gc.Plan("drop-refs", ("b", "c"))
    assert gc.plan_for_dependent(dep, {"a": gc.WAITING}, True) == \
        gc.Plan("delete", policy="Foreground")
    assert gc.plan_for_dependent(dep, {"a": gc.WAITING}, False) == \
        gc.Plan("delete", policy="Background")
    assert gc.plan_for_dependent(obj("d", finalizers=["orphan"]), {"a": gc.DANGLING},
                                 False).policy == "Orphan"
    assert gc.plan_for_dependent(obj("d", deleting=True), {"a": gc.DANGLING}, False) == \
        gc.Plan("keep")


def test_only_blocking_dependents_hold_a_foreground_deletion():
    owner = obj("o")
    deps = [obj("a", refs=[ref(owner, True)]), obj("b", refs=[ref(owner, False)]),
            obj("c", refs=[ref(obj("other"), True)])]
    assert [d["metadata"]["name"] for d in gc.blocking(deps, owner["metadata"]["uid"])] == ["a"]


# ------------------------------------------------------------------ replica sets


def pod(name, node="", phase="Running", ready=True, since="2024-01-01T00:00:00Z",
        restarts=0, created="2024-01-01T00:00:00Z"):
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": since}],
                       "containerStatuses": [{"restartCount": restarts}]}}


def test_scale_down_order_follows_kubernetes_ranking():
    pods = [pod("ready-old", "n1", since="2024-01-01T00:00:00Z"),
            pod("ready-new", "n1", since="2024-01-01T00:05:00Z"),
            pod("unscheduled", "", phase="Pending", ready=False),
            pod("pending", "n1", phase="Pending", ready=False),
            pod("not-ready", "n1", ready=False),
            pod("restarts", "n1", since="2024-01-01T00:00:00Z", restarts=4),
            pod("crowded", "n2", since="2024-01-01T00:00:00Z")]
    order = [p["metadata"]["name"] for p in deletion_order(pods, {"n1": 1, "n2": 3})]
    assert order[:4] == ["unscheduled", "pending", "not-ready", "crowded"]
    assert order.index("ready-new") < order.index("ready-old")
    assert order.index("restarts") < order.index("ready-old")


def test_pod_from_template():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "web-abc", "namespace": "shop", "uid": "u1"},
          "spec": {"template": {"metadata": {"labels": {"app": "web"},
                                             "annotations": {"a": "b"}},
                                "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    p = pod_from_template(rs)
    assert p["metadata"]["generateName"] == "web-abc-"
    assert p["metadata"]["namespace"] == "shop"
    assert p["metadata"]["labels"] == {"app": "web"}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1",
         "controller": True, "blockOwnerDeletion": True}]


# ------------------------------------------------------------------ node lifecycle


def test_tolerations_match_like_kubernetes():
    taint = {"key": nl.UNREACHABLE, "effect": "NoExecute"}
    assert nl.tolerates({"operator": "Exists"}, taint)
    assert nl.tolerates({"key": nl.UNREACHABLE, "operator": "Exists"}, taint)
    assert not nl.tolerates({"key": nl.NOT_READY, "operator": "Exists"}, taint)
    assert not nl.tolerates({"key": nl.UNREACHABLE, "operator": "Exists",
                             "effect": "NoSchedule"}, taint)
    assert nl.tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v",
                                                     "effect": "NoSchedule"})
    assert not nl.tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v"})


def test_taints_follow_the_ready_condition():
    def node(status, taints=()):
        return {"spec": {"taints": list(taints)},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}
    other = {"key": "dedicated", "effect": "NoSchedule"}
    t = nl.wanted_taints(node("Unknown", [other]), "NOW")
    assert t == [other, {"key": nl.UNREACHABLE, "effect": "NoSchedule"},
                 {"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded": "NOW"}]
    assert nl.wanted_taints(node("Unknown", t), "LATER") == t  # timeAdded kept
    flipped = nl.wanted_taints(node("False", t), "LATER")
    assert {(x["key"], x["effect"]) for x in flipped} == {
        ("dedicated", "NoSchedule"), (nl.NOT_READY, "NoSchedule"), (nl.NOT_READY, "NoExecute")}
    assert nl.wanted_taints(node("True", t), "LATER") == [other]


def test_eviction_delay():
    taints = [{"key": nl.UNREACHABLE, "effect": "NoExecute", "timeAdded":
               "2024-01-01T00:00:00Z"}]
    later = T0 + datetime.timedelta(seconds=10)

    def p(tolerations):
        return {"spec": {"tolerations": tolerations}}
    assert nl.eviction_delay(p([]), taints, 300, later) == 290  # the admission default
    assert nl.eviction_delay(p([{"key": nl.UNREACHABLE, "operator": "Exists",
                                 "tolerationSeconds": 5}]), taints, 300, later) == 0
    assert nl.eviction_delay(p([{"operator": "Exists"}]), taints, 300, later) is None
    assert nl.eviction_delay(p([{"key": nl.UNREACHABLE, "operator": "Exists",
                                 "tolerationSeconds": 60},
                                {"operator": "Exists", "tolerationSeconds": 30}]),
                             taints, 300, later) == 20
    custom = [{"key": "gpu-broken", "effect": "NoExecute"}]
    assert nl.eviction_delay(p([]), custom, 300, later) == 0  # not tolerated: at once
    assert nl.eviction_delay(p([]), [{"key": "x", "effect": "NoSchedule"}], 300, later) \
        is None


def test_unknown_conditions():
    node = {"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "H"},
        {"type": "MemoryPressure", "status": "False"}]}}
    conds, changed = nl.unknown_conditions(node, "NOW")
    assert changed
    by = {c["type"]: c for c in conds}
    assert (by["Ready"]["status"], by["Ready"]["reason"], by["Ready"]["lastHeartbeatTime"]) \
        == ("Unknown", "NodeStatusUnknown", "H")
    assert by["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert not nl.unknown_conditions({"status": {"conditions": conds}}, "LATER")[1]


# ------------------------------------------------------------------ endpoint slices


def epod(name, ip, ready=True, deleting=False, ports=(("http", 8080),), phase="Running",
         node="n1"):
    m = {"name": name, "namespace": "default", "uid": f"u-{name}"}
    if deleting:
        m["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": m,
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": n, "containerPort": p} for n, p in ports]}]},
            "status": {"phase": phase, "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_resolve_port():
    p = epod("a", "1.1.1.1")
    assert es.resolve_port({"port": 80, "targetPort": "http"}, p) == 8080
    assert es.resolve_port({"port": 80, "targetPort": 9000}, p) == 9000
    assert es.resolve_port({"port": 80}, p) == 80
    assert es.resolve_port({"port": 80, "targetPort": "nope"}, p) is None
    assert es.resolve_port({"port": 80, "targetPort": "http", "protocol": "UDP"}, p) is None


def test_desired_endpoints_conditions_and_grouping():
    svc = {"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    pods = [epod("ready", "10.0.0.2"), epod("unready", "10.0.0.1", ready=False),
            epod("leaving", "10.0.0.3", deleting=True), epod("noip", ""),
            epod("done", "10.0.0.9", phase="Succeeded"),
            epod("other", "10.0.0.4", ports=(("http", 9999),)),
            epod("v6", "fd00::1")]
    groups = es.desired_endpoints(svc, pods, {"n1": "zone-a"})
    main = groups[("IPv4", (("web", "TCP", 8080, None),))]
    assert [(e["targetRef"]["name"], tuple(e["conditions"].values())) for e in main] == [
        ("unready", (False, False, False)), ("ready", (True, True, False)),
        ("leaving", (False, True, True))]
    assert main[0]["zone"] == "zone-a" and main[0]["nodeName"] == "n1"
    assert [e["targetRef"]["name"] for e in groups[("IPv4", (("web", "TCP", 9999, None),))]] \
        == ["other"]
    assert ("IPv6", (("web", "TCP", 8080, None),)) in groups
    subsets = es.endpoints_subsets(groups)
    first = [s for s in subsets if s["ports"][0]["port"] == 8080 and
             "." in (s.get("addresses") or s.get("notReadyAddresses"))[0]["ip"]][0]
    assert [a["ip"] for a in first["addresses"]] == ["10.0.0.2"]
    assert [a["ip"] for a in first["notReadyAddresses"]] == ["10.0.0.1"]  # leaving: left out


def test_publish_not_ready_addresses():
    svc = {"spec": {"publishNotReadyAddresses": True, "ports": [{"port": 80}]}}
    groups = es.desired_endpoints(svc, [epod("u", "10.0.0.1", ready=False)], {})
    [eps] = groups.values()
    assert eps[0]["conditions"] == {"ready": True, "serving": True, "terminating": False}


# ------------------------------------------------------------------ namespace, pod gc


def test_namespace_deletion_conditions():
    conds = {c["type"]: c for c in nsc.deletion_conditions(
        {"status": {}}, {"pods": 2}, {"example.com/x": 1}, "", [])}
    assert conds["NamespaceContentRemaining"]["status"] == "True"
    assert conds["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: pods has 2 resource instances"
    assert conds["NamespaceFinalizersRemaining"]["reason"] == "SomeFinalizersRemain"
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    again = nsc.deletion_conditions({"status": {"conditions": list(conds.values())}},
                                    {"pods": 2}, {"example.com/x": 1}, "", [])
    assert again == list(conds.values())


def test_terminated_pods_beyond_threshold():
    def p(name, phase, created):
        return {"metadata": {"name": name, "creationTimestamp": created},
                "status": {"phase": phase}}
    pods = [p("a", "Succeeded", "2024-01-01T00:00:03Z"), p("b", "Failed", "2024-01-01T00:00:01Z"),
            p("c", "Running", "2024-01-01T00:00:00Z"), p("d", "Succeeded", "2024-01-01T00:00:02Z")]
    assert [x["metadata"]["name"] for x in podgc.terminated_to_delete(pods, 1)] == ["b", "d"]
    assert podgc.terminated_to_delete(pods, 0) == []
    assert podgc.terminated_to_delete(pods, 5) == []


def test_available_after_min_ready_seconds():
    from pilothouse_controllers.common import available_in
    p = pod("p", since="2024-01-01T00:00:00Z")
    assert available_in(p, 0, T0) == 0
    assert available_in(p, 10, T0 + datetime.timedelta(seconds=4)) == 6
    assert available_in(p, 10, T0 + datetime.timedelta(seconds=11)) == 0
    assert available_in(pod("q", ready=False), 0, T0) is None
