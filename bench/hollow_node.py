#!/usr/bin/env python3
"""CPU of the hollow-node process: per Lease renewal at idle, and per pod it starts.

    python bench/hollow_node.py [--nodes 5000] [--idle 20] [--pods 2000] [--rounds 3]
                                [--rate 200] [--lease-interval 10] [--store memory|raft]
                                [--profile FILE] [--api-pythonpath DIR]
                                [--hollow-pythonpath DIR]

Starts ``pilothouse apiserver`` (memory store by default) and ``python -m
pilothouse_hollow_node`` with ``--nodes`` nodes (``--lease-interval``: 10 s, the kubelet's
Lease cadence; a long one isolates the pods' cost), both in their own
processes, stopped by PID at the end. Then, ``--rounds`` times:

* idle: the hollow process's CPU (user + system, from ``/proc/<pid>/stat``) over ``--idle``
  seconds with no pod work, reported as % of a core and µs per Lease renewal (the renewals
  counted from the process's ``--stats-interval`` lines: nodes / 10 a second);
* pods: this process creates ``--pods`` pods with ``spec.nodeName`` already set (spread
  over the nodes; no scheduler involved) at ``--rate`` a second (paced so the API server
  keeps serving the renewals on time) and waits until every one reports Running, plus 2 s;
  the hollow process's CPU over that window, minus the renewals done in it at the idle cost
  of one, divided by the pods, is its CPU per pod (the watch event of the bound pod, a
  pods/status merge patch, the watch event of the patch).

The API server's CPU over the same windows is printed too (it is not what this script is
about). Progress goes to stderr, figures to stdout; asserts nothing. ``--profile FILE``
records the hollow process with py-spy during the rounds (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

from pilothouse.client import Client
from pilothouse.model import errors

REPO = pathlib.Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
NAMESPACE = "hollow-bench"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu(pid: int) -> float:
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        rest = fh.read().rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def renewed(child: "Child") -> int:
    """Lease renewals so far, from the hollow process's last ``--stats-interval`` line."""
    found = re.findall(r"leases (\d+) renewed", child.text())
    return int(found[-1]) if found else 0


def _kill_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    def __init__(self, name: str, argv: list[str], workdir: str, env: dict | None = None):
        self.name = name
        self.path = os.path.join(workdir, name + ".log")
        self.out = open(self.path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                     cwd=workdir, preexec_fn=_kill_with_parent)
        self.pid = self.proc.pid

    def text(self) -> str:
        with open(self.path) as fh:
            return fh.read()

    def wait_for(self, needle: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"{self.name}: no {needle!r}:\n{self.text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def pod(i: int, node: str) -> dict:
    res = {"cpu": "100m", "memory": "500Mi"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i}", "namespace": NAMESPACE, "labels": {"app": "bench"}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                     "ports": [{"containerPort": 80}],
                                     "resources": {"requests": res, "limits": res}}]}}


async def create_pods(url: str, first: int, count: int, nodes: int, rate: float) -> None:
    """Create the pods at ``rate`` a second (paced, so the API server keeps answering the
    Lease renewals on time and the idle part of the window stays what it was)."""
    todo = iter(range(first, first + count))
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(client: Client) -> None:
        for i in todo:
            delay = start + (i - first) / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await client.request("POST", path, body=pod(i, f"hollow-node-{i % nodes}"),
                                     raw=True)
            except errors.AlreadyExists:
                pass
    async with Client(url) as client:
        await asyncio.gather(*(one(client) for _ in range(16)))


