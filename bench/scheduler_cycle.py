#!/usr/bin/env python3
"""The scheduler's CPU per scheduled pod, in one process: no API server, no informers, no
binding.

    python bench/scheduler_cycle.py [--nodes N] [--pods P] [--anti [FRACTION]]
                                    [--without PLUGIN,...] [--percentage-of-nodes-to-score PCT]
                                    [--no-reuse] [--profile] [--top K]

What it measures: the scheduler host's own work for each pod, as ``Scheduler._schedule_one``
does it, on the default profile built by ``Scheduler.from_config`` (entry points of
pilothouse-sched-default; the client is a stub that is never called):

1. ``Cache.update_snapshot`` (clones the NodeInfos that changed since the last cycle);
2. ``Scheduler._schedule_pod``: PreFilter, Filter over the sampled nodes
   (``percentageOfNodesToScore``, adaptive by default: 500 of 5,000 nodes), PreScore, Score
   and normalization, host selection;
3. assuming the pod into the cache, Reserve and Permit;
4. the pod informer confirming the binding (``Cache.add_pod`` of the bound pod), as the real
   scheduler sees each pod come back from the API.

The cluster is N NodeInfos shaped like the hollow nodes of ``bench/scheduler.py`` (4 cpu,
32Gi, 110 pods, ``kubernetes.io/hostname`` and ``topology.kubernetes.io/zone`` over 3 zones,
no images); the pods are scheduler_perf's default pod (one container, requests = limits =
100m cpu / 500Mi, no affinity), scheduled one after another. ``--anti`` gives a FRACTION
(default 0.25) of them required pod anti-affinity on ``kubernetes.io/hostname`` against each
other (label ``color=anti``), like ``bench/scheduler.py --case anti``. ``--without`` drops
plugins from the profile (e.g. ``--without InterPodAffinity,PodTopologySpread``).
``--no-reuse`` turns off pod scheduling signatures (``signatureCacheSize: 0``; per-node
reuse of Filter and Score results, :class:`pilothouse.interfaces.scheduler.Sign`), which
engage only when every Filter and weighted Score plugin of the profile signs the pod; the
first line printed says whether they can.

Garbage collection is tuned as the component processes tune it (``pilothouse._aio``:
freeze start-up objects, thresholds 50,000/50/100). Figures are CPU time
(``time.process_time``) per pod, total and per phase (the per-phase clock reads add about
a microsecond each). ``--profile`` runs the same loop under cProfile and prints the top
functions by own and cumulative time, in CPU ms per pod. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import sys
import time

from pilothouse.config import parse_config
from pilothouse.interfaces.scheduler import CycleState
from pilothouse.scheduler import Scheduler

HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
NAMESPACE = "bench"


class _StubClient:
    """Enough of a client for the Scheduler constructor; nothing here talks to an API."""

    def resource(self, *args, **kwargs):
        return None


def hollow_node(i: int, zones: int = 3) -> dict:
    name = f"hollow-node-{i}"
    resources = {"cpu": "4", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"node-uid-{i}", "resourceVersion": str(i + 1),
                         "labels": {HOSTNAME: name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64",
                                    "pilothouse.dev/hollow": "hollow-node",
                                    ZONE: f"zone-{i % zones}"}},
            "spec": {"podCIDR": f"10.{i // 256}.{i % 256}.0/24"},
            "status": {"capacity": dict(resources), "allocatable": dict(resources),
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def bench_pod(i: int, anti: bool) -> dict:
    """scheduler_perf's pod-default as the API server returns it (defaults filled in)."""
    res = {"cpu": "100m", "memory": "500Mi"}
    labels = {"app": "bench"}
    spec: dict = {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                  "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                  "resources": {"requests": dict(res), "limits": dict(res)},
                                  "imagePullPolicy": "IfNotPresent"}],
                  "restartPolicy": "Always", "schedulerName": "default-scheduler",
                  "priority": 0, "enableServiceLinks": True, "dnsPolicy": "ClusterFirst",
                  "terminationGracePeriodSeconds": 30,
                  "tolerations": [
                      {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                       "effect": "NoExecute", "tolerationSeconds": 300},
                      {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                       "effect": "NoExecute", "tolerationSeconds": 300}]}
    if anti:
        labels["color"] = "anti"
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "anti"}}, "topologyKey": HOSTNAME}]}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i}", "namespace": NAMESPACE, "uid": f"pod-uid-{i}",
                         "resourceVersion": str(100000 + i), "labels": labels},
            "spec": spec, "status": {"phase": "Pending", "qosClass": "Guaranteed"}}


def build(args) -> Scheduler:
    doc: dict = {"components": {"scheduler": {
        "percentageOfNodesToScore": args.percentage_of_nodes_to_score,
        "signatureCacheSize": 0 if args.no_reuse else 32}}}
    without = {n for n in (args.without or "").split(",") if n}
    if without:
        plugins = parse_config({}).raw["scheduler"]["profiles"][0]["plugins"]
        doc["scheduler"] = {"profiles": [{"schedulerName": "default-scheduler", "plugins": [
            p for p in plugins if p["name"] not in without]}]}
    sched = Scheduler.from_config(parse_config(doc), _StubClient())
    for i in range(args.nodes):
        sched.cache.add_node(hollow_node(i))
    return sched


