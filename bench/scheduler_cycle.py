#!/usr/bin/env python3
"""The scheduler's CPU per scheduled pod, in one process: no API server (``--churn``: its
answers simulated in-process).

    python bench/scheduler_cycle.py [--nodes N] [--pods P] [--anti [FRACTION]]
                                    [--without PLUGIN,...] [--percentage-of-nodes-to-score PCT]
                                    [--no-reuse] [--host | --churn] [--count] [--profile]
                                    [--top K]

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

``--churn`` reproduces what the scheduler process does end to end, minus the sockets: the
host's own ``Scheduler._schedule_one`` per pod (cycle, assume, Reserve, Permit, a binding
task) followed by the loop's ``await asyncio.sleep(0)``, so the binding cycles (DefaultBinder's
pods/binding POST) and the Scheduled Events run as in the process; requests go to a client
that encodes each body as the real client does and decodes the answer the API server gives
(a Status for a binding, the created Event) from JSON. Nodes and pods arrive as the API
server serves them (metadata.managedFields, the hollow node's full status, the defaults the
API fills in, no ``spec.priority``), each watch event decoded from JSON when delivered and
passed through the real informers' cache and handlers (and their transform): a pod's ADDED
``--lead`` cycles before its turn, its MODIFIED bound ``--bound-lag`` cycles after its
binding, its MODIFIED Running (the hollow node's status report) ``--running-lag`` cycles
after; a node status heartbeat every ``--heartbeat-every`` cycles (5,000 nodes every 300 s
at 1,000 pods/s: one per 60 pods). Encoding what the API server sends is its work, not the
scheduler's: that CPU is measured and left out.

``--count`` wraps the profile's Filter and Score methods and prints how many nodes were
filtered and scored per pod (the busiest plugin's calls): what signature reuse left to do.

Garbage collection is tuned as the component processes tune it (``pilothouse._aio``:
freeze start-up objects, thresholds 50,000/50/100). Figures are CPU time
(``time.process_time``) per pod, total and per phase (the per-phase clock reads add about
a microsecond each). ``--profile`` runs the same loop under cProfile and prints the top
functions by own and cumulative time, in CPU ms per pod. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import io
import pstats
import sys
import time

from pilothouse.client import Client, _json
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


STAMP = "2026-01-01T00:00:00Z"
STATUS_CREATED = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}'


def _fields(*paths: str) -> dict:
    """A FieldsV1 set (``f:`` keys, ``.`` for each inner object) holding ``paths``."""
    root: dict = {}
    for path in paths:
        at = root
        for part in path.split("/"):
            at.setdefault(".", {})
            at = at.setdefault(part, {})
    root.pop(".", None)
    return root


def _managed(manager: str, fields: dict, subresource: str | None = None) -> dict:
    entry = {"manager": manager, "operation": "Update", "apiVersion": "v1", "time": STAMP,
             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


_CONDITION = ("f:lastHeartbeatTime", "f:lastTransitionTime", "f:message", "f:reason",
              "f:status", "f:type")
NODE_FIELDS = _fields(
    "f:metadata/f:annotations/f:node.alpha.kubernetes.io/ttl",
    *(f"f:metadata/f:labels/f:{k}" for k in ("kubernetes.io/arch", "kubernetes.io/hostname",
                                              "kubernetes.io/os", "pilothouse.io/hollow-node",
                                              "topology.kubernetes.io/zone")),
    "f:spec/f:podCIDR", "f:spec/f:podCIDRs/v:\"10.0.0.0/24\"",
    *(f"f:status/f:addresses/k:{{\"type\":\"{t}\"}}/f:{f}" for t in ("Hostname", "InternalIP")
      for f in ("address", "type")),
    *(f"f:status/{w}/f:{r}" for w in ("f:allocatable", "f:capacity")
      for r in ("cpu", "ephemeral-storage", "memory", "pods")),
    *(f"f:status/f:conditions/k:{{\"type\":\"{t}\"}}/{f}"
      for t in ("DiskPressure", "MemoryPressure", "PIDPressure", "Ready") for f in _CONDITION),
    "f:status/f:daemonEndpoints/f:kubeletEndpoint/f:Port",
    *(f"f:status/f:nodeInfo/f:{f}" for f in (
        "architecture", "bootID", "containerRuntimeVersion", "kernelVersion",
        "kubeProxyVersion", "kubeletVersion", "machineID", "operatingSystem", "osImage",
        "systemUUID")))
_CONTAINER = "f:spec/f:containers/k:{\"name\":\"pause\"}"
POD_FIELDS = _fields(
    "f:metadata/f:labels/f:app",
    *(f"{_CONTAINER}/{f}" for f in ("f:image", "f:imagePullPolicy", "f:name",
                                     "f:terminationMessagePath", "f:terminationMessagePolicy")),
    f"{_CONTAINER}/f:ports/k:{{\"containerPort\":80,\"protocol\":\"TCP\"}}/f:containerPort",
    f"{_CONTAINER}/f:ports/k:{{\"containerPort\":80,\"protocol\":\"TCP\"}}/f:protocol",
    *(f"{_CONTAINER}/f:resources/{w}/f:{r}" for w in ("f:limits", "f:requests")
      for r in ("cpu", "memory")),
    *(f"f:spec/{f}" for f in ("f:dnsPolicy", "f:enableServiceLinks", "f:restartPolicy",
                              "f:schedulerName", "f:securityContext",
                              "f:terminationGracePeriodSeconds")),
    "f:status/f:qosClass")
BOUND_FIELDS = _fields(
    "f:spec/f:nodeName",
    *(f"f:status/f:conditions/k:{{\"type\":\"PodScheduled\"}}/{f}"
      for f in ("f:lastTransitionTime", "f:status", "f:type")))
RUNNING_FIELDS = _fields(
    *(f"f:status/f:conditions/k:{{\"type\":\"{t}\"}}/{f}"
      for t in ("ContainersReady", "Initialized", "PodReadyToStartContainers", "Ready")
      for f in ("f:lastProbeTime", "f:lastTransitionTime", "f:status", "f:type")),
    "f:status/f:containerStatuses", "f:status/f:hostIP",
    "f:status/f:hostIPs/k:{\"ip\":\"172.16.0.3\"}/f:ip", "f:status/f:phase",
    "f:status/f:podIP", "f:status/f:podIPs/k:{\"ip\":\"10.64.2.2\"}/f:ip",
    "f:status/f:startTime")


def api_node(i: int, zones: int = 3, heartbeat: str = STAMP) -> dict:
    """:func:`hollow_node` as the API server serves what contrib/hollow_node registers."""
    node = hollow_node(i, zones)
    name = node["metadata"]["name"]
    node["metadata"].update({
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"}, "creationTimestamp": STAMP,
        "generation": 1, "managedFields": [_managed("pilothouse", NODE_FIELDS)]})
    node["metadata"]["labels"]["pilothouse.io/hollow-node"] = "hollow-node"
    node["spec"]["podCIDRs"] = [node["spec"]["podCIDR"]]
    checks = (("MemoryPressure", "False", "KubeletHasSufficientMemory",
               "kubelet has sufficient memory available"),
              ("DiskPressure", "False", "KubeletHasNoDiskPressure",
               "kubelet has no disk pressure"),
              ("PIDPressure", "False", "KubeletHasSufficientPID",
               "kubelet has sufficient PID available"),
              ("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    node["status"].update({
        "conditions": [{"type": t, "status": st, "reason": r, "message": m,
                        "lastHeartbeatTime": heartbeat, "lastTransitionTime": STAMP}
                       for t, st, r, m in checks],
        "addresses": [{"type": "InternalIP", "address": f"172.16.{i // 256}.{i % 256}"},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": name, "systemUUID": name, "bootID": name,
                     "kernelVersion": "hollow", "osImage": "Hollow Node",
                     "containerRuntimeVersion": "hollow://0.1",
                     "kubeletVersion": "v1.32.0-hollow", "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64"}})
    return node


def api_pods(pod: dict, node: str, i: int) -> tuple[dict, dict]:
    """The MODIFIED objects the pod watch brings after ``pod`` (as :func:`api_pod`) is bound to
    ``node``: bound (binding: nodeName, PodScheduled), then Running (the hollow node's status
    report)."""
    bound = _json.loads(_json.dumps(pod))
    meta = bound["metadata"]
    meta.update({"generation": 2, "resourceVersion": str(200000 + i)})
    meta["managedFields"][0]["fieldsV1"] = {**meta["managedFields"][0]["fieldsV1"],
                                            **BOUND_FIELDS}
    bound["spec"]["nodeName"] = node
    bound["status"]["conditions"] = [{"type": "PodScheduled", "status": "True",
                                      "lastTransitionTime": STAMP}]
    running = _json.loads(_json.dumps(bound))
    running["metadata"]["resourceVersion"] = str(300000 + i)
    running["metadata"]["managedFields"].append(_managed("pilothouse", RUNNING_FIELDS, "status"))
    status = running["status"]
    status["conditions"] = [{"type": t, "status": "True", "lastProbeTime": None,
                             "lastTransitionTime": STAMP}
                            for t in ("PodReadyToStartContainers", "Initialized",
                                      "ContainersReady", "Ready")] + status["conditions"]
    status.update({
        "phase": "Running", "hostIP": "172.16.0.3", "hostIPs": [{"ip": "172.16.0.3"}],
        "podIP": "10.64.2.2", "podIPs": [{"ip": "10.64.2.2"}], "startTime": STAMP,
        "containerStatuses": [{
            "name": "pause", "image": "registry.k8s.io/pause:3.10",
            "imageID": "registry.k8s.io/pause:3.10@sha256:" + "6f" * 32,
            "containerID": "hollow://" + f"{i:064x}", "ready": True, "started": True,
            "restartCount": 0, "state": {"running": {"startedAt": STAMP}}, "lastState": {}}]})
    return bound, running


def api_pod(i: int, anti: bool) -> dict:
    """:func:`bench_pod` as bench/scheduler.py creates it and the API server serves it: the
    API's defaults, managedFields, no tolerations and no priority (no admission plugins)."""
    pod = bench_pod(i, anti)
    spec = pod["spec"]
    del spec["priority"], spec["tolerations"]
    spec["containers"][0].update({"terminationMessagePath": "/dev/termination-log",
                                  "terminationMessagePolicy": "File"})
    spec["securityContext"] = {}
    pod["metadata"].update({"uid": f"{i:08x}-f307-43db-854d-39d173e61e8b",
                            "creationTimestamp": STAMP, "generation": 1,
                            "managedFields": [_managed("pilothouse", POD_FIELDS)]})
    return pod


