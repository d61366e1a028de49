"""Test kit for scheduler plugins: run the real scheduler host in a thread against a real API
server (e.g. the ``start_apiserver`` fixture's), and build Node and Pod objects.

::

    api = start_apiserver()
    with SchedulerThread(api.url, config_doc={"scheduler": {...}}) as sched:
        sched.create(node("n1", cpu="4", memory="8Gi"))
        sched.create(pod("web", cpu="500m"))
        assert sched.wait_bound("web") == "n1"

Nodes are plain API objects (capacity, allocatable, labels, taints, images): no node agent
is needed for scheduling.

:class:`CycleRunner` runs the host's scheduling cycle in-process without any API server
(cache, snapshot, PreFilter … Score, assume), e.g. to check that a plugin's
:class:`~pilothouse.interfaces.scheduler.Sign` fragments change no placement::

    for reuse in (True, False):
        run = CycleRunner([ProfilePlugin("MyPlugin", MyPlugin())], reuse=reuse)
        for n in nodes:
            run.add_node(n)
        results[reuse] = [run.schedule(p) for p in pods]
    assert results[True] == results[False]

Since 0.1; :class:`CycleRunner` since 0.2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pilothouse.testing.cluster import LoopThread
from pilothouse.client import Client
from pilothouse.config import parse_config
from pilothouse.model import errors

from pilothouse.interfaces.scheduler import CycleState
from pilothouse.scheduler._framework import FitError, Framework, ProfilePlugin
from pilothouse.scheduler._host import DEFAULT_SCHEDULER, Scheduler
from pilothouse.scheduler._settings import Settings

__all__ = ["CycleRunner", "SchedulerThread", "TEST_SETTINGS", "node", "pod", "priority_class"]

#: Settings suited to tests: short back-offs so retries show within a second.
TEST_SETTINGS = dict(podInitialBackoffSeconds=0.05, podMaxBackoffSeconds=0.5)


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: int = 110,
         labels: dict | None = None, taints: list[dict] | None = None,
         unschedulable: bool = False, images: list[tuple[str, int]] | None = None,
         extra: dict | None = None) -> dict:
    """A Node object with ``capacity`` = ``allocatable`` and ``kubernetes.io/hostname``."""
    resources = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extra or {})}
    spec: dict = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    status: dict = {"capacity": dict(resources), "allocatable": dict(resources),
                    "conditions": [{"type": "Ready", "status": "True"}]}
    if images:
        status["images"] = [{"names": [n], "sizeBytes": size} for n, size in images]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec, "status": status}


def pod(name: str, *, namespace: str = "default", cpu: str | None = None,
        memory: str | None = None, labels: dict | None = None,
        scheduler_name: str | None = None, priority_class: str | None = None,
        image: str = "registry.local/app:1", node_selector: dict | None = None,
        affinity: dict | None = None, tolerations: list[dict] | None = None,
        spread: list[dict] | None = None, grace: int | None = 0,
        extra_requests: dict | None = None, spec: dict | None = None) -> dict:
    """A Pod with one container requesting ``cpu``/``memory`` (omitted when None).
    ``grace`` sets ``terminationGracePeriodSeconds`` (0 by default, so a deleted pod is gone
    at once: there is no node agent in these tests)."""
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    requests.update(extra_requests or {})
    container: dict = {"name": "app", "image": image}
    if requests:
        container["resources"] = {"requests": requests}
    s: dict = {"containers": [container]}
    if scheduler_name:
        s["schedulerName"] = scheduler_name
    if priority_class:
        s["priorityClassName"] = priority_class
    if node_selector:
        s["nodeSelector"] = node_selector
    if affinity:
        s["affinity"] = affinity
    if tolerations:
        s["tolerations"] = tolerations
    if spread:
        s["topologySpreadConstraints"] = spread
    if grace is not None:
        s["terminationGracePeriodSeconds"] = grace
    s.update(spec or {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": s}


def priority_class(name: str, value: int, *, preemption_policy: str | None = None,
                   global_default: bool = False) -> dict:
    obj = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
           "metadata": {"name": name}, "value": value, "globalDefault": global_default}
    if preemption_policy:
        obj["preemptionPolicy"] = preemption_policy
    return obj


class SchedulerThread(LoopThread):
    """A :class:`~pilothouse.scheduler.Scheduler` on its own event loop in a daemon thread.

    Give either ``profiles`` (schedulerName → constructed :class:`ProfilePlugin` list) or
    ``config_doc`` (a config document whose ``scheduler`` section names installed plugins).
    ``settings`` are ``components.scheduler`` values (default :data:`TEST_SETTINGS`). The
    helpers (:meth:`create`, :meth:`get`, ...) call the API through the scheduler's loop.
    """

    def __init__(self, url: str, profiles: dict[str, list[ProfilePlugin]] | None = None, *,
                 config_doc: dict | None = None, settings: dict | None = None,
                 identity: str | None = None):
        super().__init__("pilothouse-scheduler")
        self.url = url
        self._profiles, self._doc = profiles, config_doc
        self._settings = {**TEST_SETTINGS, **(settings or {})}
        self.identity = identity
        self.client: Client | None = None
        self.scheduler: Scheduler | None = None

    def start(self) -> "SchedulerThread":
        self._thread.start()

        async def boot():
            self.client = Client(self.url)
            if self._doc is not None:
                doc = dict(self._doc)
                comps = dict(doc.get("components") or {})
                comps["scheduler"] = {**self._settings, **(comps.get("scheduler") or {})}
                doc["components"] = comps
                self.scheduler = Scheduler.from_config(parse_config(doc, "<test>"),
                                                       self.client, identity=self.identity)
            else:
                self.scheduler = Scheduler(self.client, self._profiles or {},
                                           Settings(**self._settings), identity=self.identity)
            await self.scheduler.start()
        self.run(boot())
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            async def down():
                try:
                    await self.scheduler.stop()
                finally:
                    await self.client.close()
                    # let the transports finish closing (the API server must see every
                    # connection end), then end whatever is left before the loop stops
                    await asyncio.sleep(0.05)
                    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                    for task in rest:
                        task.cancel()
                    await asyncio.gather(*rest, return_exceptions=True)
            try:
                self.run(down())
            finally:
                self.scheduler = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()

    def __enter__(self) -> "SchedulerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ API helpers

    def _resource(self, obj: dict):
        return self.client.resource(obj["apiVersion"], obj["kind"])

    def create(self, obj: dict, wait: bool = True) -> dict:
        """Create ``obj``; when the scheduler watches its kind (Nodes, PriorityClasses and
        whatever its plugins asked for) and ``wait``, return only once the scheduler's
        informer has it, so a test's next step sees a scheduler that knows it."""
        created = self.run(self._resource(obj).create(obj, obj["metadata"].get("namespace")))
        if wait:
            self._wait_seen(created)
        return created

    def _wait_seen(self, obj: dict) -> None:
        sched = self.scheduler
        watched = [i for i in sched.informers
                   if i.resource.kind.kind == obj.get("kind")
                   and i.resource.kind.group == obj["apiVersion"].rpartition("/")[0]]
        if not watched:
            return
        from pilothouse.client import object_key
        key, rv = object_key(obj), int(obj["metadata"]["resourceVersion"])

        def seen():
            cached = watched[0].cache.get(key)
            return cached is not None and int(cached["metadata"]["resourceVersion"]) >= rv
        self.wait_for(lambda: self.call(seen), what=f"the scheduler to see {key}")

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> dict | None:
        try:
            return self.run(self.client.resource(api_version, kind).get(name, namespace))
        except errors.NotFound:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw) -> list:
        return self.run(self.client.resource(api_version, kind).list(namespace, **kw))["items"]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               **kw) -> None:
        try:
            self.run(self.client.resource(api_version, kind).delete(name, namespace, **kw))
        except errors.NotFound:
            pass

    def update_node(self, name: str, change: Callable[[dict], None]) -> dict:
        """Read-modify-write a Node (retried on conflict)."""
        nodes = self.client.resource("v1", "Node")
        for _ in range(20):
            obj = self.run(nodes.get(name))
            change(obj)
            try:
                updated = self.run(nodes.update(obj))
            except errors.Conflict:
                continue
            self._wait_seen(updated)
            return updated
        raise RuntimeError(f"node {name}: too many conflicts")

    def get_pod(self, name: str, namespace: str = "default") -> dict | None:
        return self.get("v1", "Pod", name, namespace)

    def wait_for(self, check: Callable[[], Any], timeout: float = 15.0,
                 interval: float = 0.05, what: str = "condition") -> Any:
        """Poll ``check()`` (in the test's thread) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def wait_bound(self, name: str, namespace: str = "default", timeout: float = 15.0) -> str:
        """Wait until the pod has a node; return the node's name."""
        def bound():
            p = self.get_pod(name, namespace)
            return p and p["spec"].get("nodeName")
        return self.wait_for(bound, timeout, what=f"pod {namespace}/{name} to be bound")

    def scheduled_condition(self, name: str, namespace: str = "default") -> dict | None:
        p = self.get_pod(name, namespace) or {}
        return next((c for c in (p.get("status") or {}).get("conditions") or []
                     if c.get("type") == "PodScheduled"), None)

    def wait_unschedulable(self, name: str, namespace: str = "default",
                           timeout: float = 15.0) -> str:
        """Wait for PodScheduled=False; return its message."""
        def check():
            c = self.scheduled_condition(name, namespace)
            return c and c.get("status") == "False" and c.get("message")
        return self.wait_for(check, timeout, what=f"pod {namespace}/{name} unschedulable")

    def events_for(self, name: str, namespace: str = "default") -> list[dict]:
        return [e for e in self.list("v1", "Event", namespace)
                if (e.get("involvedObject") or {}).get("name") == name]

    def stats(self) -> dict:
        return self.call(lambda: dict(self.scheduler.stats))


