"""End to end: ``pilothouse up`` as a user runs it (a subprocess, the same command), then
real kubectl against the cluster it starts: the examples, HTTP from pod IPs, scaling, a
rollout and its undo, deletion with each propagation policy, a killed container, a killed
controller manager mid-rollout, a stopped node agent; then ``pilothouse down`` and nothing of
the cluster is left running.

The cluster uses a temporary state directory, free ports, its own bridge and pod CIDR, so
it never touches a cluster the machine already runs. Tests that need a component or a
controller this installation lacks skip and say which.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml



def e2e(test):
    """Marks of the tests that run a cluster: root for containerd, and slow."""
    return pytest.mark.needs_root(pytest.mark.slow(test))


ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IMAGE = "pilothouse.local/busybox:1"
NODE = "up-e2e"
POD_CIDR = "10.241.0.0/24"
COMPONENT_NAMES = ("apiserver", "scheduler", "controller-manager", "node")


def _missing_system() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private containerd)"
    for binary in ("containerd", "ctr", "runc"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (Debian packages containerd, runc)"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "CNI plugins missing (Debian package containernetworking-plugins)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pilothouse_argv() -> list[str]:
    """``pilothouse`` as the user types it (the console script runs the same main)."""
    return [sys.executable, "-m", "pilothouse.cli"]


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: "
                                 f"last {last!r}")
        time.sleep(interval)


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


class Cluster:
    """A cluster started by ``pilothouse up`` in a temporary state directory."""

    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        self.state = tmp / "state"
        tag = hashlib.sha256(str(tmp).encode()).hexdigest()[:6]
        self.bridge = f"phup{tag}"
        self.api_port, self.node_port = _free_port(), _free_port()
        self.user_config = tmp / "my-config.yaml"
        self.home = tmp / "home"
        self.home.mkdir()
        self.container_ids: set[str] = set()

    # -- the commands under test ----------------------------------------------------------

    def up_args(self) -> list[str]:
        return ["up", "--state-dir", str(self.state), "--config", str(self.user_config),
                "--api-port", str(self.api_port), "--node-port", str(self.node_port),
                "--node-name", NODE, "--bridge", self.bridge, "--pod-cidr", POD_CIDR,
                "--kubeconfig", str(self.tmp / "kubeconfig")]

    def pilothouse(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.home)}
        return subprocess.run([*_pilothouse_argv(), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def up(self) -> subprocess.CompletedProcess:
        out = self.pilothouse(*self.up_args())
        assert out.returncode == 0, f"pilothouse up failed:\n{out.stderr}\n{out.stdout}\n" \
                                    f"{self.logs()}"
        return out

    def status(self) -> dict:
        out = self.pilothouse("status", "--state-dir", str(self.state), "-o", "json")
        return json.loads(out.stdout)

    def running(self, component: str) -> bool:
        return any(c["name"] == component and c["state"] == "running"
                   for c in self.status()["components"])

    def pid(self, component: str) -> int:
        return json.loads((self.state / "run" / f"{component}.pid").read_text())["pid"]

    def config(self) -> dict:
        return yaml.safe_load((self.state / "config.yaml").read_text())

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted((self.state / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # -- kubectl ----------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        from pilothouse.testing.cluster import kubectl_path
        env = {**os.environ, "KUBECONFIG": str(self.state / "kubeconfig"),
               "HOME": str(self.home)}
        out = subprocess.run([kubectl_path(), *args], input=input, capture_output=True,
                             text=True, env=env, timeout=timeout)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}{out.stdout}"
        return out

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def api(self, path: str) -> dict:
        return json.loads(fetch(f"http://127.0.0.1:{self.api_port}{path}"))

    def pods(self, selector: str) -> list[dict]:
        return self.get("pods", "-l", selector)["items"]

    def remember_containers(self, pods: list[dict]) -> None:
        for pod in pods:
            for st in (pod.get("status") or {}).get("containerStatuses") or []:
                if st.get("containerID"):
                    self.container_ids.add(st["containerID"].partition("://")[2])

    # -- what a test may need ------------------------------------------------------------------

    def need_controllers(self, *wanted: str) -> None:
        """Skip unless a controller host runs with controllers whose names contain each of
        ``wanted`` (names compared without '-' and '_')."""
        enabled = (self.config().get("controllers") or {}).get("enabled") or []
        norm = [n.lower().replace("-", "").replace("_", "") for n in enabled]
        missing = [w for w in wanted if not any(w in n for n in norm)]
        if missing:
            pytest.skip(f"waits on plugins/controllers: no {', '.join(missing)} controller "
                        f"installed (enabled: {', '.join(enabled) or 'none'})")
        if not self.running("controller-manager"):
            pytest.skip("waits on the controller host: `pilothouse controller-manager` is "
                        "not running in this installation")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def _processes_in_containers(ids: set[str]) -> list[str]:
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue
        if any(cid in cgroup for cid in ids):
            found.append(proc.name)
    return found


def _container_pid(container_id: str) -> int:
    """The PID (on the host) of the container's first process, from its cgroup path."""
    pids = sorted(int(p) for p in _processes_in_containers({container_id}))
    assert pids, f"no process found in container {container_id}"
    return pids[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _missing_system()
    if reason:
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("up"))
    # Short node-lifecycle timings so that a stopped node agent is noticed quickly: the
    # agent renews its Lease every 2 s, the node lifecycle controller gives up on it after
    # 8 s of silence and evicts pods 2 s after tainting the node.
    from pilothouse.config import default_profile
    enabled = default_profile()["controllers"].get("enabled") or []
    doc = {"components": {"node": {"leaseDurationSeconds": 8, "statusUpdateFrequency": 2,
                                   "relistPeriod": 0.5}}}
    if "nodelifecycle" in enabled:
        doc["controllers"] = {"enabled": enabled, "options": {"nodelifecycle": {
            "nodeMonitorPeriod": 1, "nodeMonitorGracePeriod": 8,
            "defaultTolerationSeconds": 2}}}
    c.user_config.write_text(yaml.safe_dump(doc))
    try:
        c.up_result = c.up()
        yield c
    finally:
        down = c.pilothouse("down", "--state-dir", str(c.state), "--purge")
        c.down_result = down
        # whatever `down` missed: never leave processes, mounts or the bridge behind
        for name in COMPONENT_NAMES:
            pid_file = c.state / "run" / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        if (c.state / "config.yaml").exists():
            import asyncio

            from pilothouse.testing import build_driver
            options = c.config()["runtime"]["options"]

            async def purge():
                runtime = build_driver("runtime", "containerd", options)
                await runtime.open()
                await runtime.destroy()
            try:
                asyncio.run(purge())
            except Exception:  # noqa: BLE001 - best effort after a failed down
                pass
        subprocess.run(["ip", "link", "del", c.bridge], capture_output=True)