class EchoClient(Client):
    """A client whose requests never leave the process: a request body is encoded as the real
    client encodes it, and the API server's answer is decoded from JSON (a Status for a
    binding, the created Event for an Event, the body itself otherwise). ``requests`` counts
    them by method and last path segment."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")
        self.requests: collections.Counter = collections.Counter()
        self.server_cpu = 0.0  # encoding answers: the API server's work
        self._event: bytes | None = None

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body=None, content_type: str = "application/json", raw: bool = False):
        self._target(path, params)
        payload = _json.dumps(body) if body is not None else b""
        last = path.rsplit("/", 1)[-1]
        self.requests[(method, last)] += 1
        if last == "binding":
            answer = STATUS_CREATED
        elif last == "events":
            if self._event is None:
                t0 = time.process_time()
                event = _json.loads(payload)
                event["metadata"].update({
                    "uid": "24aef9b6-5905-4c38-8893-3bfbeafba0a7", "resourceVersion": "16",
                    "creationTimestamp": STAMP, "generation": 1, "managedFields": [_managed(
                        "pilothouse", _fields(*(f"f:{f}" for f in (
                            "action", "count", "firstTimestamp", "lastTimestamp", "message",
                            "reason", "reportingComponent", "reportingInstance", "type")),
                            *(f"f:involvedObject/f:{f}" for f in (
                                "apiVersion", "kind", "name", "namespace", "resourceVersion",
                                "uid")), "f:source/f:component"))]})
                self._event = _json.dumps(event)
                self.server_cpu += time.process_time() - t0
            answer = self._event
        else:
            answer = payload
        if raw:
            return answer.decode()
        return _json.loads(answer) if answer else None


def build(args, client=None) -> Scheduler:
    doc: dict = {"components": {"scheduler": {
        "percentageOfNodesToScore": args.percentage_of_nodes_to_score,
        "signatureCacheSize": 0 if args.no_reuse else 32}}}
    without = {n for n in (args.without or "").split(",") if n}
    if without:
        plugins = parse_config({}).raw["scheduler"]["profiles"][0]["plugins"]
        doc["scheduler"] = {"profiles": [{"schedulerName": "default-scheduler", "plugins": [
            p for p in plugins if p["name"] not in without]}]}
    sched = Scheduler.from_config(parse_config(doc), client or _StubClient())
    if client is None:
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


async def schedule_all_churn(sched: Scheduler, args, phases: list[float]) -> int:
    """The scheduler process's per-pod work end to end, in one process (see ``--churn``).
    ``phases`` (watch events, cycles, binding tasks and events, answers encoded for the API
    server) accumulates CPU seconds; returns how many pods were bound."""
    client: EchoClient = sched.client
    loads, dumps = _json.loads, _json.dumps
    clock = time.process_time
    t0 = clock()
    wire = [dumps(pod) for pod in make_pods(args, api_pod)]
    nodes = [dumps(api_node(i)) for i in range(args.nodes)]
    phases[3] += clock() - t0
    t0 = clock()
    for data in nodes:
        sched.nodes._set(loads(data))
    sched.cache.update_snapshot(sched.snapshot)
    setup = clock() - t0
    sched.recorder.start()
    later: dict[int, list[tuple[str, bytes]]] = collections.defaultdict(list)
    pending: dict[str, tuple[int, bytes]] = {}
    delivered = 0

    def deliver(upto: int) -> None:
        nonlocal delivered
        while delivered < min(upto, args.pods):
            pod = loads(wire[delivered])
            pending[pod["metadata"]["uid"]] = (delivered, wire[delivered])
            sched.pods._set(pod)
            delivered += 1
    deliver(args.lead)
    heartbeat, cycle = 0, 0
    while delivered < args.pods or len(sched.queue):
        t0 = clock()
        deliver(cycle + args.lead)
        for kind, data in later.pop(cycle, ()):
            (sched.nodes if kind == "node" else sched.pods)._set(loads(data))
        if args.heartbeat_every and cycle % args.heartbeat_every == 0:
            t1 = clock()
            stamp = f"2026-01-01T{cycle // 3600 % 24:02}:{cycle // 60 % 60:02}:{cycle % 60:02}Z"
            data = dumps(api_node(heartbeat % args.nodes, heartbeat=stamp))
            heartbeat += 1
            t2 = clock()
            phases[3] += t2 - t1
            t0 += t2 - t1
            sched.nodes._set(loads(data))
        t1 = clock()
        phases[0] += t1 - t0
        qp = await sched.queue.pop()
        await sched._schedule_one(qp)
        t2 = clock()
        phases[1] += t2 - t1
        await asyncio.sleep(0)  # as Scheduler._schedule_loop: binding tasks, events
        phases[2] += clock() - t2
        uid = qp.pod["metadata"]["uid"]
        node = sched.cache.node_of(qp.pod)
        if node is not None and uid in pending:
            t0 = clock()
            i, data = pending.pop(uid)
            bound, running = api_pods(loads(data), node, i)
            later[cycle + args.bound_lag].append(("pod", dumps(bound)))
            later[cycle + args.running_lag].append(("pod", dumps(running)))
            phases[3] += clock() - t0
        cycle += 1
    t0 = clock()
    for c in sorted(later):
        for kind, data in later.pop(c):
            (sched.nodes if kind == "node" else sched.pods)._set(loads(data))
    for _ in range(5):
        await asyncio.sleep(0)
    phases[0] += clock() - t0
    await sched.recorder.stop(drain=1.0)
    phases[3] += client.server_cpu
    phases.append(setup)
    return sched.stats["scheduled"]


def count_calls(sched: Scheduler) -> collections.Counter:
    """Wrap the default profile's Filter and Score methods to count their calls."""
    fw = sched.frameworks["default-scheduler"]
    calls: collections.Counter = collections.Counter()

    def counted(key, fn):
        def call(state, pod, node):
            calls[key] += 1
            return fn(state, pod, node)
        return call
    fw.filter = [(name, counted(("Filter", name), fn)) for name, fn in fw.filter]
    fw.score = [(name, counted(("Score", name), fn), norm, w)
                for name, fn, norm, w in fw.score]
    return calls


