"""InterPodAffinity: required and preferred pod affinity and anti-affinity over a
``topologyKey``, both the incoming pod's own terms and the anti-affinity of pods already
running (symmetry), as kube-scheduler computes them.

PreFilter counts, per topology pair (key, value), the existing pods matching the incoming
pod's required terms and the existing pods whose required anti-affinity matches the incoming
pod; Filter then only looks up the node's labels. Scoring sums, per topology pair, the weights
of the preferred terms (both directions) and of existing pods' required affinity
(``hardPodAffinityWeight``), and min-max normalizes.

Those counts are kept across cycles (:class:`NodeView`, :class:`TopologyCounts`): existing
pods' terms grouped by identical term, so each distinct term is matched against the incoming
pod once a cycle, and the pods matching each recently seen term of incoming pods; only nodes
that changed since the last cycle are recounted. When neither the pod nor any pod in the
snapshot has (anti-)affinity, PreFilter and PreScore answer SKIP without looking at nodes
(with the handle's ``node_infos_with_pod_affinity``, or one cheap pass otherwise). ``sign``
answers a constant exactly when the pod has no terms and no existing pod's term selects it,
and a *node-local* fragment when everything Filter checks lives on the node itself: the pod
has only required anti-affinity terms, all over ``kubernetes.io/hostname`` and not depending
on namespace labels, the existing terms selecting it are required anti-affinity terms over
``kubernetes.io/hostname`` too, no existing term would score it, and no two nodes share a
hostname label (a domain is then one node, and the node's generation covers it).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable
from typing import Any

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, CycleState, Handle, NodeInfo,
                                             Status)

from pilothouse_sched_default._helpers import (HOSTNAME, AffinityInfoCache, AffinityTerm,
                                               Contribution, NodeView, PodAffinityInfo,
                                               TopologyCounts, matches_all)

ERR_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
ERR_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
_FILTER_KEY = "InterPodAffinity/filter"
_SCORE_KEY = "InterPodAffinity/score"
#: This cycle's pod has no terms and no existing pod's term selects it: nothing to do.
_NONE_KEY = "InterPodAffinity/none"
#: The view was synced with this cycle's snapshot (PreScore need not do it again).
_SYNCED_KEY = "InterPodAffinity/synced"
#: This cycle's node-local sign fragment (see the module docstring).
_LOCAL_KEY = "InterPodAffinity/local"
_NONE_SIGNATURE = ("none",)
_OK = Status()
_AFFINITY_FAIL = Status.unschedulable(ERR_AFFINITY, resolvable=False)
_ANTI_FAIL = Status.unschedulable(ERR_ANTI_AFFINITY)
_EXISTING_FAIL = Status.unschedulable(ERR_EXISTING_ANTI_AFFINITY)
#: Kinds of existing pods' terms, as grouped in the existing-terms counts.
_REQ_ANTI, _REQ_AFF, _PREF_AFF, _PREF_ANTI = range(4)
#: How many distinct terms of incoming pods keep their counts between cycles.
_INCOMING_INDEXES = 16


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


class _Marker:
    """A CycleState value that clones to itself."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def clone(self) -> "_Marker":
        return self


_NONE = _Marker(True)


@dataclasses.dataclass
class _FilterState:
    info: PodAffinityInfo
    existing_anti: dict
    affinity: dict
    anti: dict
    self_match: bool
    #: topology keys of the pairs in ``existing_anti`` (Filter looks up only these)
    existing_keys: tuple = ()
    #: the dicts may be the plugin's counts: copy before changing them
    shared: bool = False

    def clone(self) -> "_FilterState":
        return _FilterState(self.info, dict(self.existing_anti), dict(self.affinity),
                            dict(self.anti), self.self_match, self.existing_keys)

    def own(self) -> None:
        if self.shared:
            self.existing_anti, self.affinity, self.anti = \
                dict(self.existing_anti), dict(self.affinity), dict(self.anti)
            self.shared = False


def _hostname_of(node: NodeInfo) -> Contribution:
    """The node's hostname label, counted once (TopologyCounts: nodes per hostname)."""
    value = node.labels.get(HOSTNAME)
    return [(None, (HOSTNAME, value), 1)] if value is not None else []


def _merged(dicts: list[dict]) -> tuple[dict, bool]:
    """The sum of count dicts, and whether it is one of them (shared)."""
    if len(dicts) == 1:
        return dicts[0], True
    out: dict = {}
    for d in dicts:
        for pair, n in d.items():
            out[pair] = out.get(pair, 0) + n
    return out, False


