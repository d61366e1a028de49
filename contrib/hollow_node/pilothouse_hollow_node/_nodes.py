"""Many simulated nodes in one process, driven through the API like real node agents.

One :class:`HollowNodes` owns ``count`` Node objects. What it costs, per process:

* registration: one create per Node and one per Lease, ``concurrency`` at a time;
* leases: one PUT per node every ``lease_interval`` seconds, spread evenly over the
  interval by ``concurrency`` worker loops that take turns (5,000 nodes on the 10 s cadence
  are 500 small writes a second, never a burst); the body is the last stored Lease without
  its managedFields, with a fresh ``renewTime``;
* node status: a heartbeat patch per node every ``status_interval`` seconds, spread the
  same way (the kubelet's ``nodeStatusReportFrequency``);
* pods: ONE watch for the whole process (``spec.nodeName!=``, so the API server filters out
  pending pods and the process sees only bound ones), filtered in memory by node name; the
  writes (pods/status, deletes) go through one deduplicating work queue served by
  ``workers`` coroutines; the pods/status answer is not decoded (the watch brings the pod).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import math
import time
from typing import Any

from pilothouse.client import Informer, WorkQueue, object_key
from pilothouse.model import errors
from pilothouse.model.meta import now_rfc3339, now_rfc3339_micro, pod_qos_class

__all__ = ["HollowNodes", "Options", "parse_taint"]

log = logging.getLogger("pilothouse.hollow_node")

LEASE_NAMESPACE = "kube-node-lease"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: Marks the Nodes this package registered (``pilothouse.io/hollow-node=<prefix>``).
HOLLOW_LABEL = "pilothouse.io/hollow-node"
KUBELET_VERSION = "v1.32.0-hollow"
_MERGE_PATCH = "application/merge-patch+json"
_TICK = 0.05  # seconds: lease renewals and heartbeats due within one tick start together
_OUR_CONDITIONS = ("PodScheduled", "PodReadyToStartContainers", "Initialized",
                   "ContainersReady", "Ready")


@dataclasses.dataclass
class Options:
    """What the simulated nodes look like and how hard they work.

    ``count`` nodes are named ``{prefix}-{i}`` for ``i`` in ``start_index ..
    start_index + count - 1``. ``zones`` > 0 spreads them round-robin over ``zone-0 ..
    zone-{zones-1}`` (``topology.kubernetes.io/zone``; ``region`` adds
    ``topology.kubernetes.io/region``). ``labels`` and ``taints`` are added to every node.
    Node ``i`` gets pod CIDR number ``i`` of ``pod_cidr`` (a /24 for up to 253 pods) and
    InternalIP number ``i + 1`` of ``node_cidr``.
    """

    count: int = 1
    cpu: str = "4"
    memory: str = "32Gi"
    pods: int = 110
    zones: int = 0
    region: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: list[dict] = dataclasses.field(default_factory=list)
    extra_resources: dict[str, str] = dataclasses.field(default_factory=dict)
    prefix: str = "hollow-node"
    start_index: int = 0
    lease_duration: int = 40
    lease_interval: float = 10.0
    status_interval: float = 300.0
    pod_cidr: str = "10.64.0.0/10"
    node_cidr: str = "172.16.0.0/12"
    workers: int = 32
    concurrency: int = 64

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if self.pods < 1:
            raise ValueError("pods must be >= 1")
        if self.lease_interval <= 0:
            raise ValueError("lease_interval must be > 0")
        if self.workers < 1 or self.concurrency < 1:
            raise ValueError("workers and concurrency must be >= 1")
        for taint in self.taints:
            if not taint.get("key") or taint.get("effect") not in (
                    "NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise ValueError(f"invalid taint {taint!r}: needs a key and an effect of "
                                 "NoSchedule, PreferNoSchedule or NoExecute")


def parse_taint(text: str) -> dict:
    """``key[=value]:Effect`` (as ``kubectl taint``) → a taint dict."""
    spec, sep, effect = text.rpartition(":")
    if not sep or not spec:
        raise ValueError(f"taint {text!r}: expected key[=value]:Effect")
    key, _, value = spec.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


_second = [0, ""]  # the last whole second formatted by _micro_now, and its text


def _micro_now() -> str:
    """``now_rfc3339_micro()`` without a datetime and strftime per call (500 a second)."""
    now = time.time()
    sec = int(now)
    if sec != _second[0]:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{int((now - sec) * 1_000_000):06d}Z"


def _dotted(address: int) -> str:
    """``str(ipaddress.IPv4Address(address))`` without the object (7 µs of a pod's ~25 µs
    status before)."""
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"


class _Node:
    """What the process keeps per simulated node."""

    __slots__ = ("index", "name", "uid", "ip", "net", "block", "used", "by_pod", "lease")

    def __init__(self, index: int, name: str, ip: str, net: int, block: int):
        self.index, self.name, self.ip = index, name, ip
        self.uid = ""
        self.net, self.block = net, block     # first address of the pod range and its size
        self.used: set[int] = set()           # host offsets in use
        self.by_pod: dict[str, int] = {}      # pod uid → host offset
        self.lease: dict | None = None

    def cidr(self) -> str:
        prefix = 32 - (self.block.bit_length() - 1)
        return f"{ipaddress.IPv4Address(self.net)}/{prefix}"

    def ip_for(self, pod_uid: str, have: str | None) -> str:
        """The pod's IP: the one it already reports if it is ours and free, else the lowest
        free address of the node's range (.0 and .1 are never handed out)."""
        offset = self.by_pod.get(pod_uid)
        if offset is None and have:
            try:
                off = int(ipaddress.IPv4Address(have)) - self.net
            except ValueError:
                off = -1
            if 2 <= off < self.block - 1 and off not in self.used:
                offset = off
        if offset is None:
            offset = next((o for o in range(2, self.block - 1) if o not in self.used), None)
            if offset is None:  # more pods than addresses: share the last one (still fake)
                offset = self.block - 2
        self.used.add(offset)
        self.by_pod[pod_uid] = offset
        return _dotted(self.net + offset)

    def release(self, pod_uid: str) -> None:
        offset = self.by_pod.pop(pod_uid, None)
        if offset is not None and offset not in self.by_pod.values():
            self.used.discard(offset)


