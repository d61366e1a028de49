"""The node lifecycle controller: notices nodes whose agent went silent, taints them, and
evicts their pods.

* Heartbeats are the node's Lease in ``kube-node-lease`` (``spec.renewTime``) and its Ready
  condition's ``lastHeartbeatTime``. When neither changed for ``nodeMonitorGracePeriod``
  seconds (``nodeStartupGracePeriod`` for a node that never reported Ready) — measured on
  this controller's clock, from when it last saw one change — the Ready, MemoryPressure,
  DiskPressure and PIDPressure conditions become Unknown (reason NodeStatusUnknown, "Kubelet
  stopped posting node status.") and the node's pods are marked not Ready.
* Taints follow the Ready condition: Unknown → ``node.kubernetes.io/unreachable``, False →
  ``node.kubernetes.io/not-ready``, each with effects NoSchedule and NoExecute (with
  ``timeAdded``); True → neither.
* Pods on a node with NoExecute taints are deleted when a taint is not tolerated, or when
  the shortest ``tolerationSeconds`` of the tolerations used has passed since the taint was
  added. A pod without any toleration for not-ready/unreachable gets
  ``defaultTolerationSeconds`` (300, what Kubernetes' DefaultTolerationSeconds admission
  would have given it).

A restarted controller starts every node's silence clock afresh (a new grace period), and
recomputes taints and eviction times from the API alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime

from pilothouse.controllers import QueueController
from pilothouse.model import errors

from pilothouse_controllers import common

LEASE_NAMESPACE = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
NODE_INDEX = "pilothouse-controllers/node-name"
WATCHED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def pod_node(pod: dict) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def ready_status(node: dict) -> str | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status")
    return None


def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' ToleratesTaint."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if not key and op != "Exists":
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def wanted_taints(node: dict, now: str) -> list[dict]:
    """The node's taints with not-ready/unreachable set from its Ready condition (kept
    as they are, with their timeAdded, when already right)."""
    current = list((node.get("spec") or {}).get("taints") or [])
    status = ready_status(node)
    key = UNREACHABLE if status == "Unknown" else NOT_READY if status == "False" else None
    out = [t for t in current if t.get("key") not in (UNREACHABLE, NOT_READY)
           or t.get("key") == key]
    if key is not None:
        for effect in ("NoSchedule", "NoExecute"):
            if not any(t.get("key") == key and t.get("effect") == effect for t in out):
                taint = {"key": key, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = now
                out.append(taint)
    return out


def eviction_delay(pod: dict, taints: list[dict], default_seconds: int,
                   now: datetime.datetime) -> float | None:
    """Seconds until ``pod`` must be evicted for the node's NoExecute ``taints`` (0: now;
    None: never)."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    delay: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            if taint.get("key") not in (UNREACHABLE, NOT_READY):
                return 0.0
            used = [{"tolerationSeconds": default_seconds}]
        bounded = [t["tolerationSeconds"] for t in used
                   if t.get("tolerationSeconds") is not None]
        if not bounded:
            continue  # tolerated forever
        seconds = min(bounded)
        added = common.parse_time(taint.get("timeAdded")) or now
        left = max(0.0, (added + datetime.timedelta(seconds=max(0, seconds)) - now)
                   .total_seconds())
        delay = left if delay is None else min(delay, left)
    return delay


def unknown_conditions(node: dict, now: str) -> tuple[list[dict], bool]:
    """The node's conditions with Ready and the pressure conditions set to Unknown;
    (conditions, changed)."""
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    changed = False
    seen = {c.get("type") for c in conditions}
    for c in conditions:
        if c.get("type") in WATCHED_CONDITIONS and c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.", lastTransitionTime=now)
            changed = True
    for ctype in WATCHED_CONDITIONS:
        if ctype not in seen:
            conditions.append({"type": ctype, "status": "Unknown",
                               "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": now, "lastTransitionTime": now})
            changed = True
    return conditions, changed


@dataclasses.dataclass
class _Health:
    signature: tuple
    seen_at: float


