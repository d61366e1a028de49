"""Matching rules shared by several plugins: tolerations, node selector terms, pod
affinity terms and the small normalizers kube-scheduler uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from pilothouse.interfaces.scheduler import MAX_NODE_SCORE, NodeInfo
from pilothouse.model.selectors import LabelSelector, Requirement, SelectorError

HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


# ------------------------------------------------------------------ taints and tolerations

def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(taint: dict, tolerations: Iterable[dict]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(taints: Iterable[dict], tolerations: list[dict],
                      effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> dict | None:
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(taint, tolerations):
            return taint
    return None


# ------------------------------------------------------------------ node selectors

def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def match_expression(expr: dict, values: dict[str, str]) -> bool:
    key, op = expr.get("key"), expr.get("operator")
    vals = expr.get("values") or []
    present = key in values
    if op == "In":
        return present and values[key] in vals
    if op == "NotIn":
        return not present or values[key] not in vals
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(vals) != 1:
            return False
        have, want = _int(values[key]), _int(vals[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def match_node_selector_term(term: dict, node: dict) -> bool:
    """A NodeSelectorTerm: its matchExpressions (labels) and matchFields (``metadata.name``)
    all hold. An empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    if not all(match_expression(e, labels) for e in exprs):
        return False
    if fields:
        field_values = {"metadata.name": node["metadata"]["name"]}
        if not all(match_expression(f, field_values) for f in fields):
            return False
    return True


def match_node_selector_terms(terms: list[dict], node: dict) -> bool:
    """NodeSelectorTerms are ORed."""
    return any(match_node_selector_term(t, node) for t in terms)


@dataclasses.dataclass(frozen=True)
class RequiredNodeAffinity:
    """``spec.nodeSelector`` plus required node affinity (plus a plugin's added affinity)."""

    node_selector: dict
    terms: tuple | None  # None: no required node affinity
    added_terms: tuple | None = None

    @classmethod
    def of(cls, pod: dict, added: dict | None = None) -> "RequiredNodeAffinity":
        spec = pod.get("spec") or {}
        na = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        terms = tuple(req.get("nodeSelectorTerms") or ()) if req is not None else None
        added_terms = None
        if added:
            areq = added.get("requiredDuringSchedulingIgnoredDuringExecution")
            if areq is not None:
                added_terms = tuple(areq.get("nodeSelectorTerms") or ())
        return cls(dict(spec.get("nodeSelector") or {}), terms, added_terms)

    @property
    def empty(self) -> bool:
        return not self.node_selector and self.terms is None and self.added_terms is None

    def matches(self, node: dict) -> bool:
        if self.node_selector:
            labels = node["metadata"].get("labels") or {}
            for k, v in self.node_selector.items():
                if labels.get(k) != v:
                    return False
        if self.terms is not None and not match_node_selector_terms(list(self.terms), node):
            return False
        if self.added_terms is not None and \
                not match_node_selector_terms(list(self.added_terms), node):
            return False
        return True


# ------------------------------------------------------------------ pod affinity terms

def selector(raw: dict | None) -> LabelSelector:
    """A LabelSelector from an API object; a bad one matches nothing (validation should have
    refused it)."""
    try:
        return LabelSelector.from_dict(raw)
    except SelectorError:
        return LabelSelector(nothing=True)


def pod_namespace(pod: dict) -> str:
    return pod["metadata"].get("namespace") or "default"


