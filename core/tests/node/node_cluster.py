"""Helpers of the node agent's end-to-end tests: a NodeAgent on its own event loop in a
thread (so tests can call blocking kubectl meanwhile), and polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

from pilothouse.client import Client
from pilothouse.node import NodeAgent, Settings
from pilothouse.testing import build_driver


def containerd_missing() -> str | None:
    """Why a private containerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in ("containerd", "ctr", "runc"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (Debian packages containerd, runc)"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "CNI plugins missing (Debian package containernetworking-plugins)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = ""):
    """Poll ``predicate()`` until it returns something truthy; return that."""
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
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or predicate}: last {last!r}")
        time.sleep(interval)


class AgentThread:
    """A runtime driver and a NodeAgent on a private event loop thread. The test opens
    and purges the runtime (``destroy()`` for containerd), the agent only drives it."""

    def __init__(self, api_url: str, plugin: str, options: dict, *, node_name: str,
                 data_dir: str, plugin_manager=None, **settings):
        self.plugin_manager = plugin_manager
        self.api_url, self.plugin, self.options = api_url, plugin, options
        self.node_name, self.data_dir = node_name, data_dir
        self.settings = {"port": 0, "address": "127.0.0.1", "nodeIP": "127.0.0.1",
                         "syncFrequency": 5.0, **settings}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"agent {node_name}")
        self.runtime = self.agent = self.client = None

    def run(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "AgentThread":
        self.thread.start()
        self.runtime = build_driver("runtime", self.plugin, self.options)
        self.run(self.runtime.open())
        return self

    def start_agent(self) -> NodeAgent:
        async def go():
            self.client = Client(self.api_url)
            self.agent = NodeAgent(self.client, self.runtime, node_name=self.node_name,
                                   options=Settings(dataDir=self.data_dir, **self.settings),
                                   open_runtime=False, plugin_manager=self.plugin_manager)
            await self.agent.start()
            return self.agent
        return self.run(go())

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.run(self.agent.stop())
            self.run(self.client.close())
            self.agent = None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_agent()
        if self.runtime is not None:
            destroy = getattr(self.runtime, "destroy", None)
            with contextlib.suppress(Exception):
                self.run(destroy() if destroy else self.runtime.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        # pods a failed test left behind may hold tmpfs volumes under the data dir
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(
                self.data_dir.rstrip("/") + "/")]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.agent.port}"

    def container_logs(self, namespace: str, pod: str, container: str, query: str = "") -> str:
        url = f"{self.endpoint}/containerLogs/{namespace}/{pod}/{container}" + \
            (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()

    def exec_sync(self, container_id: str, cmd: list[str], timeout: float = 30):
        return self.run(self.runtime.exec_sync(container_id, cmd, timeout=timeout))


def pod_json(api, name: str, namespace: str = "default") -> dict | None:
    out = api.kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def container_status(pod: dict | None, name: str) -> dict:
    for st in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if st["name"] == name:
            return st
    return {}


def container_id(pod: dict, name: str) -> str:
    return container_status(pod, name).get("containerID", "").partition("://")[2]
