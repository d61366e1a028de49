"""End to end: ``kill -9`` of a node agent process (``python -m pilothouse.node``) and a
new one on the same node adopts the running containers: same container ID, restart count
unchanged, and it goes on driving pods."""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image

from node_cluster import container_status, containerd_missing, pod_json, wait_until

pytestmark = [pytest.mark.needs_root]

IMAGE = "pilothouse.test/node-restart:1"
NODE = "node-restart"


def _pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                 "command": ["sleep", "3600"],
                 "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}


def _lease_renewed_after(api, stamp):
    lease = json.loads(api.kubectl("get", "lease", NODE, "-n", "kube-node-lease", "-o",
                                   "json").stdout)
    return lease["spec"]["renewTime"] > stamp and lease


def test_kill_9_and_restart_adopts_running_containers(apiserver, tmp_path):
    reason = containerd_missing()
    if reason:
        pytest.skip(reason)
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    runtime_options = {"manage": True, "data_dir": str(tmp_path / "containerd"),
                       "bridge": f"phr{tag}", "pod_cidr": f"10.237.{int(tag[:2], 16)}.0/24"}
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "base": "none", "runtime": {"plugin": "containerd", "options": runtime_options},
        "components": {"node": {"dataDir": str(tmp_path / "node"), "port": 0,
                                "address": "127.0.0.1", "nodeIP": "127.0.0.1",
                                "podCIDR": runtime_options["pod_cidr"],
                                "leaseDurationSeconds": 8,
                                "relistPeriod": 0.5}}}))

    async def import_image():  # before the agent: a private containerd, stopped again
        runtime = build_driver("runtime", "containerd", runtime_options)
        await runtime.open()
        try:
            await runtime.import_image(str(build_busybox_image(tmp_path, IMAGE)))
        finally:
            await runtime.close()
    asyncio.run(import_image())

    def start_agent(n):
        log = open(tmp_path / f"agent{n}.log", "w")
        return subprocess.Popen([sys.executable, "-m", "pilothouse.node", "--config",
                                 str(config), "--server", apiserver.url, "--node-name", NODE],
                                stdout=log, stderr=subprocess.STDOUT)

    def apply(manifest):
        out = apiserver.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        assert out.returncode == 0, out.stderr

    agents = [start_agent(1)]
    try:
        apply(_pod("survivor"))
        assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/survivor",
                                 "--timeout=90s").returncode == 0, \
            (tmp_path / "agent1.log").read_text()
        before = container_status(pod_json(apiserver, "survivor"), "main")
        assert before["restartCount"] == 0 and before["ready"]

        os.kill(agents[0].pid, signal.SIGKILL)
        agents[0].wait(10)
        killed_at = json.loads(apiserver.kubectl("get", "lease", NODE, "-n",
                                                 "kube-node-lease", "-o", "json").stdout
                               )["spec"]["renewTime"]

        agents.append(start_agent(2))
        wait_until(lambda: _lease_renewed_after(apiserver, killed_at), 60,
                   what="the new agent to renew the lease")
        time.sleep(4)  # let the new agent relist and sync the pod a few times
        after = container_status(pod_json(apiserver, "survivor"), "main")
        assert after["containerID"] == before["containerID"]
        assert after["restartCount"] == 0
        assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
        assert after["ready"]

        # the new agent drives new pods and deletions as usual
        apply(_pod("newcomer"))
        assert apiserver.kubectl("wait", "--for=condition=Ready", "pod/newcomer",
                                 "--timeout=90s").returncode == 0
        for name in ("newcomer", "survivor"):
            out = apiserver.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s")
            assert out.returncode == 0, out.stderr
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(30)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()

        async def purge():
            runtime = build_driver("runtime", "containerd", runtime_options)
            await runtime.open()
            await runtime.destroy()
        asyncio.run(purge())