@dataclasses.dataclass(frozen=True)
class AffinityTerm:
    """A parsed PodAffinityTerm: which pods it selects and over which topology."""

    topology_key: str
    selector: LabelSelector
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None  # None: only ``namespaces``
    weight: int = 1

    @classmethod
    def parse(cls, term: dict, owner: dict, weight: int = 1) -> "AffinityTerm":
        sel = selector(term.get("labelSelector"))
        labels = owner["metadata"].get("labels") or {}
        extra = []
        for key in term.get("matchLabelKeys") or ():
            if key in labels:
                extra.append(Requirement(key, "in", (labels[key],)))
        for key in term.get("mismatchLabelKeys") or ():
            if key in labels:
                extra.append(Requirement(key, "notin", (labels[key],)))
        if extra and not sel.nothing:
            sel = LabelSelector(tuple(sel.requirements) + tuple(extra))
        nss = frozenset(term.get("namespaces") or ())
        ns_sel_raw = term.get("namespaceSelector")
        ns_sel = selector(ns_sel_raw) if ns_sel_raw is not None else None
        if not nss and ns_sel is None:
            nss = frozenset([pod_namespace(owner)])
        return cls(term.get("topologyKey") or "", sel, nss, ns_sel, weight)

    def matches(self, pod: dict, ns_labels: Callable[[str], dict] | None = None) -> bool:
        ns = pod_namespace(pod)
        if ns not in self.namespaces:
            if self.namespace_selector is None:
                return False
            if not self.namespace_selector.empty():
                labels = ns_labels(ns) if ns_labels else {}
                if not self.namespace_selector.matches(labels):
                    return False
        return self.selector.matches(pod["metadata"].get("labels"))


@dataclasses.dataclass(frozen=True)
class PodAffinityInfo:
    """All four kinds of (anti-)affinity terms of one pod, parsed once."""

    required_affinity: tuple[AffinityTerm, ...] = ()
    required_anti: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti: tuple[AffinityTerm, ...] = ()

    @classmethod
    def of(cls, pod: dict) -> "PodAffinityInfo":
        aff = (pod.get("spec") or {}).get("affinity") or {}
        pa, paa = aff.get("podAffinity") or {}, aff.get("podAntiAffinity") or {}

        def req(section):
            return tuple(AffinityTerm.parse(t, pod) for t in
                         section.get("requiredDuringSchedulingIgnoredDuringExecution") or ())

        def pref(section):
            return tuple(AffinityTerm.parse(w.get("podAffinityTerm") or {}, pod,
                                            w.get("weight") or 0)
                         for w in section.get("preferredDuringSchedulingIgnoredDuringExecution")
                         or ())
        return cls(req(pa), req(paa), pref(pa), pref(paa))


_EMPTY_INFO = PodAffinityInfo()


class AffinityInfoCache:
    """Parsed affinity of existing pods, keyed by uid and resourceVersion."""

    def __init__(self, size: int = 20000):
        self.size = size
        self._data: dict[tuple, PodAffinityInfo] = {}

    def get(self, pod: dict) -> PodAffinityInfo:
        spec = pod.get("spec") or {}
        if not spec.get("affinity"):
            return _EMPTY_INFO
        m = pod["metadata"]
        key = (m.get("uid") or m.get("name"), m.get("resourceVersion"))
        info = self._data.get(key)
        if info is None:
            if len(self._data) >= self.size:
                self._data.clear()
            info = self._data[key] = PodAffinityInfo.of(pod)
        return info


def matches_all(terms: Iterable[AffinityTerm], pod: dict,
                ns_labels: Callable[[str], dict] | None = None) -> bool:
    terms = list(terms)
    return bool(terms) and all(t.matches(pod, ns_labels) for t in terms)


# ------------------------------------------------------------------ normalizers

def default_normalize(scores: dict[str, int], reverse: bool = False) -> dict[str, int]:
    """kube-scheduler's DefaultNormalizeScore: scale to [0, MAX_NODE_SCORE] by the maximum;
    ``reverse`` turns it upside down (all MAX when every score is 0)."""
    top = max(scores.values(), default=0)
    if top == 0:
        return {n: MAX_NODE_SCORE for n in scores} if reverse else dict(scores)
    out = {}
    for n, s in scores.items():
        v = MAX_NODE_SCORE * s // top
        out[n] = MAX_NODE_SCORE - v if reverse else v
    return out


def is_terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def node_labels(node: NodeInfo) -> dict[str, str]:
    return node.node["metadata"].get("labels") or {}
