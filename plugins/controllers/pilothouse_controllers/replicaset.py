"""The ReplicaSet controller: keeps ``spec.replicas`` pods matching the selector, adopts
orphans and releases pods that stopped matching (ownerReferences), and reports replicas,
fullyLabeledReplicas, readyReplicas, availableReplicas (ready for minReadySeconds) and
observedGeneration, plus a ReplicaFailure condition when pods cannot be created."""

from __future__ import annotations

import asyncio
import dataclasses

from pilothouse.client import object_key
from pilothouse.controllers import QueueController
from pilothouse.model import errors
from pilothouse.model.meta import controller_ref, owner_reference

from pilothouse_controllers import common

NS_INDEX = "pilothouse-controllers/namespace"


def by_namespace(obj: dict) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


def _epoch(text: str | None) -> float:
    t = common.parse_time(text)
    return t.timestamp() if t else 0.0


def deletion_order(pods: list[dict], colocated: dict[str, int] | None = None) -> list[dict]:
    """Pods in the order a ReplicaSet scales down (Kubernetes' ActivePodsWithRanks): not yet
    scheduled, then pending before unknown before running, not ready before ready, more
    pods of the same owner on the node first, ready for less time, more restarts, newer."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
    colocated = colocated or {}

    def key(pod: dict):
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName") or ""
        ready = common.pod_ready(pod)
        since = _epoch((common.ready_condition(pod) or {}).get("lastTransitionTime")) \
            if ready else 0.0
        restarts = sum(int(c.get("restartCount") or 0)
                       for c in status.get("containerStatuses") or [])
        return (1 if node else 0, phase_rank.get(status.get("phase") or "Pending", 0),
                1 if ready else 0, -colocated.get(node, 0) if node else 0, -since, -restarts,
                -_epoch((pod.get("metadata") or {}).get("creationTimestamp")))
    return sorted(pods, key=key)


def pod_from_template(rs: dict) -> dict:
    m, template = rs["metadata"], (rs.get("spec") or {}).get("template") or {}
    tm = template.get("metadata") or {}
    pod_meta = {"generateName": f"{m['name']}-", "namespace": m.get("namespace"),
                "labels": dict(tm.get("labels") or {}),
                "ownerReferences": [owner_reference({**rs, "apiVersion": "apps/v1",
                                                     "kind": "ReplicaSet"})]}
    if tm.get("annotations"):
        pod_meta["annotations"] = dict(tm["annotations"])
    if tm.get("finalizers"):
        pod_meta["finalizers"] = list(tm["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": common.deep(template.get("spec") or {})}


class ReplicaSetController(QueueController):
    """Entry point ``replicaset``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 5
        #: at most this many pods created or deleted per reconcile (Kubernetes: 500)
        burstReplicas: int = 500

    def __init__(self, options: "ReplicaSetController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers

    def setup(self) -> None:
        self.rss = self.watch("apps/v1", "ReplicaSet")
        self.rss.add_index(NS_INDEX, by_namespace)
        self.pods = self.watch("v1", "Pod", keys=self._pod_keys)
        self.pods.add_index(NS_INDEX, by_namespace)
        self.namespaces = self.watch("v1", "Namespace", keys=None)
        self.rs_api = self.client.resource("apps/v1", "ReplicaSet")
        self.pod_api = self.client.resource("v1", "Pod")

    def _pod_keys(self, pod: dict) -> list[str]:
        ns = pod["metadata"].get("namespace") or ""
        ref = controller_ref(pod)
        if ref is not None:
            return [f"{ns}/{ref['name']}"] if ref.get("kind") == "ReplicaSet" else []
        labels = pod["metadata"].get("labels") or {}
        out = []
        for rs in self.rss.by_index(NS_INDEX, ns):
            sel = common.selector_of(rs)
            if sel is not None and sel.matches(labels):
                out.append(object_key(rs))
        return out

    async def reconcile(self, key: str) -> float | None:
        rs = self.rss.get(key)
        if rs is None:
            return None  # its pods go with the garbage collector
        ns, name = rs["metadata"].get("namespace"), rs["metadata"]["name"]
        selector = common.selector_of(rs)

        async def fresh():
            try:
                return await self.rs_api.get(name, ns)
            except errors.NotFound:
                return None
        candidates = [p for p in self.pods.by_index(NS_INDEX, ns) if common.active_pod(p)]
        owned = await common.claim(rs, "apps/v1", "ReplicaSet", candidates, selector,
                                   self.pod_api, fresh)
        failure: Exception | None = None
        if selector is not None and not common.deleting(rs):
            try:
                if await self._manage(rs, owned):
                    owned = [p for p in self._owned(rs) if common.active_pod(p)]
            except errors.StatusError as exc:
                failure = exc
        requeue = await self._update_status(rs, owned, failure)
        if failure is not None:
            raise failure
        return requeue

    def _owned(self, rs: dict) -> list[dict]:
        uid = rs["metadata"].get("uid")
        return [p for p in self.pods.by_index(NS_INDEX, rs["metadata"].get("namespace") or "")
                if (controller_ref(p) or {}).get("uid") == uid]

    async def _manage(self, rs: dict, owned: list[dict]) -> bool:
        """Create or delete pods toward spec.replicas; True when something was written."""
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(owned) - want
        ns = rs["metadata"].get("namespace")
        if diff < 0:
            if common.ns_terminating(self.namespaces, ns):
                return False
            missing = min(-diff, self.options.burstReplicas)
            created: list[str] = []
            batch, first_error = 1, None
            while missing > 0 and first_error is None:  # slow start: 1, 2, 4, ...
                size = min(batch, missing)
                results = await asyncio.gather(
                    *(self.pod_api.create(pod_from_template(rs), ns) for _ in range(size)),
                    return_exceptions=True)
                for r in results:
                    if isinstance(r, BaseException):
                        first_error = first_error or r
                    else:
                        created.append(object_key(r))
                missing -= size
                batch *= 2
            if created:
                self.event(rs, "Normal", "SuccessfulCreate",
                           f"Created pod{'s' if len(created) > 1 else ''}: "
                           f"{', '.join(k.split('/', 1)[1] for k in created)}")
                await self.wait_for(lambda: all(k in self.pods.cache for k in created))
            if first_error is not None:
                self.event(rs, "Warning", "FailedCreate",
                           f"Error creating: {first_error}")
                raise first_error
            return bool(created)
        if diff > 0:
            count = min(diff, self.options.burstReplicas)
            colocated: dict[str, int] = {}
            for p in owned:
                node = (p.get("spec") or {}).get("nodeName")
                if node:
                    colocated[node] = colocated.get(node, 0) + 1
            victims = deletion_order(owned, colocated)[:count]
            results = await asyncio.gather(
                *(self.pod_api.delete(p["metadata"]["name"], ns,
                                      preconditions={"uid": p["metadata"]["uid"]})
                  for p in victims), return_exceptions=True)
            errs = [r for r in results if isinstance(r, BaseException)
                    and not isinstance(r, errors.NotFound)]
            keys = [object_key(p) for p in victims]
            self.event(rs, "Normal", "SuccessfulDelete",
                       f"Deleted pod{'s' if len(keys) > 1 else ''}: "
                       f"{', '.join(k.split('/', 1)[1] for k in keys)}")
            await self.wait_for(lambda: all(
                self.pods.get(k) is None or not common.active_pod(self.pods.get(k))
                for k in keys))
            if errs:
                raise errs[0]
            return True
        return False

    async def _update_status(self, rs: dict, owned: list[dict],
                             failure: Exception | None) -> float | None:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get(
            "labels") or {}
        at = common.now()
        ready = available = fully = 0
        wait: float | None = None
        for pod in owned:
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully += 1
            if common.pod_ready(pod):
                ready += 1
                left = common.available_in(pod, min_ready, at)
                if left == 0:
                    available += 1
                elif left is not None:
                    wait = left if wait is None else min(wait, left)
        old = rs.get("status") or {}
        status = {"replicas": len(owned), "fullyLabeledReplicas": fully,
                  "readyReplicas": ready, "availableReplicas": available,
                  "observedGeneration": int(rs["metadata"].get("generation") or 0)}
        conditions = [c for c in old.get("conditions") or []
                      if c.get("type") != "ReplicaFailure"]
        if failure is not None:
            prev = next((c for c in old.get("conditions") or []
                         if c.get("type") == "ReplicaFailure"), None)
            reason = "FailedCreate" if len(owned) < int(spec.get("replicas", 1)) \
                else "FailedDelete"
            message = str(failure)[:1024]
            cond = {"type": "ReplicaFailure", "status": "True", "reason": reason,
                    "message": message, "lastTransitionTime": common.fmt_time(at)}
            if prev and prev.get("reason") == reason and prev.get("message") == message:
                cond = prev
            conditions.append(cond)
        if conditions:
            status["conditions"] = conditions
        compare = {k: old.get(k, 0) for k in ("replicas", "fullyLabeledReplicas",
                                              "readyReplicas", "availableReplicas",
                                              "observedGeneration")}
        if old.get("conditions"):
            compare["conditions"] = old["conditions"]
        if compare != status:
            updated = common.deep(rs)
            updated["status"] = status
            try:
                await self.rs_api.update_status(updated)
            except errors.NotFound:
                return None
        return None if wait is None else wait + 0.05
