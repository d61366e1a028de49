"""InterPodAffinity: required and preferred pod affinity and anti-affinity over a
``topologyKey``, both the incoming pod's own terms and the anti-affinity of pods already
running (symmetry), as kube-scheduler computes them.

PreFilter counts, per topology pair (key, value), the existing pods matching the incoming
pod's required terms and the existing pods whose required anti-affinity matches the incoming
pod; Filter then only looks up the node's labels. Scoring sums, per topology pair, the weights
of the preferred terms (both directions) and of existing pods' required affinity
(``hardPodAffinityWeight``), and min-max normalizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, CycleState, Handle, NodeInfo,
                                             Status)

from pilothouse_sched_default._helpers import (AffinityInfoCache, PodAffinityInfo,
                                               matches_all)

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
_FILTER_KEY = "InterPodAffinity/filter"
_SCORE_KEY = "InterPodAffinity/score"
_OK = Status()
_AFFINITY_FAIL = Status.unschedulable(ERR_AFFINITY, resolvable=False)
_ANTI_FAIL = Status.unschedulable(ERR_ANTI_AFFINITY)
_EXISTING_FAIL = Status.unschedulable(ERR_EXISTING_ANTI_AFFINITY)


def _bump(counts: dict, labels: dict, key: str, value: int) -> None:
    tv = labels.get(key)
    if tv is None:
        return
    pair = (key, tv)
    n = counts.get(pair, 0) + value
    if n:
        counts[pair] = n
    else:
        counts.pop(pair, None)


@dataclasses.dataclass
class _FilterState:
    info: PodAffinityInfo
    existing_anti: dict
    affinity: dict
    anti: dict
    self_match: bool

    def clone(self) -> "_FilterState":
        return _FilterState(self.info, dict(self.existing_anti), dict(self.affinity),
                            dict(self.anti), self.self_match)


class InterPodAffinity:
    """PreFilter (+ extensions) + Filter + PreScore + Score."""

    @dataclasses.dataclass
    class Options:
        #: Score weight of an existing pod's *required* affinity term matching the incoming
        #: pod (0..100).
        hardPodAffinityWeight: int = 1
        #: Score only the incoming pod's preferred terms, not those of existing pods.
        ignorePreferredTermsOfExistingPods: bool = False

        def __post_init__(self) -> None:
            if not 0 <= self.hardPodAffinityWeight <= 100:
                raise ValueError("hardPodAffinityWeight must be between 0 and 100")

    def __init__(self, options: "InterPodAffinity.Options | None" = None):
        self.options = options or InterPodAffinity.Options()
        self.handle: Handle | None = None
        self._namespaces: Any = None
        self._infos = AffinityInfoCache()

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle
        self._namespaces = handle.informer("v1", "Namespace")

    def _ns_labels(self, name: str) -> dict:
        if self._namespaces is None:
            return {}
        ns = self._namespaces.get(name)
        return (ns or {}).get("metadata", {}).get("labels") or {}

    # ---------------------------------------------------------------- filter

    def _existing_anti_for(self, counts: dict, pod: dict, existing: dict, labels: dict,
                           sign: int) -> None:
        for term in self._infos.get(existing).required_anti:
            if term.matches(pod, self._ns_labels):
                _bump(counts, labels, term.topology_key, sign)

    def _incoming_for(self, st: _FilterState, existing: dict, labels: dict, sign: int) -> None:
        info = st.info
        if info.required_affinity and matches_all(info.required_affinity, existing,
                                                  self._ns_labels):
            for term in info.required_affinity:
                _bump(st.affinity, labels, term.topology_key, sign)
        for term in info.required_anti:
            if term.matches(existing, self._ns_labels):
                _bump(st.anti, labels, term.topology_key, sign)

    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        info = PodAffinityInfo.of(pod)
        existing_anti: dict = {}
        for node in nodes:
            if node.pods_with_required_anti_affinity:
                labels = node.labels
                for other in node.pods_with_required_anti_affinity:
                    self._existing_anti_for(existing_anti, pod, other, labels, 1)
        if not existing_anti and not info.required_affinity and not info.required_anti:
            return Status.skip()
        st = _FilterState(info, existing_anti, {}, {},
                          matches_all(info.required_affinity, pod, self._ns_labels))
        if info.required_affinity or info.required_anti:
            for node in nodes:
                labels = node.labels
                for other in node.pods:
                    self._incoming_for(st, other, labels, 1)
        state.write(_FILTER_KEY, st)
        return _OK

    def pre_filter_add_pod(self, state: CycleState, pod: dict, pod_to_add: dict,
                           node: NodeInfo) -> Status:
        st = state.get(_FILTER_KEY)
        if st is not None:
            self._existing_anti_for(st.existing_anti, pod, pod_to_add, node.labels, 1)
            self._incoming_for(st, pod_to_add, node.labels, 1)
        return _OK

    def pre_filter_remove_pod(self, state: CycleState, pod: dict, pod_to_remove: dict,
                              node: NodeInfo) -> Status:
        st = state.get(_FILTER_KEY)
        if st is not None:
            self._existing_anti_for(st.existing_anti, pod, pod_to_remove, node.labels, -1)
            self._incoming_for(st, pod_to_remove, node.labels, -1)
        return _OK

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        st: _FilterState | None = state.get(_FILTER_KEY)
        if st is None:
            return _OK
        labels = node.labels
        info = st.info
        if info.required_affinity:
            pods_exist = True
            for term in info.required_affinity:
                tv = labels.get(term.topology_key)
                if tv is None:
                    return _AFFINITY_FAIL
                if st.affinity.get((term.topology_key, tv), 0) <= 0:
                    pods_exist = False
            if not pods_exist and not (not st.affinity and st.self_match):
                return _AFFINITY_FAIL
        if st.anti:
            for term in info.required_anti:
                tv = labels.get(term.topology_key)
                if tv is not None and st.anti.get((term.topology_key, tv), 0) > 0:
                    return _ANTI_FAIL
        if st.existing_anti:
            for pair in labels.items():
                if st.existing_anti.get(pair, 0) > 0:
                    return _EXISTING_FAIL
        return _OK

    # ---------------------------------------------------------------- score

    def _score_existing(self, scores: dict, pod: dict, info: PodAffinityInfo, existing: dict,
                        labels: dict) -> None:
        for term in info.preferred_affinity:
            if term.matches(existing, self._ns_labels):
                _add_score(scores, labels, term.topology_key, term.weight)
        for term in info.preferred_anti:
            if term.matches(existing, self._ns_labels):
                _add_score(scores, labels, term.topology_key, -term.weight)
        other = self._infos.get(existing)
        if not (other.required_affinity or other.preferred_affinity or other.preferred_anti):
            return
        hard = self.options.hardPodAffinityWeight
        if hard > 0:
            for term in other.required_affinity:
                if term.matches(pod, self._ns_labels):
                    _add_score(scores, labels, term.topology_key, hard)
        if not self.options.ignorePreferredTermsOfExistingPods:
            for term in other.preferred_affinity:
                if term.matches(pod, self._ns_labels):
                    _add_score(scores, labels, term.topology_key, term.weight)
            for term in other.preferred_anti:
                if term.matches(pod, self._ns_labels):
                    _add_score(scores, labels, term.topology_key, -term.weight)

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        info = PodAffinityInfo.of(pod)
        has_constraints = bool(info.preferred_affinity or info.preferred_anti)
        if self.options.ignorePreferredTermsOfExistingPods and not has_constraints:
            return Status.skip()
        all_nodes = self.handle.node_infos() if self.handle is not None else nodes
        scores: dict[str, dict[str, int]] = {}
        for node in all_nodes:
            pods = node.pods if has_constraints else node.pods_with_affinity
            if not pods:
                continue
            labels = node.labels
            if not labels:
                continue
            for existing in pods:
                self._score_existing(scores, pod, info, existing, labels)
        scores = {k: v for k, v in scores.items() if v}
        if not scores:
            return Status.skip()
        state.write(_SCORE_KEY, scores)
        return _OK

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        scores = state.get(_SCORE_KEY) or {}
        labels = node.labels
        total = 0
        for key, values in scores.items():
            tv = labels.get(key)
            if tv is not None:
                total += values.get(tv, 0)
        return total

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        if not scores:
            return scores
        lo, hi = min(scores.values()), max(scores.values())
        diff = hi - lo
        if diff <= 0:
            return dict.fromkeys(scores, 0)
        return {n: int(MAX_NODE_SCORE * (s - lo) / diff) for n, s in scores.items()}

    def events_to_register(self) -> list[str]:
        return ["Pod/Add", "Pod/Update", "Pod/Delete", "Node/Add", "Node/UpdateLabel",
                "Namespace/Update"]


def _add_score(scores: dict, labels: dict, key: str, weight: int) -> None:
    tv = labels.get(key)
    if tv is None or not weight:
        return
    values = scores.setdefault(key, {})
    values[tv] = values.get(tv, 0) + weight

