"""Unit tests of the node agent's pure parts: back-off, phase and conditions, environment,
volumes, CRI log reading, probes and handlers, settings, the status patch."""

import asyncio
import base64
import json
import os
import stat

import pytest
from aiohttp import web

from pilothouse.config import ConfigError, parse_config
from pilothouse.interfaces import runtime as rt
from pilothouse.model.quantity import Quantity
from pilothouse.node._backoff import Backoff
from pilothouse.node._env import ConfigError as EnvError
from pilothouse.node._env import expand, resolve_env
from pilothouse.node._logs import parse_timestamp, read_logs
from pilothouse.node._podspec import dns_config, hostname_of, sandbox_config
from pilothouse.node._probes import ContainerProber, ProbeState, run_handler
from pilothouse.node._settings import settings
from pilothouse.node._status import pod_phase
from pilothouse.node._statusmanager import StatusManager, status_patch
from pilothouse.node._volumes import (SA_MOUNT_PATH, VolumeError, VolumeManager,
                                      atomic_write_dir, placeholder_token)

from node_fakes import Clock, FakeRuntime, make_pod


def run(coro):
    return asyncio.run(coro)


# -- back-off ----------------------------------------------------------------------------

def test_backoff_sequence_and_reset():
    clock = Clock()
    b = Backoff(clock=clock)
    delays = []
    for _ in range(9):
        finished = clock()
        left = b.remaining("k", finished)
        delays.append(left)
        clock.advance(left)
        b.next("k", finished)
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    clock.advance(601)
    assert b.remaining("k", clock()) == 0  # more than 2 * max since the last failure
    b.next("k", clock())
    assert b.delay("k") == 10
    b.forget(lambda k: k == "k")
    assert b.delay("k") == 0


# -- phase -------------------------------------------------------------------------------

def _running(name):
    return {"name": name, "state": {"running": {}}, "containerID": "x://1"}


def _terminated(name, code):
    return {"name": name, "state": {"terminated": {"exitCode": code}}, "containerID": "x://1"}


