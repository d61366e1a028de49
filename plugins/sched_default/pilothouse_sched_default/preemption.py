"""DefaultPreemption: when no node fits a pod, evict lower-priority pods from one node so it
does, as kube-scheduler's default preemption does.

For each node that failed with a resolvable status (from a random offset, until
``max(minCandidateNodesAbsolute, minCandidateNodesPercentage% of nodes)`` candidates are
found): remove every pod of lower priority, check the profile's filters pass, then add the
removed pods back most important first while the filters still pass; the rest are the
victims. The best candidate has (in order) the lowest highest-victim priority, the lowest sum
of victim priorities, the fewest victims, the latest start among its highest-priority victims.
The victims get a ``DisruptionTarget`` condition, are deleted (their own grace period) and get
a ``Preempted`` event; lower-priority pods nominated to that node lose their nomination; the
framework sets the preemptor's ``status.nominatedNodeName`` and retries it when the victims
are gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random

from pilothouse.interfaces.scheduler import (Code, CycleState, Handle, NodeInfo, Status,
                                             fit_error_message, pod_priority)
from pilothouse.model import errors

from pilothouse_sched_default._helpers import is_terminating

log = logging.getLogger("pilothouse.scheduler.preemption")

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def _start_time(pod: dict) -> str:
    return (pod.get("status") or {}).get("startTime") or \
        pod["metadata"].get("creationTimestamp") or ""


def _more_important_key(pod: dict) -> tuple:
    # sort ascending by this key = most important first: higher priority, then started earlier
    return (-pod_priority(pod), _start_time(pod))


@dataclasses.dataclass
class Candidate:
    node: str
    victims: list[dict]


class DefaultPreemption:
    """PostFilter."""

    @dataclasses.dataclass
    class Options:
        #: Candidates to find, as a percentage of the nodes (at least the absolute number).
        minCandidateNodesPercentage: int = 10
        minCandidateNodesAbsolute: int = 100

        def __post_init__(self) -> None:
            if not 0 <= self.minCandidateNodesPercentage <= 100:
                raise ValueError("minCandidateNodesPercentage must be between 0 and 100")
            if self.minCandidateNodesAbsolute < 0:
                raise ValueError("minCandidateNodesAbsolute must not be negative")
            if self.minCandidateNodesPercentage == 0 and self.minCandidateNodesAbsolute == 0:
                raise ValueError("minCandidateNodesPercentage and minCandidateNodesAbsolute "
                                 "cannot both be 0")

    def __init__(self, options: "DefaultPreemption.Options | None" = None):
        self.options = options or DefaultPreemption.Options()
        self.handle: Handle | None = None

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle

    # ---------------------------------------------------------------- eligibility

    def eligible(self, pod: dict, statuses: dict[str, Status]) -> str | None:
        """None if the pod may preempt, else why not (Kubernetes' wording)."""
        spec = pod.get("spec") or {}
        if spec.get("preemptionPolicy") == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and self.handle is not None:
            status = statuses.get(nominated)
            if status is not None and status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return None
            info = self.handle.node_info(nominated)
            if info is not None:
                prio = pod_priority(pod)
                for p in info.pods:
                    if is_terminating(p) and pod_priority(p) < prio:
                        return "not eligible due to a terminating pod on the nominated node."
        return None

    def num_candidates(self, num_nodes: int) -> int:
        n = num_nodes * self.options.minCandidateNodesPercentage // 100
        n = max(n, self.options.minCandidateNodesAbsolute)
        return min(n, num_nodes)

    # ---------------------------------------------------------------- victims

    def select_victims(self, state: CycleState, pod: dict,
                       node: NodeInfo) -> tuple[list[dict] | None, Status]:
        """The fewest lower-priority pods to remove from ``node`` for ``pod`` to fit, or
        (None, why not)."""
        h = self.handle
        prio = pod_priority(pod)
        potential = [p for p in node.pods if pod_priority(p) < prio]
        if not potential:
            return None, Status.unschedulable(NO_VICTIMS, resolvable=False)
        info, st = node.clone(), state.clone()
        for p in potential:
            info.remove_pod(p)
            h.run_pre_filter_extension_remove_pod(st, pod, p, info)
        status = h.run_filter_plugins(st, pod, info)
        if not status.ok:
            return None, status
        potential.sort(key=_more_important_key)
        victims = []
        for p in potential:
            info.add_pod(p)
            h.run_pre_filter_extension_add_pod(st, pod, p, info)
            if not h.run_filter_plugins(st, pod, info).ok:
                info.remove_pod(p)
                h.run_pre_filter_extension_remove_pod(st, pod, p, info)
                victims.append(p)
        if not victims:
            # the pod fits without evicting anything (e.g. a nominated pod's room): nothing
            # to preempt here
            return None, Status.unschedulable(NO_VICTIMS, resolvable=False)
        return victims, Status()

    @staticmethod
    def pick(candidates: list[Candidate]) -> Candidate:
        """kube-scheduler's pickOneNodeForPreemption (PodDisruptionBudgets aside)."""
        def highest(c):
            return pod_priority(c.victims[0])

        def total(c):
            return sum(pod_priority(v) + 2 ** 31 for v in c.victims)

        best = [c for c in candidates if highest(c) == min(map(highest, candidates))]
        best = [c for c in best if total(c) == min(map(total, best))]
        best = [c for c in best if len(c.victims) == min(len(c.victims) for c in best)]
        if len(best) > 1:
            def earliest_top(c):
                top = highest(c)
                return min(_start_time(v) for v in c.victims if pod_priority(v) == top)
            latest = max(map(earliest_top, best))
            best = [c for c in best if earliest_top(c) == latest]
        return best[0]

    # ---------------------------------------------------------------- post-filter

    async def post_filter(self, state: CycleState, pod: dict,
                          statuses: dict[str, Status]) -> tuple[Status, str | None]:
        if self.handle is None:
            return Status.unschedulable(), None
        why_not = self.eligible(pod, statuses)
        if why_not:
            return Status.unschedulable(f"preemption: {why_not}"), None
        nodes = self.handle.node_infos()
        node_statuses: dict[str, Status] = {}
        potential = []
        for n in nodes:
            s = statuses.get(n.name)
            if s is not None and s.code is Code.UNSCHEDULABLE:
                potential.append(n)
            else:
                node_statuses[n.name] = Status.unschedulable(NOT_HELPFUL, resolvable=False)
        candidates: list[Candidate] = []
        if potential:
            want = self.num_candidates(len(potential))
            offset = random.randrange(len(potential))
            for i in range(len(potential)):
                n = potential[(offset + i) % len(potential)]
                victims, status = self.select_victims(state, pod, n)
                if victims is not None:
                    candidates.append(Candidate(n.name, victims))
                    if len(candidates) >= want:
                        break
                else:
                    node_statuses[n.name] = status
        if not candidates:
            return Status.unschedulable(
                "preemption: " + fit_error_message(len(nodes), node_statuses)), None
        best = self.pick(candidates)
        await self.prepare(pod, best)
        return Status(), best.node

    async def prepare(self, pod: dict, candidate: Candidate) -> None:
        """Evict the victims and clear lower-priority nominations on the node."""
        h = self.handle
        pods = h.client.resource("v1", "Pod")
        uid = pod["metadata"].get("uid")
        waiting = {w["metadata"].get("uid") for w in h.waiting_pods()}

        async def evict(victim: dict) -> None:
            meta = victim["metadata"]
            ns = meta.get("namespace") or "default"
            if meta.get("uid") in waiting:
                h.reject_waiting_pod(meta["uid"], "preempted")
                return
            try:
                await pods.patch(meta["name"], {"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": f"{h.profile}: preempting to accommodate a higher priority pod"}]}},
                    ns, content_type=STRATEGIC, subresource="status")
            except errors.StatusError as exc:
                log.debug("DisruptionTarget on %s/%s: %s", ns, meta["name"], exc)
            try:
                await pods.delete(meta["name"], ns)
            except errors.NotFound:
                return
            h.record_event(victim, "Normal", "Preempted",
                           f"Preempted by pod {uid} on node {candidate.node}")

        await asyncio.gather(*(evict(v) for v in candidate.victims))
        prio = pod_priority(pod)
        for other in h.nominated_pods(candidate.node):
            if pod_priority(other) < prio and other["metadata"].get("uid") != uid:
                meta = other["metadata"]
                try:
                    await pods.patch(meta["name"], {"status": {"nominatedNodeName": None}},
                                     meta.get("namespace"), content_type=MERGE,
                                     subresource="status")
                except errors.StatusError as exc:
                    log.debug("clearing nomination of %s: %s", meta["name"], exc)
