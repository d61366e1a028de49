#!/usr/bin/env python3
"""Scheduler throughput end to end, shaped like Kubernetes' scheduler_perf SchedulingBasic.

    python bench/scheduler.py [--store raft|memory] [--quick] [--case basic|anti|all|none]
                              [--backlog]
                              [--nodes N] [--pods P] [--creators C] [--profile DIR]
                              [--breakdown] [--percentage-of-nodes-to-score PCT]

For each case, three processes are started and stopped by PID (none shares an interpreter
with another or with the load generator):

* ``pilothouse apiserver`` with the chosen store (raft, single member, by default);
* ``python -m pilothouse_hollow_node``: N hollow nodes (4 cpu, 32Gi, 110 pods, 3 zones),
  renewing their Leases every 10 s and reporting bound pods Running, as kubelets would;
* ``pilothouse scheduler`` with the default profile.

Then this process creates P pods (scheduler_perf's default pod: one container requesting
and limited to 100m cpu and 500Mi memory) through ``--creators`` concurrent clients, and a
watch on the pods records, for every pod, when it was first seen (created) and when it was
first seen with a node (bound). Reported per case:

* pods bound per second: P / (first pod seen created → last pod seen bound);
* per-pod latency p50/p99: seen created → seen bound (queueing included, as a user sees it);
* the creation rate, and how long after the last bind every pod reported Running;
* CPU used by each process during the run (so the bottleneck shows).

Cases: ``basic`` (SchedulingBasic: 5,000 nodes, 10,000 pods); ``anti`` (the same with
``--anti-fraction`` of the pods carrying required pod anti-affinity on
``kubernetes.io/hostname`` against each other). Anchor: kube-scheduler's CI floor for
SchedulingBasic 5000 nodes is 680 pods/s; the goal here is 1,000 pods/s.

``--backlog`` creates every pod first and only then starts the scheduler: the window runs
from the scheduler's start (informer sync of every node and pending pod included) to the last
bind, so the figure is what the scheduler, the API server and the hollow nodes sustain
without the load generator's creations competing for the same two CPUs (scheduler_perf creates
its pods from a client on a many-core machine). Latency is not reported there (every pod
waits in the backlog from its creation).

``--profile DIR`` records each server process with py-spy during the measured window
(``pip install py-spy``) and prints where the time goes, as CPU ms per pod.
``--breakdown`` also measures, against a fresh API server, its CPU per request of each kind
a scheduled pod costs (create, binding, status, event, lease, delete, watch fan-out).
``--percentage-of-nodes-to-score`` sets the scheduler's sampling (default: Kubernetes'
adaptive rule, 10% = 500 nodes at 5,000 nodes). Progress goes to stderr, the table to
stdout. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp
import orjson
import yaml

from pilothouse.client import Client
from pilothouse.model import errors

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
HOSTNAME = "kubernetes.io/hostname"
CLK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:  # Linux: the child gets SIGKILL if this script dies without cleaning up
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def cpu_seconds(pid: int, main_thread: bool = False) -> float:
    """CPU seconds of process ``pid`` (all its threads), or of its main thread only."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return float("nan")


class Proc:
    """A child process with its output in a log file; stopped by PID."""

    def __init__(self, name: str, argv: list[str], workdir: str, env: dict | None = None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     text=True, env=env, preexec_fn=_die_with_parent,
                                     cwd=workdir)
        self.pid = self.proc.pid

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as fh:
            return fh.read()

    def wait_for_output(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}):\n"
                                 f"{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: no {needle!r} after {timeout:.0f} s:\n"
                                 f"{self.output()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def scheduler_command() -> list[str]:
    """How to start the scheduler host: the ``pilothouse scheduler`` command when the CLI
    has it, else ``python -m pilothouse.scheduler`` (the same command, registered alone)."""
    probe = subprocess.run([sys.executable, "-m", "pilothouse.cli", "scheduler", "--help"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pilothouse.cli", "scheduler"]
    probe = subprocess.run([sys.executable, "-m", "pilothouse.scheduler", "--help"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pilothouse.scheduler"]
    raise SystemExit("no scheduler host installed (pilothouse.scheduler): nothing to measure")


def hollow_env() -> dict:
    """The environment for the hollow-node process: the installed package, else the source
    folder of this checkout."""
    env = dict(os.environ)
    import importlib.util
    if importlib.util.find_spec("pilothouse_hollow_node") is None:
        src = str(REPO / "contrib" / "hollow_node")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------------------- pods


def pod_dict(i: int, anti: bool) -> dict:
    """scheduler_perf's pod-default (pause, 100m/500Mi requests = limits); ``anti`` adds
    required anti-affinity on the hostname against the other ``anti`` pods."""
    res = {"cpu": "100m", "memory": "500Mi"}
    spec: dict = {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                  "ports": [{"containerPort": 80}],
                                  "resources": {"requests": res, "limits": res}}]}
    labels = {"app": "bench"}
    if anti:
        labels["color"] = "anti"
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "anti"}}, "topologyKey": HOSTNAME}]}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i}", "namespace": NAMESPACE, "labels": labels},
            "spec": spec}


