"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule taints
that are not tolerated lower a node's score."""

from __future__ import annotations

import operator
from collections.abc import Hashable

from pilothouse.interfaces.scheduler import CycleState, Handle, NodeInfo, Status, freeze

from pilothouse_sched_default._helpers import default_normalize, first_untolerated, tolerated

_KEY = "TaintToleration"
_OK = Status()
_taints_of = operator.attrgetter("taints")


def _prefer_no_schedule(nodes: list[NodeInfo]) -> bool:
    return any(t.get("effect") == "PreferNoSchedule" for n in nodes for t in n.taints)


class TaintToleration:
    """Filter + PreScore + Score (normalized, reversed: fewer intolerable taints is better)
    + Sign (the pod's tolerations). With a handle, PreScore first asks it for the tainted
    nodes of the whole snapshot (usually none), so it reads no feasible node when no node
    anywhere has a PreferNoSchedule taint; when more nodes are tainted than feasible, it
    reads the feasible ones instead (whichever list is shorter)."""

    def __init__(self) -> None:
        self.handle: Handle | None = None

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        taints = node.taints
        if not taints:
            return _OK
        taint = first_untolerated(taints, (pod.get("spec") or {}).get("tolerations") or [])
        if taint is None:
            return _OK
        return Status.unschedulable(
            f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}",
            resolvable=False)

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        tainted = getattr(self.handle, "node_infos_with_taints", None)
        tainted = tainted() if tainted is not None else None
        if tainted is not None and len(tainted) <= len(nodes) \
                and not _prefer_no_schedule(tainted):
            return Status.skip()  # no node has one: the feasible ones neither
        if not any(map(_taints_of, nodes)) or not _prefer_no_schedule(nodes):
            return Status.skip()  # every node would score the same
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                       if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
        state.write(_KEY, tolerations)
        return Status()

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        taints = node.taints
        if not taints:
            return 0
        tolerations = state.get(_KEY) or []
        return sum(1 for taint in taints if taint.get("effect") == "PreferNoSchedule"
                   and not tolerated(taint, tolerations))

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        return default_normalize(scores, reverse=True)

    def sign(self, state: CycleState, pod: dict) -> Hashable:
        return freeze((pod.get("spec") or {}).get("tolerations") or [])

    def events_to_register(self) -> list[str]:
        return ["Node/Add", "Node/UpdateTaint"]
