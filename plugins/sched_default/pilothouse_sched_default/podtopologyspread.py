"""PodTopologySpread: ``spec.topologySpreadConstraints``.

``whenUnsatisfiable: DoNotSchedule`` constraints filter: placing the pod on a node must not
make (matching pods in the node's domain + 1) − (matching pods in the emptiest domain)
exceed ``maxSkew`` (``minDomains``: with fewer eligible domains the minimum counts as 0).
``ScheduleAnyway`` constraints score: fewer matching pods in a node's domain is better, each
constraint weighted by log(number of domains + 2), as kube-scheduler does.

A pod without constraints gets the default constraints: with ``defaultingType: System``
kube-scheduler's (hostname maxSkew 3, zone maxSkew 5, both ScheduleAnyway) over the labels
of the Services, ReplicaSets and StatefulSets that select the pod; with ``List`` the
``defaultConstraints`` option (their selector is built the same way).

Counting honours ``nodeAffinityPolicy`` (default Honor: only nodes the pod's node
affinity/selector allows count) and ``nodeTaintsPolicy`` (default Ignore), skips
terminating pods, and applies ``matchLabelKeys``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from typing import Any

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, CycleState, Handle, NodeInfo,
                                             Status)
from pilothouse.model.selectors import LabelSelector, Requirement

from pilothouse_sched_default._helpers import (HOSTNAME, ZONE, RequiredNodeAffinity,
                                               first_untolerated, is_terminating,
                                               pod_namespace, selector)

ERR_CONSTRAINTS = "node(s) didn't match pod topology spread constraints"
ERR_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
SYSTEM_DEFAULTS = [
    {"maxSkew": 3, "topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway"},
    {"maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"},
]
_FILTER_KEY = "PodTopologySpread/filter"
_SCORE_KEY = "PodTopologySpread/score"
#: The default constraints' selector for this cycle's pod (computed once per cycle).
_DEFAULT_SELECTOR_KEY = "PodTopologySpread/default-selector"
#: Name of the Services-by-namespace index this plugin adds to the shared informer.
_SERVICE_NS_INDEX = "pilothouse_sched_default/namespace"
_NONE_SIGNATURE = ("none",)
_OK = Status()
_SKEW_FAIL = Status.unschedulable(ERR_CONSTRAINTS)
_LABEL_FAIL = Status.unschedulable(ERR_MISSING_LABEL, resolvable=False)


@dataclasses.dataclass(frozen=True)
class Constraint:
    max_skew: int
    key: str
    selector: LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool

    def counts_on(self, pod: dict, node: NodeInfo, required: RequiredNodeAffinity) -> bool:
        """Whether pods on ``node`` count for this constraint (the inclusion policies)."""
        if self.honor_affinity and not required.matches(node.node):
            return False
        if self.honor_taints and first_untolerated(
                node.taints, (pod.get("spec") or {}).get("tolerations") or [],
                ("NoSchedule", "NoExecute")) is not None:
            return False
        return True


def _count(pods: list[dict], sel: LabelSelector, namespace: str) -> int:
    n = 0
    for p in pods:
        m = p["metadata"]
        if (m.get("namespace") or "default") == namespace and not m.get("deletionTimestamp") \
                and sel.matches(m.get("labels")):
            n += 1
    return n


def _round(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


@dataclasses.dataclass
class _FilterState:
    constraints: list[Constraint]
    counts: dict  # (key, value) -> matching pods
    mins: dict  # key -> smallest count over its domains
    domains: dict  # key -> number of domains
    required: RequiredNodeAffinity

    def clone(self) -> "_FilterState":
        return _FilterState(self.constraints, dict(self.counts), dict(self.mins),
                            dict(self.domains), self.required)

    def recompute(self) -> None:
        mins: dict = {}
        domains: dict = {}
        for (key, _), n in self.counts.items():
            domains[key] = domains.get(key, 0) + 1
            if key not in mins or n < mins[key]:
                mins[key] = n
        self.mins, self.domains = mins, domains


class _Cached:
    """A CycleState value computed once per cycle; clones to itself (it never changes)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def clone(self) -> "_Cached":
        return self