class Observer:
    """One watch on the bench namespace's pods: when each pod was first seen, first seen
    bound, first seen Running (receive times on this process's clock)."""

    def __init__(self, url: str):
        self.url = url
        self.created: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.node_of: dict[str, str] = {}
        self.changed = asyncio.Event()
        self.rv = ""
        self.started = asyncio.get_running_loop().create_future()

    async def run(self, session: aiohttp.ClientSession) -> None:
        path = f"{self.url}/api/v1/namespaces/{NAMESPACE}/pods"
        async with session.get(path, params={"limit": "1"}) as r:
            self.rv = (await r.json())["metadata"]["resourceVersion"]
        while True:
            async with session.get(path, params={
                    "watch": "true", "resourceVersion": self.rv, "allowWatchBookmarks": "true",
                    "timeoutSeconds": "3600"}, timeout=aiohttp.ClientTimeout(total=None)) as r:
                if not self.started.done():
                    self.started.set_result(None)
                buf = b""
                async for chunk in r.content.iter_any():
                    now = time.perf_counter()
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            self._event(orjson.loads(line), now)
                    self.changed.set()

    def _event(self, ev: dict, now: float) -> None:
        obj = ev["object"]
        rv = obj.get("metadata", {}).get("resourceVersion")
        if rv:
            self.rv = rv
        if ev["type"] not in ("ADDED", "MODIFIED"):
            return
        name = obj["metadata"]["name"]
        self.created.setdefault(name, now)
        node = (obj.get("spec") or {}).get("nodeName")
        if node and name not in self.bound:
            self.bound[name] = now
            self.node_of[name] = node
        if (obj.get("status") or {}).get("phase") == "Running":
            self.running.setdefault(name, now)


async def create_pods(url: str, total: int, creators: int, anti_every: int,
                      stats: dict) -> None:
    """``creators`` concurrent callers create ``total`` pods between them as fast as the
    server answers, through the project's client (one keep-alive connection each; the
    answer is not decoded), as scheduler_perf creates through client-go in its process."""
    counter = iter(range(total))
    latencies: list[float] = []
    stats["create_latency"] = latencies
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"

    async def creator(client: Client) -> None:
        for i in counter:
            body = pod_dict(i, anti_every > 0 and i % anti_every == 0)
            for attempt in range(5):
                t0 = time.perf_counter()
                try:
                    await client.request("POST", path, body=body, raw=True)
                except errors.AlreadyExists:  # created by a retried request
                    break
                except errors.StatusError:
                    stats["create_errors"] += 1
                    await asyncio.sleep(0.1 * (attempt + 1))
                else:
                    latencies.append(time.perf_counter() - t0)
                    break
    stats["create_errors"] = 0
    t0 = time.perf_counter()
    async with Client(url) as client:
        await asyncio.gather(*(creator(client) for _ in range(creators)))
    stats["create_seconds"] = time.perf_counter() - t0


# ---------------------------------------------------------------------------- one case