class HollowNodes:
    """``count`` simulated nodes against the API server ``client`` talks to.

    ``HollowNodes(client, count=100, cpu="4", memory="32Gi", zones=3)`` (any
    :class:`Options` field as a keyword, or ``options=Options(...)``). ``await start()``
    registers the Nodes and their Leases, lists the pods bound to them and returns once
    they are being served; ``await stop(delete=False)`` stops (and with ``delete`` removes
    the Nodes and Leases); ``async with`` does both. ``stats`` counts what was done.
    """

    def __init__(self, client: Any, options: Options | None = None, **fields: Any):
        if options is not None and fields:
            raise TypeError("give either options or keyword fields, not both")
        self.client = client
        self.options = opts = options or Options(**fields)
        self.nodes_api = client.resource("v1", "Node")
        self.pods_api = client.resource("v1", "Pod")
        self.leases_api = client.resource("coordination.k8s.io/v1", "Lease")
        self.nodes: dict[str, _Node] = {}
        block = 256
        while block - 3 < opts.pods:
            block *= 2
        pod_net = ipaddress.ip_network(opts.pod_cidr)
        node_net = ipaddress.ip_network(opts.node_cidr)
        if pod_net.num_addresses < block * (opts.start_index + opts.count):
            raise ValueError(f"pod_cidr {opts.pod_cidr} is too small for "
                             f"{opts.start_index + opts.count} nodes of {block} addresses")
        if node_net.num_addresses < opts.start_index + opts.count + 2:
            raise ValueError(f"node_cidr {opts.node_cidr} is too small")
        for i in range(opts.start_index, opts.start_index + opts.count):
            name = f"{opts.prefix}-{i}"
            self.nodes[name] = _Node(i, name, str(node_net.network_address + i + 1),
                                     int(pod_net.network_address) + i * block, block)
        self.informer = Informer(self.pods_api, field_selector="spec.nodeName!=")
        self.informer.add_handlers(self._on_pod, self._on_pod_update, self._on_pod_delete)
        self.queue = WorkQueue(base_delay=0.1, max_delay=10.0)
        self.stats = collections.Counter()
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._image_ids: dict[str, str] = {}
        self._since = now_rfc3339()

    # ------------------------------------------------------------------ objects

    def node_object(self, node: _Node) -> dict:
        """The Node as registered: capacity = allocatable, labels, taints, Ready."""
        opts = self.options
        labels = {HOSTNAME_LABEL: node.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", HOLLOW_LABEL: opts.prefix}
        if opts.zones > 0:
            labels[ZONE_LABEL] = f"zone-{node.index % opts.zones}"
        if opts.region:
            labels[REGION_LABEL] = opts.region
        labels.update(opts.labels)
        resources = {"cpu": opts.cpu, "memory": opts.memory, "pods": str(opts.pods),
                     "ephemeral-storage": "100Gi", **opts.extra_resources}
        spec: dict = {"podCIDR": node.cidr(), "podCIDRs": [node.cidr()]}
        if opts.taints:
            spec["taints"] = [dict(t) for t in opts.taints]
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": spec,
                "status": {"capacity": dict(resources), "allocatable": dict(resources),
                           "conditions": self._node_conditions(now_rfc3339()),
                           "addresses": [{"type": "InternalIP", "address": node.ip},
                                         {"type": "Hostname", "address": node.name}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                           "nodeInfo": {"machineID": node.name, "systemUUID": node.name,
                                        "bootID": node.name, "kernelVersion": "hollow",
                                        "osImage": "Hollow Node",
                                        "containerRuntimeVersion": "hollow://0.1",
                                        "kubeletVersion": KUBELET_VERSION,
                                        "kubeProxyVersion": "", "operatingSystem": "linux",
                                        "architecture": "amd64"}}}

    @staticmethod
    def _node_conditions(now: str, since: str | None = None) -> list[dict]:
        def cond(type_, status, reason, message):
            return {"type": type_, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": since or now}
        return [cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")]

    def _lease_object(self, node: _Node) -> dict:
        meta: dict = {"name": node.name, "namespace": LEASE_NAMESPACE}
        if node.uid:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                        "uid": node.uid}]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": node.name,
                         "leaseDurationSeconds": self.options.lease_duration,
                         "renewTime": now_rfc3339_micro()}}

    # ------------------------------------------------------------------ registration

    async def _register(self, node: _Node, existing: dict | None = None) -> None:
        """Create the Node and its Lease; for a Node that already exists (a restarted
        process) bring labels and taints back to what is simulated when they differ, and
        post a fresh status, as a restarted kubelet does."""
        obj = self.node_object(node)
        if existing is None:
            try:
                existing = await self.nodes_api.create(obj)
                node.uid = existing["metadata"]["uid"]
                await self._renew(node)
                self.stats["nodes_registered"] += 1
                return
            except errors.AlreadyExists:
                existing = await self.nodes_api.get(node.name)
        want_labels = obj["metadata"]["labels"]
        have_labels = existing["metadata"].get("labels") or {}
        taints = obj["spec"].get("taints")
        if any(have_labels.get(k) != v for k, v in want_labels.items()) or \
                (existing.get("spec") or {}).get("taints") != taints:
            existing = await self.nodes_api.patch(node.name, {
                "metadata": {"labels": want_labels}, "spec": {"taints": taints}})
        node.uid = existing["metadata"]["uid"]
        await self.nodes_api.patch(node.name, {"status": obj["status"]}, subresource="status")
        await self._renew(node)
        self.stats["nodes_registered"] += 1

    async def _register_all(self) -> None:
        """Register every node: one list of the Nodes and one of the Leases first, so a
        restarted process updates what exists instead of failing one create per node."""
        existing = {n["metadata"]["name"]: n for n in (await self.nodes_api.list(
            label_selector=f"{HOLLOW_LABEL}={self.options.prefix}", limit=1000))["items"]}
        if existing:
            for lease in (await self.leases_api.list(LEASE_NAMESPACE, limit=1000))["items"]:
                node = self.nodes.get(lease["metadata"]["name"])
                if node is not None:
                    node.lease = lease
        await self._gather_limited(self._register(n, existing.get(n.name))
                                   for n in self.nodes.values())

    async def _gather_limited(self, coros) -> None:
        sem = asyncio.Semaphore(self.options.concurrency)

        async def one(coro):
            async with sem:
                await coro
        await asyncio.gather(*(one(c) for c in coros))

    # ------------------------------------------------------------------ leases and heartbeats

    async def _renew(self, node: _Node) -> None:
        """Renew the node's Lease (create it when missing), as the kubelet does: an update
        with the last seen resourceVersion, re-read on a conflict. The body is the stored
        Lease without its managedFields (the server keeps them when a write omits them)."""
        lease = node.lease
        for attempt in range(3):
            try:
                if lease is None:
                    try:
                        lease = await self.leases_api.get(node.name, LEASE_NAMESPACE)
                    except errors.NotFound:
                        node.lease = await self.leases_api.create(self._lease_object(node))
                        return
                spec = dict(lease.get("spec") or ())
                spec["holderIdentity"] = node.name
                spec["leaseDurationSeconds"] = self.options.lease_duration
                spec["renewTime"] = _micro_now()
                body = {"apiVersion": lease.get("apiVersion") or "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {k: v for k, v in lease["metadata"].items()
                                     if k != "managedFields"},
                        "spec": spec}
                node.lease = await self.leases_api.update(body)
                return
            except (errors.Conflict, errors.NotFound):
                lease = None
        raise errors.Conflict("leases", node.name, group="coordination.k8s.io")

    async def _heartbeat(self, node: _Node) -> None:
        try:
            await self.nodes_api.patch(node.name, {"status": {
                "conditions": self._node_conditions(now_rfc3339(), self._since)}},
                subresource="status")
        except errors.NotFound:
            await self._register(node)  # deleted behind our back: register again

    async def _spread(self, what: str, interval: float, action) -> None:
        """Call ``action(node)`` for every node once per ``interval``, node ``k`` at offset
        ``k * interval / n``, at most ``concurrency`` calls in flight (the spreading that
        keeps 5,000 nodes from renewing in one burst). ``concurrency`` worker loops take the
        next slot as soon as they are free, so a slow server delays calls (the
        ``{what}_max_lag_ms`` statistic) instead of piling them up, and no task is created
        per call. A call waits for the first tick of ``_TICK`` seconds at or after its
        slot: the calls due within one tick start together, on one timer and one wake-up
        of the event loop, and reach the API server together (5,000 nodes every 10 s: 25
        calls every 50 ms instead of 500 timers a second; both processes wake up less)."""
        nodes = list(self.nodes.values())
        if not nodes:
            return
        loop = asyncio.get_running_loop()
        n, step = len(nodes), interval / len(nodes)
        stats = self.stats
        ok, failed, max_lag = f"{what}_ok", f"{what}_failed", f"{what}_max_lag_ms"
        slot = [0, loop.time() + step]  # the next node to serve and when
        ticks: dict[int, list[asyncio.Future]] = {}  # tick number → the calls waiting for it

        def tick(number: int) -> None:
            for waiter in ticks.pop(number, ()):
                if not waiter.done():  # done: its worker was cancelled
                    waiter.set_result(None)

        async def worker() -> None:
            while True:
                k, due = slot
                slot[0], slot[1] = (k + 1) % n, due + step
                lag = loop.time() - due
                if lag < 0:
                    number = math.ceil(due / _TICK)
                    waiting = ticks.get(number)
                    if waiting is None:
                        waiting = ticks[number] = []
                        loop.call_at(number * _TICK, tick, number)
                    waiter = loop.create_future()
                    waiting.append(waiter)
                    await waiter
                elif lag * 1000 > stats[max_lag]:
                    stats[max_lag] = int(lag * 1000)
                try:
                    await action(nodes[k])
                    stats[ok] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    stats[failed] += 1
                    log.debug("%s of %s failed: %s", what, nodes[k].name, exc)
        await asyncio.gather(*(worker() for _ in range(min(self.options.concurrency, n))))

    # ------------------------------------------------------------------ pods

    def _ours(self, pod: dict) -> _Node | None:
        return self.nodes.get((pod.get("spec") or {}).get("nodeName") or "")

    def _on_pod(self, pod: dict) -> None:
        node = self._ours(pod)
        if node is None:
            return
        if self._needs_work(pod):
            self.queue.add(object_key(pod))
            return
        uid = pod["metadata"].get("uid", "")
        ip = (pod.get("status") or {}).get("podIP")
        if ip and uid not in node.by_pod:
            node.ip_for(uid, ip)  # running before this process started: keep its address

    def _on_pod_update(self, old: dict, new: dict) -> None:
        self._on_pod(new)

    def _on_pod_delete(self, pod: dict) -> None:
        node = self._ours(pod)
        if node is not None:
            node.release(pod["metadata"].get("uid", ""))
            self.stats["pods_gone"] += 1

    @staticmethod
    def _needs_work(pod: dict) -> bool:
        if pod["metadata"].get("deletionTimestamp"):
            return True
        status = pod.get("status") or {}
        phase = status.get("phase")
        if phase in ("Succeeded", "Failed"):
            return False
        return phase != "Running" or not status.get("podIP")

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self._sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except errors.NotFound:
                self.queue.forget(key)
            except Exception as exc:
                self.stats["pod_write_failures"] += 1
                log.debug("pod %s: %s; retrying", key, exc)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def _sync(self, key: str) -> None:
        pod = self.informer.get(key)
        if pod is None:
            return
        node = self._ours(pod)
        if node is None or not self._needs_work(pod):
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            # the containers "stop" at once: finish the deletion as the kubelet does
            try:
                await self.pods_api.delete(meta["name"], meta.get("namespace"),
                                           grace_period_seconds=0,
                                           preconditions={"uid": meta.get("uid")})
                self.stats["pods_deleted"] += 1
            except errors.Conflict:
                pass  # a different pod of the same name now: its own events will follow
            return
        status = self.pod_status(pod, node)
        # raw: the answer (the whole pod) is not needed, the watch brings it anyway
        await self.client.request(
            "PATCH", self.pods_api.path(meta.get("namespace"), meta["name"], "status"),
            body={"status": status}, content_type=_MERGE_PATCH, raw=True)
        self.stats["pods_started"] += 1

    def _image_id(self, image: str) -> str:
        found = self._image_ids.get(image)
        if found is None:
            digest = hashlib.sha256(image.encode()).hexdigest()
            found = self._image_ids[image] = f"{image.split('@')[0]}@sha256:{digest}"
        return found

    def pod_status(self, pod: dict, node: _Node) -> dict:
        """The status a kubelet reports for a pod whose containers all started: phase
        Running, every condition True, a pod IP from the node's range, running containers
        (init containers completed; restartable init containers, i.e. sidecars, running)."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        old = pod.get("status") or {}
        uid = meta.get("uid", "")
        now = now_rfc3339()
        ip = node.ip_for(uid, old.get("podIP"))
        start = old.get("startTime") or now

        def container_id(name: str) -> str:
            return "hollow://" + hashlib.sha256(f"{uid}/{name}".encode()).hexdigest()

        def running(c: dict) -> dict:
            return {"name": c["name"], "image": c.get("image", ""),
                    "imageID": self._image_id(c.get("image", "")),
                    "containerID": container_id(c["name"]), "ready": True, "started": True,
                    "restartCount": 0, "state": {"running": {"startedAt": now}},
                    "lastState": {}}
        init_statuses = []
        for c in spec.get("initContainers") or []:
            if c.get("restartPolicy") == "Always":
                init_statuses.append(running(c))
            else:
                init_statuses.append({
                    "name": c["name"], "image": c.get("image", ""),
                    "imageID": self._image_id(c.get("image", "")),
                    "containerID": container_id(c["name"]), "ready": True, "started": False,
                    "restartCount": 0, "lastState": {},
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                             "startedAt": now, "finishedAt": now,
                                             "containerID": container_id(c["name"])}}})
        scheduled = next((c for c in old.get("conditions") or []
                          if c.get("type") == "PodScheduled" and c.get("status") == "True"),
                         None) or {"type": "PodScheduled", "status": "True",
                                   "lastProbeTime": None, "lastTransitionTime": now}
        conditions = [c for c in old.get("conditions") or []
                      if c.get("type") not in _OUR_CONDITIONS]
        conditions += [{"type": t, "status": "True", "lastProbeTime": None,
                        "lastTransitionTime": now}
                       for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady",
                                 "Ready")]
        conditions.append(scheduled)
        status = {"phase": "Running", "conditions": conditions, "hostIP": node.ip,
                  "hostIPs": [{"ip": node.ip}], "podIP": ip, "podIPs": [{"ip": ip}],
                  "startTime": start, "qosClass": old.get("qosClass") or pod_qos_class(pod),
                  "containerStatuses": [running(c) for c in spec.get("containers") or []]}
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> "HollowNodes":
        """Register every Node and Lease, then serve (leases, heartbeats, pods). Returns
        once the pods bound to these nodes have been listed."""
        t0 = time.monotonic()
        self._since = now_rfc3339()
        await self._register_all()
        self.stats["registration_ms"] = int((time.monotonic() - t0) * 1000)
        self._tasks.append(self.informer.start())
        await self.informer.synced.wait()
        for i in range(self.options.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"hollow worker {i}"))
        self._tasks.append(asyncio.create_task(
            self._spread("lease", self.options.lease_interval, self._renew), name="leases"))
        if self.options.status_interval > 0:
            self._tasks.append(asyncio.create_task(
                self._spread("heartbeat", self.options.status_interval, self._heartbeat),
                name="heartbeats"))
        self.ready.set()
        return self

    async def stop(self, delete: bool = False) -> None:
        """Stop serving; with ``delete`` also delete the Nodes and their Leases (pods bound
        to them are left to whoever cleans up nodes, as in Kubernetes)."""
        await self.queue.shutdown()
        tasks = list(self._tasks)
        await self.informer.stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if delete:
            async def remove(node: _Node) -> None:
                for api, ns in ((self.leases_api, LEASE_NAMESPACE), (self.nodes_api, None)):
                    with contextlib.suppress(errors.NotFound):
                        await api.delete(node.name, ns)
            await self._gather_limited(remove(n) for n in self.nodes.values())

    async def __aenter__(self) -> "HollowNodes":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def running_pods(self) -> int:
        """Pods on these nodes that report Running with an IP (from the watch cache)."""
        return sum(1 for p in self.informer.cache.values()
                   if self._ours(p) is not None and not self._needs_work(p))

    def summary(self) -> str:
        s = self.stats
        return (f"{len(self.nodes)} nodes, {self.running_pods()} pods running; leases "
                f"{s['lease_ok']} renewed/{s['lease_failed']} failed (max lag "
                f"{s['lease_max_lag_ms']} ms); pods started {s['pods_started']}, deleted "
                f"{s['pods_deleted']}, write failures {s['pod_write_failures']}")