def _waiting(name, last_code=None):
    st = {"name": name, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    if last_code is not None:
        st["lastState"] = {"terminated": {"exitCode": last_code}}
        st["containerID"] = "x://1"
    return st


@pytest.mark.parametrize("policy,names,statuses,phase", [
    ("Always", "a", [_running("a")], "Running"),
    ("Always", "a", [_waiting("a")], "Pending"),
    ("Always", "a", [_waiting("a", 1)], "Running"),  # CrashLoopBackOff
    ("Always", "a", [_terminated("a", 0)], "Running"),  # about to restart
    ("OnFailure", "ab", [_terminated("a", 0), _terminated("b", 0)], "Succeeded"),
    ("OnFailure", "ab", [_terminated("a", 0), _terminated("b", 1)], "Running"),
    ("Never", "ab", [_terminated("a", 0), _terminated("b", 1)], "Failed"),
    ("Never", "ab", [_terminated("a", 0), _running("b")], "Running"),
    ("Never", "ab", [_terminated("a", 0)], "Pending"),  # b has no status yet
])
def test_pod_phase(policy, names, statuses, phase):
    spec = {"restartPolicy": policy, "containers": [{"name": n} for n in names]}
    assert pod_phase(spec, [], statuses) == phase


def test_pod_phase_when_terminal_and_with_init_containers():
    spec = {"restartPolicy": "Always", "containers": [{"name": "a"}],
            "initContainers": [{"name": "i"}]}
    assert pod_phase(spec, [_running("i")], [_waiting("a")]) == "Pending"
    assert pod_phase({**spec, "restartPolicy": "Never"}, [_terminated("i", 1)],
                     [_waiting("a")]) == "Failed"
    assert pod_phase(spec, [_terminated("i", 0)], [_terminated("a", 0)], terminal=True) == \
        "Succeeded"
    assert pod_phase(spec, [_terminated("i", 0)], [_terminated("a", 143)], terminal=True) == \
        "Failed"


# -- pod spec to sandbox -------------------------------------------------------------------

def test_sandbox_config_from_pod():
    pod = make_pod(hostname="h1", subdomain="s", containers=[
        {"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
        securityContext={"sysctls": [{"name": "net.ipv4.ip_local_port_range",
                                      "value": "1024 65000"}]})
    cfg = sandbox_config(pod, node_name="n", log_directory="/logs", attempt=2,
                         cluster_dns=["10.96.0.10"], cluster_domain="cluster.local")
    assert cfg.hostname == "h1" and cfg.metadata.attempt == 2
    assert [(p.container_port, p.host_port) for p in cfg.port_mappings] == [(80, 8080)]
    assert cfg.dns.servers == ["10.96.0.10"]
    assert cfg.dns.searches[:3] == ["default.svc.cluster.local", "svc.cluster.local",
                                    "cluster.local"]
    assert cfg.dns.options == ["ndots:5"]
    assert cfg.sysctls == {"net.ipv4.ip_local_port_range": "1024 65000"}
    assert hostname_of(make_pod(name="x" * 70)) == "x" * 63
    host = make_pod(hostNetwork=True)
    assert sandbox_config(host, node_name="n", log_directory="/l", attempt=0, cluster_dns=[],
                          cluster_domain="c").hostname == ""
    none = make_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"],
                                                 "options": [{"name": "ndots", "value": "2"}]})
    d = dns_config(none, [], "cluster.local")
    assert d.servers == ["1.1.1.1"] and d.options == ["ndots:2"]


# -- environment -------------------------------------------------------------------------

def test_expand_like_kubernetes():
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(A", env) == "$(A"
    assert expand("cost $5", env) == "cost $5"


def test_resolve_env_sources_and_order():
    objects = {("ConfigMap", "default", "cm"): {"data": {"K": "from-cm", "bad name": "x"}},
               ("Secret", "default", "s"): {"data": {"PASS": base64.b64encode(b"hunter2")
                                                     .decode()}}}

    async def lookup(kind, ns, name):
        return objects.get((kind, ns, name))
    container = {"name": "c", "resources": {"limits": {"memory": "128Mi"},
                                            "requests": {"cpu": "250m"}},
                 "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                             {"secretRef": {"name": "nope", "optional": True}}],
                 "env": [{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-b"},
                         {"name": "CM_K", "value": "override"},
                         {"name": "POD", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "LBL", "valueFrom": {"fieldRef": {
                             "fieldPath": "metadata.labels['app']"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                             "resource": "limits.memory", "divisor": "1Mi"}}},
                         {"name": "CPU", "valueFrom": {"resourceFieldRef": {
                             "resource": "requests.cpu", "divisor": "1m"}}},
                         {"name": "CPULIM", "valueFrom": {"resourceFieldRef": {
                             "resource": "limits.cpu"}}},
                         {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s",
                                                                         "key": "PASS"}}}]}
    pod = make_pod(containers=[container])
    pod["metadata"]["labels"] = {"app": "web"}
    env = run(resolve_env(pod, container, lookup, pod_ips=("10.1.2.3",),
                          allocatable={"cpu": Quantity("3")}))
    d = dict(env)
    assert [k for k, _ in env][:1] == ["CM_K"]
    assert d["CM_K"] == "override" and "CM_bad name" not in d
    assert d["B"] == "a-b" and d["POD"] == "p" and d["IP"] == "10.1.2.3"
    assert d["LBL"] == "web" and d["MEM"] == "128" and d["CPU"] == "250"
    assert d["CPULIM"] == "3" and d["PASS"] == "hunter2"
    missing = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
        "name": "s", "key": "nokey"}}}]}
    with pytest.raises(EnvError, match="couldn't find key nokey in Secret default/s"):
        run(resolve_env(pod, missing, lookup))


# -- volumes -----------------------------------------------------------------------------

