"""Matching rules shared by several plugins: tolerations, node selector terms, pod
affinity terms and the small normalizers kube-scheduler uses."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Hashable, Iterable

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

    @property
    def indexable(self) -> bool:
        """Whether which pods match depends on the pods alone (not on namespace labels)."""
        return self.namespace_selector is None or self.namespace_selector.empty()

    @property
    def match_key(self) -> tuple:
        """Equal for terms that select the same pods over the same topology (any weight)."""
        return (self.topology_key, self.selector, self.namespaces, self.namespace_selector)


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

    @property
    def any(self) -> bool:
        return bool(self.required_affinity or self.required_anti or self.preferred_affinity
                     or self.preferred_anti)


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


# ------------------------------------------------------------------ incremental counts

class NodeView:
    """A plugin's memory of the snapshot across cycles, so per-topology counts are kept up to
    date node by node instead of recomputed over every node each cycle.

    The framework never changes a NodeInfo it handed out: a changed node is a new object
    (with a new ``generation``) in the snapshot's list, so comparing the list with the last
    one seen, object by object, finds what changed. :meth:`sync` does that and logs the
    changed node names under a new ``version``; each :class:`TopologyCounts` catches up from
    the log when it is used (or rebuilds when its version fell out of the log)."""

    LOG = 64

    def __init__(self) -> None:
        self.nodes: list[NodeInfo] = []
        self.by_name: dict[str, NodeInfo] = {}
        self.version = 0
        self._log: collections.deque[frozenset[str]] = collections.deque(maxlen=self.LOG)

    def sync(self, nodes: list[NodeInfo]) -> None:
        """Make the view reflect ``nodes``."""
        old, by_name = self.nodes, self.by_name
        if len(nodes) == len(old):
            fresh = [n for n, o in zip(nodes, old) if n is not o]
            if not fresh:
                return
            changed = set()
            for n in fresh:
                name = n.name
                if by_name.get(name) is not n:
                    by_name[name] = n
                    changed.add(name)
            if len(by_name) != len(nodes):  # a name went away: diff by name
                changed |= by_name.keys() - {n.name for n in nodes}
                self.by_name = {n.name: n for n in nodes}
        else:
            new = {n.name: n for n in nodes}
            changed = {name for name, n in new.items() if by_name.get(name) is not n}
            changed |= by_name.keys() - new.keys()
            self.by_name = new
        self.nodes = list(nodes)
        if changed:
            self.version += 1
            self._log.append(frozenset(changed))

    def sync_names(self, names, lookup: Callable[[str], NodeInfo | None]) -> None:
        """Like :meth:`sync`, when the caller knows which nodes may have changed since the
        last sync (a superset is fine; e.g. from :meth:`Handle.node_changes`): ``names``,
        and ``lookup`` giving each one's current NodeInfo (None: gone). O(names)."""
        self.nodes = []  # no longer the last list seen (and it would pin replaced NodeInfos)
        by_name = self.by_name
        changed = set()
        for name in names:
            node = lookup(name)
            if node is None:
                if by_name.pop(name, None) is not None:
                    changed.add(name)
            elif by_name.get(name) is not node:
                by_name[name] = node
                changed.add(name)
        if changed:
            self.version += 1
            self._log.append(frozenset(changed))

    def changed_since(self, version: int) -> set[str] | frozenset[str] | None:
        """Names of the nodes changed after ``version``; None when the log does not reach
        back that far."""
        behind = self.version - version
        if behind <= 0:
            return frozenset()
        if version < 0 or behind > len(self._log):
            return None
        if behind == 1:
            return self._log[-1]
        out: set[str] = set()
        for i in range(len(self._log) - behind, len(self._log)):
            out |= self._log[i]
        return out


#: What one node contributes: (group, (topology key, value), count) triples.
Contribution = list[tuple[Hashable, tuple[str, str], int]]


class TopologyCounts:
    """Counts per group and topology pair, summed over the nodes of a :class:`NodeView`
    from ``count(node)``, and refreshed only for the nodes that changed.

    ``totals`` maps group -> {(key, value): count > 0}. Refreshing changes those dicts in
    place (a rebuild makes new ones); a reader that keeps one past the next refresh and
    changes it must copy it first."""

    __slots__ = ("count", "version", "nodes", "totals")

    def __init__(self, count: Callable[[NodeInfo], Contribution]):
        self.count = count
        self.version = -1
        self.nodes: dict[str, Contribution] = {}
        self.totals: dict[Hashable, dict[tuple[str, str], int]] = {}

    def refresh(self, view: NodeView) -> "TopologyCounts":
        if self.version == view.version:
            return self
        names = view.changed_since(self.version)
        if names is None:
            self.nodes, self.totals = {}, {}
            names = view.by_name.keys()
        nodes, by_name, count = self.nodes, view.by_name, self.count
        for name in names:
            old = nodes.pop(name, None)
            if old:
                self._add(old, -1)
            node = by_name.get(name)
            if node is not None:
                contribution = count(node)
                if contribution:
                    nodes[name] = contribution
                    self._add(contribution, 1)
        self.version = view.version
        return self

    def _add(self, contribution: Contribution, sign: int) -> None:
        totals = self.totals
        for group, pair, n in contribution:
            pairs = totals.get(group)
            if pairs is None:
                pairs = totals[group] = {}
            v = pairs.get(pair, 0) + sign * n
            if v:
                pairs[pair] = v
            else:
                del pairs[pair]
                if not pairs:
                    del totals[group]


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
