"""NodeAffinity: ``spec.nodeSelector`` and required node affinity filter nodes; preferred
node affinity terms score them (the sum of the weights of the terms a node matches)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from pilothouse.interfaces.scheduler import CycleState, NodeInfo, Status, freeze

from pilothouse_sched_default._helpers import (RequiredNodeAffinity, default_normalize,
                                               match_node_selector_term)

ERR_REASON = "node(s) didn't match Pod's node affinity/selector"
_FILTER_KEY = "NodeAffinity/filter"
_SCORE_KEY = "NodeAffinity/score"
_OK = Status()
_MISMATCH = Status.unschedulable(ERR_REASON, resolvable=False)


class NodeAffinity:
    """PreFilter + Filter + PreScore + Score + Sign (the pod's nodeSelector and node
    affinity; ``addedAffinity`` is fixed per instance)."""

    @dataclasses.dataclass
    class Options:
        #: A NodeAffinity object applied to every pod of the profile on top of its own:
        #: ``requiredDuringSchedulingIgnoredDuringExecution`` ANDed with the pod's,
        #: ``preferredDuringSchedulingIgnoredDuringExecution`` added to the pod's.
        addedAffinity: dict | None = None

    def __init__(self, options: "NodeAffinity.Options | None" = None):
        self.options = options or NodeAffinity.Options()
        added = self.options.addedAffinity or {}
        self._added_preferred = list(
            added.get("preferredDuringSchedulingIgnoredDuringExecution") or [])

    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        required = RequiredNodeAffinity.of(pod, self.options.addedAffinity)
        if required.empty:
            return Status.skip()
        state.write(_FILTER_KEY, required)
        return _OK

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        required = state.get(_FILTER_KEY)
        if required is None:
            required = RequiredNodeAffinity.of(pod, self.options.addedAffinity)
        return _OK if required.matches(node.node) else _MISMATCH

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        na = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
        terms = list(na.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        terms += self._added_preferred
        terms = [(t.get("weight") or 0, t.get("preference") or {}) for t in terms]
        terms = [(w, p) for w, p in terms if w]
        if not terms:
            return Status.skip()
        state.write(_SCORE_KEY, terms)
        return _OK

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        return sum(w for w, term in state.get(_SCORE_KEY) or ()
                   if match_node_selector_term(term, node.node))

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        return default_normalize(scores)

    def sign(self, state: CycleState, pod: dict) -> Hashable:
        spec = pod.get("spec") or {}
        return (freeze(spec.get("nodeSelector") or {}),
                freeze((spec.get("affinity") or {}).get("nodeAffinity") or {}))

    def events_to_register(self) -> list[str]:
        return ["Node/Add", "Node/UpdateLabel"]
