"""Pod start-up latency through the whole system, next to the raw CRI floor. Prints a
table; asserts nothing.

    python bench/pod_startup.py [--pods 100] [--floor-pods 100]

What it runs (everything in a temporary directory, removed at the end):

1. **CRI floor.** A private containerd (the ``containerd`` runtime plugin, ``manage:
   true``, CNI bridge), the busybox test image imported; for each pod, one after another,
   RunPodSandbox + CreateContainer + StartContainer timed straight through the driver, then
   the sandbox stopped and removed (not timed).
2. **Through the API.** An API server (``pilothouse apiserver``, memory store) and a node
   agent (``python -m pilothouse.node``) as separate processes on the same containerd data
   directory. The benchmark watches pods on the node, then for each pod, one after
   another: create it through the API (``spec.nodeName`` set, image present) and wait until
   the watch shows it ``Running``; the time from just before the POST to that event is the
   pod's start-up time. Then it deletes the pod gracefully (the container ends on SIGTERM)
   and waits for the DELETED event before the next one (not timed).

Pods start one after another because the question is the latency of one pod on a quiet
node; the floor is measured the same way. Needs root and Debian's containerd, runc,
containernetworking-plugins and busybox-static.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

from pilothouse.client import Client
from pilothouse.interfaces.runtime import (ContainerConfig, ContainerMetadata,
                                           PodSandboxConfig, PodSandboxMetadata)
from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image

IMAGE = "pilothouse.test/bench-startup:1"
NODE = "bench-node"
POD_CIDR = "10.238.0.0/22"
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<44} {len(ms):>5} {statistics.median(ms):>9.1f} {pct(ms, 0.99):>9.1f} "
            f"{max(ms):>9.1f}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def cri_floor(options: dict, pods: int, tmp: str) -> list[float]:
    runtime = build_driver("runtime", "containerd", options)
    await runtime.open()
    try:
        await runtime.import_image(str(await asyncio.to_thread(build_busybox_image, tmp,
                                                               IMAGE)))
        totals = []
        for i in range(pods):
            config = PodSandboxConfig(
                metadata=PodSandboxMetadata(name=f"floor-{i}", namespace="bench",
                                            uid=f"floor-{i}"),
                hostname=f"floor-{i}", log_directory=f"{tmp}/floor-logs/{i}")
            os.makedirs(config.log_directory, exist_ok=True)
            t0 = time.perf_counter()
            sid = await runtime.run_pod_sandbox(config)
            cid = await runtime.create_container(sid, ContainerConfig(
                metadata=ContainerMetadata(name="c"), image=IMAGE, command=COMMAND,
                log_path="c/0.log"), config)
            await runtime.start_container(cid)
            totals.append(time.perf_counter() - t0)
            await runtime.stop_pod_sandbox(sid)
            await runtime.remove_pod_sandbox(sid)
        return totals
    finally:
        await runtime.close()  # stops the private containerd; the agent starts it again


def start_apiserver(tmp: str) -> tuple[subprocess.Popen, str]:
    config = os.path.join(tmp, "apiserver.yaml")
    with open(config, "w") as f:
        yaml.safe_dump({"store": {"plugin": "memory"}, "components": {"apiserver": {
            "port": 0, "kubeconfig": os.path.join(tmp, "kubeconfig"),
            "compactionInterval": 0}}}, f)
    proc = subprocess.Popen([sys.executable, "-m", "pilothouse.cli", "apiserver", "--config",
                             config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"serving on (http\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the API server did not start")


def start_agent(tmp: str, options: dict, server: str) -> subprocess.Popen:
    config = os.path.join(tmp, "node.yaml")
    with open(config, "w") as f:
        yaml.safe_dump({"base": "none",
                        "runtime": {"plugin": "containerd", "options": options},
                        "components": {"node": {"dataDir": os.path.join(tmp, "node"),
                                                "port": 0, "address": "127.0.0.1",
                                                "nodeIP": "127.0.0.1", "podCIDR": POD_CIDR}}},
                       f)
    return subprocess.Popen([sys.executable, "-m", "pilothouse.node", "--config", config,
                             "--server", server, "--node-name", NODE, "--log-level",
                             "WARNING"], stdout=open(os.path.join(tmp, "agent.log"), "w"),
                            stderr=subprocess.STDOUT)


async def through_api(server: str, pods: int) -> list[float]:
    client = Client(server)
    resource = client.resource("v1", "Pod")
    nodes = client.resource("v1", "Node")
    deadline = time.monotonic() + 60
    while True:  # the agent has registered and its runtime is ready
        with contextlib.suppress(Exception):
            node = await nodes.get(NODE)
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node["status"]["conditions"]):
                break
        if time.monotonic() > deadline:
            raise RuntimeError("the node agent did not become Ready")
        await asyncio.sleep(0.2)
    listed = await resource.list("bench")
    running: dict[str, asyncio.Future] = {}
    deleted: dict[str, asyncio.Future] = {}
    loop = asyncio.get_running_loop()

    async def watch() -> None:
        async for ev in resource.watch("bench", resource_version=listed["metadata"][
                "resourceVersion"], field_selector=f"spec.nodeName={NODE}"):
            name = ev.object.get("metadata", {}).get("name")
            if ev.type == "DELETED":
                fut = deleted.get(name)
                if fut and not fut.done():
                    fut.set_result(time.perf_counter())
            elif (ev.object.get("status") or {}).get("phase") == "Running":
                fut = running.get(name)
                if fut and not fut.done():
                    fut.set_result(time.perf_counter())

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    totals = []
    try:
        for i in range(pods):
            name = f"bench-{i}"
            running[name] = loop.create_future()
            deleted[name] = loop.create_future()
            manifest = {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": "bench"},
                        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 5,
                                 "containers": [{"name": "c", "image": IMAGE,
                                                 "imagePullPolicy": "IfNotPresent",
                                                 "command": COMMAND}]}}
            t0 = time.perf_counter()
            await resource.create(manifest, "bench")
            t1 = await asyncio.wait_for(running[name], 60)
            totals.append(t1 - t0)
            await resource.delete(name, "bench")
            await asyncio.wait_for(deleted[name], 60)
            if (i + 1) % 20 == 0:
                log(f"  {i + 1} pods")
        return totals
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await client.close()


async def purge(options: dict) -> None:
    runtime = build_driver("runtime", "containerd", options)
    with contextlib.suppress(Exception):
        await runtime.open()
    await runtime.destroy()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--floor-pods", type=int, default=None,
                        help="pods for the CRI floor (default: --pods)")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        sys.exit("needs root and containerd (Debian packages containerd, runc, "
                 "containernetworking-plugins, busybox-static)")
    tmp = tempfile.mkdtemp(prefix="pilothouse-bench-startup-")
    options = {"manage": True, "data_dir": os.path.join(tmp, "containerd"),
               "bridge": "phbstart0", "pod_cidr": POD_CIDR}
    apiserver = agent = None
    try:
        log(f"CRI floor: {args.floor_pods or args.pods} pods ...")
        floor = asyncio.run(cri_floor(options, args.floor_pods or args.pods, tmp))
        log("starting the API server and the node agent ...")
        apiserver, server = start_apiserver(tmp)
        agent = start_agent(tmp, options, server)
        log(f"through the API: {args.pods} pods ...")
        api = asyncio.run(through_api(server, args.pods))
    finally:
        stop(agent)
        stop(apiserver)
        with contextlib.suppress(Exception):
            asyncio.run(purge(options))
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    print(f"pod start-up, one pod at a time, image present, CNI bridge; "
          f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'':<44} {'pods':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    print(row("CRI floor: RunPodSandbox+Create+Start", floor))
    print(row("API: create -> Running seen by a watch", api))
    ratio = statistics.median(api) / statistics.median(floor)
    print(f"p50 ratio (API / floor): {ratio:.2f}x; p99 through the API: "
          f"{pct(api, 0.99) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