class InterPodAffinity:
    """PreFilter (+ extensions) + Filter + PreScore + Score + Sign (see the module docstring)."""

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
        self._view = NodeView()
        self._cursor: Hashable | None = None  # Handle.node_changes cursor of the view
        self._hostnames = TopologyCounts(_hostname_of)  # no two nodes share one?
        self._existing = TopologyCounts(self._existing_terms_on)
        self._incoming: collections.OrderedDict[Hashable, TopologyCounts] = \
            collections.OrderedDict()

    def set_handle(self, handle: Handle) -> None:
        self.handle = handle
        self._namespaces = handle.informer("v1", "Namespace")

    def _ns_labels(self, name: str) -> dict:
        if self._namespaces is None:
            return {}
        ns = self._namespaces.get(name)
        return (ns or {}).get("metadata", {}).get("labels") or {}

    def _info(self, pod: dict) -> PodAffinityInfo:
        # the incoming pod's terms, parsed once per version of the pod
        if pod["metadata"].get("resourceVersion"):
            return self._infos.get(pod)
        return PodAffinityInfo.of(pod)

    # ---------------------------------------------------------------- the snapshot's counts

    def _surely_no_affinity(self, nodes: list[NodeInfo]) -> bool:
        """True when no pod in the snapshot has pod (anti-)affinity; False when some may
        have (the kept counts then tell exactly)."""
        if self._existing.totals:
            return False  # there were some last time: the counts are needed anyway
        with_affinity = getattr(self.handle, "node_infos_with_pod_affinity", None)
        if with_affinity is not None:
            return not with_affinity()
        for node in nodes:
            if node.pods_with_affinity:
                return False
        return True

    def _sync(self, state: CycleState, nodes: list[NodeInfo]) -> NodeView:
        marker = state.get(_SYNCED_KEY)
        if marker is None or marker.value is not nodes:
            changes = getattr(self.handle, "node_changes", None)
            if changes is not None and nodes is self.handle.node_infos():
                # the snapshot's own change feed: O(changes), not a pass over every node
                self._cursor, names = changes(self._cursor)
                if names is None:
                    self._view.sync(nodes)
                else:
                    self._view.sync_names(names, self.handle.node_info)
            else:
                self._cursor = None  # the view no longer follows the snapshot's feed
                self._view.sync(nodes)
            state.write(_SYNCED_KEY, _Marker(nodes))
        return self._view

    def _existing_terms_on(self, node: NodeInfo) -> Contribution:
        """Existing pods' terms on ``node``, grouped by (kind, term)."""
        if not node.pods_with_affinity:
            return []
        labels = node.labels
        out: Contribution = []
        for other in node.pods_with_affinity:
            info = self._infos.get(other)
            for kind, terms in ((_REQ_ANTI, info.required_anti),
                                (_REQ_AFF, info.required_affinity),
                                (_PREF_AFF, info.preferred_affinity),
                                (_PREF_ANTI, info.preferred_anti)):
                for term in terms:
                    tv = labels.get(term.topology_key)
                    if tv is not None:
                        out.append(((kind, term), (term.topology_key, tv), 1))
        return out

    def _existing_groups(self, view: NodeView) -> dict:
        return self._existing.refresh(view).totals

    def _incoming_counts(self, terms: tuple[AffinityTerm, ...], view: NodeView) -> dict:
        """(key, value) -> existing pods matching *all* ``terms`` (counted under each term's
        topology key), over the view's nodes."""

        def count(node: NodeInfo) -> Contribution:
            n = 0
            for other in node.pods:
                for term in terms:
                    if not term.matches(other, self._ns_labels):
                        break
                else:
                    n += 1
            if not n:
                return []
            labels = node.labels
            return [(None, (t.topology_key, labels[t.topology_key]), n) for t in terms
                    if t.topology_key in labels]

        if not all(t.indexable for t in terms):
            # matches depend on namespace labels, which change without node changes
            out: dict = {}
            for node in view.by_name.values():
                for _, pair, n in count(node):
                    out[pair] = out.get(pair, 0) + n
            return out
        key = tuple(t.match_key for t in terms)
        counts = self._incoming.get(key)
        if counts is None:
            counts = self._incoming[key] = TopologyCounts(count)
            if len(self._incoming) > _INCOMING_INDEXES:
                self._incoming.popitem(last=False)
        else:
            self._incoming.move_to_end(key)
        return counts.refresh(view).totals.get(None) or {}

    # ---------------------------------------------------------------- filter

    def _existing_anti_for(self, st: _FilterState, pod: dict, existing: dict, labels: dict,
                           sign: int) -> None:
        for term in self._infos.get(existing).required_anti:
            if term.matches(pod, self._ns_labels):
                _bump(st.existing_anti, labels, term.topology_key, sign)
                if term.topology_key not in st.existing_keys:
                    st.existing_keys += (term.topology_key,)

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
        info = self._info(pod)
        if not info.any and self._surely_no_affinity(nodes):
            state.write(_NONE_KEY, _NONE)
            return Status.skip()
        view = self._sync(state, nodes)
        matched, keys, matched_terms = [], [], []
        selected = False  # some existing pod's term selects this pod
        for (kind, term), pairs in self._existing_groups(view).items():
            if kind != _REQ_ANTI and (selected or info.any):
                continue  # only needed to tell whether nothing concerns this pod
            if term.matches(pod, self._ns_labels):
                selected = True
                if kind == _REQ_ANTI:
                    matched.append(pairs)
                    matched_terms.append(term)
                    if term.topology_key not in keys:
                        keys.append(term.topology_key)
        if not matched and not info.required_affinity and not info.required_anti:
            if not info.any and not selected:
                state.write(_NONE_KEY, _NONE)  # PreScore has nothing to score either
            return Status.skip()
        existing_anti, shared = _merged(matched) if matched else ({}, False)
        affinity = self._incoming_counts(info.required_affinity, view) \
            if info.required_affinity else {}
        anti, anti_shared = _merged([self._incoming_counts((t,), view)
                                     for t in info.required_anti]) \
            if info.required_anti else ({}, False)
        st = _FilterState(info, existing_anti, affinity, anti,
                          matches_all(info.required_affinity, pod, self._ns_labels),
                          tuple(keys), shared or anti_shared or bool(info.required_affinity))
        state.write(_FILTER_KEY, st)
        local = self._node_local(pod, info, view, matched_terms)
        if local is not None:
            state.write(_LOCAL_KEY, _Marker(local))
        return _OK

    def _node_local(self, pod: dict, info: PodAffinityInfo, view: NodeView,
                    matched_terms: list[AffinityTerm]) -> Hashable | None:
        """The node-local sign fragment (module docstring), or None."""
        if info.required_affinity or info.preferred_affinity or info.preferred_anti:
            return None
        if any(t.topology_key != HOSTNAME or not t.indexable for t in info.required_anti):
            return None
        if any(t.topology_key != HOSTNAME for t in matched_terms):
            return None
        for kind, term in self._existing_groups(view):
            if kind != _REQ_ANTI and term.matches(pod, self._ns_labels):
                return None  # PreScore would score it: counts over whole domains
        hostnames = self._hostnames.refresh(view)
        if len(hostnames.totals.get(None, ())) != len(hostnames.nodes):
            return None  # two nodes share a hostname: a domain spans nodes
        return ("hostname-local", info.required_anti, frozenset(matched_terms))

    def pre_filter_add_pod(self, state: CycleState, pod: dict, pod_to_add: dict,
                           node: NodeInfo) -> Status:
        st = state.get(_FILTER_KEY)
        if st is not None:
            st.own()
            self._existing_anti_for(st, pod, pod_to_add, node.labels, 1)
            self._incoming_for(st, pod_to_add, node.labels, 1)
        return _OK

    def pre_filter_remove_pod(self, state: CycleState, pod: dict, pod_to_remove: dict,
                              node: NodeInfo) -> Status:
        st = state.get(_FILTER_KEY)
        if st is not None:
            st.own()
            self._existing_anti_for(st, pod, pod_to_remove, node.labels, -1)
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
            for key in st.existing_keys:
                tv = labels.get(key)
                if tv is not None and st.existing_anti.get((key, tv), 0) > 0:
                    return _EXISTING_FAIL
        return _OK

    def sign(self, state: CycleState, pod: dict) -> Hashable | None:
        """A constant when the pod has no terms and no existing pod's term selects it (Filter
        passes every node, PreScore skips); the node-local fragment PreFilter found (module
        docstring); else None: results depend on other nodes."""
        if state.get(_NONE_KEY) is not None:
            return _NONE_SIGNATURE
        local = state.get(_LOCAL_KEY)
        return local.value if local is not None else None

    # ---------------------------------------------------------------- score

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        if state.get(_NONE_KEY) is not None:
            return Status.skip()
        info = self._info(pod)
        has_constraints = bool(info.preferred_affinity or info.preferred_anti)
        ignore_existing = self.options.ignorePreferredTermsOfExistingPods
        if ignore_existing and not has_constraints:
            return Status.skip()
        all_nodes = self.handle.node_infos() if self.handle is not None else nodes
        if not has_constraints and state.get(_SYNCED_KEY) is None and \
                self._surely_no_affinity(all_nodes):
            return Status.skip()
        view = self._sync(state, all_nodes)
        scores: dict[str, dict[str, int]] = {}
        hard = self.options.hardPodAffinityWeight
        for (kind, term), pairs in self._existing_groups(view).items():
            if kind == _REQ_ANTI:
                continue
            if kind == _REQ_AFF:
                weight = hard
            elif ignore_existing:
                continue
            else:
                weight = term.weight if kind == _PREF_AFF else -term.weight
            if weight and term.matches(pod, self._ns_labels):
                _add_scores(scores, pairs, weight)
        for terms, sign in ((info.preferred_affinity, 1), (info.preferred_anti, -1)):
            for term in terms:
                if term.weight:
                    _add_scores(scores, self._incoming_counts((term,), view),
                                sign * term.weight)
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


def _add_scores(scores: dict, pairs: dict, weight: int) -> None:
    """Add ``weight`` per counted pod to each (key, value) of ``pairs``."""
    for (key, tv), n in pairs.items():
        values = scores.get(key)
        if values is None:
            values = scores[key] = {}
        values[tv] = values.get(tv, 0) + weight * n