async def running(url: str) -> int:
    async with Client(url) as client:
        pods = await client.resource("v1", "Pod").list(NAMESPACE, limit=2000)
    return sum(1 for p in pods["items"] if (p.get("status") or {}).get("phase") == "Running")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--idle", type=float, default=20.0, help="seconds per idle window")
    p.add_argument("--pods", type=int, default=2000, help="pods per round (0: idle only)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--lease-interval", type=float, default=10.0,
                   help="the hollow nodes' Lease cadence (default 10 s; a long one leaves "
                   "the pods' cost nearly alone in the pod windows)")
    p.add_argument("--rate", type=float, default=200.0, help="pods created per second")
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds between readiness and the first window")
    p.add_argument("--store", default="memory")
    p.add_argument("--api-pythonpath", metavar="DIR",
                   help="run the API server with DIR first on PYTHONPATH (a `pilothouse` "
                   "package of another checkout: holds the server fixed while the client "
                   "changes)")
    p.add_argument("--hollow-pythonpath", metavar="DIR",
                   help="the same for the hollow-node process (e.g. a snapshot of an older "
                   "commit with `pilothouse` and `pilothouse_hollow_node`, for a before/after "
                   "comparison)")
    p.add_argument("--profile", help="py-spy flame graph of the hollow process (SVG)")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="hollow-bench-")
    children: list[Child] = []
    spy = None
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        opts = {"data_dir": os.path.join(work, "store")} if a.store == "raft" else {}
        cfg = {"store": {"plugin": a.store, "options": opts},
               "components": {"apiserver": {"port": port, "address": "127.0.0.1",
                                            "kubeconfig": os.path.join(work, "kubeconfig"),
                                            "compactionInterval": 0}}}
        with open(os.path.join(work, "config.yaml"), "w") as fh:
            yaml.safe_dump(cfg, fh)
        api_env = dict(os.environ)
        if a.api_pythonpath:
            api_env["PYTHONPATH"] = a.api_pythonpath + os.pathsep + api_env.get("PYTHONPATH", "")
        api = Child("apiserver", [sys.executable, "-m", "pilothouse.cli", "apiserver",
                                  "--config", os.path.join(work, "config.yaml")], work, api_env)
        children.append(api)
        api.wait_for("serving on", 60)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "contrib" / "hollow_node") + os.pathsep + \
            env.get("PYTHONPATH", "")
        if a.hollow_pythonpath:
            env["PYTHONPATH"] = a.hollow_pythonpath + os.pathsep + env["PYTHONPATH"]
        say(f"API server up; registering {a.nodes} hollow nodes")
        hollow = Child("hollow", [sys.executable, "-m", "pilothouse_hollow_node", "--server",
                                  url, "--nodes", str(a.nodes), "--zones", "3",
                                  "--stats-interval", "0.5",
                                  "--lease-interval", str(a.lease_interval)], work, env)
        children.append(hollow)
        hollow.wait_for("hollow-nodes: ready", 900)
        asyncio.run(_namespace(url))
        say(f"ready; settling {a.settle:.0f} s")
        time.sleep(a.settle)
        if a.profile:
            spy = subprocess.Popen(["py-spy", "record", "-p", str(hollow.pid), "-o", a.profile,
                                    "--nonblocking", "-r", "200"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        idle_pct, per_renewal, per_pod, api_pct = [], [], [], []
        for r in range(a.rounds):
            h0, s0, n0, t0 = cpu(hollow.pid), cpu(api.pid), renewed(hollow), time.monotonic()
            time.sleep(a.idle)
            h1, s1, n1, t1 = cpu(hollow.pid), cpu(api.pid), renewed(hollow), time.monotonic()
            each = (h1 - h0) / max(1, n1 - n0)
            idle_pct.append((h1 - h0) / (t1 - t0) * 100)
            per_renewal.append(each * 1e6)
            api_pct.append((s1 - s0) / (t1 - t0) * 100)
            print(f"round {r + 1} idle: hollow {idle_pct[-1]:.1f}% of a core, {n1 - n0} "
                  f"renewals, {each * 1e6:.0f} us per renewal; API server "
                  f"{(s1 - s0) / (t1 - t0) * 100:.1f}%", flush=True)
            if not a.pods:
                continue
            h0, s0, n0, t0 = cpu(hollow.pid), cpu(api.pid), renewed(hollow), time.monotonic()
            asyncio.run(create_pods(url, r * a.pods, a.pods, a.nodes, a.rate))
            want = (r + 1) * a.pods
            while asyncio.run(running(url)) < want:
                time.sleep(0.5)
            time.sleep(2)
            h1, s1, n1, t1 = cpu(hollow.pid), cpu(api.pid), renewed(hollow), time.monotonic()
            extra = (h1 - h0) - each * (n1 - n0)
            per_pod.append(extra / a.pods * 1e3)
            print(f"round {r + 1} pods: {a.pods} Running in {t1 - t0:.1f} s; hollow "
                  f"{h1 - h0:.2f} s CPU, {n1 - n0} renewals, {extra / a.pods * 1e3:.3f} ms "
                  f"per pod besides them; API server {(s1 - s0) / a.pods * 1e3:.3f} ms per "
                  "pod", flush=True)
        print(f"hollow idle: {statistics.mean(idle_pct):.1f}% of a core (runs "
              f"{', '.join(f'{x:.1f}' for x in idle_pct)}), "
              f"{statistics.mean(per_renewal):.0f} us per renewal (runs "
              f"{', '.join(f'{x:.0f}' for x in per_renewal)}); API server "
              f"{statistics.mean(api_pct):.1f}% (runs {', '.join(f'{x:.1f}' for x in api_pct)})"
              + (f"; per pod {statistics.mean(per_pod):.3f} ms (runs "
                 f"{', '.join(f'{x:.3f}' for x in per_pod)})" if per_pod else ""))
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        for c in reversed(children):
            c.stop()
        shutil.rmtree(work, ignore_errors=True)


async def _namespace(url: str) -> None:
    async with Client(url) as client:
        try:
            await client.resource("v1", "Namespace").create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except errors.AlreadyExists:
            pass


if __name__ == "__main__":
    main()