class Cluster:
    """API server, hollow nodes and scheduler, each in its own process."""

    def __init__(self, args, workdir: str):
        self.args, self.workdir = args, workdir
        self.procs: list[Proc] = []

    def start(self, api_only: bool = False) -> None:
        a, w = self.args, self.workdir
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        options = {"data_dir": os.path.join(w, "store")} if a.store == "raft" else {}
        cfg = {"store": {"plugin": a.store, "options": options},
               "components": {"apiserver": {"port": port, "address": "127.0.0.1",
                                            "kubeconfig": os.path.join(w, "kubeconfig"),
                                            "compactionInterval": 0},
                              "scheduler": {"percentageOfNodesToScore":
                                            a.percentage_of_nodes_to_score}}}
        self.config = os.path.join(w, "config.yaml")
        with open(self.config, "w") as fh:
            yaml.safe_dump(cfg, fh)
        log(f"starting the API server (store {a.store}) on {self.url}")
        api = Proc("apiserver", [sys.executable, "-m", "pilothouse.cli", "apiserver",
                                 "--config", self.config], w)
        self.procs.append(api)
        api.wait_for_output("serving on", 60)
        if api_only:
            return
        log(f"starting {a.nodes} hollow nodes")
        t0 = time.monotonic()
        hollow = Proc("hollow-nodes", [
            sys.executable, "-m", "pilothouse_hollow_node", "--server", self.url,
            "--nodes", str(a.nodes), "--cpu", "4", "--memory", "32Gi", "--pods", "110",
            "--zones", "3", "--lease-interval", str(a.lease_interval)], w, env=hollow_env())
        self.procs.append(hollow)
        hollow.wait_for_output("hollow-nodes: ready", 600)
        log(f"hollow nodes registered in {time.monotonic() - t0:.1f} s")
        if not a.backlog:
            self.start_scheduler()

    def start_scheduler(self) -> None:
        log("starting the scheduler: " + " ".join(os.path.basename(x) for x in
                                                   scheduler_command()[1:]))
        sched = Proc("scheduler", [*scheduler_command(), "--server", self.url,
                                   "--config", self.config], self.workdir)
        self.procs.append(sched)

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.procs}

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


async def wait_scheduler_ready(url: str, session: aiohttp.ClientSession,
                               timeout: float = 300) -> float:
    """Create a warm-up pod and wait until it is bound (the scheduler has synced every
    node); delete it. Returns the seconds it took."""
    t0 = time.monotonic()
    path = f"{url}/api/v1/namespaces/default/pods"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "warmup"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                     "terminationGracePeriodSeconds": 0}}
    async with session.post(path, json=body) as r:
        assert r.status == 201, await r.text()
    while time.monotonic() - t0 < timeout:
        async with session.get(f"{path}/warmup") as r:
            pod = await r.json()
        if (pod.get("spec") or {}).get("nodeName"):
            async with session.delete(f"{path}/warmup", json={"gracePeriodSeconds": 0}):
                pass
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise SystemExit(f"the scheduler did not bind a warm-up pod within {timeout:.0f} s")


class Profiler:
    """py-spy ``record`` on each server process for the measured window."""

    def __init__(self, directory: str | None, pids: dict[str, int], label: str):
        self.records: dict[str, tuple[subprocess.Popen, str]] = {}
        if not directory:
            return
        if shutil.which("py-spy") is None:
            log("--profile: py-spy is not installed (pip install py-spy); not profiling")
            return
        os.makedirs(directory, exist_ok=True)
        for name, pid in pids.items():
            out = os.path.join(directory, f"{label}-{name}.txt")
            proc = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "200",
                                     "--format", "raw", "--output", out, "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)
            self.records[name] = (proc, out)

    def stop(self) -> dict[str, str]:
        done = {}
        for name, (proc, out) in self.records.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if os.path.exists(out):
                done[name] = out
        return done