def print_counts(calls: collections.Counter | None, pods: int) -> None:
    """Calls per pod of the busiest Filter and Score plugin: the nodes filtered and scored
    (results not reused)."""
    if calls is not None:
        most = {kind: max((n for (k, _), n in calls.items() if k == kind), default=0)
                for kind in ("Filter", "Score")}
        print(f"nodes filtered per pod {most['Filter'] / pods:.2f}, scored per pod "
              f"{most['Score'] / pods:.2f} (busiest plugin's calls)")


def make_pods(args, make=bench_pod) -> list[dict]:
    """``args.pods`` pods from ``make(i, anti)``, every ``1 / args.anti``-th with anti-affinity."""
    every = max(1, round(1 / args.anti)) if args.anti else 0
    return [make(i, every > 0 and i % every == 0) for i in range(args.pods)]


def tune_gc() -> None:
    """As the component processes (pilothouse._aio): freeze start-up objects, raise the
    thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


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
    p.add_argument("--churn", action="store_true",
                   help="the scheduler process's whole per-pod work: Scheduler._schedule_one, "
                   "binding tasks, Events, watch events decoded from JSON through the "
                   "informers, node heartbeats (see the module docstring)")
    p.add_argument("--lead", type=int, default=100, metavar="PODS",
                   help="with --churn: pods created (ADDED delivered) ahead of the scheduler")
    p.add_argument("--heartbeat-every", type=int, default=60, metavar="CYCLES",
                   help="with --churn: one node status heartbeat per this many cycles")
    p.add_argument("--count", action="store_true",
                   help="count Filter and Score plugin calls (signature reuse misses)")
    p.add_argument("--profile", action="store_true", help="run under cProfile")
    p.add_argument("--top", type=int, default=25, help="rows of the profile to print")
    args = p.parse_args(argv)

    if args.churn:
        return main_churn(args)
    t0 = time.process_time()
    sched = build(args)
    calls = count_calls(sched) if args.count else None
    pods = make_pods(args)
    if args.host:  # the API server fills no priority without the Priority admission plugin
        for pod in pods:
            del pod["spec"]["priority"]
    sched.cache.update_snapshot(sched.snapshot)
    setup = time.process_time() - t0
    tune_gc()
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
        _print_profile(prof, args)
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
        print_counts(calls, args.pods)
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
    print_counts(calls, args.pods)


def main_churn(args) -> None:
    tune_gc()

    async def run():
        sched = build(args, EchoClient())
        calls = count_calls(sched) if args.count else None
        fw = sched.frameworks["default-scheduler"]
        want = fw.num_feasible_nodes_to_find(args.nodes, args.percentage_of_nodes_to_score)
        print(f"churn: {args.nodes} API-shaped nodes, {args.pods} pods"
              + (f" ({100 * args.anti:.0f}% with required anti-affinity)" if args.anti else "")
              + f", {want} feasible nodes to find per pod; signature reuse "
              + ("off (--no-reuse)" if args.no_reuse else "on")
              + f"; informer transform {'on' if getattr(sched.pods, 'transform', None) else 'off'}")
        phases = [0.0] * 4
        prof = cProfile.Profile() if args.profile else None
        c0 = time.process_time()
        if prof:
            prof.enable()
        placed = await schedule_all_churn(sched, args, phases)
        if prof:
            prof.disable()
        total = time.process_time() - c0 - phases[3] - phases[4]
        per = 1000 / args.pods
        print(f"placed {placed}/{args.pods}; requests {dict(sched.client.requests)}")
        print(f"CPU per pod: {total * per:.3f} ms  (watch events {phases[0] * per:.3f}, "
              f"_schedule_one {phases[1] * per:.3f}, binding tasks and events "
              f"{phases[2] * per:.3f}; left out: node sync {phases[4]:.1f} s, API server's "
              f"encoding {phases[3] * per:.3f} ms/pod)"
              + (" (under cProfile)" if prof else ""))
        print_counts(calls, args.pods)
        return prof
    prof = asyncio.run(run())
    if prof:
        _print_profile(prof, args)


def _print_profile(prof, args) -> None:
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


def _name(func: tuple) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = filename.replace("\\", "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}({name})"


if __name__ == "__main__":
    sys.exit(main())
