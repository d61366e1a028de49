"""EndpointSlices and Endpoints following ready pods; node lifecycle (NotReady, taints,
eviction) with short timeouts; pod garbage collection."""

from __future__ import annotations

from ctrl_testlib import wait_for
from test_e2e_deployment import manifest, rollout_status

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {tier: front}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9100}
"""
ES_PATH = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


def slices(c, service="web"):
    return c.api.items(ES_PATH, f"kubernetes.io/service-name={service}")


def endpoint_view(c, service="web"):
    """{pod name: (ready, serving, terminating)} over the Service's slices."""
    out = {}
    for es in slices(c, service):
        for ep in es.get("endpoints") or []:
            cond = ep["conditions"]
            out[ep["targetRef"]["name"]] = (cond["ready"], cond["serving"], cond["terminating"])
    return out


def test_endpoint_slices_follow_ready_pods(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=SERVICE)
    placeholder = wait_for(lambda: slices(c), what="placeholder slice")
    assert placeholder[0]["endpoints"] in (None, [])
    c.kubectl("apply", "-f", "-", input=manifest(replicas=3))
    rollout_status(c)
    pods = {p["metadata"]["name"]: p for p in c.api.pods(selector="app=web", live=True)}
    wait_for(lambda: endpoint_view(c) == {n: (True, True, False) for n in pods},
             what="three ready endpoints")
    [es] = slices(c)
    svc = c.api.get("/api/v1/namespaces/default/services/web")
    assert es["addressType"] == "IPv4"
    assert es["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    assert es["metadata"]["labels"]["tier"] == "front"  # the Service's labels are copied
    assert es["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    assert sorted((p["name"], p["port"]) for p in es["ports"]) == [("http", 80),
                                                                   ("metrics", 9100)]
    by_name = {ep["targetRef"]["name"]: ep for ep in es["endpoints"]}
    for name, pod in pods.items():
        assert by_name[name]["addresses"] == [pod["status"]["podIP"]]
        assert by_name[name]["nodeName"] == pod["spec"]["nodeName"]
    ep = c.api.get("/api/v1/namespaces/default/endpoints/web")
    assert sorted(a["ip"] for a in ep["subsets"][0]["addresses"]) == \
        sorted(p["status"]["podIP"] for p in pods.values())
    # a pod that is not ready is listed, not ready; scaling down shows it terminating or gone
    c.kubectl("set", "image", "deployment/web", "app=nginx:unready")
    wait_for(lambda: any(v == (False, False, False) for v in endpoint_view(c).values()),
             what="a not-ready endpoint")
    ep = wait_for(lambda: (lambda e: e.get("subsets") and any(
        s.get("notReadyAddresses") for s in e["subsets"]) and e)(
        c.api.get("/api/v1/namespaces/default/endpoints/web")), what="notReadyAddresses")
    c.kubectl("delete", "service", "web")
    wait_for(lambda: not slices(c), what="slices removed with the Service")
    wait_for(lambda: c.api.get("/api/v1/namespaces/default/endpoints/web") is None,
             what="endpoints removed with the Service")


def test_named_target_port_resolves_per_pod(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Service
metadata: {name: mixed, namespace: default}
spec:
  selector: {role: mixed}
  ports: [{name: web, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-8080, namespace: default, labels: {role: mixed}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: a, image: nginx, ports: [{name: web, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: on-9000, namespace: default, labels: {role: mixed}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: a, image: nginx, ports: [{name: web, containerPort: 9000}]}]
""")

    def two_slices():
        found = {tuple(p["port"] for p in es.get("ports") or []):
                 [e["targetRef"]["name"] for e in es.get("endpoints") or []]
                 for es in slices(c, "mixed")}
        return found == {(8080,): ["on-8080"], (9000,): ["on-9000"]} and found
    wait_for(two_slices, what="one slice per resolved port")


def test_node_lifecycle_marks_silent_node_taints_it_and_evicts_its_pods(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(replicas=4, pod_extra="""      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,
         tolerationSeconds: 1}
"""))
    rollout_status(c)
    # a pod that tolerates the taint forever stays
    c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Pod
metadata: {name: steadfast, namespace: default, labels: {app: steadfast}}
spec:
  nodeName: node-a
  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]
  containers: [{name: a, image: nginx}]
""")
    wait_for(lambda: any(x["type"] == "Ready" and x["status"] == "True" for x in (
        c.api.get("/api/v1/namespaces/default/pods/steadfast").get("status") or {}).get(
        "conditions") or []), what="steadfast running")
    victims = {p["metadata"]["name"] for p in c.api.pods(selector="app=web", live=True)
               if p["spec"].get("nodeName") == "node-a"}
    assert victims
    c.kubelet.kill_node("node-a")

    def not_ready():
        node = c.api.get("/api/v1/nodes/node-a")
        ready = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
        return ready["status"] == "Unknown" and (node, ready)
    node, ready = wait_for(not_ready, what="node-a NotReady")
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    out = c.kubectl("get", "node", "node-a")
    assert "NotReady" in out.stdout
    taints = wait_for(lambda: (c.api.get("/api/v1/nodes/node-a").get("spec") or {}).get("taints"),
                      what="taints")
    assert {(t["key"], t["effect"]) for t in taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute")}
    assert next(t for t in taints if t["effect"] == "NoExecute").get("timeAdded")
    # the pods of the silent node are evicted (marked for deletion: nobody confirms on a
    # dead node) and replaced on the live node
    wait_for(lambda: all((c.api.get(f"/api/v1/namespaces/default/pods/{n}") or {
        "metadata": {"deletionTimestamp": "gone"}})["metadata"].get("deletionTimestamp")
        for n in victims), what="pods evicted")
    wait_for(lambda: len([p for p in c.api.pods(selector="app=web", live=True)
                          if p["spec"].get("nodeName") == "node-b"]) == 4,
             what="replacements on node-b")
    steadfast = c.api.get("/api/v1/namespaces/default/pods/steadfast")
    assert not steadfast["metadata"].get("deletionTimestamp")
    ready = next(x for x in steadfast["status"]["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False"  # pods of an unreachable node are not ready
    # the node comes back: taints go, the terminating pods are confirmed by its agent
    c.kubelet.revive_node("node-a")
    wait_for(lambda: not (c.api.get("/api/v1/nodes/node-a").get("spec") or {}).get("taints"),
             what="taints removed")
    wait_for(lambda: not any(c.api.get(f"/api/v1/namespaces/default/pods/{n}")
                             for n in victims), what="evicted pods gone")


def test_pods_without_toleration_get_the_default_toleration_seconds(start_apiserver):
    from ctrl_testlib import Cluster, KubeletSim, config_doc
    from pilothouse.controllers.testing import ControllerHostThread
    api = start_apiserver({"store": {"plugin": "memory"}})
    kubelet = KubeletSim(api.url).start()
    doc = config_doc(enabled=["nodelifecycle"], options={"nodelifecycle": {
        "nodeMonitorPeriod": 0.3, "nodeMonitorGracePeriod": 1.0,
        "nodeStartupGracePeriod": 1.0, "defaultTolerationSeconds": 2}})
    host = ControllerHostThread(api.url, config_doc=doc).start()
    try:
        c = Cluster(api, host, kubelet)
        c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: default}
spec:
  nodeName: node-b
  containers: [{name: a, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: untolerated, namespace: default}
spec:
  nodeName: node-b
  tolerations: [{key: other, operator: Exists}]
  containers: [{name: a, image: nginx}]
""")
        c.kubelet.kill_node("node-b")
        wait_for(lambda: (c.api.get("/api/v1/nodes/node-b").get("spec") or {}).get("taints"),
                 what="tainted")

        def evicted():
            pods = {n: c.api.get(f"/api/v1/namespaces/default/pods/{n}")
                    for n in ("plain", "untolerated")}
            return all(p is None or p["metadata"].get("deletionTimestamp")
                       for p in pods.values())
        wait_for(evicted, what="evicted after the default toleration seconds")
    finally:
        host.stop()
        kubelet.stop()


def test_pod_gc_removes_terminated_pods_beyond_threshold_and_orphans(cluster):
    c = cluster
    # a node no agent serves (the simulator would overwrite the pods' status)
    c.api.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": "node-x"}})
    for i in range(5):
        c.api.call("POST", "/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"done-{i}", "labels": {"job": "x"}},
            "spec": {"nodeName": "node-x", "containers": [{"name": "a", "image": "busybox"}]}})
        pod = c.api.get(f"/api/v1/namespaces/default/pods/done-{i}")
        pod["status"] = {"phase": "Succeeded"}
        c.api.call("PUT", f"/api/v1/namespaces/default/pods/done-{i}/status", pod)
    # threshold 3: the two oldest go
    wait_for(lambda: sorted(p["metadata"]["name"] for p in c.api.pods(selector="job=x")) ==
             ["done-2", "done-3", "done-4"], what="terminated pods beyond the threshold")
    c.api.call("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
        "spec": {"nodeName": "node-that-never-was",
                 "containers": [{"name": "a", "image": "busybox"}]}})
    wait_for(lambda: c.api.get("/api/v1/namespaces/default/pods/orphan") is None,
             what="orphaned pod removed")