def summarize_profile(path: str, top: int = 12, ms_per_pod: float | None = None
                      ) -> list[str]:
    """The functions with the most inclusive samples (py-spy raw: 'frame;frame;... count'),
    With ``ms_per_pod`` (the
    process's CPU per pod in the window), each share is also shown as CPU ms per pod."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            leaf = frames[-1]
            own[_short(leaf)] += n
            for f in set(_short(f) for f in frames):
                inclusive[f] += n
    if not total:
        return ["  (no samples)"]
    def ms(n: int) -> str:
        return f"  {ms_per_pod * n / total:6.3f} ms/pod" if ms_per_pod else ""
    lines = [f"  {total} samples on CPU (py-spy leaves out idle time; 'Runner.run' self time "
             "is the event loop's own native work: uvloop I/O and callbacks)"]
    lines.append("  inclusive (function: % of samples):")
    skip = ("<module>", "run (", "cmd_", "run_async", "run_forever", "_run_once", "_run (", "main (", "runner",
            "_run_module_as_main", "_run_code", "run_until_complete", "Runner.run")
    shown = 0
    for name, n in inclusive.most_common():
        if any(s in name for s in skip):
            continue
        lines.append(f"    {100 * n / total:5.1f}%{ms(n)}  {name}")
        shown += 1
        if shown >= top:
            break
    lines.append("  self time (leaf function: % of samples):")
    for name, n in own.most_common(top):
        lines.append(f"    {100 * n / total:5.1f}%{ms(n)}  {name}")
    return lines


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" → "func (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


async def run_case(args, case: str, workdir: str) -> dict:
    anti_every = 0
    if case == "anti":
        anti_every = max(1, round(1 / args.anti_fraction))
    cluster = Cluster(args, workdir)
    result: dict = {"case": case, "nodes": args.nodes, "pods": args.pods}
    try:
        cluster.start()
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as session:
            if not args.backlog:
                ready = await wait_scheduler_ready(cluster.url, session)
                log(f"scheduler ready ({ready:.1f} s after start, warm-up pod bound)")
            async with session.post(f"{cluster.url}/api/v1/namespaces", json={
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": NAMESPACE}}) as r:
                assert r.status in (201, 409), await r.text()
            observer = Observer(cluster.url)
            watch = asyncio.create_task(observer.run(session))
            await observer.started
            pids = {**cluster.pids(), "bench": os.getpid()}
            # the background cost (leases, heartbeats, watches) before any pod exists, over
            # a whole lease round once start-up work (registration, first lists) has settled
            settle = args.settle if args.settle is not None else \
                min(args.lease_interval, 2.0 if args.quick else 10.0)
            log(f"measuring the background CPU ({settle:.0f} s settling, "
                f"{args.baseline:.0f} s measuring)")
            await asyncio.sleep(settle)
            base0, tb0 = {n: cpu_seconds(p) for n, p in pids.items()}, time.perf_counter()
            await asyncio.sleep(args.baseline)
            cpu0, tb1 = {n: cpu_seconds(p) for n, p in pids.items()}, time.perf_counter()
            baseline = {n: (cpu0[n] - base0[n]) / (tb1 - tb0) for n in pids}
            log(f"creating {args.pods} pods with {args.creators} clients"
                + (f" ({100 / anti_every:.0f}% with required anti-affinity)" if anti_every
                   else "") + (", no scheduler running yet" if args.backlog else ""))
            stats: dict = {}
            if args.backlog:
                # every pod exists before the scheduler starts: the window holds the
                # scheduler's start-up (informer sync) and its work, not the creation
                await create_pods(cluster.url, args.pods, args.creators, anti_every, stats)
                while len(observer.created) < args.pods:
                    observer.changed.clear()
                    await asyncio.wait_for(observer.changed.wait(), 30.0)
                log(f"created {args.pods} pods in {stats['create_seconds']:.1f} s")
                t_start = time.perf_counter()
                cluster.start_scheduler()
                pids = {**cluster.pids(), "bench": os.getpid()}
                baseline["scheduler"] = 0.0
                creating = asyncio.create_task(asyncio.sleep(0))
            load0 = os.getloadavg()[0]
            prof = Profiler(args.profile, cluster.pids(), case)
            cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
            loop0 = cpu_seconds(pids["apiserver"], main_thread=True)
            if not args.backlog:
                t_start = time.perf_counter()
                creating = asyncio.create_task(create_pods(cluster.url, args.pods,
                                                           args.creators, anti_every, stats))
            deadline = t_start + args.timeout
            last_log = t_start
            last_bound = 0
            while len(observer.bound) < args.pods:
                if time.perf_counter() > deadline:
                    log(f"timeout: {len(observer.bound)}/{args.pods} bound after "
                        f"{args.timeout:.0f} s")
                    result["timeout"] = True
                    break
                if creating.done() and creating.exception():
                    raise creating.exception()
                observer.changed.clear()
                try:
                    await asyncio.wait_for(observer.changed.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                now = time.perf_counter()
                if now - last_log >= 2.0:
                    b = len(observer.bound)
                    log(f"  {now - t_start:6.1f} s: created {len(observer.created)}, bound "
                        f"{b} ({(b - last_bound) / (now - last_log):.0f}/s), running "
                        f"{len(observer.running)}")
                    last_log, last_bound = now, b
            t_bound = time.perf_counter()
            await creating
            cpu1 = {n: cpu_seconds(p) for n, p in pids.items()}
            loop1 = cpu_seconds(pids["apiserver"], main_thread=True)
            profiles = prof.stop()
            load1 = os.getloadavg()[0]
            # how long after the last bind the hollow nodes report every pod Running
            running_deadline = time.perf_counter() + (30 if not result.get("timeout") else 0)
            while len(observer.running) < len(observer.bound) and \
                    time.perf_counter() < running_deadline:
                observer.changed.clear()
                try:
                    await asyncio.wait_for(observer.changed.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
            watch.cancel()
            names = [n for n in observer.bound if n in observer.created]
            first = t_start if args.backlog else min(observer.created.values())
            last = max(observer.bound.values()) if observer.bound else float("nan")
            window = last - first
            # in a backlog every pod waits from its creation; latency says nothing there
            lat = [] if args.backlog else [observer.bound[n] - observer.created[n]
                                           for n in names]
            if args.backlog and observer.bound:
                first_bind = min(observer.bound.values())
                result["first_bind_after"] = first_bind - t_start
                result["throughput_after_first"] = (len(observer.bound) - 1) / \
                    (last - first_bind) if last > first_bind else float("nan")
            result.update({
                "bound": len(observer.bound),
                "throughput": len(observer.bound) / window if window > 0 else float("nan"),
                "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else 0,
                "backlog": args.backlog,
                "window": window,
                "create_rate": args.pods / stats["create_seconds"],
                "create_p99": pct(stats["create_latency"], 99),
                "create_errors": stats["create_errors"],
                "running": len(observer.running),
                "running_after": (max(observer.running.values()) - last)
                if len(observer.running) == len(observer.bound) and observer.running
                else None,
                "cpu": {n: (cpu1[n] - cpu0[n]) / (t_bound - t_start) for n in pids},
                "apiserver_loop": (loop1 - loop0) / (t_bound - t_start),
                "create_mean": sum(stats["create_latency"]) / max(len(stats["create_latency"]),
                                                                  1),
                "baseline": baseline, "measured": t_bound - t_start,
                "cpu_per_pod": {n: (cpu1[n] - cpu0[n]) / max(len(observer.bound), 1)
                                for n in pids},
                "load": (load0, load1), "profiles": profiles,
            })
            if anti_every:
                anti_nodes = [observer.node_of[f"pod-{i}"] for i in range(0, args.pods,
                                                                          anti_every)
                              if f"pod-{i}" in observer.node_of]
                result["anti_pods"] = len(anti_nodes)
                result["anti_violations"] = len(anti_nodes) - len(set(anti_nodes))
    finally:
        cluster.stop()
    return result


# ---------------------------------------------------------------------------- breakdown


def status_body(i: int) -> dict:
    """What a hollow node writes through pods/status for a one-container pod."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ip = f"10.64.{i // 250 % 250}.{i % 250 + 2}"
    conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
             for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready",
                       "PodScheduled")]
    return {"status": {
        "phase": "Running", "conditions": conds, "hostIP": "172.16.0.2",
        "hostIPs": [{"ip": "172.16.0.2"}], "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": now, "qosClass": "Guaranteed",
        "containerStatuses": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                               "imageID": "registry.k8s.io/pause@sha256:" + "0" * 64,
                               "containerID": "hollow://" + "1" * 64, "ready": True,
                               "started": True, "restartCount": 0,
                               "state": {"running": {"startedAt": now}}, "lastState": {}}]}}


