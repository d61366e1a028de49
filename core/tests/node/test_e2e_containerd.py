"""End to end: a real API server, the node agent in-process and a private containerd; pods
created with the real kubectl run as real containers on the CNI bridge."""

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

from pilothouse.testing.cluster import kubectl_path
from pilothouse.testing.images import build_busybox_image

from node_cluster import (AgentThread, container_id, container_status, containerd_missing,
                     pod_json, wait_until)

pytestmark = [pytest.mark.needs_root]

IMAGE = "pilothouse.test/node-e2e:1"
PAGE = b"<h1>served by a pilothouse pod</h1>\n"
NODE = "node-e2e"


@pytest.fixture(scope="module")
def node(apiserver, tmp_path_factory):
    reason = containerd_missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("node")
    tag = hashlib.sha256(str(tmp).encode()).hexdigest()[:8]
    # a subnet of its own, so that concurrent runs (other checkouts, CI) never share one
    cidr = f"10.236.{int(tag[:2], 16)}.0/24"
    agent = AgentThread(apiserver.url, "containerd", {
        "manage": True, "data_dir": str(tmp / "containerd"), "bridge": f"phe{tag}",
        "pod_cidr": cidr}, node_name=NODE, data_dir=str(tmp / "node"), podCIDR=cidr)
    agent.cidr = cidr
    try:
        agent.start()
        tar = build_busybox_image(tmp, IMAGE, files={"/var/www/index.html": PAGE})
        agent.run(agent.runtime.import_image(str(tar)))
        agent.start_agent()
        yield agent
    finally:
        agent.stop()


def apply(api, manifest: dict):
    out = api.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    assert out.returncode == 0, out.stderr


def pod(name, command, **spec):
    containers = spec.pop("containers", None) or [{
        "name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": command,
        **spec.pop("container", {})}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {
        "test": "node-e2e"}}, "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5,
                                       "containers": containers, **spec}}


def delete(api, name):
    api.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s")


def proxy_available(api) -> bool:
    return getattr(api.server, "node_proxy", None) is not None


