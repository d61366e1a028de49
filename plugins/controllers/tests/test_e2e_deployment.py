"""Deployments end to end with real kubectl: apply, rollout status, scale, rolling updates
within maxSurge/maxUnavailable (every pod version seen through a watch), Recreate, history,
undo, pause/resume/restart, the progress deadline, ReplicaSet adoption."""

from __future__ import annotations


from ctrl_testlib import PodWatch, wait_for

HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def manifest(name="web", replicas=3, image="nginx:1.25", strategy=None, extra_spec="",
             labels="app: web", annotations="", pod_extra=""):
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
{pod_extra}      containers:
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
    wait_for(lambda: any(e["reason"] == "ScalingReplicaSet" and e["message"] ==
                         f"Scaled up replica set {rs['metadata']['name']} from 0 to 3"
                         for e in c.api.items("/api/v1/namespaces/default/events")),
             what="ScalingReplicaSet event")
    out = c.kubectl("describe", "deployment", "web")
    assert "ScalingReplicaSet" in out.stdout


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


def _live(pod):
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _ready(pod):
    return any(x.get("type") == "Ready" and x.get("status") == "True"
               for x in (pod.get("status") or {}).get("conditions") or [])


def test_rolling_update_stays_within_max_surge_and_max_unavailable(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(
        replicas=4, strategy="type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, "
                             "maxUnavailable: 1}"))
    rollout_status(c)
    old_hash = c.api.rss(selector="app=web")[0]["metadata"]["labels"][HASH]
    watch = PodWatch(c.url).start()
    try:
        c.kubectl("apply", "-f", "-", input=manifest(
            replicas=4, image="nginx:1.26",
            strategy="type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}"))
        rollout_status(c)
        wait_for(lambda: all(p["spec"]["containers"][0]["image"] == "nginx:1.26"
                             for p in live_pods(c)) and len(c.api.pods(selector="app=web"))
                 == 4, what="only new pods left")
    finally:
        watch.stop()
    most = fewest_ready = None
    saw_new = False
    for state in watch.snapshots():
        live = [p for p in state.values() if _live(p)]
        ready = [p for p in live if _ready(p)]
        most = len(live) if most is None else max(most, len(live))
        fewest_ready = len(ready) if fewest_ready is None else min(fewest_ready, len(ready))
        saw_new = saw_new or any(p["metadata"]["labels"][HASH] != old_hash for p in live)
    assert saw_new
    assert most <= 4 + 1, f"maxSurge exceeded: {most} live pods"
    assert fewest_ready >= 4 - 1, f"maxUnavailable exceeded: {fewest_ready} ready pods"
    rss = {rs["metadata"]["labels"][HASH]: rs for rs in c.api.rss(selector="app=web")}
    assert rss[old_hash]["spec"]["replicas"] == 0
    new = [rs for h, rs in rss.items() if h != old_hash][0]
    assert new["spec"]["replicas"] == 4
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert c.api.deployment("web")["metadata"]["annotations"][REVISION] == "2"


def test_recreate_removes_every_old_pod_before_creating_new_ones(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(replicas=3, strategy="type: Recreate"))
    rollout_status(c)
    old_hash = c.api.rss(selector="app=web")[0]["metadata"]["labels"][HASH]
    watch = PodWatch(c.url).start()
    try:
        c.kubectl("apply", "-f", "-", input=manifest(replicas=3, image="nginx:1.26",
                                                     strategy="type: Recreate"))
        rollout_status(c)
    finally:
        watch.stop()
    mixed = [s for s in watch.snapshots()
             if {p["metadata"]["labels"][HASH] for p in s.values()} - {old_hash}
             and any(p["metadata"]["labels"][HASH] == old_hash for p in s.values())]
    assert not mixed, "old and new pods existed at the same time"
    assert len(live_pods(c)) == 3


def test_history_undo_and_revisions(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(image="nginx:1"))
    rollout_status(c)
    # the change cause goes to the ReplicaSet of the template current when it is set
    c.kubectl("set", "image", "deployment/web", "app=nginx:2")
    c.kubectl("annotate", "deployment/web", "kubernetes.io/change-cause=image 2")
    rollout_status(c)
    c.kubectl("set", "image", "deployment/web", "app=nginx:3")
    c.kubectl("annotate", "--overwrite", "deployment/web", "kubernetes.io/change-cause=image 3")
    rollout_status(c)
    history = c.kubectl("rollout", "history", "deployment/web").stdout
    lines = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert [(r, cause.strip()) for r, cause in lines] == [
        ("1", "<none>"), ("2", "image 2"), ("3", "image 3")]
    detail = c.kubectl("rollout", "history", "deployment/web", "--revision=2").stdout
    assert "nginx:2" in detail
    out = c.kubectl("rollout", "undo", "deployment/web")
    assert "rolled back" in out.stdout
    rollout_status(c)
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(c)} == {"nginx:2"}
             and len(c.api.pods(selector="app=web")) == 3, what="back on nginx:2")
    by_image = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs
                for rs in c.api.rss(selector="app=web")}
    assert len(by_image) == 3  # the old ReplicaSet was reused, not a fourth one made
    ann = by_image["nginx:2"]["metadata"]["annotations"]
    assert ann[REVISION] == "4" and ann["deployment.kubernetes.io/revision-history"] == "2"
    assert c.api.deployment("web")["metadata"]["annotations"][REVISION] == "4"
    history = c.kubectl("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == \
        ["1", "3", "4"]
    c.kubectl("rollout", "undo", "deployment/web", "--to-revision=1")
    rollout_status(c)
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(c)} == {"nginx:1"}
             and len(c.api.pods(selector="app=web")) == 3, what="back on nginx:1")
    assert c.api.deployment("web")["metadata"]["annotations"][REVISION] == "5"


