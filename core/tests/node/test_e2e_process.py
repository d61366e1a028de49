"""The agent is runtime-agnostic: a subset of the end-to-end tests against the process
runtime (``contrib/runtime_process``; no root needed, no containerd)."""

import json
import re

import pytest

from pilothouse.hooks import hookimpl
from pilothouse.interfaces.runtime import Feature
from pilothouse.plugins import discover, make_plugin_manager
from pilothouse.testing.images import build_busybox_image, busybox_available

from node_cluster import AgentThread, container_status, pod_json, wait_until

IMAGE = "pilothouse.test/node-process:1"
NODE = "node-process"


class Recorder:
    """A broadcast plugin that records the node agent's hook calls."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def pilothouse_node_labels(self, node_name):
        return {"example.com/recorded-by": "test", "kubernetes.io/os": "ignored"}

    @hookimpl
    def pilothouse_pod_synced(self, pod, status):
        self.calls.append(("synced", pod["metadata"]["name"], status.get("phase")))

    @hookimpl
    def pilothouse_container_started(self, pod, container_name, container_id):
        self.calls.append(("started", pod["metadata"]["name"], container_name))

    @hookimpl
    def pilothouse_container_exited(self, pod, container_name, exit_code, reason):
        self.calls.append(("exited", pod["metadata"]["name"], exit_code, reason))


RECORDER = Recorder()


@pytest.fixture(scope="module")
def node(apiserver, tmp_path_factory):
    if not any(p.name == "process" for p in discover(["runtime"], load=False)):
        pytest.skip("pilothouse-runtime-process is not installed")
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    tmp = tmp_path_factory.mktemp("process-node")
    pm = make_plugin_manager()
    pm.register(RECORDER, name="recorder")
    agent = AgentThread(apiserver.url, "process", {"state_dir": str(tmp / "runtime")},
                        node_name=NODE, data_dir=str(tmp / "node"), plugin_manager=pm)
    try:
        agent.start()
        tar = build_busybox_image(tmp, IMAGE)
        agent.run(agent.runtime.import_image(str(tar)))
        agent.start_agent()
        yield agent
    finally:
        agent.stop()


def apply(api, manifest):
    out = api.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    assert out.returncode == 0, out.stderr


def pod(name, command, restart="Always", **container):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 5, "containers": [
                         {"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                          "command": command, **container}]}}


def test_pod_runs_and_its_logs_and_env_are_served(apiserver, node):
    apply(apiserver, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proc"},
                      "stringData": {"token": "s3cret"}})
    apply(apiserver, pod("hello", ["sh", "-c", "echo hello $TOKEN $(POD); sleep 3600"],
                         env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                             "name": "proc", "key": "token"}}},
                              {"name": "POD", "valueFrom": {"fieldRef": {
                                  "fieldPath": "metadata.name"}}}],
                         readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1}))
    try:
        assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/hello",
                                 "--timeout=60s").returncode == 0
        p = pod_json(apiserver, "hello")
        assert p["status"]["phase"] == "Running"
        assert container_status(p, "main")["containerID"].startswith("pilothouse-process://")
        assert wait_until(lambda: node.container_logs("default", "hello", "main")) == \
            "hello s3cret hello\n"
        out = apiserver.kubectl("logs", "hello")
        assert out.stdout == "hello s3cret hello\n", out.stderr
        out = apiserver.kubectl("exec", "hello", "--", "sh", "-c", "echo $TOKEN; exit 4")
        assert (out.returncode, out.stdout) == (4, "s3cret\n"), out.stderr
    finally:
        apiserver.kubectl("delete", "pod", "hello", "--wait=true", "--timeout=60s")


def test_crash_loop_and_run_to_completion(apiserver, node):
    apply(apiserver, pod("crash", ["sh", "-c", "exit 1"]))
    apply(apiserver, pod("job", ["sh", "-c", "echo done"], restart="OnFailure"))
    try:
        cs = wait_until(lambda: (c := container_status(pod_json(apiserver, "crash"), "main"))
                        .get("restartCount", 0) >= 2 and c, 60, 0.5)
        assert cs["lastState"]["terminated"]["exitCode"] == 1
        done = wait_until(lambda: (p := pod_json(apiserver, "job"))["status"]["phase"] ==
                          "Succeeded" and p, 60)
        term = container_status(done, "main")["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        # the hooks saw it all, through a plugin manager
        assert ("started", "job", "main") in RECORDER.calls
        assert ("exited", "job", 0, "Completed") in RECORDER.calls
        assert ("exited", "crash", 1, "Error") in RECORDER.calls
        wait_until(lambda: ("synced", "job", "Succeeded") in RECORDER.calls, 10)
        labels = json.loads(apiserver.kubectl("get", "node", NODE, "-o", "json").stdout)[
            "metadata"]["labels"]
        assert labels["example.com/recorded-by"] == "test"
        assert labels["kubernetes.io/os"] == "linux"  # the agent's own labels win
        assert re.search(r"job\s+0/1\s+Completed", apiserver.kubectl("get", "pods").stdout)
    finally:
        for name in ("crash", "job"):
            apiserver.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s")


def test_config_map_volume_when_the_runtime_mounts(apiserver, node):
    if Feature.MOUNTS not in node.runtime.features:
        pytest.skip("the process runtime mounts volumes only in chroot mode (root)")
    apply(apiserver, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pc"},
                      "data": {"greeting": "hi from a volume"}})
    manifest = pod("mounted", ["sh", "-c", "cat /etc/pc/greeting; echo; sleep 3600"],
                   volumeMounts=[{"name": "pc", "mountPath": "/etc/pc"}])
    manifest["spec"]["volumes"] = [{"name": "pc", "configMap": {"name": "pc"}}]
    apply(apiserver, manifest)
    try:
        assert wait_until(lambda: node.container_logs("default", "mounted", "main"), 60) == \
            "hi from a volume\n"
    finally:
        apiserver.kubectl("delete", "pod", "mounted", "--wait=true", "--timeout=60s")


def test_graceful_deletion(apiserver, node):
    apply(apiserver, pod("bye", ["sleep", "3600"]))
    assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/bye",
                             "--timeout=60s").returncode == 0
    uid = pod_json(apiserver, "bye")["metadata"]["uid"]
    out = apiserver.kubectl("delete", "pod", "bye", "--wait=true", "--timeout=60s")
    assert out.returncode == 0 and pod_json(apiserver, "bye") is None
    wait_until(lambda: not node.run(node.runtime.list_pod_sandboxes(
        labels={"io.kubernetes.pod.uid": uid})), 30)