# -- without a cluster (no root needed) ------------------------------------------------------


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*_pilothouse_argv(), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path):
    state = tmp_path / "state"
    out = _run("up", "--dry-run", "--state-dir", str(state), "--api-port", "16999",
               "--node-name", "dry", "--kubeconfig", "-")
    assert out.returncode == 0, out.stderr
    for text in ("nothing is changed", f"write the config {state}/config.yaml",
                 "plugin: raft", "plugin: containerd", "manage: true", "port: 16999",
                 "start the API server", "apiserver --config", "check dependencies"):
        assert text in out.stdout, out.stdout
    assert not state.exists()


def test_status_and_down_without_a_cluster(tmp_path):
    out = _run("status", "--state-dir", str(tmp_path / "none"))
    assert out.returncode == 1 and "no cluster in" in out.stdout
    out = _run("down", "--state-dir", str(tmp_path / "none"))
    assert out.returncode == 0 and "nothing to stop" in out.stderr


def test_missing_system_packages_are_named_with_the_command_to_install_them(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"runtime": {"plugin": "containerd", "options": {
        "manage": True, "cni_bin_dir": str(tmp_path / "no-cni")}}}))
    out = _run("up", "--no-install", "--config", str(config), "--state-dir",
               str(tmp_path / "state"), "--kubeconfig", "-")
    assert out.returncode == 1
    assert "[2/7] checking dependencies" in out.stderr and "failed" in out.stderr
    if os.geteuid() == 0:
        assert "CNI plugins bridge, host-local, loopback, portmap" in out.stderr, out.stderr
        assert "apt-get install -y containernetworking-plugins" in out.stderr, out.stderr
    else:
        assert "needs root" in out.stderr and "sudo pilothouse up" in out.stderr
    assert not (tmp_path / "state" / "run" / "apiserver.pid").exists()