def test_node_registers_and_keeps_its_lease(apiserver, node):
    nodes = json.loads(apiserver.kubectl("get", "node", NODE, "-o", "json").stdout)
    labels = nodes["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == NODE and labels["kubernetes.io/os"] == "linux"
    assert "kubernetes.io/arch" in labels
    status = nodes["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert {"cpu", "memory", "pods", "ephemeral-storage"} <= set(status["capacity"])
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == node.agent.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert status["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert nodes["spec"]["podCIDR"] == node.cidr
    lease = json.loads(apiserver.kubectl("get", "lease", NODE, "-n", "kube-node-lease",
                                         "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    out = apiserver.kubectl("get", "nodes")
    assert re.search(rf"{NODE}\s+Ready", out.stdout), out.stdout


def test_pod_created_with_kubectl_serves_http_on_its_ip(apiserver, node):
    apply(apiserver, pod("web", ["httpd", "-f", "-p", "80", "-h", "/var/www"],
                         container={"readinessProbe": {"tcpSocket": {"port": 80},
                                                       "periodSeconds": 1}}))
    try:
        out = apiserver.kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
        assert out.returncode == 0, out.stderr
        p = pod_json(apiserver, "web")
        status = p["status"]
        assert status["phase"] == "Running" and status["hostIP"] == "127.0.0.1"
        assert status["podIP"].startswith(node.cidr.rsplit(".", 1)[0] + ".")
        assert status["qosClass"] == "BestEffort"
        assert status["startTime"]
        cs = container_status(p, "main")
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert cs["containerID"].startswith("containerd://") and cs["imageID"]
        assert "running" in cs["state"]
        with urllib.request.urlopen(f"http://{status['podIP']}/index.html", timeout=10) as r:
            assert r.read() == PAGE
        listing = apiserver.kubectl("get", "pods", "-o", "wide").stdout
        assert re.search(r"web\s+1/1\s+Running\s+0", listing), listing
    finally:
        delete(apiserver, "web")


def test_logs_exec_and_port_forward_through_kubectl(apiserver, node):
    if not proxy_available(apiserver):
        pytest.skip("the API server has no node streaming proxy yet (pods/log, exec, "
                    "portforward)")
    apply(apiserver, pod("tools", ["sh", "-c", "echo started; echo oops >&2; "
                                               "httpd -f -p 8080 -h /var/www"]))
    try:
        assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/tools",
                                 "--timeout=60s").returncode == 0
        logs = wait_until(lambda: apiserver.kubectl("logs", "tools").stdout, 20)
        # stdout and stderr are separate pipes: their relative order is not kept
        assert sorted(logs.splitlines()) == ["oops", "started"]
        assert apiserver.kubectl("logs", "tools", "--tail=1").stdout in ("oops\n",
                                                                         "started\n")
        stamped = apiserver.kubectl("logs", "tools", "--timestamps").stdout.splitlines()
        assert all(re.match(r"^\d{4}-\d\d-\d\dT\S+ (started|oops)$", line)
                   for line in stamped), stamped

        out = apiserver.kubectl("exec", "tools", "--", "cat", "/var/www/index.html")
        assert (out.returncode, out.stdout.encode()) == (0, PAGE), out.stderr
        out = apiserver.kubectl("exec", "tools", "--", "sh", "-c", "echo bye >&2; exit 3")
        assert out.returncode == 3 and "bye" in out.stderr
        assert "command terminated with exit code 3" in out.stderr
        out = apiserver.kubectl("exec", "-i", "tools", "--", "sh", "-c", "tr a-z A-Z",
                                input="shout\n")
        assert (out.returncode, out.stdout) == (0, "SHOUT\n"), out.stderr

        env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig),
               "HOME": str(apiserver.workdir)}
        follow = subprocess.Popen([kubectl_path(), "logs", "-f", "tools"], env=env,
                                  stdout=subprocess.PIPE, text=True)
        forward = subprocess.Popen([kubectl_path(), "port-forward", "pod/tools", ":8080"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert follow.stdout.readline() in ("started\n", "oops\n")
            line = forward.stdout.readline()
            local = int(re.search(r"127\.0\.0\.1:(\d+) ->", line).group(1))
            for _ in range(3):  # several connections over one session
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html",
                                            timeout=10) as r:
                    assert r.read() == PAGE
        finally:
            for proc in (follow, forward):
                proc.terminate()
                proc.wait(10)
    finally:
        delete(apiserver, "tools")


def test_crashing_container_goes_to_crash_loop_back_off(apiserver, node):
    apply(apiserver, pod("crasher", ["sh", "-c", "echo attempt; exit 2"]))
    try:
        seen = []

        def looping():
            cs = container_status(pod_json(apiserver, "crasher"), "main")
            reason = (cs.get("state", {}).get("waiting") or {}).get("reason")
            seen.append(reason)
            return cs if cs.get("restartCount", 0) >= 2 and reason == "CrashLoopBackOff" \
                else None
        cs = wait_until(looping, 60, 0.5, "two restarts and CrashLoopBackOff")
        assert cs["lastState"]["terminated"]["exitCode"] == 2
        assert cs["lastState"]["terminated"]["reason"] == "Error"
        assert "back-off 20s restarting failed container=main" in \
            cs["state"]["waiting"]["message"]
        p = pod_json(apiserver, "crasher")
        assert p["status"]["phase"] == "Running"
        assert re.search(r"crasher\s+0/1\s+CrashLoopBackOff\s+2",
                         apiserver.kubectl("get", "pods").stdout)
        assert node.container_logs("default", "crasher", "main", "previous=true") == \
            "attempt\n"
        events = apiserver.kubectl("get", "events", "--field-selector",
                                   "involvedObject.name=crasher").stdout
        assert "BackOff" in events
    finally:
        delete(apiserver, "crasher")


def test_liveness_failure_restarts_the_container(apiserver, node):
    apply(apiserver, pod("liveness", ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; "
                                                  "sleep 3600"],
                         terminationGracePeriodSeconds=1,
                         container={"livenessProbe": {"exec": {"command": ["cat", "/tmp/ok"]},
                                                      "periodSeconds": 1,
                                                      "failureThreshold": 1}}))
    try:
        cs = wait_until(lambda: (c := container_status(pod_json(apiserver, "liveness"),
                                                       "main")).get("restartCount", 0) >= 1
                        and c, 60, 0.5, "a restart")
        assert cs["lastState"]["terminated"]["exitCode"] == 137  # sh ignores SIGTERM as PID 1
        events = apiserver.kubectl("get", "events", "--field-selector",
                                   "involvedObject.name=liveness").stdout
        assert "Unhealthy" in events and "failed liveness probe" in events
    finally:
        delete(apiserver, "liveness")


def test_readiness_probe_gates_ready(apiserver, node):
    apply(apiserver, pod("ready", ["sleep", "3600"],
                         container={"readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                                       "periodSeconds": 1}}))
    try:
        def ready_condition():
            p = pod_json(apiserver, "ready")
            conds = {c["type"]: c for c in (p or {}).get("status", {}).get("conditions", [])}
            return p, conds.get("Ready", {}).get("status")
        p = wait_until(lambda: (r := ready_condition())[0]["status"].get("phase") == "Running"
                       and r[0], 60)
        time.sleep(2)
        p, ready = ready_condition()
        assert ready == "False"
        assert not container_status(p, "main")["ready"]
        code, _, _ = node.exec_sync(container_id(p, "main"), ["touch", "/tmp/ready"])
        assert code == 0
        wait_until(lambda: ready_condition()[1] == "True", 30)
        node.exec_sync(container_id(p, "main"), ["rm", "/tmp/ready"])
        wait_until(lambda: ready_condition()[1] == "False", 30)
    finally:
        delete(apiserver, "ready")


def test_deletion_is_graceful_and_the_pod_disappears(apiserver, node, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    manifest = pod("grace", ["sh", "-c", "trap 'echo term > /host/term; exit 0' TERM; "
                                         "while true; do sleep 1; done"],
                   terminationGracePeriodSeconds=20,
                   volumes=[{"name": "host", "hostPath": {"path": str(host)}}],
                   container={"volumeMounts": [{"name": "host", "mountPath": "/host"}],
                              "lifecycle": {"preStop": {"exec": {"command": [
                                  "sh", "-c", "echo prestop > /host/prestop"]}}}})
    apply(apiserver, manifest)
    assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/grace",
                             "--timeout=60s").returncode == 0
    uid = pod_json(apiserver, "grace")["metadata"]["uid"]
    t0 = time.monotonic()
    out = apiserver.kubectl("delete", "pod", "grace", "--wait=true", "--timeout=60s")
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert pod_json(apiserver, "grace") is None
    assert (host / "prestop").read_text() == "prestop\n"
    assert (host / "term").read_text() == "term\n"
    assert took < 20  # the container ended on SIGTERM, well before the grace period
    wait_until(lambda: not node.run(node.runtime.list_pod_sandboxes(
        labels={"io.kubernetes.pod.uid": uid})), 30, what="the sandbox to be removed")
    assert not os.path.exists(os.path.join(node.data_dir, "pods", uid))


def test_config_map_volume_and_secret_env_are_visible(apiserver, node):
    apply(apiserver, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                      "data": {"app.conf": "colour=blue\n"}})
    apply(apiserver, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                      "stringData": {"password": "hunter2", "user": "admin"}})
    apply(apiserver, pod("configured", ["sleep", "3600"], volumes=[
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "main",
                                                 "resource": "limits.memory",
                                                 "divisor": "1Mi"}}]}}], container={
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                         {"name": "cache", "mountPath": "/cache"},
                         {"name": "info", "mountPath": "/etc/podinfo"}],
        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                      "key": "password"}}},
                {"name": "GREETING", "value": "hello $(PASSWORD)"}],
        "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "CREDS_"}],
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}))
    try:
        assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/configured",
                                 "--timeout=60s").returncode == 0
        p = pod_json(apiserver, "configured")
        cid = container_id(p, "main")
        assert node.exec_sync(cid, ["cat", "/etc/app/app.conf"]).stdout == b"colour=blue\n"
        env = node.exec_sync(cid, ["env"]).stdout.decode().splitlines()
        assert "PASSWORD=hunter2" in env and "GREETING=hello hunter2" in env
        assert "CREDS_user=admin" in env
        assert node.exec_sync(cid, ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/"
                                           "namespace"]).stdout == b"default"
        assert p["status"]["qosClass"] == "Guaranteed"
        assert any(line.startswith("KUBERNETES_SERVICE_HOST=") for line in env)
        mounts = node.exec_sync(cid, ["cat", "/proc/mounts"]).stdout.decode()
        assert re.search(r" /cache tmpfs ", mounts), mounts
        assert node.exec_sync(cid, ["cat", "/etc/podinfo/labels"]).stdout == b'test="node-e2e"'
        assert node.exec_sync(cid, ["cat", "/etc/podinfo/mem"]).stdout == b"64"
        # limits are the container's cgroup settings (cgroup v1 here; v2 in the else branch)
        if os.path.isdir("/sys/fs/cgroup/memory"):
            limit = node.exec_sync(cid, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
            assert int(limit.stdout) == 64 * 1024 * 1024
            quota = node.exec_sync(cid, ["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"])
            assert int(quota.stdout) == 50000
        else:
            limit = node.exec_sync(cid, ["cat", "/sys/fs/cgroup/memory.max"])
            assert int(limit.stdout) == 64 * 1024 * 1024
        # a ConfigMap change reaches the volume (the agent re-syncs volumes periodically)
        apply(apiserver, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
                          "data": {"app.conf": "colour=green\n"}})
        wait_until(lambda: node.exec_sync(cid, ["cat", "/etc/app/app.conf"]).stdout ==
                   b"colour=green\n", 30, what="the new ConfigMap content")
    finally:
        uid = (pod_json(apiserver, "configured") or {}).get("metadata", {}).get("uid")
        delete(apiserver, "configured")
    if uid:  # the tmpfs went with the pod
        pod_dir = os.path.join(node.data_dir, "pods", uid)
        wait_until(lambda: not os.path.exists(pod_dir), 30, what="the pod directory to go")
        with open("/proc/self/mountinfo") as f:
            assert pod_dir not in f.read()


