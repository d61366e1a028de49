"""The node agent: registers its Node, keeps its Lease fresh, watches the pods bound to it
and runs one :class:`~pilothouse.node._worker.PodWorker` per pod, re-lists the runtime to
notice exits, and serves logs, exec, attach and port-forward on its endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import time
from collections.abc import Callable

import aiohttp

from pilothouse import __version__
from pilothouse.client import Client, Informer
from pilothouse.interfaces import runtime as rt
from pilothouse.interfaces.network import NetworkDriver, NodeNetwork
from pilothouse.model import errors
from pilothouse.model.meta import now_rfc3339, now_rfc3339_micro
from pilothouse.model.quantity import Quantity, QuantityError
from pilothouse.node import _podspec as ps
from pilothouse.node._backoff import Backoff
from pilothouse.node._env import service_env
from pilothouse.node._events import EventRecorder
from pilothouse.node._machine import MachineInfo, node_ip
from pilothouse.node._settings import Settings
from pilothouse.node._statusmanager import StatusManager, status_patch
from pilothouse.node._volumes import VolumeManager
from pilothouse.node._worker import PodWorker

__all__ = ["KUBELET_VERSION", "NodeAgent"]

log = logging.getLogger("pilothouse.node")

#: What the Node reports as ``kubeletVersion`` (the Kubernetes API level it follows).
KUBELET_VERSION = f"v1.32.0-pilothouse.{__version__}"
LEASE_NAMESPACE = "kube-node-lease"
_EVICTION_MEMORY = Quantity("100Mi")
_AGENT_NODE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")


def _kib(n: int) -> str:
    return f"{n // 1024}Ki"


class NodeAgent:
    """Runs the pods bound to one node through a runtime driver.

    ``client`` is a :class:`pilothouse.client.Client` for the API server; ``runtime`` a
    :class:`~pilothouse.interfaces.runtime.Runtime` driver (opened by :meth:`start`
    unless ``open_runtime=False``); ``network`` an optional
    :class:`~pilothouse.interfaces.network.NetworkDriver`; ``options`` the
    :class:`Settings` (``components.node``); ``plugin_manager`` a pluggy manager whose
    node, runtime and network hooks are called. ``clock`` (seconds since the epoch) is for
    tests.

    ``await agent.start()`` returns once the Node is registered and the pods bound to it
    are being driven; ``await agent.stop()`` stops the agent and leaves the pods running
    (as the kubelet does); ``await agent.run()`` does both around waiting forever.
    """

    def __init__(self, client: Client, runtime: rt.Runtime,
                 network: NetworkDriver | None = None, *, node_name: str | None = None,
                 options: Settings | None = None, plugin_manager=None,
                 open_runtime: bool = True, clock: Callable[[], float] = time.time):
        self.client, self.runtime, self.network = client, runtime, network
        self.settings = options or Settings()
        self.node_name = (node_name or self.settings.node_name()).lower()
        self.pm = plugin_manager
        self.config = None  # the Config, when run by run_node_agent (for the hooks)
        self.clock = clock
        self.open_runtime = open_runtime
        self.data_dir = pathlib.Path(self.settings.dataDir).absolute()
        self.pods = client.resource("v1", "Pod")
        self.nodes = client.resource("v1", "Node")
        self.leases = client.resource("coordination.k8s.io/v1", "Lease")
        self._configmaps = client.resource("v1", "ConfigMap")
        self._secrets = client.resource("v1", "Secret")
        self.status = StatusManager(client, on_written=self._pod_synced)
        self.events = EventRecorder(client, self.node_name)
        self.restart_backoff = Backoff(clock=clock)
        self.pull_backoff = Backoff(clock=clock)
        self.volumes = VolumeManager(self.data_dir, self.lookup, ca_file=self.settings.caFile,
                                     service_account_volume=self.settings.serviceAccountVolume)
        self.workers: dict[str, PodWorker] = {}
        self.machine: MachineInfo | None = None
        self.node_ip = self.settings.nodeIP or node_ip()
        self.runtime_name = "runtime"
        self.runtime_version: rt.RuntimeVersion | None = None
        self.runtime_ready = False
        self.runtime_message = "container runtime status check may not have completed yet"
        self.allocatable: dict[str, Quantity] = {}
        self.capacity: dict[str, Quantity] = {}
        self.http: aiohttp.ClientSession | None = None
        self.port = self.settings.port
        self.node_uid = ""
        self.pod_cidr = self.settings.podCIDR
        self.pod_informer: Informer | None = None
        self.node_informer: Informer | None = None
        self.service_informer: Informer | None = None
        self._image_refs: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._server = None
        self._last_node_status: dict | None = None
        self._last_node_post = 0.0
        self._pleg_state: dict[str, str] = {}
        self._synced = False
        self._started = False
        self._lookup_cache: dict[tuple, tuple[float, dict | None]] = {}
        self._labels: dict[str, str] | None = None

    # -- helpers used by workers ----------------------------------------------------------

    def hook(self, name: str, **kwargs) -> None:
        """Call a broadcast hook; an implementation's exception is logged, never raised."""
        if self.pm is None:
            return
        try:
            getattr(self.pm.hook, name)(**kwargs)
        except Exception:
            log.exception("hook %s failed", name)

    def _pod_synced(self, pod: dict, status: dict) -> None:
        self.hook("pilothouse_pod_synced", pod=pod, status=status)

    async def lookup(self, kind: str, namespace: str, name: str) -> dict | None:
        """A ConfigMap or Secret from the API (None when absent); cached for a second."""
        key = (kind, namespace, name)
        cached = self._lookup_cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        resource = self._configmaps if kind == "ConfigMap" else self._secrets
        try:
            obj = await resource.get(name, namespace)
        except errors.NotFound:
            obj = None
        self._lookup_cache[key] = (now, obj)
        if len(self._lookup_cache) > 1024:
            self._lookup_cache = {k: v for k, v in self._lookup_cache.items()
                                  if now - v[0] < 1.0}
        return obj

    async def image_ref(self, ref: str) -> str:
        """``imageID`` for a container's image: its repo digest when it has one, else its
        id."""
        if not ref:
            return ""
        if ref not in self._image_refs:
            try:
                image = await self.runtime.image_status(ref)
            except rt.ContainerRuntimeError:
                image = None
            if image is None:
                return ref
            self._image_refs[ref] = image.repo_digests[0] if image.repo_digests else image.id
        return self._image_refs[ref]

    def service_env(self, pod: dict) -> dict[str, str]:
        """Service variables for a pod's containers: the Services of its namespace (with
        ``enableServiceLinks``, the default) and the ``kubernetes`` Service of the default
        namespace."""
        informer = self.service_informer
        if informer is None:
            return {}
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
        chosen: dict[str, dict] = {}
        for svc in informer.list():
            m = svc["metadata"]
            if m.get("namespace") == "default" and m["name"] == "kubernetes":
                chosen.setdefault(m["name"], svc)
            elif links and m.get("namespace") == ns:
                chosen[m["name"]] = svc
        return service_env(list(chosen.values()))

    def log_dir(self, pod: dict) -> pathlib.Path:
        m = pod.get("metadata") or {}
        return self.data_dir / "logs" / f"{m.get('namespace')}_{m.get('name')}_{m.get('uid')}"

    def admit(self, pod: dict) -> tuple[str, str] | None:
        """The kubelet's admission of a new pod: None, or ``(reason, message)`` when the
        node cannot run it (its nodeSelector does not match, or it does not fit in what
        the pods already admitted leave of the allocatable cpu, memory, storage or pod
        count). A rejected pod fails at once; it is never started."""
        from pilothouse.interfaces.scheduler import pod_requests
        spec = pod.get("spec") or {}
        labels = self._labels if self._labels is not None else self.node_labels()
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return ("NodeAffinity", "Pod was rejected: Predicate NodeAffinity failed: "
                                    "node(s) didn't match Pod's node affinity/selector")
        uid = pod["metadata"].get("uid")
        active = [w.pod for w in self.workers.values()
                  if w.admitted and w.pod is not None and w.uid != uid and
                  (w.pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        max_pods = self.settings.maxPods
        if len(active) + 1 > max_pods:
            return ("OutOfpods", f"Pod was rejected: Node didn't have enough resource: pods, "
                                 f"requested: 1, used: {len(active)}, capacity: {max_pods}")
        want = pod_requests(pod)
        used: dict[str, int] = {}
        for other in active:
            for k, v in pod_requests(other).items():
                used[k] = used.get(k, 0) + v
        for res in ("cpu", "memory", "ephemeral-storage"):
            if not want.get(res) or res not in self.allocatable:
                continue
            q = self.allocatable[res]
            capacity = q.milli_value() if res == "cpu" else q.value()
            if used.get(res, 0) + want[res] > capacity:
                return (f"OutOf{res}", f"Pod was rejected: Node didn't have enough resource: "
                                       f"{res}, requested: {want[res]}, used: "
                                       f"{used.get(res, 0)}, capacity: {capacity}")
        return None

    def worker_for(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            m = (w.pod or {}).get("metadata") or {}
            if m.get("namespace") == namespace and m.get("name") == name:
                return w
        return None

    def worker_finished(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the runtime, configure the pod network, start the endpoint, register the
        Node and start driving pods. Raises what prevents the node from working."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.machine = MachineInfo(str(self.data_dir))
        self._compute_allocatable()
        if self.open_runtime:
            await self.runtime.open()
        self.runtime_version = await self.runtime.version()
        self.runtime_name = self.runtime_version.runtime_name
        if rt.Feature.MOUNTS not in self.runtime.features:
            self.volumes.mounts_supported = False
        self.http = aiohttp.ClientSession()
        if self.network is not None:
            await self.network.setup_node(NodeNetwork(
                self.node_name, (self.pod_cidr,) if self.pod_cidr else (), (self.node_ip,)))
            cni = self.network.cni_config()
            if cni is not None or self.pod_cidr:
                await self.runtime.configure_network(pod_cidr=self.pod_cidr, cni_config=cni)
        elif self.pod_cidr:
            await self.runtime.configure_network(pod_cidr=self.pod_cidr)
        await self._check_runtime()
        from pilothouse.node._server import NodeServer
        self._server = NodeServer(self)
        self.port = await self._server.start(self.settings.address, self.settings.port)
        self.events.start()
        await self._register()
        self._started = True
        self.pod_informer = Informer(self.pods, field_selector=f"spec.nodeName={self.node_name}")
        self.pod_informer.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        node_selector = None if self.network is not None else f"metadata.name={self.node_name}"
        self.node_informer = Informer(self.nodes, field_selector=node_selector)
        self.node_informer.add_handlers(self._node_changed, lambda o, n: self._node_changed(n),
                                        None)
        self.service_informer = Informer(self.client.resource("v1", "Service"))
        self.pod_informer.start()
        self.node_informer.start()
        self.service_informer.start()
        self._spawn(self._lease_loop(), "node lease")
        self._spawn(self._status_loop(), "node status")
        await asyncio.wait_for(self.pod_informer.synced.wait(), 60)
        await self._sweep_orphans()
        self._synced = True
        self._spawn(self._pleg_loop(), "runtime relist")
        self.hook("pilothouse_component_started", component="node",
                  config=self.config)

    def _spawn(self, coro, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop the agent; pods keep running (a restarted agent adopts them)."""
        if self._started:
            self.hook("pilothouse_component_stopping", component="node")
        self._started = False
        for informer in (self.pod_informer, self.node_informer, self.service_informer):
            if informer is not None:
                await informer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for worker in list(self.workers.values()):
            await worker.stop()
        self.workers.clear()
        for uid in list(self.status._entries):
            await self.status.flush(uid, timeout=2.0)
        await self.status.stop()
        await self.events.stop()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.network is not None:
            with contextlib.suppress(Exception):
                await self.network.close()
        if self.open_runtime:
            await self.runtime.close()

    async def run(self) -> None:
        """Start, then run until cancelled; stop on the way out."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    # -- pods -------------------------------------------------------------------------------

    def _dispatch(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, uid, pod)
            worker.start()
        else:
            worker.update(pod)

    def _gone(self, pod: dict) -> None:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is not None:
            worker.update(None)

    def _pod_added(self, pod: dict) -> None:
        self._dispatch(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("uid") != new["metadata"].get("uid"):
            self._gone(old)
        self._dispatch(new)

    def _pod_deleted(self, pod: dict) -> None:
        self._gone(pod)

    async def _sweep_orphans(self) -> None:
        """After the first list: sandboxes and volume directories of pods the API no longer
        has are removed (by workers that find no pod)."""
        uids = set()
        for sb in await self.runtime.list_pod_sandboxes(labels={ps.NODE_LABEL: self.node_name}):
            uids.add(sb.labels.get(ps.POD_UID, sb.metadata.uid))
        uids.update(self.volumes.pod_uids_on_disk())
        for uid in uids:
            if uid and uid not in self.workers:
                self._orphan(uid)

    def _orphan(self, uid: str) -> None:
        worker = self.workers[uid] = PodWorker(self, uid, None)
        worker.start()

    async def _pleg_loop(self) -> None:
        """Re-list the runtime every ``relistPeriod`` and wake the worker of every pod
        whose sandbox or container changed state (the kubelet's PLEG)."""
        labels = {ps.NODE_LABEL: self.node_name}
        while True:
            await asyncio.sleep(self.settings.relistPeriod)
            try:
                containers = await self.runtime.list_containers(labels=labels)
                sandboxes = await self.runtime.list_pod_sandboxes(labels=labels)
            except rt.ContainerRuntimeError as exc:
                log.debug("relist failed: %s", exc)
                continue
            state: dict[str, str] = {}
            owner: dict[str, str] = {}
            for c in containers:
                state[c.id] = c.state.value
                owner[c.id] = c.labels.get(ps.POD_UID, "")
            for s in sandboxes:
                state[s.id] = s.state.value
                owner[s.id] = s.labels.get(ps.POD_UID, s.metadata.uid)
            changed = {owner[i] for i, v in state.items() if self._pleg_state.get(i) != v}
            self._pleg_state = state
            for uid in changed:
                worker = self.workers.get(uid)
                if worker is not None:
                    worker.notify()
                elif uid and self._synced and self.pod_informer is not None and not any(
                        p["metadata"].get("uid") == uid for p in self.pod_informer.list()):
                    self._orphan(uid)

    # -- node -------------------------------------------------------------------------------

    def _compute_allocatable(self) -> None:
        m = self.machine
        cap = {"cpu": Quantity(str(m.cpus)), "memory": Quantity(_kib(m.memory)),
               "pods": Quantity(str(self.settings.maxPods)),
               "ephemeral-storage": Quantity(_kib(m.storage)),
               "hugepages-1Gi": Quantity(0), "hugepages-2Mi": Quantity(0)}
        alloc = dict(cap)
        for table in (self.settings.kubeReserved, self.settings.systemReserved):
            for k, v in table.items():
                with contextlib.suppress(QuantityError):
                    if k in alloc:
                        alloc[k] = alloc[k] - Quantity(str(v))
        alloc["memory"] = alloc["memory"] - _EVICTION_MEMORY
        alloc["ephemeral-storage"] = Quantity(
            str(int(alloc["ephemeral-storage"].value() * 0.9)))
        for k, v in alloc.items():
            if v < 0:
                alloc[k] = Quantity(0)
        self.capacity, self.allocatable = cap, alloc

    def node_labels(self) -> dict[str, str]:
        """The Node's labels: the settings' ``labels``, those of the
        ``pilothouse_node_labels`` hook, and the agent's own ``kubernetes.io/*``."""
        arch = self.machine.arch if self.machine else "amd64"
        labels = dict(self.settings.labels)
        if self.pm is not None:
            for contributed in self.pm.hook.pilothouse_node_labels(node_name=self.node_name):
                labels.update(contributed or {})
        labels.update({"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                       "beta.kubernetes.io/arch": arch})
        self._labels = labels
        return labels

    async def _check_runtime(self) -> None:
        try:
            status = await self.runtime.status()
        except rt.ContainerRuntimeError as exc:
            self.runtime_ready, self.runtime_message = False, f"container runtime is down: {exc}"
            return
        failing = [c for c in status.conditions if not c.status]
        if failing and self.settings.requireRuntimeReady:
            c = failing[0]
            what = "network" if c.type == "NetworkReady" else "runtime"
            self.runtime_ready = False
            self.runtime_message = f"container {what} not ready: {c.type}=false " \
                                   f"reason:{c.reason} message:{c.message}"
        else:
            self.runtime_ready, self.runtime_message = True, "kubelet is posting ready status"

    async def _images(self) -> list[dict]:
        try:
            images = await self.runtime.list_images()
        except rt.ContainerRuntimeError:
            return []
        images.sort(key=lambda i: i.size, reverse=True)
        out = []
        for image in images[:50]:
            names = list(image.repo_digests) + list(image.repo_tags)
            out.append({"names": names or [image.id], "sizeBytes": image.size})
        return out

    async def node_status(self, now: str) -> dict:
        m = self.machine
        old = {c.get("type"): c for c in
               (((self._own_node() or {}).get("status") or {}).get("conditions") or [])}
        ready = self.runtime_ready

        def cond(type_, ok_status, reason, message):
            prev = old.get(type_) or {}
            return {"type": type_, "status": ok_status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": prev.get("lastTransitionTime") if
                    prev.get("status") == ok_status and prev.get("lastTransitionTime") else now}
        conditions = [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                 "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                 "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID",
                 "kubelet has sufficient PID available"),
            cond("Ready", "True" if ready else "False",
                 "KubeletReady" if ready else "KubeletNotReady", self.runtime_message)]
        conditions += [c for t, c in old.items() if t not in _AGENT_NODE_CONDITIONS]
        v = self.runtime_version
        return {
            "capacity": {k: q.to_json() for k, q in self.capacity.items()},
            "allocatable": {k: q.to_json() for k, q in self.allocatable.items()},
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": m.machine_id, "systemUUID": m.system_uuid, "bootID": m.boot_id,
                "kernelVersion": m.kernel, "osImage": m.os_image,
                "containerRuntimeVersion": f"{v.runtime_name}://{v.runtime_version}" if v else "",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": m.arch},
            "images": await self._images(),
        }

    def _own_node(self) -> dict | None:
        if self.node_informer is not None:
            return self.node_informer.get(self.node_name)
        return None

    async def _register(self) -> None:
        """Create the Node, or bring an existing one's labels, addresses and status up to
        date (a restarted agent, or a node that was registered before)."""
        now = now_rfc3339()
        status = await self.node_status(now)
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": self.node_labels(),
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}, "status": status}
        if self.pod_cidr:
            node["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        try:
            created = await self.nodes.create(node)
            self.node_uid = created["metadata"]["uid"]
            log.info("registered node %s", self.node_name)
        except errors.AlreadyExists:
            existing = await self.nodes.get(self.node_name)
            patch: dict = {"metadata": {"labels": self.node_labels()}}
            spec = existing.get("spec") or {}
            if self.pod_cidr and not spec.get("podCIDR"):
                patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
            elif spec.get("podCIDR") and not self.pod_cidr:
                self.pod_cidr = spec["podCIDR"]
                await self.runtime.configure_network(pod_cidr=self.pod_cidr)
            updated = await self.nodes.patch(self.node_name, patch)
            self.node_uid = updated["metadata"]["uid"]
            await self.nodes.patch(self.node_name, {"status": status_patch(
                existing.get("status"), status)}, subresource="status")
        self._last_node_status = status
        self._last_node_post = time.monotonic()

    @staticmethod
    def _comparable(status: dict) -> dict:
        out = dict(status)
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                             for c in status.get("conditions") or []]
        return out

    async def _status_loop(self) -> None:
        """Recompute the Node status every ``statusUpdateFrequency``; write it when it
        changed or every ``statusReportFrequency``."""
        while True:
            await asyncio.sleep(self.settings.statusUpdateFrequency)
            try:
                await self.post_node_status()
            except (errors.StatusError, OSError) as exc:
                log.warning("node status not written: %s", exc)
            except Exception:
                log.exception("node status update failed")

    async def post_node_status(self, force: bool = False) -> None:
        await self._check_runtime()
        status = await self.node_status(now_rfc3339())
        due = time.monotonic() - self._last_node_post >= self.settings.statusReportFrequency
        if not force and not due and self._last_node_status is not None and \
                self._comparable(status) == self._comparable(self._last_node_status):
            return
        if self.node_labels() != ((self._own_node() or {}).get("metadata") or {}).get(
                "labels", self.node_labels()):
            await self.nodes.patch(self.node_name, {"metadata": {"labels": self.node_labels()}})
        try:
            await self.nodes.patch(self.node_name, {"status": status_patch(
                self._last_node_status, status)}, subresource="status")
        except errors.NotFound:
            await self._register()
            return
        self._last_node_status = status
        self._last_node_post = time.monotonic()

    def _node_changed(self, node: dict) -> None:
        if node["metadata"].get("name") == self.node_name:
            cidr = (node.get("spec") or {}).get("podCIDR") or ""
            if cidr and cidr != self.pod_cidr and not self.settings.podCIDR:
                self.pod_cidr = cidr
                self._spawn(self._apply_pod_cidr(cidr), "pod cidr")
        if self.network is not None:
            self._spawn(self._sync_routes(), "routes")

    async def _apply_pod_cidr(self, cidr: str) -> None:
        try:
            if self.network is not None:
                await self.network.setup_node(NodeNetwork(self.node_name, (cidr,),
                                                          (self.node_ip,)))
                await self.runtime.configure_network(pod_cidr=cidr,
                                                     cni_config=self.network.cni_config())
            else:
                await self.runtime.configure_network(pod_cidr=cidr)
        except Exception:
            log.exception("applying pod CIDR %s failed", cidr)

    async def _sync_routes(self) -> None:
        nodes = []
        for node in self.node_informer.list():
            addresses = tuple(a["address"] for a in (node.get("status") or {}).get("addresses")
                              or [] if a.get("type") == "InternalIP")
            cidrs = tuple((node.get("spec") or {}).get("podCIDRs") or
                          ([node["spec"]["podCIDR"]] if (node.get("spec") or {}).get("podCIDR")
                           else []))
            nodes.append(NodeNetwork(node["metadata"]["name"], cidrs, addresses))
        try:
            await self.network.sync_routes(nodes)
        except Exception:
            log.exception("route sync failed")

    async def _lease_loop(self) -> None:
        """Renew the node's Lease every quarter of its duration."""
        lease: dict | None = None
        while True:
            try:
                lease = await self.renew_lease(lease)
            except (errors.StatusError, OSError) as exc:
                log.warning("node lease not renewed: %s", exc)
                lease = None
            await asyncio.sleep(self.settings.leaseDurationSeconds / 4)

    async def renew_lease(self, lease: dict | None) -> dict:
        now = now_rfc3339_micro()
        spec = {"holderIdentity": self.node_name,
                "leaseDurationSeconds": self.settings.leaseDurationSeconds, "renewTime": now}
        if lease is None:
            try:
                lease = await self.leases.get(self.node_name, LEASE_NAMESPACE)
            except errors.NotFound:
                return await self.leases.create({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE,
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                      "name": self.node_name,
                                                      "uid": self.node_uid}]},
                    "spec": spec}, LEASE_NAMESPACE)
        lease = dict(lease)
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        try:
            return await self.leases.update(lease)
        except errors.Conflict:
            fresh = await self.leases.get(self.node_name, LEASE_NAMESPACE)
            fresh["spec"] = {**(fresh.get("spec") or {}), **spec}
            return await self.leases.update(fresh)
