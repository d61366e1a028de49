"""The scheduler host: informers → cache and queue → one scheduling loop → binding tasks.

Only the API is used (ARCHITECTURE.md rule 1): nodes, pods and PriorityClasses come from
informers; a decision is written through pods/binding; a failure through pods/status (the
PodScheduled=False condition, and ``nominatedNodeName`` after preemption) and a core/v1
Event. Several profiles share one process, one cache and one queue; several processes share
the cluster optimistically: a bind is a compare-and-swap on the pod (pods/binding answers 409
when the pod already has a node), the loser forgets its assumption and follows the informer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from pilothouse.client import InformerFactory, LeaderElector, object_key
from pilothouse.client.informer import drop_managed_fields
from pilothouse.config import Config, ConfigError, parse_config
from pilothouse.interfaces.scheduler import (Code, CycleState, NodeInfo, Status, pod_key)
from pilothouse.model import errors

from pilothouse.scheduler._cache import Cache, Snapshot
from pilothouse.scheduler._events import EventRecorder, truncate
from pilothouse.scheduler._framework import FitError, Framework, ProfilePlugin
from pilothouse.scheduler._queue import IN_FLIGHT, QueuedPod, SchedulingQueue
from pilothouse.scheduler._settings import Settings, settings as read_settings

log = logging.getLogger("pilothouse.scheduler")

STRATEGIC = "application/strategic-merge-patch+json"
DEFAULT_SCHEDULER = "default-scheduler"
#: Built-in priority classes Kubernetes resolves even without the objects.
SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2000000000,
                           "system-node-critical": 2000001000}


def _assigned(pod: dict) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def _terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _deleting(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def node_update_events(old: dict, new: dict) -> list[str]:
    """The scheduling-relevant kinds of change between two versions of a Node."""
    events = []
    if _labels(old) != _labels(new):
        events.append("Node/UpdateLabel")
    os_, ns_ = old.get("spec") or {}, new.get("spec") or {}
    if os_.get("taints") != ns_.get("taints") or \
            bool(os_.get("unschedulable")) != bool(ns_.get("unschedulable")):
        events.append("Node/UpdateTaint")
    ost, nst = old.get("status") or {}, new.get("status") or {}
    if ost.get("allocatable") != nst.get("allocatable") or \
            ost.get("capacity") != nst.get("capacity"):
        events.append("Node/UpdateAllocatable")
    return events


class _WaitingPod:
    def __init__(self, pod: dict, plugins: dict[str, float]):
        self.pod = pod
        self.pending = set(plugins)
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()
        name, timeout = min(plugins.items(), key=lambda kv: kv[1])
        self.timer = asyncio.get_running_loop().call_later(
            max(timeout, 0.0), self.reject,
            f"rejected due to timeout after waiting {timeout:g}s at plugin {name}")

    def allow(self, plugin: str) -> None:
        self.pending.discard(plugin)
        if not self.pending and not self.future.done():
            self.timer.cancel()
            self.future.set_result(Status())

    def reject(self, message: str) -> None:
        if not self.future.done():
            self.timer.cancel()
            self.future.set_result(Status.unschedulable(message))


class _Handle:
    """The :class:`pilothouse.interfaces.scheduler.Handle` of one profile."""

    def __init__(self, sched: "Scheduler", fw: Framework):
        self._s, self._fw = sched, fw
        self.client = sched.client
        self.profile = fw.profile

    def node_infos(self) -> list[NodeInfo]:
        return self._s.snapshot.nodes

    def node_info(self, name: str) -> NodeInfo | None:
        return self._s.snapshot.get(name)

    def node_infos_with_pod_affinity(self) -> list[NodeInfo]:
        return self._s.snapshot.with_pod_affinity()

    def node_infos_with_required_anti_affinity(self) -> list[NodeInfo]:
        return self._s.snapshot.with_required_anti_affinity()

    def node_infos_with_taints(self) -> list[NodeInfo]:
        return self._s.snapshot.with_taints()

    def node_changes(self, since: Any) -> tuple[Any, frozenset[str] | None]:
        snap = self._s.snapshot
        cursor = (snap.epoch, snap.position)
        changes = snap.changes_since(*since) if since is not None else None
        if changes is None:
            return cursor, None
        names = snap.names
        return cursor, frozenset([names[i] for i in changes])

    def nodes_with_image(self, image: str) -> int:
        return self._s.cache.image_nodes.get(image, 0)

    def informer(self, api_version: str, kind: str) -> Any:
        inf = self._s.factory.informer(api_version, kind)
        if inf not in self._s.informers:
            self._s.informers.append(inf)
        return inf

    def run_filter_plugins(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        return self._fw.filter_node(state, pod, node,
                                    self._s.queue.nominator.pods_on(node.name))

    def run_pre_filter_extension_add_pod(self, state, pod, pod_to_add, node) -> Status:
        return self._fw.run_pre_filter_add_pod(state, pod, pod_to_add, node)

    def run_pre_filter_extension_remove_pod(self, state, pod, pod_to_remove, node) -> Status:
        return self._fw.run_pre_filter_remove_pod(state, pod, pod_to_remove, node)

    def nominated_pods(self, node_name: str) -> list[dict]:
        return self._s.queue.nominator.pods_on(node_name)

    def record_event(self, obj: dict, type: str, reason: str, message: str) -> None:
        self._s.recorder.record(obj, type, reason, message, action="Preempting"
                                if reason == "Preempted" else "Scheduling",
                                component=self.profile)

    def waiting_pods(self) -> list[dict]:
        return [w.pod for w in self._s.waiting.values()]

    def allow_waiting_pod(self, uid: str, plugin: str) -> None:
        w = self._s.waiting.get(uid)
        if w is not None:
            w.allow(plugin)

    def reject_waiting_pod(self, uid: str, message: str) -> None:
        w = self._s.waiting.get(uid)
        if w is not None:
            w.reject(message)


class Scheduler:
    """The scheduler host.

    ``Scheduler(client, profiles, settings)`` takes constructed plugins (``profiles``:
    schedulerName → ordered :class:`ProfilePlugin` list), so tests need no entry points;
    :meth:`from_config` loads them from a config. :meth:`run` serves until ``stop`` is set
    (campaigning for the Lease first when ``settings.leaderElect``); :meth:`start` /
    :meth:`stop` do the same as a background task.
    """

    def __init__(self, client: Any, profiles: dict[str, list[ProfilePlugin]],
                 settings: Settings | None = None, *, pm: Any = None,
                 identity: str | None = None):
        if not profiles:
            raise ConfigError(["scheduler: no profile to serve"])
        self.client = client
        self.settings = settings or Settings()
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.pm = pm
        self.frameworks = {name: Framework(
            name, plugins, signature_cache_size=self.settings.signatureCacheSize)
            for name, plugins in profiles.items()}
        sorters = {fw.queue_sort.name if fw.queue_sort else None
                   for fw in self.frameworks.values()}
        if len(sorters) > 1:
            raise ConfigError([f"scheduler: every profile of one scheduler must use the same "
                               f"QueueSort plugin; found {sorted(map(str, sorters))}"])
        first = next(iter(self.frameworks.values()))
        self._less = first.queue_sort.plugin.less if first.queue_sort else None
        self.plugin_events: dict[str, frozenset[str]] = {}
        for fw in self.frameworks.values():
            for name, events in fw.plugin_events().items():
                if events is not None:
                    self.plugin_events[name] = self.plugin_events.get(name, frozenset()) | events
        self.pods_api = client.resource("v1", "Pod")
        self.factory = InformerFactory(client)
        self.nodes = self.factory.informer("v1", "Node")
        self.pods = self.factory.informer("v1", "Pod")
        self.priority_classes = self.factory.informer("scheduling.k8s.io/v1", "PriorityClass")
        # kept by the thousand, never read here: dropped as they arrive (kube-scheduler too)
        self.nodes.transform = self.pods.transform = drop_managed_fields
        self.informers = [self.nodes, self.priority_classes]  # the pods start after the classes
        self.cache = Cache(self.settings.assumedPodTTL)
        self.snapshot = Snapshot()
        self.queue = self._new_queue()
        self.recorder = EventRecorder(client, DEFAULT_SCHEDULER, self.identity)
        self.waiting: dict[str, _WaitingPod] = {}
        self.stats = {"attempts": 0, "scheduled": 0, "unschedulable": 0, "errors": 0,
                      "bind_failures": 0, "preemptions": 0}
        self.ready = asyncio.Event()
        self._bind_tasks: set[asyncio.Task] = set()
        self._status_desired: dict[str, tuple] = {}
        self._status_workers: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        for fw in self.frameworks.values():
            fw.handle = _Handle(self, fw)
            for p in fw.handle_aware:
                p.plugin.set_handle(fw.handle)
        self.nodes.add_handlers(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.pods.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)

    def _new_queue(self) -> SchedulingQueue:
        s = self.settings
        return SchedulingQueue(self._less, initial_backoff=s.podInitialBackoffSeconds,
                               max_backoff=s.podMaxBackoffSeconds,
                               max_unschedulable=s.podMaxInUnschedulablePodsDuration,
                               plugin_events=self.plugin_events)

    @classmethod
    def from_config(cls, config: Config, client: Any, *, profiles: list[str] | None = None,
                    identity: str | None = None) -> "Scheduler":
        """Load the scheduler plugins of ``config`` (only the ``scheduler`` section and the
        broadcast plugins: a scheduler process never constructs the store or the runtime)
        and build a Scheduler for ``profiles`` (default: ``components.scheduler.profiles``,
        else every profile)."""
        from pilothouse.plugins import load_plugins
        s = read_settings(config)
        wanted = list(profiles or s.profiles or [])
        doc: dict = {"base": "none",
                     "scheduler": config.raw.get("scheduler") or {"profiles": []}}
        if config.raw.get("plugins"):
            doc["plugins"] = config.raw["plugins"]
        sched = doc["scheduler"]
        known = [p.get("schedulerName") for p in sched.get("profiles") or []]
        missing = [w for w in wanted if w not in known]
        if missing:
            raise ConfigError([f"components.scheduler.profiles: no profile named {m!r}; "
                               f"profiles are: {', '.join(known) or 'none'}"
                               for m in missing], config.source)
        if wanted:
            doc["scheduler"] = {**sched, "profiles": [p for p in sched.get("profiles") or []
                                                      if p.get("schedulerName") in wanted]}
        loaded = load_plugins(parse_config(doc, config.source))
        profs = {name: [ProfilePlugin(lp.ref.name, lp.instance, lp.ref.weight) for lp in lps]
                 for name, lps in loaded.profiles.items()}
        return cls(client, profs, s, pm=loaded.pm, identity=identity)

    # ---------------------------------------------------------------- priorities

    def _resolve(self, pod: dict) -> dict:
        """``pod`` with ``spec.priority`` (and ``preemptionPolicy``) resolved from its
        PriorityClass when admission did not (a private copy; the original is untouched)."""
        spec = pod.get("spec") or {}
        if spec.get("priority") is not None:
            return pod
        name = spec.get("priorityClassName")
        value, policy = 0, None
        if name:
            pc = self.priority_classes.get(name)
            if pc is not None:
                value, policy = pc.get("value") or 0, pc.get("preemptionPolicy")
            else:
                value = SYSTEM_PRIORITY_CLASSES.get(name, 0)
        else:
            for pc in self.priority_classes.cache.values():
                if pc.get("globalDefault"):
                    value, policy = pc.get("value") or 0, pc.get("preemptionPolicy")
                    break
        new_spec = dict(spec)
        new_spec["priority"] = value
        if policy and not spec.get("preemptionPolicy"):
            new_spec["preemptionPolicy"] = policy
        out = dict(pod)
        out["spec"] = new_spec
        return out

    def _responsible(self, pod: dict) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER) \
            in self.frameworks

    # ---------------------------------------------------------------- informer handlers

    def _on_node_add(self, node: dict) -> None:
        self.cache.add_node(node)
        self.queue.move_all("Node/Add")

    def _on_node_update(self, old: dict, new: dict) -> None:
        events = node_update_events(old, new)
        if events or (old.get("status") or {}).get("images") != \
                (new.get("status") or {}).get("images"):
            self.cache.update_node(new)
        else:
            info = self.cache.infos.get(new["metadata"]["name"])
            if info is not None:
                info.node = new  # nothing scheduling reads changed: no snapshot copy needed
            else:
                self.cache.add_node(new)
        if events:
            self.queue.move_all(*events)

    def _on_node_delete(self, node: dict) -> None:
        self.cache.remove_node(node)
        self.queue.move_all("Node/Delete")

    def _on_pod_add(self, pod: dict) -> None:
        if _assigned(pod):
            self.queue.delete(pod)
            if not _terminal(pod):
                self.cache.add_pod(self._resolve(pod))
                self.queue.move_all("Pod/Add")
        elif self._responsible(pod) and not _deleting(pod):
            self.queue.add(self._resolve(pod))

    def _on_pod_update(self, old: dict, new: dict) -> None:
        if _assigned(new):
            if not _assigned(old):
                self.queue.delete(new)
            if _terminal(new):
                if _assigned(old) and not _terminal(old):
                    self.cache.remove_pod(new)
                    self.queue.move_all("Pod/Delete")
                return
            self.cache.update_pod(self._resolve(new))
            if not _assigned(old):
                self.queue.move_all("Pod/Add")
            elif _labels(old) != _labels(new):
                self.queue.move_all("Pod/Update")
        elif self._responsible(new) and not _deleting(new):
            self.queue.update(old, self._resolve(new))
        else:
            self.queue.delete(new)

    def _on_pod_delete(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid")
        waiting = self.waiting.get(uid) if uid else None
        if waiting is not None:
            waiting.reject("pod deleted while waiting for permit")
        if _assigned(pod) or self.cache.node_of(pod) is not None:
            self.cache.remove_pod(pod)
            self.queue.move_all("Pod/Delete")
        self.queue.delete(pod)

    # ---------------------------------------------------------------- scheduling cycle

    async def _schedule_loop(self) -> None:
        while True:
            qp = await self.queue.pop()
            if qp is None:
                return
            try:
                await self._schedule_one(qp)
            except asyncio.CancelledError:
                if qp.where == IN_FLIGHT and not self.cache.is_assumed(qp.pod):
                    self.queue.add_backoff(qp)
                raise
            except Exception as exc:
                log.exception("scheduling %s failed", qp.key)
                self.stats["errors"] += 1
                self._fail(qp, f"internal error: {exc}", frozenset(), error=True)
            await asyncio.sleep(0)  # let watches and binds run between cycles

    async def _schedule_one(self, qp: QueuedPod) -> None:
        pod = qp.pod
        fw = self.frameworks.get((pod.get("spec") or {}).get("schedulerName")
                                 or DEFAULT_SCHEDULER)
        if fw is None or _assigned(pod) or _deleting(pod) or self.cache.node_of(pod):
            self.queue.done(qp)
            return
        self.stats["attempts"] += 1
        self.cache.update_snapshot(self.snapshot)
        state = CycleState()
        try:
            node = await self._schedule_pod(fw, state, pod)
        except FitError as fit:
            await self._post_filter(fw, state, qp, fit)
            return
        except _CycleError as exc:
            self.stats["errors"] += 1
            self._fail(qp, exc.status.message or "scheduler error", frozenset(), error=True)
            return
        assumed = dict(pod)
        assumed["spec"] = {**pod["spec"], "nodeName": node}
        self.cache.assume_pod(assumed, node)
        # (no coroutine for an extension point without plugins: the same answers)
        status = await fw.run_reserve(state, assumed, node) if fw.reserve else _OK
        if status.ok and fw.permit:
            status, waits = await fw.run_permit(state, assumed, node)
        if not status.ok and status.code is not Code.WAIT:
            await fw.run_unreserve(state, assumed, node)
            self.cache.forget_pod(assumed)
            self.queue.move_all("Pod/Delete")
            error = status.code is Code.ERROR
            self._fail(qp, status.message or f"rejected by {status.plugin}",
                       frozenset([status.plugin]) if status.plugin else frozenset(),
                       error=error)
            return
        waiting = None
        if status.code is Code.WAIT:
            waiting = _WaitingPod(assumed, waits)
            self.waiting[pod["metadata"].get("uid") or qp.key] = waiting
        self.queue.nominator.delete(pod)
        task = asyncio.create_task(self._binding_cycle(fw, state, qp, assumed, node, waiting),
                                   name=f"bind {qp.key}")
        self._bind_tasks.add(task)
        task.add_done_callback(self._bind_tasks.discard)

    async def _schedule_pod(self, fw: Framework, state: CycleState, pod: dict) -> str:
        nodes = self.snapshot.nodes
        if not nodes:
            raise FitError(0, {})
        status = await fw.run_pre_filter(state, pod, nodes)
        if not status.ok:
            if status.code is Code.ERROR:
                raise _CycleError(status)
            raise FitError(len(nodes), {n.name: status for n in nodes},
                           pre_filter_msg=status.message)
        feasible: list[NodeInfo] = []
        statuses: dict = {}
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and nominated in self.snapshot.by_name:
            # try the node preemption made room on first (kube's evaluateNominatedNode)
            info = self.snapshot.by_name[nominated]
            st = fw.filter_node(state, pod, info, self.queue.nominator.pods_on(nominated)) \
                if not fw.filter_async else await fw.filter_node_async(
                    state, pod, info, self.queue.nominator.pods_on(nominated))
            if st.ok:
                feasible = [info]
        if not feasible:
            feasible, statuses = await fw.find_feasible(
                state, pod, nodes, self.queue.nominator, self.settings.percentageOfNodesToScore,
                snapshot=self.snapshot)
        if not feasible:
            errs = [s for s in statuses.values() if s.code is Code.ERROR]
            if errs:
                raise _CycleError(errs[0])
            raise FitError(len(nodes), statuses)
        if len(feasible) == 1:
            return feasible[0].name
        status, skip = await fw.run_pre_score(state, pod, feasible)
        if not status.ok:
            raise _CycleError(status)
        return await fw.select(state, pod, feasible, skip)

    async def _post_filter(self, fw: Framework, state: CycleState, qp: QueuedPod,
                           fit: FitError) -> None:
        nominated = None
        plugins = fit.plugins()
        if fw.post_filter and fit.num_all_nodes:
            status, nominated = await fw.run_post_filter(state, qp.pod, fit.statuses)
            if status.code is Code.SUCCESS and nominated:
                self.stats["preemptions"] += 1
            elif status.reasons:
                fit.post_filter_msg = status.message
                nominated = None
        message = fit.message()
        self.stats["unschedulable"] += 1
        if self.pm is not None:
            try:
                self.pm.hook.pilothouse_pod_unschedulable(pod=qp.pod, message=message,
                                                          profile=fw.profile)
            except Exception:
                log.exception("pilothouse_pod_unschedulable hook failed")
        self._fail(qp, message, plugins, nominated=nominated)

    def _fail(self, qp: QueuedPod, message: str, plugins: frozenset[str], *,
              error: bool = False, nominated: str | None = None,
              reason: str | None = None) -> None:
        """Requeue the pod and tell the user (condition, event) in the background."""
        pod = qp.pod
        if nominated:
            self.queue.nominator.add(pod, nominated)
        if error:
            self.queue.add_backoff(qp)
        else:
            self.queue.add_unschedulable(qp, plugins)
        current = self.pods.get(object_key(pod))
        if current is None or _assigned(current):
            return  # gone, or bound meanwhile (by us through another path, or a rival)
        reason = reason or ("SchedulerError" if error else "Unschedulable")
        message = truncate(message)
        self.recorder.record(pod, "Warning", "FailedScheduling", message,
                             component=(pod.get("spec") or {}).get("schedulerName")
                             or DEFAULT_SCHEDULER)
        self._write_status(pod, reason, message, nominated)

    # ---------------------------------------------------------------- binding cycle

    async def _binding_cycle(self, fw: Framework, state: CycleState, qp: QueuedPod,
                             assumed: dict, node: str, waiting: _WaitingPod | None) -> None:
        uid = assumed["metadata"].get("uid") or qp.key
        try:
            status = Status()
            if waiting is not None:
                status = await waiting.future
                self.waiting.pop(uid, None)
            if status.ok and fw.pre_bind:
                status = await fw.run_pre_bind(state, assumed, node)
            if status.ok:
                status = await fw.run_bind(state, assumed, node, self.client)
        except asyncio.CancelledError:
            self.waiting.pop(uid, None)
            await fw.run_unreserve(state, assumed, node)
            self.cache.forget_pod(assumed)
            raise
        except Exception as exc:
            log.exception("binding %s to %s failed", qp.key, node)
            status = Status.error(f"{type(exc).__name__}: {exc}")
        if not status.ok:
            self.stats["bind_failures"] += 1
            await fw.run_unreserve(state, assumed, node)
            self.cache.forget_pod(assumed)
            self.queue.move_all("Pod/Delete")
            if status.plugin in self._bind_plugins(fw) and status.code is not Code.ERROR:
                # lost a race (409: the pod already has a node): follow the informer, which
                # will show where it went; retry after back-off if it does not
                log.info("binding %s to %s lost: %s", qp.key, node, status.message)
                self.queue.add_backoff(qp)
            elif status.code is Code.ERROR or status.plugin in self._bind_plugins(fw):
                self._fail(qp, f"Binding rejected: {status.message}", frozenset(), error=True)
            else:
                self._fail(qp, status.message or "rejected before binding",
                           frozenset([status.plugin]) if status.plugin else frozenset())
            return
        self.cache.finish_binding(assumed)
        self.queue.done(qp)
        self.stats["scheduled"] += 1
        meta = assumed["metadata"]
        self.recorder.record(assumed, "Normal", "Scheduled",
                             f"Successfully assigned {meta.get('namespace')}/{meta['name']} "
                             f"to {node}", action="Binding", component=fw.profile)
        if fw.post_bind:
            await fw.run_post_bind(state, assumed, node)
        # (a hook without implementations is not called: pluggy's call costs more than the
        # look whether there are any, once per bound pod)
        if self.pm is not None and self.pm.hook.pilothouse_pod_scheduled.get_hookimpls():
            try:
                self.pm.hook.pilothouse_pod_scheduled(pod=assumed, node_name=node,
                                                      profile=fw.profile)
            except Exception:
                log.exception("pilothouse_pod_scheduled hook failed")

    @staticmethod
    def _bind_plugins(fw: Framework) -> set[str]:
        return {name for name, _ in fw.bind}

    # ---------------------------------------------------------------- status writes

    def _write_status(self, pod: dict, reason: str, message: str,
                      nominated: str | None) -> None:
        key = pod_key(pod)
        self._status_desired[key] = (pod, reason, message, nominated)
        if key not in self._status_workers:
            task = asyncio.create_task(self._status_worker(key), name=f"status {key}")
            self._status_workers[key] = task

    async def _status_worker(self, key: str) -> None:
        try:
            while key in self._status_desired:
                pod, reason, message, nominated = self._status_desired.pop(key)
                try:
                    await self._patch_status(pod, reason, message, nominated)
                except errors.NotFound:
                    pass
                except errors.StatusError as exc:
                    log.info("cannot update status of %s: %s", key, exc)
        finally:
            self._status_workers.pop(key, None)

    async def _patch_status(self, pod: dict, reason: str, message: str,
                            nominated: str | None) -> None:
        """PodScheduled=False (and ``nominatedNodeName``) through pods/status, with the
        resourceVersion as a precondition: a pod bound meanwhile (by us or a rival) must
        never be marked unschedulable."""
        meta = pod["metadata"]
        current = self.pods.get(object_key(pod)) or pod
        for _ in range(5):
            if _assigned(current) or _deleting(current) or \
                    current["metadata"].get("uid") != meta.get("uid"):
                return
            status = current.get("status") or {}
            cond = next((c for c in status.get("conditions") or []
                         if c.get("type") == "PodScheduled"), None)
            same = cond is not None and cond.get("status") == "False" and \
                cond.get("reason") == reason and cond.get("message") == message
            if same and (nominated is None or status.get("nominatedNodeName") == nominated):
                return
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            transition = cond.get("lastTransitionTime") if cond is not None and \
                cond.get("status") == "False" else now
            patch: dict = {
                "metadata": {"resourceVersion": current["metadata"].get("resourceVersion")},
                "status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": reason,
                    "message": message, "lastProbeTime": None,
                    "lastTransitionTime": transition or now}]}}
            if nominated is not None:
                patch["status"]["nominatedNodeName"] = nominated
            try:
                await self.pods_api.patch(meta["name"], patch, meta.get("namespace"),
                                          content_type=STRATEGIC, subresource="status")
                return
            except errors.Conflict:
                current = await self.pods_api.get(meta["name"], meta.get("namespace"))

    # ---------------------------------------------------------------- life cycle

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.cache.cleanup_expired():
                self.queue.move_all("Pod/Delete")

    async def _sync_informers(self) -> None:
        # The pod handlers resolve priorities, so PriorityClasses sync first (a short list);
        # the pods are then listed while the nodes still are: the API server serves one
        # list's pages while this process decodes the other's (a pod can arrive before its
        # node: the cache keeps a NodeInfo without a Node until the node comes).
        for inf in self.informers:
            inf.start()
        await self.priority_classes.synced.wait()
        self.pods.start()
        await asyncio.gather(*(i.synced.wait() for i in [*self.informers, self.pods]))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (forever without one)."""
        stop = stop or asyncio.Event()
        self._stop = stop
        self.recorder.start()
        housekeeping = asyncio.create_task(self._housekeeping(), name="scheduler housekeeping")
        try:
            await self._sync_informers()
            self.ready.set()
            log.info("scheduler %s serving profiles %s", self.identity,
                     ", ".join(self.frameworks))
            if self.settings.leaderElect:
                s = self.settings
                elector = LeaderElector(self.client, s.leaseName, self.identity,
                                        namespace=s.leaseNamespace,
                                        lease_duration=s.leaseDuration,
                                        renew_deadline=s.renewDeadline,
                                        retry_period=s.retryPeriod)
                self.elector = elector
                await elector.run(lambda: self._lead(stop), stop)
            else:
                await self._lead(stop)
        finally:
            housekeeping.cancel()
            self.queue.close()
            if self._bind_tasks:  # binds in flight get a moment to finish, then stop
                await asyncio.wait(list(self._bind_tasks), timeout=5.0)
            for task in list(self._bind_tasks):
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            for task in list(self._status_workers.values()):
                task.cancel()
            await self.recorder.stop()
            await self.factory.stop()

    async def _lead(self, stop: asyncio.Event) -> None:
        if self.queue._closed:
            self.queue = self._rebuild_queue()
        loop_task = asyncio.create_task(self._schedule_loop(), name="scheduling loop")
        stop_task = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([loop_task, stop_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop_task.cancel()
            stop_task.cancel()
            for t in (loop_task, stop_task):
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        if loop_task.done() and not loop_task.cancelled() and loop_task.exception():
            raise loop_task.exception()

    def _rebuild_queue(self) -> SchedulingQueue:
        queue = self._new_queue()
        for pod in self.pods.list():
            if not _assigned(pod) and self._responsible(pod) and not _deleting(pod) \
                    and self.cache.node_of(pod) is None:
                queue.add(self._resolve(pod))
        return queue

    async def start(self, timeout: float = 30.0) -> "Scheduler":
        """Run in a background task; return once the informers have synced."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name="scheduler")
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait([ready, self._task], timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()
        if ready not in done:
            ready.cancel()
            raise TimeoutError("the scheduler's informers did not sync")
        return self

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None


_OK = Status()


class _CycleError(Exception):
    def __init__(self, status: Status):
        self.status = status
        super().__init__(status.message)


async def run_scheduler(config: Config, client: Any, *, profiles: list[str] | None = None,
                        identity: str | None = None,
                        stop: asyncio.Event | None = None) -> None:
    """Run the scheduler host for ``config`` against the API server ``client`` talks to,
    until ``stop`` is set (forever without one). ``profiles`` limits it to those
    schedulerNames (default: ``components.scheduler.profiles``, else all)."""
    sched = Scheduler.from_config(config, client, profiles=profiles, identity=identity)
    await sched.run(stop)
