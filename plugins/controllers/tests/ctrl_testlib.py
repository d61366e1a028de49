"""End-to-end kit: a real API server, the real controller host with this distribution's
controllers (by entry point), and a tiny kubelet simulator.

The simulator stands in for the scheduler and the node agent, through the API only: it
registers Node objects, renews their Leases in kube-node-lease, binds unscheduled pods to its
live nodes (pods/binding), reports bound pods Running with an IP and Ready (images containing
``unready`` stay not Ready), and confirms the deletion of terminating pods (grace 0), as a
node agent does. A node can be "killed": its Lease stops being renewed and its pods are left
alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request

from pilothouse.client import Client, InformerFactory, WorkQueue, object_key
from pilothouse.model import errors

ALL = ["replicaset", "deployment", "garbagecollector", "namespace", "endpointslice",
       "serviceaccount", "nodelifecycle", "podgc"]
#: Controller options with short periods, so the tests settle in seconds.
FAST_OPTIONS = {
    "nodelifecycle": {"nodeMonitorPeriod": 0.3, "nodeMonitorGracePeriod": 2.0,
                      "nodeStartupGracePeriod": 2.0, "defaultTolerationSeconds": 300},
    "podgc": {"gcPeriodSeconds": 0.3, "orphanQuarantineSeconds": 0.5,
              "terminatedPodThreshold": 3},
    "namespace": {"recheckSeconds": 0.3},
    "garbagecollector": {"rediscoverSeconds": 5.0},
}


def config_doc(enabled=ALL, options=None, settings=None) -> dict:
    opts = {k: v for k, v in {**FAST_OPTIONS, **(options or {})}.items() if k in enabled}
    doc = {"controllers": {"enabled": list(enabled), "options": opts}}
    if settings:
        doc["components"] = {"controller-manager": settings}
    return doc


def wait_for(check, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``check()`` until truthy; AssertionError after ``timeout`` (a bound, not a
    measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class API:
    """Synchronous JSON calls for assertions (the test's own view of the API)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None, content_type="application/json"):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None
                                     else None, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from None

    def get(self, path: str):
        return self.call("GET", path)

    def items(self, path: str, selector: str | None = None) -> list[dict]:
        if selector:
            path += ("&" if "?" in path else "?") + "labelSelector=" + \
                urllib.request.quote(selector)
        return (self.get(path) or {}).get("items") or []

    def pods(self, ns: str = "default", selector: str | None = None,
             live: bool = False) -> list[dict]:
        out = self.items(f"/api/v1/namespaces/{ns}/pods", selector)
        if live:
            out = [p for p in out if not p["metadata"].get("deletionTimestamp")
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        return out

    def rss(self, ns: str = "default", selector: str | None = None) -> list[dict]:
        return self.items(f"/apis/apps/v1/namespaces/{ns}/replicasets", selector)

    def deployment(self, name: str, ns: str = "default") -> dict | None:
        return self.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


class KubeletSim:
    """See the module docstring. Runs on its own event loop in a daemon thread."""

    def __init__(self, url: str, nodes=("node-a", "node-b"), *, lease_period: float = 0.3,
                 zones: dict | None = None):
        self.url = url
        self.node_names = list(nodes)
        self.zones = zones or {}
        self.lease_period = lease_period
        self.dead: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="kubelet-sim")
        self._ips = itertools.count(10)
        self._rr = itertools.count()
        self._tasks: list[asyncio.Task] = []

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "KubeletSim":
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.client = Client(self.url)
        self.nodes_api = self.client.resource("v1", "Node")
        self.pods_api = self.client.resource("v1", "Pod")
        self.leases_api = self.client.resource("coordination.k8s.io/v1", "Lease")
        for name in self.node_names:
            await self.add_node(name)
        self.factory = InformerFactory(self.client)
        self.pods = self.factory.informer("v1", "Pod")
        self.queue = WorkQueue(0.01, 1.0)
        self.pods.add_handlers(lambda p: self.queue.add(object_key(p)),
                               lambda o, n: self.queue.add(object_key(n)), None)
        self.factory.start()
        await self.factory.wait_for_sync()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(4)]
        self._tasks.append(asyncio.create_task(self._heartbeats()))

    async def add_node(self, name: str) -> None:
        now = _now()
        labels = {"kubernetes.io/hostname": name}
        if self.zones.get(name):
            labels["topology.kubernetes.io/zone"] = self.zones[name]
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                                                                 "labels": labels},
                "status": {"capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                           "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True",
                                           "reason": "KubeletReady",
                                           "message": "kubelet is posting ready status",
                                           "lastHeartbeatTime": now,
                                           "lastTransitionTime": now}],
                           "addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}}
        try:
            created = await self.nodes_api.create(node)
        except errors.AlreadyExists:
            created = await self.nodes_api.get(name)
        created["status"] = node["status"]
        await self.nodes_api.update_status(created)
        if name not in self.node_names:
            self.node_names.append(name)
        await self._renew(name)

    async def _renew(self, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _now(micro=True)}
        try:
            lease = await self.leases_api.get(name, "kube-node-lease")
        except errors.NotFound:
            await self.leases_api.create({"apiVersion": "coordination.k8s.io/v1",
                                          "kind": "Lease",
                                          "metadata": {"name": name,
                                                       "namespace": "kube-node-lease"},
                                          "spec": spec})
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        try:
            await self.leases_api.update(lease)
        except errors.Conflict:
            pass

    async def _heartbeats(self) -> None:
        while True:
            for name in list(self.node_names):
                if name not in self.dead:
                    try:
                        await self._renew(name)
                    except errors.StatusError:
                        pass
            await asyncio.sleep(self.lease_period)

    def live_nodes(self) -> list[str]:
        return [n for n in self.node_names if n not in self.dead]

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self._sync(key)
                self.queue.forget(key)
            except errors.StatusError:
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def _sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        m, spec = pod["metadata"], pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            live = self.live_nodes()
            if m.get("deletionTimestamp") or not live:
                return
            target = live[next(self._rr) % len(live)]
            try:
                await self.pods_api.bind(m["name"], m["namespace"], target)
            except errors.Conflict:
                pass
            return
        if node in self.dead or node not in self.node_names:
            return
        if m.get("deletionTimestamp"):
            try:
                await self.pods_api.delete(m["name"], m["namespace"], grace_period_seconds=0,
                                           preconditions={"uid": m["uid"]})
            except (errors.NotFound, errors.Conflict):
                pass
            return
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        ready = not any("unready" in (c.get("image") or "")
                        for c in spec.get("containers") or [])
        want = "True" if ready else "False"
        current = next((c for c in status.get("conditions") or []
                        if c.get("type") == "Ready"), None)
        if status.get("phase") == "Running" and current and current.get("status") == want:
            return
        now = _now()
        n = next(self._ips)
        new_status = dict(status)
        new_status.update({
            "phase": "Running", "hostIP": "192.168.0.1",
            "podIP": status.get("podIP") or f"10.244.{n // 250}.{n % 250 + 1}",
            "startTime": status.get("startTime") or now,
            "conditions": [{"type": t, "status": s, "lastTransitionTime": now}
                           for t, s in (("PodScheduled", "True"), ("Initialized", "True"),
                                        ("ContainersReady", want), ("Ready", want))],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""),
                                   "ready": ready, "restartCount": 0, "started": True,
                                   "state": {"running": {"startedAt": now}}}
                                  for c in spec.get("containers") or []]})
        new_status["podIPs"] = [{"ip": new_status["podIP"]}]
        pod = dict(pod)
        pod["status"] = new_status
        await self.pods_api.update_status(pod)

    def kill_node(self, name: str) -> None:
        """The node's agent dies: no more Lease renewals, its pods are left alone."""
        self.dead.add(name)

    def revive_node(self, name: str) -> None:
        self.dead.discard(name)

        async def ready():
            node = await self.nodes_api.get(name)
            now = _now()
            node["status"]["conditions"] = [c for c in node["status"].get("conditions") or []
                                            if c.get("type") != "Ready"] + [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                 "lastTransitionTime": now}]
            await self.nodes_api.update_status(node)
            for pod in self.pods.list():
                if (pod.get("spec") or {}).get("nodeName") == name:
                    self.queue.add(object_key(pod))
        self.run(ready())

    def stop(self) -> None:
        async def down():
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.queue.shutdown()
            await self.factory.stop()
            await self.client.close()
        try:
            self.run(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


def _now(micro: bool = False) -> str:
    import datetime
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class PodWatch:
    """Every version of every pod of a namespace, from a watch, in a background thread."""

    def __init__(self, url: str, namespace: str = "default"):
        self.url, self.namespace = url, namespace
        self.events: list[tuple[str, dict]] = []
        self.listed = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "PodWatch":
        self._thread.start()
        ready = threading.Event()

        async def watch():
            async with Client(self.url) as client:
                pods = client.resource("v1", "Pod")
                listed = await pods.list(self.namespace)
                with self._lock:
                    for p in listed["items"]:
                        self.events.append(("ADDED", p))
                    self.listed = len(listed["items"])
                rv = listed["metadata"]["resourceVersion"]
                ready.set()
                while True:
                    async for ev in pods.watch(self.namespace, resource_version=rv):
                        if ev.type == "BOOKMARK":
                            rv = ev.object["metadata"].get("resourceVersion", rv)
                            continue
                        rv = ev.object["metadata"].get("resourceVersion", rv)
                        with self._lock:
                            self.events.append((ev.type, ev.object))
        async def spawn():
            self._task = asyncio.create_task(watch())
        asyncio.run_coroutine_threadsafe(spawn(), self.loop).result(10)
        ready.wait(30)
        return self

    def snapshots(self):
        """{pod name: latest version} of the pods that exist: after the initial list, then
        after each watch event."""
        state: dict[str, dict] = {}
        with self._lock:
            events = list(self.events)
        for i, (kind, pod) in enumerate(events):
            if kind == "DELETED":
                state.pop(pod["metadata"]["name"], None)
            else:
                state[pod["metadata"]["name"]] = pod
            if i >= self.listed - 1:
                yield dict(state)

    def stop(self) -> None:
        async def cancel():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class Cluster:
    """An API server, the controller host (all controllers of this distribution) and the
    kubelet simulator with two nodes."""

    def __init__(self, api_server, host, kubelet):
        self.server, self.host, self.kubelet = api_server, host, kubelet
        self.api = API(api_server.url)
        self.url = api_server.url

    def kubectl(self, *args, input=None, check=True, timeout=120):
        out = self.server.kubectl(*args, input=input, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out