def _service_namespace(svc: dict) -> list[str]:
    return [svc["metadata"].get("namespace") or "default"]


@dataclasses.dataclass
class _ScoreState:
    constraints: list[Constraint]
    counts: dict
    weights: list[float]
    ignored: set


class PodTopologySpread:
    """PreFilter (+ extensions) + Filter + PreScore + Score."""

    @dataclasses.dataclass
    class Options:
        #: ``System`` (kube-scheduler's defaults) or ``List`` (``defaultConstraints``).
        defaultingType: str = "System"
        #: Constraints for pods that have none (only with ``defaultingType: List``); each
        #: like a pod's, without ``labelSelector``.
        defaultConstraints: list[dict] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            if self.defaultingType not in ("System", "List"):
                raise ValueError("defaultingType must be System or List")
            if self.defaultingType == "System" and self.defaultConstraints:
                raise ValueError("defaultConstraints need defaultingType: List")
            for c in self.defaultConstraints:
                if c.get("labelSelector") is not None:
                    raise ValueError("defaultConstraints must not have a labelSelector")
                if c.get("whenUnsatisfiable") not in ("DoNotSchedule", "ScheduleAnyway") or \
                        not c.get("topologyKey") or not isinstance(c.get("maxSkew"), int) \
                        or c["maxSkew"] < 1:
                    raise ValueError("each default constraint needs maxSkew >= 1, topologyKey "
                                     "and whenUnsatisfiable DoNotSchedule|ScheduleAnyway")

    def __init__(self, options: "PodTopologySpread.Options | None" = None):
        self.options = options or PodTopologySpread.Options()
        self.handle: Handle | None = None
        self._listers: dict[str, Any] = {}
        self._defaults = SYSTEM_DEFAULTS if self.options.defaultingType == "System" \
            else list(self.options.defaultConstraints)

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle
        if self._defaults:
            self._listers = {"Service": handle.informer("v1", "Service"),
                             "ReplicaSet": handle.informer("apps/v1", "ReplicaSet"),
                             "StatefulSet": handle.informer("apps/v1", "StatefulSet")}
            services = self._listers["Service"]
            if hasattr(services, "add_index") and \
                    _SERVICE_NS_INDEX not in getattr(services, "indexers", {}):
                services.add_index(_SERVICE_NS_INDEX, _service_namespace)

    # ---------------------------------------------------------------- constraints

    def _default_selector(self, pod: dict) -> LabelSelector | None:
        if not self._listers:
            return None
        ns = pod_namespace(pod)
        labels = pod["metadata"].get("labels") or {}
        merged: dict[str, str] = {}
        services = self._listers["Service"]
        if _SERVICE_NS_INDEX in getattr(services, "indexers", {}):
            in_ns = services.by_index(_SERVICE_NS_INDEX, ns)
        else:
            in_ns = services.list()
        for svc in in_ns:
            if (svc["metadata"].get("namespace") or "default") != ns:
                continue
            sel = (svc.get("spec") or {}).get("selector") or {}
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                merged.update(sel)
        reqs = [Requirement(k, "=", (v,)) for k, v in sorted(merged.items())]
        for ref in pod["metadata"].get("ownerReferences") or ():
            if not ref.get("controller") or ref.get("kind") not in ("ReplicaSet", "StatefulSet"):
                continue
            owner = self._listers[ref["kind"]].get(f"{ns}/{ref.get('name')}")
            if owner is not None:
                sel = selector((owner.get("spec") or {}).get("selector"))
                if not sel.nothing:
                    reqs += list(sel.requirements)
        if not reqs:
            return None
        return LabelSelector(tuple(reqs))

    def _cycle_default_selector(self, state: CycleState | None,
                                pod: dict) -> LabelSelector | None:
        if state is None:
            return self._default_selector(pod)
        cached = state.get(_DEFAULT_SELECTOR_KEY)
        if cached is None:
            cached = _Cached(self._default_selector(pod))
            state.write(_DEFAULT_SELECTOR_KEY, cached)
        return cached.value

    def _constraints(self, pod: dict, action: str,
                     state: CycleState | None = None) -> list[Constraint]:
        spec = pod.get("spec") or {}
        raw = spec.get("topologySpreadConstraints") or []
        labels = pod["metadata"].get("labels") or {}
        out = []
        if raw:
            for c in raw:
                if c.get("whenUnsatisfiable", "DoNotSchedule") != action:
                    continue
                sel = selector(c.get("labelSelector"))
                keys = [k for k in c.get("matchLabelKeys") or () if k in labels]
                if keys and not sel.nothing:
                    sel = LabelSelector(tuple(sel.requirements) + tuple(
                        Requirement(k, "in", (labels[k],)) for k in keys))
                out.append(self._constraint(c, sel))
            return out
        defaults = [c for c in self._defaults if c.get("whenUnsatisfiable") == action]
        if not defaults:
            return []
        sel = self._cycle_default_selector(state, pod)
        if sel is None:
            return []
        return [self._constraint(c, sel) for c in defaults]

    @staticmethod
    def _constraint(c: dict, sel: LabelSelector) -> Constraint:
        return Constraint(int(c.get("maxSkew") or 1), c.get("topologyKey") or "", sel,
                          int(c.get("minDomains") or 1),
                          (c.get("nodeAffinityPolicy") or "Honor") == "Honor",
                          (c.get("nodeTaintsPolicy") or "Ignore") == "Honor")

    # ---------------------------------------------------------------- filter

    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        constraints = self._constraints(pod, "DoNotSchedule", state)
        if not constraints:
            return Status.skip()
        required = RequiredNodeAffinity.of(pod)
        ns = pod_namespace(pod)
        counts: dict = {}
        for node in nodes:
            labels = node.labels
            if any(c.key not in labels for c in constraints):
                continue
            for c in constraints:
                if not c.counts_on(pod, node, required):
                    continue
                pair = (c.key, labels[c.key])
                counts[pair] = counts.get(pair, 0) + _count(node.pods, c.selector, ns)
        st = _FilterState(constraints, counts, {}, {}, required)
        st.recompute()
        state.write(_FILTER_KEY, st)
        return _OK

    def _update(self, state: CycleState, pod: dict, other: dict, node: NodeInfo,
                sign: int) -> Status:
        st: _FilterState | None = state.get(_FILTER_KEY)
        if st is None or pod_namespace(other) != pod_namespace(pod) or is_terminating(other):
            return _OK
        labels = node.labels
        if any(c.key not in labels for c in st.constraints):
            return _OK
        changed = False
        for c in st.constraints:
            if not c.counts_on(pod, node, st.required):
                continue
            if c.selector.matches(other["metadata"].get("labels")):
                pair = (c.key, labels[c.key])
                st.counts[pair] = st.counts.get(pair, 0) + sign
                changed = True
        if changed:
            st.recompute()
        return _OK

    def pre_filter_add_pod(self, state: CycleState, pod: dict, pod_to_add: dict,
                           node: NodeInfo) -> Status:
        return self._update(state, pod, pod_to_add, node, 1)

    def pre_filter_remove_pod(self, state: CycleState, pod: dict, pod_to_remove: dict,
                              node: NodeInfo) -> Status:
        return self._update(state, pod, pod_to_remove, node, -1)

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        st: _FilterState | None = state.get(_FILTER_KEY)
        if st is None:
            return _OK
        labels = node.labels
        pod_labels = pod["metadata"].get("labels")
        for c in st.constraints:
            value = labels.get(c.key)
            if value is None:
                return _LABEL_FAIL
            self_match = 1 if c.selector.matches(pod_labels) else 0
            match_num = st.counts.get((c.key, value), 0)
            minimum = st.mins.get(c.key, 0)
            if st.domains.get(c.key, 0) < c.min_domains:
                minimum = 0
            if match_num + self_match - minimum > c.max_skew:
                return _SKEW_FAIL
        return _OK

    def sign(self, state: CycleState, pod: dict) -> Hashable | None:
        """A constant when the pod has no constraints and no default constraints apply
        (Filter passes every node, Score is 0); else None: counts span other nodes."""
        if (pod.get("spec") or {}).get("topologySpreadConstraints"):
            return None
        if self._defaults and self._cycle_default_selector(state, pod) is not None:
            return None
        return _NONE_SIGNATURE

    # ---------------------------------------------------------------- score

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        constraints = self._constraints(pod, "ScheduleAnyway", state)
        if not constraints:
            return Status.skip()
        # kube-scheduler ignores nodes missing a topology label, except for the System
        # defaults (a cluster without zones still spreads over hostnames)
        require_all = bool((pod.get("spec") or {}).get("topologySpreadConstraints")) or \
            self.options.defaultingType != "System"
        required = RequiredNodeAffinity.of(pod)
        ns = pod_namespace(pod)
        counts: dict = {}
        ignored: set = set()
        sizes = [0] * len(constraints)
        seen: list[set] = [set() for _ in constraints]
        for node in nodes:
            labels = node.labels
            if require_all and any(c.key not in labels for c in constraints):
                ignored.add(node.name)
                continue
            for i, c in enumerate(constraints):
                if c.key == HOSTNAME or c.key not in labels:
                    continue
                pair = (c.key, labels[c.key])
                counts.setdefault(pair, 0)
                seen[i].add(labels[c.key])
        for i, c in enumerate(constraints):
            sizes[i] = len(nodes) - len(ignored) if c.key == HOSTNAME else len(seen[i])
        all_nodes = self.handle.node_infos() if self.handle is not None else nodes
        if any(c.key != HOSTNAME for c in constraints):
            for node in all_nodes:
                labels = node.labels
                if require_all and any(c.key not in labels for c in constraints):
                    continue
                for c in constraints:
                    if c.key == HOSTNAME or c.key not in labels or \
                            not c.counts_on(pod, node, required):
                        continue
                    pair = (c.key, labels[c.key])
                    if pair in counts:
                        counts[pair] += _count(node.pods, c.selector, ns)
        weights = [math.log(s + 2) for s in sizes]
        state.write(_SCORE_KEY, _ScoreState(constraints, counts, weights, ignored))
        return _OK

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        st: _ScoreState | None = state.get(_SCORE_KEY)
        if st is None or node.name in st.ignored:
            return 0
        labels = node.labels
        ns = pod_namespace(pod)
        total = 0.0
        for i, c in enumerate(st.constraints):
            value = labels.get(c.key)
            if value is None:
                continue
            if c.key == HOSTNAME:
                cnt = _count(node.pods, c.selector, ns)
            else:
                cnt = st.counts.get((c.key, value), 0)
            total += cnt * st.weights[i] + (c.max_skew - 1)
        return _round(total)

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        st: _ScoreState | None = state.get(_SCORE_KEY)
        ignored = st.ignored if st is not None else set()
        valid = [s for n, s in scores.items() if n not in ignored]
        if not valid:
            return dict.fromkeys(scores, 0)
        lo, hi = min(valid), max(valid)
        out = {}
        for n, s in scores.items():
            if n in ignored:
                out[n] = 0
            elif hi == 0:
                out[n] = MAX_NODE_SCORE
            else:
                out[n] = MAX_NODE_SCORE * (hi + lo - s) // hi
        return out

    def events_to_register(self) -> list[str]:
        return ["Pod/Add", "Pod/Update", "Pod/Delete", "Node/Add", "Node/Delete",
                "Node/UpdateLabel", "Node/UpdateTaint"]
