"""NodeResourcesFit: a pod fits a node when its requests fit what the node's allocatable
leaves after the pods already there (pod count included); nodes are scored by a strategy:
LeastAllocated (spread, the default), MostAllocated (bin-pack) or RequestedToCapacityRatio
(a piecewise-linear function of utilization)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, CycleState, NodeInfo, Status,
                                             pod_requests)

_KEY = "NodeResourcesFit"
_OK = Status()
STRATEGIES = ("LeastAllocated", "MostAllocated", "RequestedToCapacityRatio")
DEFAULT_RESOURCES = [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}]
#: RequestedToCapacityRatio scores are 0..10 in the config, scaled to 0..100.
MAX_CUSTOM_PRIORITY_SCORE = 10
_NATIVE = ("cpu", "memory", "ephemeral-storage")


def least_requested(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


def broken_linear(shape: list[tuple[int, int]]):
    """The piecewise-linear function through ``(utilization, score)`` points (scores already
    scaled to 0..100), flat outside them."""
    def f(p: int) -> int:
        for i, (u, s) in enumerate(shape):
            if p <= u:
                if i == 0:
                    return shape[0][1]
                pu, ps = shape[i - 1]
                return ps + (s - ps) * (p - pu) // (u - pu)
        return shape[-1][1]
    return f


@dataclasses.dataclass
class _PodRequest:
    request: dict[str, int]
    non_zero: dict[str, int]
    #: (resource, amount) to check in Filter: positive, not ignored
    checks: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: (resource, weight, amount the pod adds, use the non-zero sums) for Score
    scoring: list[tuple[str, int, int, bool]] = dataclasses.field(default_factory=list)

    def clone(self) -> "_PodRequest":
        return self


#: How many distinct request shapes NodeResourcesFit remembers (then it starts over).
_COMPUTED_MAX = 512


def _request_items(container: dict) -> tuple | None:
    requests = (container.get("resources") or _EMPTY).get("requests")
    if not requests:
        return ()
    items = tuple(requests.items())
    for _, value in items:
        if type(value) is not str:  # quantities as the API serves them only
            return None
    return items


def _requests_key(pod: dict) -> tuple | None:
    """Everything :func:`pod_requests` reads of ``pod`` (containers' requests, init
    containers' requests and restartPolicy, overhead), as a hashable key; None when a
    value is not a string (then nothing is remembered)."""
    spec = pod.get("spec") or _EMPTY
    containers: list = []
    for c in spec.get("containers") or ():
        items = _request_items(c)
        if items is None:
            return None
        containers.append(items)
    inits: list = []
    for c in spec.get("initContainers") or ():
        items = _request_items(c)
        policy = c.get("restartPolicy")
        if items is None or (policy is not None and type(policy) is not str):
            return None
        inits.append((policy, items))
    overhead = spec.get("overhead")
    extra: tuple = ()
    if overhead:
        extra = tuple(overhead.items())
        for _, value in extra:
            if type(value) is not str:
                return None
    return tuple(containers), tuple(inits), extra


_EMPTY: dict = {}


class NodeResourcesFit:
    """PreFilter + Filter + PreScore + Score + Sign (the pod's request vector; ignored
    resources and the scoring strategy are fixed per instance)."""

    @dataclasses.dataclass
    class Options:
        #: Extended resources whose requests are not checked.
        ignoredResources: list[str] = dataclasses.field(default_factory=list)
        #: Extended resource groups (prefix before ``/``) not checked.
        ignoredResourceGroups: list[str] = dataclasses.field(default_factory=list)
        #: ``{type: LeastAllocated|MostAllocated|RequestedToCapacityRatio,
        #: resources: [{name, weight}], requestedToCapacityRatio: {shape: [{utilization,
        #: score}]}}``.
        scoringStrategy: dict = dataclasses.field(default_factory=lambda: {
            "type": "LeastAllocated", "resources": DEFAULT_RESOURCES})

        def __post_init__(self) -> None:
            s = self.scoringStrategy
            kind = s.get("type", "LeastAllocated")
            if kind not in STRATEGIES:
                raise ValueError(f"scoringStrategy.type must be one of {', '.join(STRATEGIES)}, "
                                 f"got {kind!r}")
            unknown = set(s) - {"type", "resources", "requestedToCapacityRatio"}
            if unknown:
                raise ValueError(f"scoringStrategy: unknown key(s) {', '.join(sorted(unknown))}")
            resources = s.get("resources", DEFAULT_RESOURCES)
            if not isinstance(resources, list) or not resources:
                raise ValueError("scoringStrategy.resources must be a non-empty list")
            for r in resources:
                if not isinstance(r, dict) or not isinstance(r.get("name"), str) or \
                        not isinstance(r.get("weight", 1), int) or not 1 <= r.get("weight", 1) <= 100:
                    raise ValueError("scoringStrategy.resources: each entry needs a name and a "
                                     "weight between 1 and 100")
            if kind == "RequestedToCapacityRatio":
                shape = (s.get("requestedToCapacityRatio") or {}).get("shape")
                if not shape:
                    raise ValueError("scoringStrategy.requestedToCapacityRatio.shape is required "
                                     "for RequestedToCapacityRatio")
                last = -1
                for point in shape:
                    u, sc = point.get("utilization"), point.get("score")
                    if not isinstance(u, int) or not 0 <= u <= 100 or u <= last:
                        raise ValueError("shape utilizations must increase within 0..100")
                    if not isinstance(sc, int) or not 0 <= sc <= MAX_CUSTOM_PRIORITY_SCORE:
                        raise ValueError("shape scores must be within 0..10")
                    last = u

    def __init__(self, options: "NodeResourcesFit.Options | None" = None):
        self.options = options or NodeResourcesFit.Options()
        s = self.options.scoringStrategy
        self.strategy = s.get("type", "LeastAllocated")
        self.resources = [(r["name"], r.get("weight", 1))
                          for r in s.get("resources", DEFAULT_RESOURCES)]
        self._last_state: CycleState | None = None
        self._last_request: _PodRequest | None = None
        # what _compute made of the request fields (see _requests_key): pods of one
        # template share them, so most cycles skip parsing the quantities again
        self._computed: dict[tuple, _PodRequest] = {}
        self._ignored = set(self.options.ignoredResources)
        self._ignored_groups = set(self.options.ignoredResourceGroups)
        if self.strategy == "RequestedToCapacityRatio":
            shape = [(p["utilization"], p["score"] * (MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE))
                     for p in s["requestedToCapacityRatio"]["shape"]]
            self._ratio = broken_linear(shape)

    # ---------------------------------------------------------------- filter

    def _compute(self, pod: dict) -> _PodRequest:
        key = _requests_key(pod)
        if key is not None:
            known = self._computed.get(key)
            if known is not None:
                return known
        req = self._compute_new(pod)
        if key is not None:
            if len(self._computed) >= _COMPUTED_MAX:
                self._computed.clear()
            self._computed[key] = req
        return req

    def _compute_new(self, pod: dict) -> _PodRequest:
        request, non_zero = pod_requests(pod), pod_requests(pod, non_zero=True)
        checks = [(name, amount) for name, amount in request.items()
                  if amount > 0 and name != "pods" and not self._ignored_resource(name)]
        scoring = []
        for name, weight in self.resources:
            if name in ("cpu", "memory"):
                scoring.append((name, weight, non_zero.get(name, 0), True))
            else:
                scoring.append((name, weight, request.get(name, 0), False))
        return _PodRequest(request, non_zero, checks, scoring)

    def _request(self, state: CycleState, pod: dict) -> _PodRequest:
        if state is self._last_state:  # the same cycle as the previous call: skip the lookup
            return self._last_request
        req = state.get(_KEY)
        if req is None:
            req = self._compute(pod)
            state.write(_KEY, req)
        self._last_state, self._last_request = state, req
        return req

    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        req = self._compute(pod)
        state.write(_KEY, req)
        self._last_state, self._last_request = state, req
        return _OK

    def _ignored_resource(self, name: str) -> bool:
        if name in _NATIVE or name == "pods":
            return False
        return name in self._ignored or name.split("/", 1)[0] in self._ignored_groups

    def insufficient(self, request: dict[str, int], node: NodeInfo) -> list[str]:
        """The reasons ``request`` does not fit ``node`` (empty when it fits)."""
        checks = [(name, amount) for name, amount in request.items()
                  if amount > 0 and name != "pods" and not self._ignored_resource(name)]
        return self._insufficient(checks, node)

    @staticmethod
    def _insufficient(checks: list[tuple[str, int]], node: NodeInfo) -> list[str]:
        alloc, used = node.allocatable, node.requested
        reasons = []
        if len(node.pods) + 1 > alloc.get("pods", 0):
            reasons.append("Too many pods")
        for name, amount in checks:
            if amount > alloc.get(name, 0) - used.get(name, 0):
                reasons.append(f"Insufficient {name}")
        return reasons

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        req = self._last_request if state is self._last_state else self._request(state, pod)
        alloc, used = node.allocatable, node.requested
        if len(node.pods) < alloc.get("pods", 0):
            for name, amount in req.checks:
                if amount > alloc.get(name, 0) - used.get(name, 0):
                    break
            else:
                return _OK
        return Status.unschedulable(*self._insufficient(req.checks, node))

    def sign(self, state: CycleState, pod: dict) -> Hashable:
        req = self._request(state, pod)
        return tuple(req.checks), tuple(req.scoring)

    # ---------------------------------------------------------------- score

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        self._request(state, pod)
        return _OK

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        req = self._last_request if state is self._last_state else self._request(state, pod)
        total = weights = 0
        alloc, non_zero_used, used = node.allocatable, node.non_zero_requested, node.requested
        strategy = self.strategy
        if strategy == "LeastAllocated":
            for name, weight, adds, non_zero in req.scoring:
                capacity = alloc.get(name, 0)
                if capacity == 0:
                    continue
                requested = (non_zero_used if non_zero else used).get(name, 0) + adds
                if requested <= capacity:
                    total += (capacity - requested) * MAX_NODE_SCORE // capacity * weight
                weights += weight
            return total // weights if weights else 0
        for name, weight, adds, non_zero in req.scoring:
            capacity = alloc.get(name, 0)
            if capacity == 0:
                continue
            requested = (non_zero_used if non_zero else used).get(name, 0) + adds
            if strategy == "MostAllocated":
                value = min(requested, capacity) * MAX_NODE_SCORE // capacity
            else:
                utilization = 100 if requested > capacity else requested * 100 // capacity
                value = self._ratio(utilization)
            total += value * weight
            weights += weight
        if not weights:
            return 0
        if strategy == "RequestedToCapacityRatio":
            return int(total / weights + 0.5)
        return total // weights

    #: Raw scores are 0..100 already: the framework need not call normalize_scores.
    scores_normalized = True

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        return scores

    def events_to_register(self) -> list[str]:
        return ["Pod/Delete", "Node/Add", "Node/UpdateAllocatable"]
