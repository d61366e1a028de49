"""Deployments end to end with real kubectl: apply, rollout status, scale, rolling updates
within maxSurge/maxUnavailable (every pod version seen through a watch), Recreate, history,
undo, pause/resume/restart, the progress deadline, ReplicaSet adoption."""

from __future__ import annotations

import json

from ctrl_testlib import PodWatch, wait_for

HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def manifest(name="web", replicas=3, image="nginx:1.25", strategy=None, extra_spec="",
             labels="app: web", annotations=""):
    strategy = strategy or "type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}"
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: default
{annotations}spec:
  replicas: {replicas}
  selector:
    matchLabels: {{{labels}}}
  strategy:
    {strategy}
{extra_spec}  template:
    metadata:
      labels: {{{labels}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: {image}
        ports: [{{containerPort: 80, name: http}}]
"""


def rollout_status(c, name="web", timeout="60s", check=True):
    return c.kubectl("rollout", "status", f"deployment/{name}", f"--timeout={timeout}",
                     check=check)


def live_pods(c, selector="app=web"):
    return c.api.pods(selector=selector, live=True)


def test_apply_creates_replicaset_and_pods_and_rollout_status_succeeds(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest())
    out = rollout_status(c)
    assert 'deployment "web" successfully rolled out' in out.stdout
    d = c.api.deployment("web")
    rss = c.api.rss(selector="app=web")
    assert len(rss) == 1
    rs = rss[0]
    h = rs["metadata"]["labels"][HASH]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: h}
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert d["metadata"]["annotations"][REVISION] == "1"
    pods = live_pods(c)
    assert len(pods) == 3
    assert all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
               for p in pods)
    assert all(p["metadata"]["labels"][HASH] == h for p in pods)
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"], st.get("unavailableReplicas", 0)) == (3, 3, 3, 3, 0)
    assert st["observedGeneration"] == d["metadata"]["generation"]
    conds = {x["type"]: x for x in st["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == \
        ("True", "MinimumReplicasAvailable")
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == \
        ("True", "NewReplicaSetAvailable")
    assert conds["Progressing"]["message"] == \
        f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.'
    rs = c.api.rss(selector="app=web")[0]
    assert (rs["status"]["replicas"], rs["status"]["readyReplicas"],
            rs["status"]["availableReplicas"], rs["status"]["fullyLabeledReplicas"],
            rs["status"]["observedGeneration"]) == (3, 3, 3, 3, rs["metadata"]["generation"])
    out = c.kubectl("get", "deployment", "web")
    assert "3/3" in out.stdout


def test_scale_up_and_down(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(replicas=2))
    rollout_status(c)
    c.kubectl("scale", "deployment/web", "--replicas=5")
    wait_for(lambda: len(live_pods(c)) == 5, what="5 pods")
    rollout_status(c)
    assert c.api.deployment("web")["status"]["availableReplicas"] == 5
    assert len(c.api.rss(selector="app=web")) == 1
    c.kubectl("scale", "deployment/web", "--replicas=1")
    wait_for(lambda: len(live_pods(c)) == 1, what="1 pod")
    rollout_status(c)
    wait_for(lambda: c.api.deployment("web")["status"]["replicas"] == 1, what="status 1")