def test_atomic_write_dir_swaps_whole_payloads(tmp_path):
    d = tmp_path / "vol"
    assert atomic_write_dir(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    assert (d / "a").read_bytes() == b"1" and (d / "sub" / "b").read_bytes() == b"2"
    assert os.readlink(d / "a") == "..data/a"
    assert stat.S_IMODE((d / "sub" / "b").stat().st_mode) == 0o600
    assert not atomic_write_dir(d, {"a": (b"1", 0o644), "sub/b": (b"2", 0o600)})
    first = os.readlink(d / "..data")
    assert atomic_write_dir(d, {"a": (b"new", 0o644)})
    assert (d / "a").read_bytes() == b"new" and not (d / "sub").exists()
    assert not (d / first).exists()


def test_volume_setup_and_mounts(tmp_path):
    objects = {("ConfigMap", "default", "cm"): {"data": {"app.conf": "x=1", "other": "y"}},
               ("Secret", "default", "s"): {"data": {"tls.key": base64.b64encode(b"KEY")
                                                     .decode()}}}

    async def lookup(kind, ns, name):
        return objects.get((kind, ns, name))
    vm = VolumeManager(tmp_path / "data", lookup)
    host_dir = tmp_path / "host"
    pod = make_pod(volumes=[
        {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "app.conf",
                                                               "path": "conf/app.conf"}]}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt",
                                                                  "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}}],
        containers=[{"name": "c", "image": "busybox:1", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app"},
            {"name": "sec", "mountPath": "/etc/tls", "readOnly": True},
            {"name": "scratch", "mountPath": "/work", "subPath": "a/b"},
            {"name": "host", "mountPath": "/host", "mountPropagation": "HostToContainer"}]}])
    paths = run(vm.setup(pod))
    assert (tmp_path / "data/pods/uid-1/volumes/cfg/conf/app.conf").read_text() == "x=1"
    assert not os.path.exists(paths["cfg"] + "/other")
    key = tmp_path / "data/pods/uid-1/volumes/sec/tls.key"
    assert key.read_bytes() == b"KEY" and stat.S_IMODE(key.stat().st_mode) == 0o400
    assert host_dir.is_dir()
    assert open(paths["info"] + "/name").read() == "p"
    token = open(paths["token"] + "/token").read()
    header, claims, signature = token.split(".")
    pad = "=" * (-len(claims) % 4)
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"] == \
        "none"
    body = json.loads(base64.urlsafe_b64decode(claims + pad))
    assert body["sub"] == "system:serviceaccount:default:default"
    assert body["aud"] == ["vault"] and signature == ""
    assert open(paths["token"] + "/namespace").read() == "default"
    assert open(paths["token"] + "/ca.crt").read() == ""
    # the agent's own service-account directory
    assert paths["kube-api-access"]
    assert sorted(os.listdir(paths["kube-api-access"]))[-3:] == ["ca.crt", "namespace", "token"]
    mounts = vm.mounts(pod, pod["spec"]["containers"][0], paths, {},
                       hosts_file="/x/etc-hosts", termination_log="/x/term")
    by_path = {m.container_path: m for m in mounts}
    assert by_path["/etc/app"].readonly and by_path["/etc/tls"].readonly
    assert by_path["/work"].host_path.endswith("scratch/a/b")
    assert os.path.isdir(by_path["/work"].host_path)
    assert by_path["/host"].propagation is rt.MountPropagation.HOST_TO_CONTAINER
    assert by_path["/etc/hosts"].host_path == "/x/etc-hosts"
    assert by_path["/dev/termination-log"].host_path == "/x/term"
    assert by_path[SA_MOUNT_PATH].readonly
    # missing sources and unsupported types are errors that say which volume
    bad = make_pod(uid="u2", volumes=[{"name": "v", "configMap": {"name": "absent"}}])
    with pytest.raises(VolumeError, match='volume "v".*configmap "absent" not found'):
        run(vm.setup(bad))
    pvc = make_pod(uid="u3", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}])
    with pytest.raises(VolumeError, match="persistentVolumeClaim is not supported"):
        run(vm.setup(pvc))
    escape = make_pod(uid="u4", volumes=[{"name": "v", "emptyDir": {}}], containers=[
        {"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/v",
                                                      "subPath": "../../etc"}]}])
    p = run(vm.setup(escape))
    with pytest.raises(VolumeError):
        vm.mounts(escape, escape["spec"]["containers"][0], p, {})
    run(vm.teardown("uid-1"))
    assert not (tmp_path / "data/pods/uid-1").exists()
    assert placeholder_token("ns", "sa", pod).endswith(".")