def _run_on_a_terminal(argv, env, send: bytes, after: float = 3.0, timeout: float = 60,
                       until: str | None = None):
    """Run ``argv`` with a pseudo-terminal (33 rows, 101 columns) as its stdin/stdout,
    type ``send`` after ``after`` seconds; return (exit code, everything it printed).
    With ``until``, stop it once that text was printed."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out, sent, t0 = b"", False, time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
            if not sent and time.monotonic() - t0 > after:
                os.write(master, send)
                sent = True
            if until is not None and until.encode() in out:
                proc.terminate()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_exec_and_attach_on_a_terminal_and_the_python_client(apiserver, node):
    if not proxy_available(apiserver):
        pytest.skip("the API server has no node streaming proxy yet")
    apply(apiserver, pod("term", ["sh"], container={"stdin": True, "tty": True}))
    apply(apiserver, pod("pyweb", ["httpd", "-f", "-p", "80", "-h", "/var/www"]))
    try:
        for name in ("term", "pyweb"):
            assert apiserver.kubectl("wait", "--for=condition=Ready", f"pod/{name}",
                                     "--timeout=60s").returncode == 0
        env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig),
               "HOME": str(apiserver.workdir)}
        # kubectl exec -it: a terminal of the client's size, input, exit code
        code, out = _run_on_a_terminal(
            [kubectl_path(), "exec", "-it", "term", "--", "sh", "-c",
             # the terminal gets the client's size with the first resize message, which
             # may follow the start of the command by a moment
             "tty; sleep 1; stty size; read x; echo got $x; exit 5"], env, b"typed\r")
        assert code == 5, out
        assert "/dev/pts/" in out and "33 101" in out and "got typed" in out
        assert "command terminated with exit code 5" in out
        # kubectl attach -it to the container's shell
        code, out = _run_on_a_terminal([kubectl_path(), "attach", "-it", "term"], env,
                                       b"echo attached-$((6*7))\r", after=2, timeout=30,
                                       until="attached-42")
        assert "attached-42" in out, out

        from kubernetes import client as k8s
        from kubernetes.stream import portforward, stream
        core = k8s.CoreV1Api(apiserver.k8s_client())
        session = stream(core.connect_get_namespaced_pod_exec, "pyweb", "default",
                         command=["sh", "-c", "echo from-python; exit 2"], stderr=True,
                         stdin=False, stdout=True, tty=False, _preload_content=False)
        session.run_forever(timeout=30)
        assert session.read_stdout() == "from-python\n" and session.returncode == 2
        forwarded = portforward(core.connect_get_namespaced_pod_portforward, "pyweb",
                                "default", ports="80")
        sock = forwarded.socket(80)
        sock.setblocking(True)
        sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        sock.close()
        assert reply.startswith(b"HTTP/1.") and reply.endswith(PAGE)
    finally:
        for name in ("term", "pyweb"):
            delete(apiserver, name)


def test_missing_images_per_pull_policy(apiserver, node):
    absent = "pilothouse.test/absent:1"
    apply(apiserver, pod("pull", ["true"], containers=[
        {"name": "main", "image": absent, "imagePullPolicy": "IfNotPresent"}]))
    apply(apiserver, pod("never", ["true"], containers=[
        {"name": "main", "image": absent, "imagePullPolicy": "Never"}]))
    try:
        def reason(name):
            waiting = container_status(pod_json(apiserver, name), "main").get(
                "state", {}).get("waiting") or {}
            return waiting.get("reason"), waiting.get("message", "")
        # the first failed pull is ErrImagePull; syncs within the back-off that follows
        # (the agent's relist sees the new sandbox at once) say ImagePullBackOff
        later = wait_until(lambda: reason("pull")[0] == "ImagePullBackOff" and reason("pull"),
                           30)
        assert later[1] == f'Back-off pulling image "{absent}"'
        events = apiserver.kubectl("get", "events", "--field-selector",
                                   "involvedObject.name=pull").stdout
        assert "Error: ErrImagePull" in events and f'Failed to pull image "{absent}"' in events
        again = wait_until(lambda: reason("pull")[0] == "ErrImagePull" and reason("pull"), 30)
        assert absent in again[1]  # the retry after the back-off failed the same way
        never = wait_until(lambda: reason("never")[0] and reason("never"), 30)
        assert never == ("ErrImageNeverPull", f'Container image "{absent}" is not present '
                                              f'with pull policy of Never')
        assert pod_json(apiserver, "pull")["status"]["phase"] == "Pending"
        assert re.search(r"pull\s+0/1\s+(ErrImagePull|ImagePullBackOff)",
                         apiserver.kubectl("get", "pods").stdout)
    finally:
        for name in ("pull", "never"):
            delete(apiserver, name)


def test_forced_deletion_during_a_long_grace_period(apiserver, node):
    apply(apiserver, pod("stubborn", ["sleep", "3600"], terminationGracePeriodSeconds=3600))
    assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/stubborn",
                             "--timeout=60s").returncode == 0
    uid = pod_json(apiserver, "stubborn")["metadata"]["uid"]
    assert apiserver.kubectl("delete", "pod", "stubborn", "--wait=false").returncode == 0
    time.sleep(1)  # terminating: sleep as PID 1 ignores SIGTERM, the grace period is long
    assert pod_json(apiserver, "stubborn")["metadata"]["deletionTimestamp"]
    out = apiserver.kubectl("delete", "pod", "stubborn", "--force", "--grace-period=0")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: not node.run(node.runtime.list_pod_sandboxes(
        labels={"io.kubernetes.pod.uid": uid})), 30, what="the forced pod to be removed")
