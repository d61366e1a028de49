"""Pod garbage collection, every ``gcPeriodSeconds``:

* finished pods (Succeeded/Failed) beyond ``terminatedPodThreshold`` are deleted, oldest
  first;
* orphaned pods — bound to a node that does not exist — are deleted at once (grace 0) once
  the node has been missing for ``orphanQuarantineSeconds`` and a live read confirms it;
* pods being deleted that were never scheduled, and pods being deleted on a not-Ready node
  tainted ``node.kubernetes.io/out-of-service``, are deleted at once (nobody else will
  confirm their deletion).
"""

from __future__ import annotations

import asyncio
import dataclasses

from pilothouse.controllers import QueueController
from pilothouse.model import errors

from pilothouse_controllers import common
from pilothouse_controllers.nodelifecycle import ready_status

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
GC_KEY = "podgc"


def terminated_to_delete(pods: list[dict], threshold: int) -> list[dict]:
    """The oldest finished pods beyond ``threshold`` (0 disables)."""
    if threshold <= 0:
        return []
    done = [p for p in pods if common.terminal(p)]
    excess = len(done) - threshold
    if excess <= 0:
        return []
    done.sort(key=lambda p: (common.meta(p).get("creationTimestamp") or "",
                             common.meta(p).get("name")))
    return done[:excess]


class PodGCController(QueueController):
    """Entry point ``podgc``."""

    @dataclasses.dataclass
    class Options:
        #: finished pods kept at most (Kubernetes: 12500); 0 keeps them all
        terminatedPodThreshold: int = 12500
        gcPeriodSeconds: float = 20.0
        #: how long a pod's node must be missing before the pod is removed
        orphanQuarantineSeconds: float = 40.0

    def __init__(self, options: "PodGCController.Options | None" = None):
        self.options = options or self.Options()
        self.missing_since: dict[str, float] = {}  # node name → when first seen missing

    def setup(self) -> None:
        self.pods = self.watch("v1", "Pod", keys=None)
        self.nodes = self.watch("v1", "Node", keys=None)
        self.pod_api = self.client.resource("v1", "Pod")
        self.node_api = self.client.resource("v1", "Node")

    def initial_keys(self):
        return [GC_KEY]

    async def reconcile(self, key: str) -> float | None:
        pods = self.pods.list()
        for pod in terminated_to_delete(pods, self.options.terminatedPodThreshold):
            await self._force_delete(pod)
        await self._orphans(pods)
        for pod in pods:
            if not common.deleting(pod):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            node = self.nodes.get(node_name) if node_name else None
            if not node_name or (node is not None and ready_status(node) != "True" and any(
                    t.get("key") == OUT_OF_SERVICE
                    for t in (node.get("spec") or {}).get("taints") or [])):
                await self._force_delete(pod)
        return self.options.gcPeriodSeconds

    async def _orphans(self, pods: list[dict]) -> None:
        now = asyncio.get_running_loop().time()
        missing = {(p.get("spec") or {}).get("nodeName") for p in pods} - {None, ""}
        missing = {n for n in missing if self.nodes.get(n) is None}
        for n in list(self.missing_since):
            if n not in missing:
                del self.missing_since[n]
        for n in missing:
            self.missing_since.setdefault(n, now)
        confirmed = set()
        for n in missing:
            if now - self.missing_since[n] < self.options.orphanQuarantineSeconds:
                continue
            try:
                await self.node_api.get(n)
            except errors.NotFound:
                confirmed.add(n)
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") in confirmed:
                await self._force_delete(pod)

    async def _force_delete(self, pod: dict) -> None:
        m = common.meta(pod)
        try:
            await self.pod_api.delete(m["name"], m.get("namespace"), grace_period_seconds=0,
                                      preconditions={"uid": m.get("uid")})
        except (errors.NotFound, errors.Conflict):
            pass