def test_hosts_file(tmp_path):
    async def lookup(*a):
        return None
    vm = VolumeManager(tmp_path, lookup)
    pod = make_pod(hostAliases=[{"ip": "1.2.3.4", "hostnames": ["a", "b"]}])
    text = open(vm.write_hosts(pod, "10.0.0.9")).read()
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.0.0.9\tp\n" in text and "1.2.3.4\ta\tb\n" in text


# -- logs --------------------------------------------------------------------------------

def _log(tmp_path, lines):
    path = tmp_path / "c.log"
    path.write_text("".join(lines))
    return str(path)


def _collect(agen):
    async def go():
        return b"".join([chunk async for chunk in agen])
    return run(go())


def test_read_logs_options(tmp_path):
    path = _log(tmp_path, [
        "2026-01-01T00:00:01.000000001Z stdout F one\n",
        "2026-01-01T00:00:02.5Z stderr F two\n",
        "2026-01-01T00:00:03Z stdout P thr\n",
        "2026-01-01T00:00:03.1Z stdout F ee\n",
        "2026-01-01T00:00:04+00:00 stdout F four\n",
    ])
    assert _collect(read_logs(path)) == b"one\ntwo\nthree\nfour\n"
    assert _collect(read_logs(path, tail_lines=2)) == b"three\nfour\n"
    assert _collect(read_logs(path, tail_lines=0)) == b""
    assert _collect(read_logs(path, tail_lines=10)) == b"one\ntwo\nthree\nfour\n"
    assert _collect(read_logs(path, timestamps=True, tail_lines=1)) == \
        b"2026-01-01T00:00:04+00:00 four\n"
    assert _collect(read_logs(path, since=parse_timestamp("2026-01-01T00:00:02.5Z"))) == \
        b"two\nthree\nfour\n"
    assert _collect(read_logs(path, limit_bytes=6)) == b"one\ntw"
    assert _collect(read_logs(path, stream="stderr")) == b"two\n"
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == \
        parse_timestamp("2026-01-01T00:00:00Z")


def test_follow_reads_until_the_container_ends(tmp_path):
    path = tmp_path / "c.log"
    path.write_text("2026-01-01T00:00:01Z stdout F first\n")
    state = {"running": True}

    async def running():
        return state["running"]

    async def scenario():
        got = []

        async def reader():
            async for chunk in read_logs(str(path), follow=True, running=running, poll=0.01):
                got.append(chunk)
        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)
        with open(path, "a") as f:
            f.write("2026-01-01T00:00:02Z stdout F second\n")
        await asyncio.sleep(0.05)
        state["running"] = False
        await asyncio.wait_for(task, 2)
        return b"".join(got)
    assert run(scenario()) == b"first\nsecond\n"


# -- probes ------------------------------------------------------------------------------

def test_probe_state_thresholds():
    s = ProbeState({"successThreshold": 2, "failureThreshold": 3}, initial=False)
    assert not s.record(True) and s.outcome is False
    assert s.record(True) and s.outcome is True
    assert not s.record(False, "x") and not s.record(False, "y")
    assert s.record(False, "z") and s.outcome is False and s.message == "z"


