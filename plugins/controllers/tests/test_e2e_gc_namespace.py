"""Garbage collection with each propagation policy (kubectl delete --cascade=...), owners
that vanish, and namespace deletion, end to end."""

from __future__ import annotations

from ctrl_testlib import wait_for
from test_e2e_deployment import manifest, rollout_status


def _deploy(c, replicas=3):
    c.kubectl("apply", "-f", "-", input=manifest(replicas=replicas))
    rollout_status(c)
    d = c.api.deployment("web")
    rs = c.api.rss(selector="app=web")[0]
    return d, rs


def test_background_deletion_removes_replicasets_then_pods(cluster):
    c = cluster
    _deploy(c)
    out = c.kubectl("delete", "deployment", "web", "--cascade=background", "--wait=false")
    assert 'deployment.apps "web" deleted' in out.stdout
    assert c.api.deployment("web") is None  # the owner goes at once
    wait_for(lambda: not c.api.rss(selector="app=web"), what="ReplicaSet collected")
    wait_for(lambda: not c.api.pods(selector="app=web"), what="pods collected")


def test_foreground_deletion_removes_dependents_first(cluster):
    c = cluster
    d, rs = _deploy(c)
    # one pod holds on (a finalizer), so the order can be checked at leisure
    held = sorted(p["metadata"]["name"] for p in c.api.pods(selector="app=web"))[0]
    c.api.call("PATCH", f"/api/v1/namespaces/default/pods/{held}",
               {"metadata": {"finalizers": ["example.com/hold"]}},
               "application/merge-patch+json")
    c.kubectl("delete", "deployment", "web", "--cascade=foreground", "--wait=false")
    wait_for(lambda: [p["metadata"]["name"] for p in c.api.pods(selector="app=web")] == [held],
             what="the other pods gone")
    owner = c.api.deployment("web")
    assert owner is not None and owner["metadata"].get("deletionTimestamp")
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]
    [left] = c.api.rss(selector="app=web")  # the ReplicaSet waits for its pod in turn
    assert "foregroundDeletion" in left["metadata"]["finalizers"]
    assert c.api.get(f"/api/v1/namespaces/default/pods/{held}")["metadata"].get(
        "deletionTimestamp")
    c.api.call("PATCH", f"/api/v1/namespaces/default/pods/{held}",
               {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    wait_for(lambda: c.api.deployment("web") is None, what="owner gone last")
    assert not c.api.pods(selector="app=web") and not c.api.rss(selector="app=web")


def test_orphan_deletion_keeps_dependents_without_the_owner_reference(cluster):
    c = cluster
    d, rs = _deploy(c)
    pods_before = {p["metadata"]["name"] for p in c.api.pods(selector="app=web")}
    c.kubectl("delete", "deployment", "web", "--cascade=orphan", "--wait=false")
    wait_for(lambda: c.api.deployment("web") is None, what="owner gone")
    left = c.api.rss(selector="app=web")
    assert [r["metadata"]["name"] for r in left] == [rs["metadata"]["name"]]
    assert not left[0]["metadata"].get("ownerReferences")
    assert {p["metadata"]["name"] for p in c.api.pods(selector="app=web")} == pods_before
    # the orphaned ReplicaSet still keeps its pods
    c.kubectl("delete", "pod", sorted(pods_before)[0], "--wait=false")
    wait_for(lambda: len(c.api.pods(selector="app=web", live=True)) == 3, what="replaced")


def test_dependents_of_a_missing_owner_are_collected_but_live_owners_are_not(cluster):
    c = cluster
    cm = c.api.call("POST", "/api/v1/namespaces/default/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
           "uid": cm["metadata"]["uid"]}
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
             "uid": "00000000-0000-0000-0000-000000000000"}
    for name, refs in (("kept", [ref]), ("dangling", [ghost]), ("mixed", [ref, ghost])):
        c.api.call("POST", "/api/v1/namespaces/default/secrets", {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "ownerReferences": refs}})
    wait_for(lambda: c.api.get("/api/v1/namespaces/default/secrets/dangling") is None,
             what="dependent of a missing owner collected")
    wait_for(lambda: [r["name"] for r in c.api.get("/api/v1/namespaces/default/secrets/mixed")[
        "metadata"]["ownerReferences"]] == ["owner"], what="dangling reference dropped")
    assert c.api.get("/api/v1/namespaces/default/secrets/kept") is not None
    c.kubectl("delete", "configmap", "owner")
    wait_for(lambda: c.api.get("/api/v1/namespaces/default/secrets/kept") is None and
             c.api.get("/api/v1/namespaces/default/secrets/mixed") is None,
             what="dependents of the deleted owner collected")


def test_namespace_deletion_empties_then_removes_it(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    c.kubectl("apply", "-f", "-", input=manifest(replicas=2).replace("namespace: default",
                                                                     "namespace: shop"))
    c.kubectl("rollout", "status", "-n", "shop", "deployment/web", "--timeout=60s")
    c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
""")
    wait_for(lambda: c.api.get("/api/v1/namespaces/shop/serviceaccounts/default"),
             what="default service account")
    wait_for(lambda: c.api.items("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"),
             what="endpoint slices")
    out = c.kubectl("delete", "namespace", "shop", "--timeout=60s")
    assert 'namespace "shop" deleted' in out.stdout  # kubectl waited for it to be gone
    assert c.api.get("/api/v1/namespaces/shop") is None
    for path in ("/api/v1/namespaces/shop/pods", "/apis/apps/v1/namespaces/shop/deployments",
                 "/apis/apps/v1/namespaces/shop/replicasets",
                 "/api/v1/namespaces/shop/configmaps", "/api/v1/namespaces/shop/services",
                 "/api/v1/namespaces/shop/serviceaccounts",
                 "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"):
        assert c.api.items(path) == [], path


def test_namespace_with_a_finalized_object_waits_and_reports_it(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Namespace
metadata: {name: held}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stuck, namespace: held, finalizers: [example.com/hold]}
""")
    c.kubectl("delete", "namespace", "held", "--wait=false")

    def reported():
        ns = c.api.get("/api/v1/namespaces/held")
        conds = {x["type"]: x for x in (ns.get("status") or {}).get("conditions") or []}
        fin = conds.get("NamespaceFinalizersRemaining")
        return fin and fin["status"] == "True" and conds
    conds = wait_for(reported, what="conditions")
    assert conds["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: configmaps has 1 resource instances"
    assert conds["NamespaceFinalizersRemaining"]["message"] == \
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 " \
        "resource instances"
    assert c.api.get("/api/v1/namespaces/held")["status"]["phase"] == "Terminating"
    c.api.call("PATCH", "/api/v1/namespaces/held/configmaps/stuck",
               {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    wait_for(lambda: c.api.get("/api/v1/namespaces/held") is None, what="namespace removed")


def test_service_account_controller_keeps_a_default_account(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: sa}\n")
    wait_for(lambda: c.api.get("/api/v1/namespaces/sa/serviceaccounts/default"),
             what="default account")
    c.kubectl("delete", "serviceaccount", "default", "-n", "sa")
    wait_for(lambda: c.api.get("/api/v1/namespaces/sa/serviceaccounts/default"),
             what="default account recreated")
    assert c.api.get("/api/v1/namespaces/kube-system/serviceaccounts/default")
