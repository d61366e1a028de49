"""End to end: the Pilothouse API server on the etcd store, driven by the real kubectl.

The store slot is swapped by config exactly as a user would (``store: {plugin: etcd}``);
objects survive a restart of the API server, and kubectl's watch sees changes."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest

from pilothouse_store_etcd.testing import prefix_for


@pytest.fixture
def etcd_config(etcd_server, tmp_path):
    pytest.importorskip("pilothouse.testing.cluster")
    from pilothouse.testing.cluster import kubectl_path
    try:
        kubectl_path()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    return {"store": {"plugin": "etcd", "options": {"endpoints": etcd_server.endpoints,
                                                    "prefix": prefix_for(tmp_path)}}}


MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {color: blue}
"""


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"kubectl failed ({proc.returncode}):\n{proc.stderr}"
    return proc.stdout


def test_kubectl_against_the_etcd_store(start_apiserver, etcd_config):
    from pilothouse.testing.cluster import kubectl_path

    api = start_apiserver(etcd_config)
    _ok(api.kubectl("apply", "-f", "-", input=MANIFEST))
    cm = json.loads(_ok(api.kubectl("get", "configmap", "settings", "-o", "json")))
    assert cm["data"] == {"color": "blue"}
    first_rv = int(cm["metadata"]["resourceVersion"])

    watcher = subprocess.Popen(
        [kubectl_path(), "get", "configmap", "settings", "--watch-only", "-o",
         "jsonpath={.data.color}{\"\\n\"}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "KUBECONFIG": str(api.kubeconfig),
                        "HOME": str(api.workdir)})
    try:
        # Patch until the watch (which may take a moment to start) reports a change.
        colors, line = [], ""
        deadline = time.monotonic() + 60
        while not line and time.monotonic() < deadline:
            colors.append(f"red{len(colors)}")
            _ok(api.kubectl("patch", "configmap", "settings", "-p",
                            json.dumps({"data": {"color": colors[-1]}})))
            if select.select([watcher.stdout], [], [], 1.0)[0]:
                line = watcher.stdout.readline().strip()
        assert line in colors, f"watch printed {line!r}; patched {colors}"
    finally:
        watcher.kill()
        watcher.communicate()

    cm = json.loads(_ok(api.kubectl("get", "configmap", "settings", "-o", "json")))
    assert int(cm["metadata"]["resourceVersion"]) > first_rv
    api.stop()

    # A new API server on the same etcd prefix finds everything again.
    api2 = start_apiserver(etcd_config)
    cm2 = json.loads(_ok(api2.kubectl("get", "configmap", "settings", "-o", "json")))
    assert cm2["data"] == {"color": colors[-1]}
    assert cm2["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    _ok(api2.kubectl("delete", "configmap", "settings"))
    assert api2.kubectl("get", "configmap", "settings").returncode != 0

