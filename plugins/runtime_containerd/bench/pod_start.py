"""Pod start latency through the containerd plugin: prints figures, asserts nothing.

    python plugins/runtime_containerd/bench/pod_start.py [--pods 50] [--host-network]

Starts a private containerd in a temporary directory, imports the busybox test image, then
for each pod times RunPodSandbox, CreateContainer and StartContainer (the container runs
``sleep``), and afterwards StopPodSandbox + RemovePodSandbox. Pods are started one after
another (the node agent's worst case is the first pod of a cold node, not throughput).
Needs root and the Debian packages containerd, runc, containernetworking-plugins,
busybox-static. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from pilothouse.interfaces.runtime import (
    ContainerConfig,
    ContainerMetadata,
    PodSandboxConfig,
    PodSandboxMetadata,
)
from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
            f"max {ordered[-1] * 1000:6.1f} ms")


async def bench(pods: int, host_network: bool, tmp: str) -> None:
    runtime = build_driver("runtime", "containerd", {
        "manage": True, "data_dir": f"{tmp}/containerd", "bridge": "phbench0",
        "pod_cidr": "10.233.0.0/22"})
    t0 = time.perf_counter()
    await runtime.open()
    opened = time.perf_counter() - t0
    try:
        tar = await asyncio.to_thread(build_busybox_image, tmp, "pilothouse.test/busybox:1")
        t0 = time.perf_counter()
        [image] = await runtime.import_image(str(tar))
        imported = time.perf_counter() - t0
        phases: dict[str, list[float]] = {"sandbox": [], "create": [], "start": [],
                                          "total": [], "stop+remove": []}
        for i in range(pods):
            config = PodSandboxConfig(
                metadata=PodSandboxMetadata(name=f"bench-{i}", namespace="default",
                                            uid=f"bench-{i}"),
                hostname="" if host_network else f"bench-{i}", host_network=host_network,
                log_directory=f"{tmp}/logs/bench-{i}")
            t0 = time.perf_counter()
            sid = await runtime.run_pod_sandbox(config)
            t1 = time.perf_counter()
            cid = await runtime.create_container(sid, ContainerConfig(
                metadata=ContainerMetadata(name="c"), image=image, command=["sleep", "3600"],
                log_path="c/0.log"), config)
            t2 = time.perf_counter()
            await runtime.start_container(cid)
            t3 = time.perf_counter()
            phases["sandbox"].append(t1 - t0)
            phases["create"].append(t2 - t1)
            phases["start"].append(t3 - t2)
            phases["total"].append(t3 - t0)
            t0 = time.perf_counter()
            await runtime.stop_pod_sandbox(sid)
            await runtime.remove_pod_sandbox(sid)
            phases["stop+remove"].append(time.perf_counter() - t0)
        version = await runtime.version()
        print(f"{version.runtime_name} {version.runtime_version}, "
              f"{'host network' if host_network else 'CNI bridge'}, {pods} pods, sequential")
        print(f"open (start private containerd, CNI, sandbox image): {opened * 1000:.0f} ms")
        print(f"import busybox image: {imported * 1000:.0f} ms")
        for name, values in phases.items():
            print(f"  {name:12s} {_ms(values)}")
    finally:
        await runtime.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--host-network", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        asyncio.run(bench(args.pods, args.host_network, tmp))


if __name__ == "__main__":
    main()