def test_handlers_exec_http_tcp(tmp_path):
    async def scenario():
        runtime = FakeRuntime(Clock())
        runtime.exec_results["false"] = rt.ExecResult(1, b"nope\n", b"")
        kw = dict(runtime=runtime, container_id="c", container={"name": "c", "ports": [
            {"name": "web", "containerPort": 0}]}, pod_ip="127.0.0.1", timeout=2)
        assert await run_handler({"exec": {"command": ["true"]}}, **kw) == (True, "")
        assert await run_handler({"exec": {"command": ["false"]}}, **kw) == (False, "nope")

        async def ok(request):
            assert request.headers["User-Agent"].startswith("kube-probe/")
            return web.Response(text="ok")

        async def bad(request):
            return web.Response(status=503)
        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_get("/bad", bad)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        kw["container"]["ports"][0]["containerPort"] = port
        assert await run_handler({"httpGet": {"path": "/ok", "port": "web"}}, **kw) == (True, "")
        assert await run_handler({"httpGet": {"path": "/bad", "port": port}}, **kw) == \
            (False, "HTTP probe failed with statuscode: 503")
        assert await run_handler({"tcpSocket": {"port": port}}, **kw) == (True, "")
        await runner.cleanup()
        ok_, why = await run_handler({"tcpSocket": {"port": port}}, **kw)
        assert not ok_ and "connection refused" in why
        ok_, why = await run_handler({"httpGet": {"port": port}}, **kw)
        assert not ok_ and why.startswith(f'Get "http://127.0.0.1:{port}/"')
    run(scenario())


def test_prober_reports_liveness_failure_and_readiness():
    async def scenario():
        runtime = FakeRuntime(Clock())
        runtime.exec_results["live"] = rt.ExecResult(1, b"", b"dead")
        changed = asyncio.Event()
        failures = []
        prober = ContainerProber(
            runtime=runtime, container={"name": "c",
                                        "livenessProbe": {"exec": {"command": ["live"]},
                                                          "failureThreshold": 1},
                                        "readinessProbe": {"exec": {"command": ["ready"]}}},
            container_id="c1", pod_ip="", started_at=0, on_change=changed.set,
            on_failure=lambda kind, msg: failures.append((kind, msg)))
        assert prober.started and not prober.ready
        prober.start()
        await asyncio.wait_for(changed.wait(), 5)
        await asyncio.sleep(0.05)
        assert prober.ready is True
        assert prober.kill_reason == "Container c failed liveness probe, will be restarted"
        assert failures == [("liveness", "dead")]
        await prober.stop()
    run(scenario())


# -- settings and status writes --------------------------------------------------------

def test_settings_validation():
    config = parse_config({"base": "none", "components": {"node": {
        "nodeName": "N1", "port": 0, "podCIDR": "10.9.0.0/24",
        "kubeReserved": {"cpu": "100m"}}}})
    s = settings(config)
    assert s.node_name() == "n1" and s.port == 0
    for bad in ({"port": "x"}, {"unknown": 1}, {"podCIDR": "nope"},
                {"kubeReserved": {"cpu": "lots"}}, {"tlsCertFile": "a"}):
        with pytest.raises(ConfigError):
            settings(parse_config({"base": "none", "components": {"node": bad}}))


def test_status_patch_nulls_removed_keys():
    assert status_patch({"phase": "Pending", "message": "m", "podIP": "1"},
                        {"phase": "Running", "podIP": "1"}) == \
        {"phase": "Running", "podIP": "1", "message": None}


def test_status_manager_writes_only_changes():
    class Pods:
        def __init__(self):
            self.patches = []

        async def patch(self, name, body, namespace=None, **kw):
            self.patches.append(body)
            await asyncio.sleep(0.01)
            return {}

    class FakeClient:
        def resource(self, *a):
            return pods
    pods = Pods()

    async def scenario():
        written = []
        sm = StatusManager(FakeClient(), on_written=lambda pod, st: written.append(st))
        pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"},
               "status": {"phase": "Pending"}}
        sm.seed("u", pod)
        sm.set("u", pod, {"phase": "Pending"})
        await sm.flush("u")
        assert pods.patches == []
        for phase in ("Running", "Running", "Succeeded"):
            sm.set("u", pod, {"phase": phase})
        await sm.flush("u")
        # the newest status wins; the duplicate is not written twice
        assert [p["status"]["phase"] for p in pods.patches][-1] == "Succeeded"
        assert len(pods.patches) <= 2 and written[-1] == {"phase": "Succeeded"}
    run(scenario())