class NodeLifecycleController(QueueController):
    """Entry point ``nodelifecycle``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 2
        #: seconds between checks of every node
        nodeMonitorPeriod: float = 5.0
        #: silence after which a node that reported Ready becomes Unknown
        nodeMonitorGracePeriod: float = 50.0
        #: the same for a node that never reported Ready
        nodeStartupGracePeriod: float = 60.0
        #: tolerationSeconds for pods without a not-ready/unreachable toleration
        defaultTolerationSeconds: int = 300
        #: set the Ready condition of the pods of an Unknown node to False
        markPodsNotReady: bool = True

    def __init__(self, options: "NodeLifecycleController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers
        self.health: dict[str, _Health] = {}

    def setup(self) -> None:
        self.nodes = self.watch("v1", "Node")
        self.leases = self.watch("coordination.k8s.io/v1", "Lease", namespace=LEASE_NAMESPACE,
                                 keys=lambda lease: [common.meta(lease)["name"]])
        self.pods = self.watch("v1", "Pod", keys=pod_node)
        self.pods.add_index(NODE_INDEX, pod_node)
        self.node_api = self.client.resource("v1", "Node")
        self.pod_api = self.client.resource("v1", "Pod")
        self.health.clear()  # a new leader gives every node a fresh grace period

    async def reconcile(self, name: str) -> float | None:
        node = self.nodes.get(name)
        if node is None:
            self.health.pop(name, None)
            return None
        loop = asyncio.get_running_loop()
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), None)
        signature = (((lease or {}).get("spec") or {}).get("renewTime"),
                     (ready or {}).get("lastHeartbeatTime"))
        h = self.health.get(name)
        if h is None or h.signature != signature:
            h = self.health[name] = _Health(signature, loop.time())
        grace = self.options.nodeMonitorGracePeriod if ready is not None else \
            self.options.nodeStartupGracePeriod
        silent = loop.time() - h.seen_at
        next_check = self.options.nodeMonitorPeriod
        now = common.now()
        stamp = common.fmt_time(now)
        if silent > grace:
            conditions, changed = unknown_conditions(node, stamp)
            if changed:
                updated = common.deep(node)
                updated.setdefault("status", {})["conditions"] = conditions
                node = await self.node_api.update_status(updated)
                self.event(node, "Normal", "NodeNotReady",
                           f"Node {name} status is now: NodeNotReady")
                if self.options.markPodsNotReady:
                    await self._mark_pods_not_ready(name)
        else:
            next_check = min(next_check, grace - silent + 0.05)
        taints = wanted_taints(node, stamp)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            updated = common.deep(node)
            updated.setdefault("spec", {})["taints"] = taints
            if not taints:
                updated["spec"].pop("taints")
            node = await self.node_api.update(updated)
        evict_in = await self._evict(name, taints, now)
        if evict_in is not None:
            next_check = min(next_check, evict_in + 0.05)
        return max(0.01, next_check)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        stamp = common.fmt_time()
        for pod in self.pods.by_index(NODE_INDEX, node_name):
            if common.terminal(pod) or not common.pod_ready(pod):
                continue
            updated = common.deep(pod)
            for c in updated["status"]["conditions"]:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=stamp)
            try:
                await self.pod_api.update_status(updated)
            except (errors.NotFound, errors.Conflict):
                self.enqueue(node_name, 0.2)  # try again with fresh state

    async def _evict(self, node_name: str, taints: list[dict],
                     now: datetime.datetime) -> float | None:
        if not any(t.get("effect") == "NoExecute" for t in taints):
            return None
        soonest = None
        for pod in self.pods.by_index(NODE_INDEX, node_name):
            if common.deleting(pod) or common.terminal(pod):
                continue
            delay = eviction_delay(pod, taints, self.options.defaultTolerationSeconds, now)
            if delay is None:
                continue
            if delay > 0:
                soonest = delay if soonest is None else min(soonest, delay)
                continue
            m = common.meta(pod)
            try:
                await self.pod_api.delete(m["name"], m.get("namespace"),
                                          preconditions={"uid": m.get("uid")})
                self.event(pod, "Normal", "TaintManagerEviction",
                           f"Marking for deletion Pod {m.get('namespace')}/{m['name']}")
            except (errors.NotFound, errors.Conflict):
                pass
        return soonest