async def assume(sched: Scheduler, fw, state: CycleState, pod: dict, node: str) -> dict:
    """What ``Scheduler._schedule_one`` does after a node was chosen: assume the pod there,
    then Reserve and Permit. Returns the assumed pod."""
    assumed = dict(pod)
    assumed["spec"] = {**pod["spec"], "nodeName": node}
    sched.cache.assume_pod(assumed, node)
    status = await fw.run_reserve(state, assumed, node)
    if status.ok:
        await fw.run_permit(state, assumed, node)
    return assumed


async def schedule_all(sched: Scheduler, pods: list[dict], phases: list[float] | None) -> int:
    """Schedule ``pods`` one after another; returns how many found a node. ``phases``
    (snapshot, schedule, assume, confirm) accumulates CPU seconds when given."""
    fw = sched.frameworks["default-scheduler"]
    cache, snapshot = sched.cache, sched.snapshot
    clock = time.process_time
    placed = 0
    for pod in pods:
        t0 = clock() if phases is not None else 0.0
        cache.update_snapshot(snapshot)
        t1 = clock() if phases is not None else 0.0
        state = CycleState()
        try:
            node = await sched._schedule_pod(fw, state, pod)
        except Exception:  # FitError: unschedulable (counted, not retried)
            if phases is not None:
                phases[1] += clock() - t1
            continue
        t2 = clock() if phases is not None else 0.0
        assumed = await assume(sched, fw, state, pod, node)
        t3 = clock() if phases is not None else 0.0
        cache.finish_binding(assumed)
        bound = dict(assumed)
        bound["status"] = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}]}
        cache.add_pod(bound)
        placed += 1
        if phases is not None:
            t4 = clock()
            phases[0] += t1 - t0
            phases[1] += t2 - t1
            phases[2] += t3 - t2
            phases[3] += t4 - t3
    return placed


async def schedule_all_host(sched: Scheduler, pods: list[dict], phases: list[float],
                            bound_lag: int, running_lag: int) -> int:
    """Like :func:`schedule_all`, with the host's queue and informer handlers in the loop,
    as the real scheduler sees each pod: ADDED pending (``_on_pod_add``: queued) before the
    first cycle, then per pod ``queue.pop``, the cycle, assume, Reserve and Permit, and
    ``bound_lag`` cycles later MODIFIED bound (``_on_pod_update``: confirms the assumption),
    ``running_lag`` cycles later MODIFIED Running (the hollow node's status report).
    ``phases`` (queue add, pop, snapshot, schedule, assume, handlers) accumulates CPU
    seconds."""
    fw = sched.frameworks["default-scheduler"]
    cache, snapshot, queue = sched.cache, sched.snapshot, sched.queue
    clock = time.process_time
    t0 = clock()
    for pod in pods:
        sched._on_pod_add(pod)
    phases[0] += clock() - t0
    later: dict[int, list[tuple[dict, dict]]] = {}
    placed = 0
    for i in range(len(pods)):
        t0 = clock()
        qp = await queue.pop()
        t1 = clock()
        cache.update_snapshot(snapshot)
        t2 = clock()
        state = CycleState()
        pod = qp.pod
        try:
            node = await sched._schedule_pod(fw, state, pod)
        except Exception:
            phases[3] += clock() - t2
            continue
        t3 = clock()
        assumed = await assume(sched, fw, state, pod, node)
        cache.finish_binding(assumed)
        queue.done(qp)
        t4 = clock()
        raw = pods[i]
        meta = {**raw["metadata"], "resourceVersion": str(200000 + i), "generation": 2}
        bound = {**raw, "metadata": meta, "spec": {**raw["spec"], "nodeName": node},
                 "status": {**raw["status"], "conditions": [
                     {"type": "PodScheduled", "status": "True"}]}}
        running = {**bound, "metadata": {**meta, "resourceVersion": str(300000 + i)},
                   "status": {**bound["status"], "phase": "Running",
                              "startTime": "2026-01-01T00:00:00Z", "podIP": "10.0.0.1"}}
        later.setdefault(i + bound_lag, []).append((raw, bound))
        later.setdefault(i + running_lag, []).append((bound, running))
        for old, new in later.pop(i, ()):
            sched._on_pod_update(old, new)
        placed += 1
        t5 = clock()
        phases[1] += t1 - t0
        phases[2] += t2 - t1
        phases[3] += t3 - t2
        phases[4] += t4 - t3
        phases[5] += t5 - t4
    return placed