def test_service_environment_variables():
    from pilothouse.node._env import service_env
    env = service_env([
        {"metadata": {"name": "redis-primary"}, "spec": {"clusterIP": "10.0.0.11", "ports": [
            {"name": "redis", "port": 6379, "protocol": "TCP"},
            {"name": "metrics", "port": 9121, "protocol": "TCP"}]}},
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None",
                                                    "ports": [{"port": 80}]}}])
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "10.0.0.11"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_METRICS"] == "9121"
    assert env["REDIS_PRIMARY_PORT"] == "tcp://10.0.0.11:6379"
    assert env["REDIS_PRIMARY_PORT_9121_TCP_ADDR"] == "10.0.0.11"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_PROTO"] == "tcp"
    assert not any(k.startswith("HEADLESS") for k in env)


def test_node_command_line():
    import argparse
    from pilothouse.node import add_node_command, cmd_node
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="pilothouse", parents=[common])
    add_node_command(parser.add_subparsers(dest="command"), common)
    args = parser.parse_args(["node", "--config", "c.yaml", "--server", "http://h:6443",
                              "--node-name", "n1"])
    assert (args.config, args.server, args.node_name, args.handler) == \
        ("c.yaml", "http://h:6443", "n1", cmd_node)
    with pytest.raises(SystemExit):
        parser.parse_args(["node"])  # --server is required


def test_admission_rejects_what_does_not_fit():
    import types
    from pilothouse.client import Client
    from pilothouse.node import NodeAgent, Settings
    agent = NodeAgent(Client("http://127.0.0.1:9"), FakeRuntime(Clock()), node_name="n1",
                      options=Settings(maxPods=2))
    agent.allocatable = {"cpu": Quantity("2"), "memory": Quantity("1Gi")}

    def pod(uid, cpu="500m", **spec):
        return make_pod(uid=uid, containers=[{"name": "c", "image": "busybox:1", "resources": {
            "requests": {"cpu": cpu, "memory": "100Mi"}}}], **spec)
    running = pod("a", cpu="1500m")
    agent.workers["a"] = types.SimpleNamespace(uid="a", admitted=True, pod=running)
    assert agent.admit(pod("b", cpu="500m")) is None
    reason, message = agent.admit(pod("b", cpu="600m"))
    assert reason == "OutOfcpu"
    assert message == "Pod was rejected: Node didn't have enough resource: cpu, requested: " \
                      "600, used: 1500, capacity: 2000"
    assert agent.admit(pod("b", nodeSelector={"disk": "ssd"}))[0] == "NodeAffinity"
    assert agent.admit(pod("b", nodeSelector={"kubernetes.io/hostname": "n1"})) is None
    agent.workers["c"] = types.SimpleNamespace(uid="c", admitted=True, pod=pod("c", cpu="0"))
    assert agent.admit(pod("d", cpu="0"))[0] == "OutOfpods"
    running["status"]["phase"] = "Succeeded"  # finished pods free their share
    assert agent.admit(pod("d", cpu="1")) is None


def test_endpoint_over_tls(tmp_path):
    import shutil
    import ssl
    import subprocess
    import types
    import urllib.request
    from pilothouse.node import Settings
    from pilothouse.node._server import NodeServer
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "node.crt", tmp_path / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=node-1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    agent = types.SimpleNamespace(settings=Settings(tlsCertFile=str(cert),
                                                    tlsKeyFile=str(key)), pod_informer=None)

    async def scenario():
        server = NodeServer(agent)
        port = await server.start("127.0.0.1", 0)
        try:
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False

            def get(path):
                with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", timeout=10,
                                            context=context) as r:
                    return r.read()
            assert await asyncio.to_thread(get, "/healthz") == b"ok"
            assert json.loads(await asyncio.to_thread(get, "/pods"))["kind"] == "PodList"
        finally:
            await server.stop()
    run(scenario())