def test_config_keeps_the_users_choices_and_flags_win(tmp_path):
    from pilothouse.cluster._config import ClusterSettings, cluster_config
    from pilothouse.cluster._state import StateDir
    from pilothouse.config import parse_config
    user = parse_config({"runtime": {"plugin": "containerd", "options": {
                             "endpoint": "/run/containerd/containerd.sock"}},
                         "components": {"apiserver": {"port": 7443},
                                        "node": {"maxPods": 20}}})
    state = StateDir(tmp_path)
    doc = cluster_config(user, state, ClusterSettings(), ["replicaset"])
    assert doc["base"] == "none"
    assert doc["components"]["apiserver"]["port"] == 7443
    assert doc["components"]["node"]["maxPods"] == 20
    assert doc["runtime"]["options"] == {"endpoint": "/run/containerd/containerd.sock"}
    assert doc["store"]["options"]["data_dir"] == str(tmp_path / "store")
    from pilothouse.config import default_profile
    expected = default_profile()["controllers"].get("enabled") or ["replicaset"]
    assert doc["controllers"]["enabled"] == expected  # the profile's, else what is installed
    none = parse_config({"controllers": {"enabled": []}})
    assert cluster_config(none, state, ClusterSettings(), ["replicaset"])["controllers"][
        "enabled"] == ["replicaset"]
    assert doc["components"]["controller-manager"]["leaderElect"] is False
    doc = cluster_config(user, state, ClusterSettings(api_port=9443, pod_cidr="10.9.0.0/24"),
                         [])
    assert doc["components"]["apiserver"]["port"] == 9443
    assert doc["components"]["node"]["podCIDR"] == "10.9.0.0/24"
    managed = cluster_config(parse_config({}), state, ClusterSettings(), [])
    assert managed["runtime"] == {"plugin": "containerd", "options": {
        "manage": True, "data_dir": str(tmp_path / "containerd"),
        "pod_cidr": "10.244.0.0/24", "bridge": "ph0"}}


def test_pid_files_trust_only_the_recorded_process(tmp_path):
    from pilothouse.cluster._state import StateDir, stop_process
    state = StateDir(tmp_path)
    rec = state.launch("sleeper", ["sleep", "30"])
    assert state.running("sleeper") is not None and rec.start_time is not None
    # the same pid with another start time is a recycled pid, not our process
    doc = json.loads(state.pid_file("sleeper").read_text())
    state.pid_file("sleeper").write_text(json.dumps({**doc, "start_time": rec.start_time - 1}))
    assert state.running("sleeper") is None and state.stale("sleeper") is not None
    state.pid_file("sleeper").write_text(json.dumps(doc))
    assert stop_process(rec.pid, rec.start_time, timeout=5) == "stopped"
    assert state.running("sleeper") is None
    assert state.clean_stale("sleeper") and not state.pid_file("sleeper").exists()
    assert "pilothouse up started: sleep 30" in state.log_file("sleeper").read_text()


def test_stop_escalates_to_sigkill(tmp_path):
    from pilothouse.cluster._state import StateDir, stop_process
    state = StateDir(tmp_path)
    rec = state.launch("stubborn", ["sh", "-c", "trap '' TERM; echo $((6 * 7)); "
                                                "while :; do sleep 0.1; done"])
    # the log's first line repeats the command: wait for what only the shell prints
    wait_until(lambda: "\n42\n" in state.log_file("stubborn").read_text(), 10)
    assert stop_process(rec.pid, rec.start_time, timeout=0.5) == "killed"
    assert not rec.alive()