async def breakdown(args) -> list[tuple[str, float, float]]:
    """The API server's CPU per request of each kind one scheduled pod costs, measured one
    kind at a time against a fresh API server (no scheduler, no hollow nodes)."""
    work = tempfile.mkdtemp(prefix="pilothouse-sched-breakdown-")
    n = 300 if args.quick else 2000
    clients = 8
    rows: list[tuple[str, float, float]] = []
    cluster = Cluster(args, work)
    try:
        cluster.start(api_only=True)
        url = cluster.url
        api = cluster.procs[0]
        ns = f"{url}/api/v1/namespaces/{NAMESPACE}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            async with session.post(f"{url}/api/v1/namespaces", json={
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}):
                pass
            for i in range(100):
                async with session.post(f"{url}/apis/coordination.k8s.io/v1/namespaces/"
                                        "kube-node-lease/leases", json={
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": f"n{i}"}, "spec": {
                            "holderIdentity": f"n{i}", "leaseDurationSeconds": 40}}):
                    pass
            leases: dict[int, dict] = {}
            # the server's own CPU when idle (raft ticks, watch-cache progress), subtracted
            i0, ti0 = cpu_seconds(api.pid), time.perf_counter()
            await asyncio.sleep(3.0)
            idle = (cpu_seconds(api.pid) - i0) / (time.perf_counter() - ti0)
            log(f"breakdown: idle API server uses {100 * idle:.1f}% of a core")

            async def measure(label: str, op, count: int = n) -> float:
                counter = iter(range(count))
                expected = {"POST": (201,), "PATCH": (200,), "PUT": (200,),
                            "DELETE": (200, 202)}

                async def worker():
                    for i in counter:
                        method, path, body, ctype = op(i)
                        async with session.request(method, path, data=json.dumps(body),
                                                   headers={"Content-Type": ctype}) as r:
                            text = await r.read()
                            if r.status not in expected[method]:
                                raise SystemExit(f"{label}: {r.status} {text[:300]!r}")
                            if path.endswith("/leases/" + f"n{i % 100}"):
                                leases[i % 100] = json.loads(text)
                c0, t0 = cpu_seconds(api.pid), time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(clients)))
                c1, t1 = cpu_seconds(api.pid), time.perf_counter()
                per = (c1 - c0 - idle * (t1 - t0)) / count * 1000
                rows.append((label, per, count / (t1 - t0)))
                log(f"  {label}: {per:.2f} ms of API server CPU each")
                return per
            js = "application/json"
            log(f"breakdown: {n} requests of each kind, {clients} clients")
            create = await measure("pod create", lambda i: (
                "POST", f"{ns}/pods", pod_dict(i, False), js))
            await measure("pods/binding", lambda i: (
                "POST", f"{ns}/pods/pod-{i}/binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"pod-{i}"},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}, js))
            await measure("pods/status patch", lambda i: (
                "PATCH", f"{ns}/pods/pod-{i}/status", status_body(i),
                "application/merge-patch+json"))
            await measure("event create", lambda i: (
                "POST", f"{ns}/events", {
                    "apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": f"pod-{i}.{i:016x}", "namespace": NAMESPACE},
                    "involvedObject": {"apiVersion": "v1", "kind": "Pod",
                                       "namespace": NAMESPACE, "name": f"pod-{i}"},
                    "reason": "Scheduled", "message": f"Successfully assigned bench/pod-{i} "
                    "to node-1", "type": "Normal", "action": "Binding",
                    "source": {"component": "default-scheduler"},
                    "reportingComponent": "default-scheduler", "reportingInstance": "bench",
                    "firstTimestamp": "2026-01-01T00:00:00Z",
                    "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1}, js))

            def lease_put(i):
                current = leases.get(i % 100)
                body = current or {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": f"n{i % 100}"}}
                # a renewal: a new renewTime each time, as a node agent sends it
                renew = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
                    f".{i % 1000000:06d}Z"
                body = {**body, "spec": {"holderIdentity": f"n{i % 100}",
                                         "leaseDurationSeconds": 40, "renewTime": renew}}
                return ("PUT", f"{url}/apis/coordination.k8s.io/v1/namespaces/"
                        f"kube-node-lease/leases/n{i % 100}", body, js)
            await measure("lease update (PUT)", lease_put)
            await measure("pod delete", lambda i: (
                "DELETE", f"{ns}/pods/pod-{i}", {"gracePeriodSeconds": 0}, js))
            # the same creates with many pod watchers: the difference is the fan-out cost
            watchers = 30
            stop = asyncio.Event()
            seen = [0] * watchers

            async def watcher(k):
                async with session.get(f"{url}/api/v1/pods", params={
                        "watch": "true", "timeoutSeconds": "600"},
                        timeout=aiohttp.ClientTimeout(total=None)) as r:
                    async for chunk in r.content.iter_any():
                        seen[k] += chunk.count(b"\n")
                        if stop.is_set():
                            return
            tasks = [asyncio.create_task(watcher(k)) for k in range(watchers)]
            await asyncio.sleep(1.0)
            with_watch = await measure(f"pod create, {watchers} watchers", lambda i: (
                "POST", f"{ns}/pods", pod_dict(n + i, False), js))
            stop.set()
            for t in tasks:
                t.cancel()
            rows.append(("  → one watch event delivered", (with_watch - create) / watchers,
                         float("nan")))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def print_table(results: list[dict], args) -> None:
    titles = {"basic": "SchedulingBasic",
              "anti": f"PodAntiAffinity ({100 * args.anti_fraction:.0f}% required)"}
    print()
    pct_nodes = args.percentage_of_nodes_to_score
    print(f"Scheduler benchmark: store {args.store}, {args.creators} creating clients, "
          f"leases every {args.lease_interval:g} s, percentageOfNodesToScore "
          f"{pct_nodes or 'adaptive'}, {os.cpu_count()} CPUs")
    head = (f"{'case':<28} {'nodes':>6} {'pods':>6} {'pods/s':>8} {'p50 ms':>9} "
            f"{'p99 ms':>9} {'create/s':>9} {'all Running':>12}")
    print(head)
    print("-" * len(head))
    for r in results:
        running = f"+{r['running_after']:.1f} s" if r.get("running_after") is not None \
            else f"{r.get('running', 0)}/{r.get('bound', 0)}"
        title = titles[r["case"]] + (" (backlog)" if r.get("backlog") else "")
        p50, p99 = (f"{r[k] * 1000:>9.0f}" if r[k] == r[k] else f"{'-':>9}"
                    for k in ("p50", "p99"))
        print(f"{title:<28} {r['nodes']:>6} {r['pods']:>6} "
              f"{r['throughput']:>8.0f} {p50} {p99} "
              f"{r['create_rate']:>9.0f} {running:>12}")
    print()
    print("CPU of each process: share of one core during the measured window; CPU per pod "
          "(window CPU / pods bound);\nthe background before any pod existed (leases, "
          "heartbeats, idle watches) as a share of one core and as ms per pod at the\n"
          "measured rate; the rest, per pod, is what one pod costs, and the rate one core "
          "could sustain at that cost:")
    for r in results:
        print(f"  {titles[r['case']]}")
        rate = r["bound"] / r["measured"] if r["measured"] > 0 else 0
        for n, v in r["cpu"].items():
            per = r["cpu_per_pod"][n] * 1000
            bg = 1000 * r["baseline"][n] / rate if rate > 0 else 0.0
            own = max(per - bg, 0.0)
            ceiling = f"  -> one core: {1000 / own:,.0f} pods/s" if own > 0.05 else ""
            print(f"    {n:<13} {100 * v:4.0f}% of a core  {per:6.2f} ms/pod   background "
                  f"{100 * r['baseline'][n]:3.0f}% = {bg:5.2f} ms/pod   per pod {own:6.2f} ms"
                  f"{ceiling}")
        notes = [f"load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}",
                 *([f"backlog: first bind {r['first_bind_after']:.1f} s after the scheduler "
                    f"started, then {r['throughput_after_first']:.0f} pods/s"]
                   if "first_bind_after" in r else []),
                 f"window {r['window']:.1f} s",
                 f"apiserver main thread (its event loop) {100 * r['apiserver_loop']:.0f}% of "
                 "a core",
                 f"create mean {r['create_mean'] * 1000:.0f} ms",
                 f"create p99 {r['create_p99'] * 1000:.0f} ms"]
        if not r.get("backlog"):
            notes.insert(-1, f"latency max {r['max'] * 1000:.0f} ms")
        if r.get("create_errors"):
            notes.append(f"{r['create_errors']} create errors retried")
        if r.get("timeout"):
            notes.append(f"TIMEOUT: {r['bound']}/{r['pods']} bound")
        if "anti_pods" in r:
            notes.append(f"{r['anti_pods']} anti-affinity pods, {r['anti_violations']} "
                         f"sharing a node")
        print("    " + "; ".join(notes))
    print()
    print("Anchor: kube-scheduler's CI floor for SchedulingBasic (5000 nodes) is 680 pods/s; "
          "goal here: 1,000 pods/s.")
    for r in results:
        for name, path in r.get("profiles", {}).items():
            print(f"\nprofile {titles[r['case']]} / {name} ({path}):")
            per = r["cpu"][name] * r["measured"] / max(r["bound"], 1) * 1000
            print(f"  ({per:.2f} ms of CPU per pod in the window, background included)")
            print("\n".join(summarize_profile(path, ms_per_pod=per)))


async def main(args) -> None:
    cases = {"all": ["basic", "anti"], "none": []}.get(args.case, [args.case])
    results = []
    for case in cases:
        work = tempfile.mkdtemp(prefix=f"pilothouse-sched-bench-{case}-")
        try:
            log(f"== case {case}: {args.nodes} nodes, {args.pods} pods")
            results.append(await run_case(args, case, work))
            r = results[-1]
            log(f"== {case}: {r['throughput']:.0f} pods/s, p50 {r['p50'] * 1000:.0f} ms, "
                f"p99 {r['p99'] * 1000:.0f} ms")
        except BaseException:
            log(f"logs kept in {work}")
            raise
        else:
            if args.keep_logs:
                log(f"logs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    if results:
        print_table(results, args)
    if args.breakdown:
        rows = await breakdown(args)
        print()
        print(f"API server CPU per request (store {args.store}; one kind at a time, 8 clients, "
              "no other load):")
        for label, per, rate in rows:
            r = f"{rate:8.0f}/s" if rate == rate else ""
            print(f"  {label:<34} {per:6.2f} ms   {r}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="raft", help="store plugin (default raft; or memory)")
    p.add_argument("--quick", action="store_true", help="500 nodes, 1,000 pods: smoke test")
    p.add_argument("--case", choices=("basic", "anti", "all", "none"), default="all",
                   help="which case to run (none: only --breakdown)")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure the API server's CPU per request kind a pod costs")
    p.add_argument("--nodes", type=int, help="hollow nodes (default 5000; 500 with --quick)")
    p.add_argument("--pods", type=int, help="pods to schedule (default 10000; 1000 quick)")
    p.add_argument("--anti-fraction", type=float, default=0.25,
                   help="share of the anti case's pods with required anti-affinity")
    p.add_argument("--creators", type=int, default=32, help="concurrent creating clients "
                   "(default 32)")
    p.add_argument("--lease-interval", type=float, default=10.0,
                   help="hollow nodes' Lease renewal period (default 10 s, the kubelet's)")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                   help="the scheduler's percentageOfNodesToScore (default 0: Kubernetes' "
                   "adaptive 50%% - 1%% per 125 nodes, at least 5%% and 100 nodes)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="give up waiting for bindings after this many seconds")
    p.add_argument("--baseline", type=float,
                   help="seconds to measure each process's background CPU before creating "
                   "(default: one lease interval; 2 s with --quick)")
    p.add_argument("--settle", type=float,
                   help="seconds to wait after start-up before that (default: one lease "
                   "interval, at most 10 s; 2 s with --quick)")
    p.add_argument("--backlog", action="store_true",
                   help="create every pod before starting the scheduler and measure from the "
                   "scheduler's start to the last bind (the scheduler's rate without the "
                   "creation load on the same CPUs)")
    p.add_argument("--profile", metavar="DIR", help="record py-spy profiles into DIR")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = p.parse_args(argv)
    if args.baseline is None:
        args.baseline = 2.0 if args.quick else args.lease_interval
    args.nodes = args.nodes or (500 if args.quick else 5000)
    args.pods = args.pods or (1000 if args.quick else 10000)
    if args.case in ("anti", "all") and args.pods * args.anti_fraction > args.nodes:
        p.error("the anti case needs at least pods x anti-fraction nodes")
    return args


if __name__ == "__main__":
    def _terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _terminate)
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)