def make_pods(args) -> list[dict]:
    every = max(1, round(1 / args.anti)) if args.anti else 0
    return [bench_pod(i, every > 0 and i % every == 0) for i in range(args.pods)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--anti", type=float, nargs="?", const=0.25, default=0.0,
                   metavar="FRACTION", help="share of pods with required anti-affinity "
                   "on the hostname (0.25 when given without a value)")
    p.add_argument("--without", default="", metavar="PLUGIN,...",
                   help="drop these plugins from the default profile")
    p.add_argument("--percentage-of-nodes-to-score", type=int, default=0)
    p.add_argument("--no-reuse", action="store_true",
                   help="no pod scheduling signatures (per-node result reuse)")
    p.add_argument("--host", action="store_true",
                   help="drive the host's queue and pod informer handlers too (pods queued "
                   "pending, confirmed bound and reported Running later)")
    p.add_argument("--bound-lag", type=int, default=20, metavar="CYCLES",
                   help="with --host: cycles between a pod's bind and its MODIFIED bound")
    p.add_argument("--running-lag", type=int, default=200, metavar="CYCLES",
                   help="with --host: cycles between a pod's bind and its Running report")
    p.add_argument("--profile", action="store_true", help="run under cProfile")
    p.add_argument("--top", type=int, default=25, help="rows of the profile to print")
    args = p.parse_args(argv)

    t0 = time.process_time()
    sched = build(args)
    pods = make_pods(args)
    if args.host:  # the API server fills no priority without the Priority admission plugin
        for pod in pods:
            del pod["spec"]["priority"]
    sched.cache.update_snapshot(sched.snapshot)
    setup = time.process_time() - t0
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    fw = sched.frameworks["default-scheduler"]
    want = fw.num_feasible_nodes_to_find(args.nodes, args.percentage_of_nodes_to_score)
    unsigned = [p.name for p in fw.plugins if p.name in {n for n, _ in fw.filter}
                | {s[0] for s in fw.score} and not hasattr(p.plugin, "sign")]
    reuse = "off (--no-reuse)" if args.no_reuse else \
        f"off: {', '.join(unsigned)} do not sign" if unsigned else "on"
    print(f"profile: {', '.join(p.name for p in fw.plugins)}; signature reuse {reuse}")
    print(f"{args.nodes} nodes, {args.pods} pods"
          + (f" ({100 * args.anti:.0f}% with required anti-affinity)" if args.anti else "")
          + f", {want} feasible nodes to find per pod; setup {setup:.1f} s CPU")

    if args.profile:
        prof = cProfile.Profile()
        c0 = time.process_time()
        prof.enable()
        placed = asyncio.run(
            schedule_all_host(sched, pods, [0.0] * 6, args.bound_lag, args.running_lag)
            if args.host else schedule_all(sched, pods, None))
        prof.disable()
        total = time.process_time() - c0
        print(f"placed {placed}/{args.pods}; {1000 * total / args.pods:.3f} ms CPU per pod "
              f"(under cProfile)")
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats(key)
            print(f"\ntop {args.top} by {key} (ms per pod: own / cumulative, calls per pod)")
            width = max(len(_name(f)) for f in stats.fcn_list[:args.top])
            for func in stats.fcn_list[:args.top]:
                cc, nc, tt, ct, _ = stats.stats[func]
                print(f"  {_name(func):<{width}}  {1000 * tt / args.pods:8.3f} "
                      f"{1000 * ct / args.pods:8.3f}  {nc / args.pods:8.1f}")
        return

    if args.host:
        phases = [0.0] * 6
        c0 = time.process_time()
        placed = asyncio.run(schedule_all_host(sched, pods, phases, args.bound_lag,
                                               args.running_lag))
        total = time.process_time() - c0
        per = 1000 / args.pods
        print(f"placed {placed}/{args.pods} (host: queue and informer handlers included, "
              f"bound seen {args.bound_lag} and Running {args.running_lag} cycles later)")
        print(f"CPU per pod: {total * per:.3f} ms  (queue add {phases[0] * per:.3f}, pop "
              f"{phases[1] * per:.3f}, snapshot {phases[2] * per:.3f}, schedule "
              f"{phases[3] * per:.3f}, assume+reserve {phases[4] * per:.3f}, handlers "
              f"{phases[5] * per:.3f})")
        return

    phases = [0.0, 0.0, 0.0, 0.0]
    c0 = time.process_time()
    placed = asyncio.run(schedule_all(sched, pods, phases))
    total = time.process_time() - c0
    per = 1000 / args.pods
    print(f"placed {placed}/{args.pods}")
    print(f"CPU per pod: {total * per:.3f} ms  (snapshot {phases[0] * per:.3f}, schedule "
          f"{phases[1] * per:.3f}, assume+reserve {phases[2] * per:.3f}, confirm "
          f"{phases[3] * per:.3f})")
    if placed:
        print(f"throughput bound of the scheduling loop alone: {placed / total:.0f} pods/s "
              f"of CPU")


def _name(func: tuple) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}({name})"


if __name__ == "__main__":
    sys.exit(main())