class _NoClient:
    """The client of a :class:`CycleRunner`: nothing may reach an API."""

    def resource(self, *args: Any, **kwargs: Any) -> None:
        return None


class CycleRunner:
    """The scheduler host's scheduling cycle, in-process and synchronous, for unit tests:
    one profile of constructed plugins, the host's cache and snapshot, no API server, no
    informers, no binding. :meth:`schedule` runs one pod through PreFilter, Filter (with
    sampling), PreScore, Score and host selection as ``Scheduler`` does, and assumes the pod
    onto the chosen node. ``reuse=False`` sets ``signatureCacheSize`` to 0 (no per-node
    result reuse); ``settings`` are further ``components.scheduler`` values. ``scheduler``
    and ``framework`` are the objects underneath. Since 0.2."""

    def __init__(self, plugins: list[ProfilePlugin], *, reuse: bool = True,
                 settings: dict | None = None):
        values = {**(settings or {})}
        if not reuse:
            values["signatureCacheSize"] = 0
        self.scheduler = Scheduler(_NoClient(), {DEFAULT_SCHEDULER: plugins},
                                   Settings(**values))
        self.framework: Framework = self.scheduler.frameworks[DEFAULT_SCHEDULER]

    def add_node(self, node: dict) -> None:
        """Add or replace a Node (as the node informer would)."""
        self.scheduler.cache.add_node(node)

    def remove_node(self, node: dict) -> None:
        self.scheduler.cache.remove_node(node)

    def add_pod(self, pod: dict) -> None:
        """An assigned pod (``spec.nodeName`` set) the pod informer reports."""
        self.scheduler.cache.add_pod(pod)

    def remove_pod(self, pod: dict) -> None:
        self.scheduler.cache.remove_pod(pod)

    def nominate(self, pod: dict, node_name: str) -> None:
        """``pod`` (pending) is nominated to ``node_name``, as after preemption."""
        self.scheduler.queue.nominator.add(pod, node_name)

    def schedule(self, pod: dict, *, assume: bool = True) -> str:
        """Run one scheduling cycle for ``pod``; return the chosen node's name (the pod is
        then assumed there unless ``assume`` is false) or, when nothing fits, the
        unschedulable message (``"0/N nodes are available: ..."``, without PostFilter)."""
        sched = self.scheduler
        sched.cache.update_snapshot(sched.snapshot)
        try:
            node = asyncio.run(sched._schedule_pod(self.framework, CycleState(), pod))
        except FitError as fit:
            return fit.message()
        if assume:
            assumed = dict(pod)
            assumed["spec"] = {**pod["spec"], "nodeName": node}
            sched.cache.assume_pod(assumed, node)
        return node