def test_revision_history_limit_removes_old_replicasets(cluster):
    c = cluster
    spec = "  revisionHistoryLimit: 1\n"
    for i in range(1, 5):
        c.kubectl("apply", "-f", "-", input=manifest(replicas=1, image=f"nginx:{i}",
                                                     extra_spec=spec))
        rollout_status(c)
    wait_for(lambda: len(c.api.rss(selector="app=web")) == 2, what="one old ReplicaSet kept")
    revs = sorted(int(rs["metadata"]["annotations"][REVISION])
                  for rs in c.api.rss(selector="app=web"))
    assert revs == [3, 4]


def test_pause_resume_and_restart(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(replicas=2))
    rollout_status(c)
    c.kubectl("rollout", "pause", "deployment/web")
    c.kubectl("set", "image", "deployment/web", "app=nginx:paused")
    wait_for(lambda: (lambda d: d["status"].get("observedGeneration") == d["metadata"][
        "generation"])(c.api.deployment("web")), what="paused change observed")
    cond = {x["type"]: x for x in c.api.deployment("web")["status"]["conditions"]}
    assert (cond["Progressing"]["status"], cond["Progressing"]["reason"]) == \
        ("Unknown", "DeploymentPaused")
    assert len(c.api.rss(selector="app=web")) == 1  # nothing rolled while paused
    c.kubectl("scale", "deployment/web", "--replicas=3")  # scaling still works
    wait_for(lambda: len(live_pods(c)) == 3, what="scaled while paused")
    c.kubectl("rollout", "resume", "deployment/web")
    rollout_status(c)
    wait_for(lambda: {p["spec"]["containers"][0]["image"] for p in c.api.pods(
        selector="app=web")} == {"nginx:paused"}, what="resumed rollout done")
    c.kubectl("rollout", "restart", "deployment/web")
    rollout_status(c)
    d = c.api.deployment("web")
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"][
        "annotations"]
    assert len(c.api.rss(selector="app=web")) == 3
    wait_for(lambda: all("kubectl.kubernetes.io/restartedAt" in (
        p["metadata"].get("annotations") or {}) for p in c.api.pods(selector="app=web"))
        and len(c.api.pods(selector="app=web")) == 3, what="restarted pods")


def test_progress_deadline_exceeded(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=manifest(replicas=2, image="nginx:unready",
                                                 extra_spec="  progressDeadlineSeconds: 2\n"))

    def timed_out():
        d = c.api.deployment("web")
        cond = {x["type"]: x for x in (d.get("status") or {}).get("conditions") or []}
        p = cond.get("Progressing")
        return p and p["status"] == "False" and p["reason"] == "ProgressDeadlineExceeded" and p
    p = wait_for(timed_out, what="ProgressDeadlineExceeded")
    assert p["message"].endswith("has timed out progressing.")
    out = rollout_status(c, check=False)
    assert out.returncode != 0 and 'exceeded its progress deadline' in out.stderr
    cond = {x["type"]: x for x in c.api.deployment("web")["status"]["conditions"]}
    assert (cond["Available"]["status"], cond["Available"]["reason"]) == \
        ("False", "MinimumReplicasUnavailable")
    # a new template gets a new deadline and can complete
    c.kubectl("set", "image", "deployment/web", "app=nginx:ok")
    rollout_status(c)


def test_replicaset_adopts_orphans_and_releases_pods_that_stop_matching(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input="""apiVersion: v1
kind: Pod
metadata: {name: stray, namespace: default, labels: {app: solo}}
spec:
  terminationGracePeriodSeconds: 5
  containers: [{name: app, image: nginx}]
""")
    c.kubectl("apply", "-f", "-", input="""apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: solo, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      terminationGracePeriodSeconds: 5
      containers: [{name: app, image: nginx}]
""")
    rs = c.api.get("/apis/apps/v1/namespaces/default/replicasets/solo")

    def owned_by_rs():
        pods = c.api.pods(selector="app=solo", live=True)
        return len(pods) == 2 and all(
            (p["metadata"].get("ownerReferences") or [{}])[0].get("uid") ==
            rs["metadata"]["uid"] for p in pods) and pods
    pods = wait_for(owned_by_rs, what="stray adopted, one more created")
    assert "stray" in {p["metadata"]["name"] for p in pods}
    c.kubectl("label", "pod", "stray", "app=gone", "--overwrite")
    wait_for(lambda: not c.api.get("/api/v1/namespaces/default/pods/stray")["metadata"].get(
        "ownerReferences"), what="stray released")
    wait_for(lambda: len(c.api.pods(selector="app=solo", live=True)) == 2, what="replaced")
    wait_for(lambda: c.api.get("/apis/apps/v1/namespaces/default/replicasets/solo")[
        "status"].get("readyReplicas") == 2, what="rs ready 2")