def test_progress_lines():
    import io

    from pilothouse.cluster._progress import Progress, StepFailed
    stream = io.StringIO()
    progress = Progress(3, stream)
    with progress.step("first"):
        pass
    with progress.step("second") as step:
        step.info("doing a long thing")
        step.done("reused")
    with pytest.raises(StepFailed):
        with progress.step("third"):
            raise StepFailed("it broke", "detail line")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\[1/3\] first \.\.\. ok \(\d+\.\d s\)", lines[0])
    assert lines[1] == "[2/3] second ..." and lines[2] == "      doing a long thing"
    assert re.fullmatch(r"\[2/3\] second \.\.\. reused \(\d+\.\d s\)", lines[3])
    assert lines[4].startswith("[3/3] third ... failed")
    assert lines[5:] == ["      it broke", "      | detail line"]


# -- up, status, idempotence ---------------------------------------------------------------


@e2e
def test_up_reports_progress_and_every_available_component_runs(cluster):
    err = cluster.up_result.stderr
    steps = re.findall(r"^\[(\d)/(\d)\] (.+?) \.\.\. (.+) \((\d+\.\d) s\)$", err, re.M)
    assert [int(s[0]) for s in steps] == list(range(1, 8)), err
    assert "starting the API server" in err and "starting the node agent" in err
    assert f"node {NODE} Ready" in err
    out = cluster.up_result.stdout
    assert f"API server http://127.0.0.1:{cluster.api_port}" in out
    assert "kubectl" in out
    status = cluster.status()
    states = {c["name"]: c["state"] for c in status["components"]}
    for name in ("apiserver", "scheduler", "node"):
        assert states[name] == "running", status
    slots = {row["slot"]: [p["name"] for p in row["plugins"]] for row in status["plugins"]}
    assert slots["store"] == ["raft"] and slots["runtime"] == ["containerd"]
    nodes = cluster.get("nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [NODE]
    # the kubeconfig asked for has the pilothouse context pointing at this server
    kubeconfig = yaml.safe_load((cluster.tmp / "kubeconfig").read_text())
    assert kubeconfig["current-context"] == "pilothouse"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == \
        f"http://127.0.0.1:{cluster.api_port}"


@e2e
def test_status_table_names_components_and_plugins(cluster):
    out = cluster.pilothouse("status", "--state-dir", str(cluster.state))
    for text in ("COMPONENT", "apiserver", "running", f"127.0.0.1:{cluster.api_port}",
                 "SLOT", "store", "raft", "pilothouse-store-raft", "containerd"):
        assert text in out.stdout, out.stdout


@e2e
def test_up_again_reuses_what_runs(cluster):
    pids = {n: cluster.pid(n) for n in ("apiserver", "scheduler", "node")}
    out = cluster.up()
    for name, pid in pids.items():
        assert f"already running (pid {pid})" in out.stderr, out.stderr
        assert cluster.pid(name) == pid
    assert "writing the config" in out.stderr and "unchanged" in out.stderr


@e2e
def test_up_dry_run_prints_the_plan_and_changes_nothing(cluster):
    before = (cluster.state / "config.yaml").read_text()
    out = cluster.pilothouse(*cluster.up_args(), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "nothing is changed" in out.stdout
    assert "already running" in out.stdout
    assert (cluster.state / "config.yaml").read_text() == before


@e2e
def test_up_with_a_different_port_refuses_while_running(cluster):
    args = cluster.up_args()
    args[args.index("--api-port") + 1] = str(_free_port())
    out = cluster.pilothouse(*args)
    assert out.returncode == 1
    assert "different config" in out.stderr and "pilothouse down" in out.stderr


# -- pods on the node ----------------------------------------------------------------------


@e2e
def test_probes_example_serves_its_config_map_and_restarts_on_liveness_failure(cluster):
    cluster.kubectl("apply", "-f", str(EXAMPLES / "probes.yaml"))
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod/probes", "--timeout=90s")
        pod = cluster.get("pod", "probes")
        cluster.remember_containers([pod])
        assert "Served by busybox httpd from a ConfigMap volume" in fetch(
            f"http://{pod['status']['podIP']}:8080/")
        cluster.kubectl("patch", "configmap", "site", "--type=json",
                        "-p", '[{"op": "remove", "path": "/data/healthz"}]')
        wait_until(lambda: cluster.get("pod", "probes")["status"]["containerStatuses"][0]
                   ["restartCount"] >= 1, 90, what="a restart after the liveness probe fails")
        events = cluster.kubectl("get", "events", "--field-selector",
                                 "involvedObject.name=probes").stdout
        assert "Liveness probe failed" in events or "failed liveness probe" in events
    finally:
        cluster.kubectl("delete", "-f", str(EXAMPLES / "probes.yaml"), "--wait=true",
                        check=False)


@e2e
def test_killed_container_is_restarted(cluster):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [
               {"name": "httpd", "image": IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/var/www"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        cluster.kubectl("wait", "--for=condition=Ready", "pod/victim", "--timeout=90s")
        first = cluster.get("pod", "victim")
        cluster.remember_containers([first])
        status = first["status"]["containerStatuses"][0]
        cid = status["containerID"].partition("://")[2]
        os.kill(_container_pid(cid), signal.SIGKILL)

        def restarted():
            st = cluster.get("pod", "victim")["status"]["containerStatuses"][0]
            return st["restartCount"] >= 1 and st.get("ready") and st

        st = wait_until(restarted, 90, what="the killed container to be restarted")
        assert st["containerID"] != status["containerID"]
        assert st["lastState"]["terminated"]["exitCode"] == 137
        again = cluster.get("pod", "victim")
        cluster.remember_containers([again])
        assert "Hello from a pilothouse pod" in fetch(f"http://{again['status']['podIP']}:8080/")
    finally:
        cluster.kubectl("delete", "pod", "victim", "--wait=true", check=False)


# -- the Deployment example ----------------------------------------------------------------


class SurgeWatch:
    """Samples the sum of the web ReplicaSets' spec.replicas (what maxSurge bounds) in a
    thread, straight from the API (kubectl would be too slow to sample)."""

    def __init__(self, cluster: Cluster, selector: str = "app=web"):
        self.cluster, self.selector = cluster, selector
        self.highest = 0       # sum of the ReplicaSets' spec.replicas
        self.highest_pods = 0  # pods neither terminating nor finished
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rs = self.cluster.api(f"/apis/apps/v1/namespaces/default/replicasets"
                                      f"?labelSelector={self.selector}")
                total = sum((r.get("spec") or {}).get("replicas") or 0 for r in rs["items"])
                pods = self.cluster.api(f"/api/v1/namespaces/default/pods"
                                        f"?labelSelector={self.selector}")
                live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")
                        and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
                self.highest = max(self.highest, total)
                self.highest_pods = max(self.highest_pods, len(live))
                self.samples += 1
            except Exception:  # noqa: BLE001 - the API may be briefly unreachable
                pass
            time.sleep(0.05)

    def __enter__(self) -> "SurgeWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _pages(cluster: Cluster) -> dict[str, str]:
    """pod name → the page it serves, for the ready web pods."""
    out = {}
    pods = cluster.pods("app=web")
    cluster.remember_containers(pods)
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        if ready:
            out[pod["metadata"]["name"]] = fetch(f"http://{pod['status']['podIP']}:8080/").strip()
    return out


def _rollout(cluster: Cluster, timeout: str = "180s") -> None:
    cluster.kubectl("rollout", "status", "deployment/web", f"--timeout={timeout}",
                    timeout=300)


def _versions(cluster: Cluster, replicas: int) -> set[str]:
    def settled():
        pages = _pages(cluster)
        live = [p for p in cluster.pods("app=web") if not p["metadata"].get("deletionTimestamp")]
        return len(pages) == replicas and len(live) == replicas and pages
    pages = wait_until(settled, 120, what=f"{replicas} ready web pods")
    for name, page in pages.items():
        assert page.startswith(f"hello from {name}, version "), page
    return {page.rsplit(" ", 1)[1] for page in pages.values()}


@pytest.fixture
def web(cluster):
    """The web example is deleted after the test, whatever happened (with every component
    running again, since pods go only once the node agent confirms it)."""
    yield
    if not all(cluster.running(n) for n in COMPONENT_NAMES):
        cluster.up()
    for args in (("-f", str(EXAMPLES / "web.yaml")), ("rs,pods", "-l", "app=web")):
        try:
            cluster.kubectl("delete", *args, "--ignore-not-found", "--wait=true",
                            "--timeout=90s", check=False)
        except subprocess.TimeoutExpired:
            pass


@e2e
def test_web_example_serves_http_scales_rolls_out_and_undoes(cluster, web):
    cluster.need_controllers("deployment", "replicaset")
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    _rollout(cluster)
    deploy = cluster.get("deployment", "web")
    assert deploy["status"]["availableReplicas"] == 2
    assert _versions(cluster, 2) == {"1"}
    svc = cluster.get("service", "web")
    assert svc["spec"]["clusterIP"]

    cluster.kubectl("scale", "deployment/web", "--replicas=3")
    _rollout(cluster)
    assert _versions(cluster, 3) == {"1"}

    with SurgeWatch(cluster) as watch:
        cluster.kubectl("set", "env", "deployment/web", "VERSION=2")
        _rollout(cluster)
        assert _versions(cluster, 3) == {"2"}
        cluster.kubectl("rollout", "undo", "deployment/web")
        _rollout(cluster)
        assert _versions(cluster, 3) == {"1"}
    assert watch.samples > 10
    assert watch.highest <= 3 + 1, f"maxSurge 1 exceeded: {watch.highest} replicas"
    assert watch.highest_pods <= 3 + 1, f"maxSurge 1 exceeded: {watch.highest_pods} pods"
    history = cluster.kubectl("rollout", "history", "deployment/web").stdout
    assert re.search(r"^\s*3\s", history, re.M), history  # revisions 2 and 3 (1 became 3)


@e2e
def test_killed_controller_manager_restarted_by_up_finishes_the_rollout(cluster, web):
    cluster.need_controllers("deployment", "replicaset")
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    cluster.kubectl("scale", "deployment/web", "--replicas=3")
    _rollout(cluster)
    others = {n: cluster.pid(n) for n in ("apiserver", "scheduler", "node")}
    with SurgeWatch(cluster) as watch:
        cluster.kubectl("set", "env", "deployment/web", "VERSION=killed-mid-rollout")

        def new_rs_started():
            rs = cluster.get("rs", "-l", "app=web")["items"]
            return len(rs) >= 2 and any(
                (r["spec"].get("replicas") or 0) >= 1 and
                "killed-mid-rollout" in json.dumps(r["spec"]["template"]) for r in rs)
        wait_until(new_rs_started, 60, 0.05, what="the rollout to start")
        os.kill(cluster.pid("controller-manager"), signal.SIGKILL)
        wait_until(lambda: not cluster.running("controller-manager"), 10,
                   what="the controller manager to be gone")
        time.sleep(2)
        out = cluster.up()
        for name, pid in others.items():
            assert f"already running (pid {pid})" in out.stderr, out.stderr
            assert cluster.pid(name) == pid
        assert re.search(r"starting the controller manager \.\.\. ok", out.stderr), out.stderr
        _rollout(cluster)
        assert _versions(cluster, 3) == {"killed-mid-rollout"}
    assert watch.highest <= 3 + 1, f"maxSurge 1 exceeded: {watch.highest} replicas"
    assert watch.highest_pods <= 3 + 1, f"maxSurge 1 exceeded: {watch.highest_pods} pods"
    cluster.kubectl("delete", "-f", str(EXAMPLES / "web.yaml"), "--wait=true")


@e2e
@pytest.mark.parametrize("policy", ["foreground", "background", "orphan"])
def test_delete_with_each_propagation_policy(cluster, web, policy):
    cluster.need_controllers("deployment", "replicaset", "garbage")
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    _rollout(cluster)
    rs_names = {r["metadata"]["name"] for r in cluster.get("rs", "-l", "app=web")["items"]}
    assert rs_names
    cluster.kubectl("delete", "deployment", "web", f"--cascade={policy}", "--wait=true")
    if policy == "orphan":
        time.sleep(3)  # give a wrong collector time to act
        left = cluster.get("rs", "-l", "app=web")["items"]
        assert {r["metadata"]["name"] for r in left} == rs_names
        assert all(not r["metadata"].get("ownerReferences") for r in left)
        assert len(cluster.pods("app=web")) == 2
        cluster.kubectl("delete", "rs", "-l", "app=web", "--wait=true")
    if policy == "foreground":  # the owner went only after its dependents
        assert not cluster.get("rs", "-l", "app=web")["items"]
    wait_until(lambda: not cluster.get("rs", "-l", "app=web")["items"]
               and not cluster.pods("app=web"), 120, what="the ReplicaSets and pods to go")
    cluster.kubectl("delete", "service", "web", "--ignore-not-found")


# -- a stopped node agent ------------------------------------------------------------------


def _node_ready(cluster: Cluster) -> str:
    node = cluster.get("node", NODE)
    return next((c["status"] for c in node["status"].get("conditions") or []
                 if c["type"] == "Ready"), "")


@e2e
@pytest.mark.timeout(600)
def test_stopped_node_agent_goes_not_ready_and_its_pods_are_evicted(cluster, web):
    cluster.need_controllers("deployment", "replicaset", "nodelifecycle")
    cluster.kubectl("apply", "-f", str(EXAMPLES / "web.yaml"))
    _rollout(cluster)
    before = {p["metadata"]["name"] for p in cluster.pods("app=web")}
    os.kill(cluster.pid("node"), signal.SIGTERM)
    wait_until(lambda: not cluster.running("node"), 30, what="the node agent to stop")
    wait_until(lambda: _node_ready(cluster) in ("Unknown", "False"), 180,
               what="the node to go NotReady")
    taints = cluster.get("node", NODE)["spec"].get("taints") or []
    assert any(t["key"].startswith("node.kubernetes.io/") for t in taints), taints

    def evicted():
        pods = {p["metadata"]["name"]: p for p in cluster.pods("app=web")}
        gone = [n for n in before if n not in pods or pods[n]["metadata"].get(
            "deletionTimestamp")]
        return len(gone) == len(before) and gone
    wait_until(evicted, 240, what="the node's pods to be evicted")

    out = cluster.up()  # restarts the node agent only
    assert re.search(r"starting the node agent \.\.\. ok", out.stderr), out.stderr
    wait_until(lambda: _node_ready(cluster) == "True", 120, what="the node to be Ready again")
    _rollout(cluster, "240s")
    # the agent, back, finishes terminating the evicted pods; their replacements serve
    wait_until(lambda: not ({p["metadata"]["name"] for p in cluster.pods("app=web")} & before),
               90, what="the evicted pods to be gone")
    assert _versions(cluster, 2) == {"1"}
    cluster.kubectl("delete", "-f", str(EXAMPLES / "web.yaml"), "--wait=true")


# -- down ----------------------------------------------------------------------------------


@e2e
def test_down_stops_every_component_and_the_pods(cluster):
    # runs last in this module (file order); the fixture's teardown purges afterwards
    seen = set(cluster.container_ids)
    out = cluster.pilothouse("down", "--state-dir", str(cluster.state))
    assert out.returncode == 0, out.stderr
    assert "stopping the API server" in out.stderr
    assert "data kept" in out.stderr
    assert not _processes_mentioning(str(cluster.state)), _processes_mentioning(
        str(cluster.state))
    assert not _processes_in_containers(seen)
    assert subprocess.run(["ip", "link", "show", cluster.bridge],
                          capture_output=True).returncode != 0, "the bridge is still there"
    status = cluster.pilothouse("status", "--state-dir", str(cluster.state))
    assert status.returncode == 1 and "stopped" in status.stdout
    assert (cluster.state / "store").is_dir(), "down without --purge keeps the data"
