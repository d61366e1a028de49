"""The scheduling framework's extension points.

Scheduler plugins (entry-point group ``pilothouse.scheduler``) are classes implementing one or
more of the extension-point interfaces below. A *profile* in the config
(``scheduler.profiles[]``, selected by a pod's ``spec.schedulerName``) lists plugins in order
with a weight; the scheduler host (:mod:`pilothouse.scheduler`) calls, for each pod, per
scheduling cycle:

``QueueSort`` (first configured plugin only) → ``PreFilter`` → ``Filter`` (per node) →
``PostFilter`` (only when no node passed; e.g. preemption) → ``PreScore`` → ``Score`` (per
node) and ``normalize_scores`` → weighted sum, highest wins (ties broken at random) →
``Reserve`` → ``Permit`` → then, in the binding cycle, which runs concurrently with the next
pods' scheduling cycles: ``PreBind`` → ``Bind`` (first plugin not answering SKIP binds) →
``PostBind``. If anything after Reserve fails, ``unreserve`` is called on every Reserve plugin
in reverse order, the pod's assumed place in the scheduler's cache is forgotten and the pod is
requeued with back-off.

Within an extension point plugins run in configured order. Every method may be a plain
function or a coroutine; the scheduler host awaits coroutines. Filter and Score are called
once per candidate node and must be fast and must not do I/O (read the :class:`NodeInfo`
snapshot instead): the host calls plain-function filters in a tight loop and only pays for
``await`` when a plugin's method is a coroutine function.

Beside the extension points, a plugin may implement four optional interfaces:

* :class:`HandleAware` — receive the framework :class:`Handle` once, after construction
  (the API client, the cycle's snapshot of every node, shared informers, running the
  profile's filters on a what-if :class:`NodeInfo`).
* :class:`PreFilterExtensions` — keep the state computed in PreFilter up to date when the
  framework adds or removes a pod on a node copy (nominated pods, preemption what-ifs).
* :class:`EnqueueExtensions` — name the cluster events that can make a pod this plugin
  rejected schedulable; the host then retries such a pod only on those events.
* :class:`Sign` — describe, per pod, everything the plugin's Filter and Score read besides
  the node, so the framework may reuse a node's Filter status and raw scores for later pods
  with the same signature on the same unchanged node (:attr:`NodeInfo.generation`). Optional,
  but a profile reuses nothing unless every Filter and weighted Score plugin in it signs.

The pods handed to plugins are the API objects (dicts). When the API server's admission did
not resolve ``spec.priority`` (and ``spec.preemptionPolicy``) from ``spec.priorityClassName``,
the host fills them in on its private copy from the PriorityClass objects (or the
``globalDefault`` class), so plugins read :func:`pod_priority` and nothing else.

Version history: appeared in 0.1. In 0.1 the framework also gained :class:`Handle`,
:class:`HandleAware`, :class:`PreFilterExtensions`, :class:`EnqueueExtensions`, the
:class:`NodeInfo` accounting methods and the resource helpers (:func:`pod_requests`,
:func:`resource_amounts`, :func:`pod_priority`). 0.2 added :class:`Sign` (pod scheduling
signatures: per-node reuse of Filter and Score results), :func:`freeze`,
:meth:`Handle.node_infos_with_pod_affinity`,
:meth:`Handle.node_infos_with_required_anti_affinity`,
:meth:`Handle.node_infos_with_taints`, :meth:`Handle.node_changes` and the
``scores_normalized`` attribute of :class:`Score` plugins, and made
:attr:`NodeInfo.generation` unique across all NodeInfo objects of a process;
``NodeInfo.name``, ``labels`` and ``taints`` became plain attributes (same values, read
faster in per-node loops).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import functools
import itertools
from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

from pilothouse.model.quantity import Quantity

__all__ = ["Bind", "Code", "CycleState", "DEFAULT_MEMORY_REQUEST", "DEFAULT_MILLI_CPU_REQUEST",
           "EVENTS", "EnqueueExtensions", "Filter", "Handle", "HandleAware", "MAX_NODE_SCORE",
           "NodeInfo", "Permit", "PostBind", "PostFilter", "PreBind", "PreFilter",
           "PreFilterExtensions", "PreScore", "QueueSort", "Reserve", "Score", "Sign", "Status",
           "fit_error_message", "freeze", "normalized_image_name", "pod_key", "pod_priority",
           "pod_requests", "resource_amounts"]

#: Scores returned by normalize_scores must lie in [0, MAX_NODE_SCORE].
MAX_NODE_SCORE = 100
#: The CPU (millicores) and memory (bytes) a container without requests counts as when
#: *scoring* (never when filtering), as in Kubernetes, so that request-less pods still spread.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

#: Cluster events the host reports to the scheduling queue (see :class:`EnqueueExtensions`).
#: ``Pod/*`` events are about pods *assigned* to a node; an update counts only when it
#: changes what scheduling reads (``Node/Update`` stands for any of the three node update
#: kinds; ``Pod/Update`` is a label change; a pod turning Succeeded/Failed is
#: ``Pod/Delete``). ``*`` matches every event.
EVENTS = ("Node/Add", "Node/Delete", "Node/Update", "Node/UpdateLabel", "Node/UpdateTaint",
          "Node/UpdateAllocatable", "Pod/Add", "Pod/Update", "Pod/Delete",
          "Namespace/Update", "PriorityClass/Add", "*")


class Code(enum.Enum):
    """What a :class:`Status` tells the framework to do next."""

    SUCCESS = 0  #: go on
    ERROR = 1  #: internal error: the pod is requeued with back-off; the message is logged
    UNSCHEDULABLE = 2  #: not here now; post-filter (preemption) may help; requeued on change
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3  #: not here, and preemption cannot help
    WAIT = 4  #: Permit only: hold the pod until allowed, rejected or the timeout
    SKIP = 5  #: this plugin has nothing to do for this pod (skip its later points / bind)


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """The result of one plugin call: a :class:`Code`, reasons shown to the user (one per
    line of the unschedulable summary, e.g. ``"Insufficient cpu"``) and, on failure, the name
    of the plugin that failed (filled in by the framework).

    The summary a pending pod gets counts each distinct reason over the nodes, Kubernetes'
    way: ``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
    {dedicated: gpu}.`` — so keep reasons short and stable (no node names)."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code in (Code.SUCCESS, Code.SKIP)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    @classmethod
    def unschedulable(cls, *reasons: str, resolvable: bool = True) -> "Status":
        """UNSCHEDULABLE (or, with ``resolvable=False``, UNSCHEDULABLE_AND_UNRESOLVABLE)."""
        return cls(Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                   reasons)

    @classmethod
    def error(cls, message: str) -> "Status":
        """An internal error (the pod is retried with back-off)."""
        return cls(Code.ERROR, (message,))

    @classmethod
    def skip(cls) -> "Status":
        """Nothing to do for this pod."""
        return _SKIP

    def with_plugin(self, plugin: str) -> "Status":
        """This status attributed to ``plugin`` (the framework calls this)."""
        return Status(self.code, self.reasons, plugin)


_SKIP = Status(Code.SKIP)


class CycleState:
    """Per-cycle data shared between a plugin's extension points for one pod.

    Keys are strings owned by the writing plugin (use the plugin's name as a prefix). Values
    stored must support ``copy.deepcopy`` or define ``clone()``: preemption clones the state
    to try evictions without disturbing the real cycle (``clone()`` is much cheaper than a
    deep copy: define it for anything bigger than a few fields).
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def read(self, key: str) -> Any:
        """Return the value stored under ``key``; raises ``KeyError`` if absent."""
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        return self._data.get(key, default)

    def write(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for later extension points of this cycle."""
        self._data[key] = value

    def clone(self) -> "CycleState":
        """A deep copy for what-if evaluation (preemption)."""
        other = CycleState()
        other._data = {k: v.clone() if hasattr(v, "clone") else copy.deepcopy(v)
                       for k, v in self._data.items()}
        return other


def fit_error_message(num_all_nodes: int, statuses: dict[str, Status],
                      pre_filter_msg: str = "", post_filter_msg: str = "") -> str:
    """Kubernetes' summary of a failed cycle, used for the PodScheduled condition, the
    FailedScheduling event and by preemption plugins for their own part::

        0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
        {dedicated: gpu}. preemption: 0/3 nodes are available: 3 No preemption victims
        found for incoming pod.

    ``statuses`` maps node names to their failing status; each reason is counted over the
    nodes and the ``"<count> <reason>"`` parts are sorted. A PreFilter rejection replaces the
    counts (``pre_filter_msg``); a PostFilter's message is appended as it is."""
    if num_all_nodes == 0 and not statuses:
        msg = "no nodes available to schedule pods"
        return msg + (" " + post_filter_msg if post_filter_msg else "")
    msg = f"0/{num_all_nodes} nodes are available:"
    if pre_filter_msg:
        msg += f" {pre_filter_msg}."
    else:
        hist = collections.Counter(r for s in statuses.values() for r in s.reasons)
        if hist:
            msg += " " + ", ".join(sorted(f"{n} {r}" for r, n in hist.items())) + "."
    if post_filter_msg:
        msg += " " + post_filter_msg
    return msg


# ----------------------------------------------------------------------------- resources


@functools.lru_cache(maxsize=4096)
def _amount(name: str, text: str) -> int:
    q = Quantity(text)
    return q.milli_value() if name == "cpu" else q.value()


def resource_amounts(resources: dict | None) -> dict[str, int]:
    """A ``ResourceList`` (``{"cpu": "500m", "memory": "1Gi"}``) as integers in base units:
    cpu in millicores, everything else (memory and storage in bytes, ``pods``, extended
    resources) rounded up to a whole number."""
    if not resources:
        return {}
    return {name: _amount(name, str(value)) for name, value in resources.items()}


def _add_into(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def _max_into(total: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        if v > total.get(k, 0):
            total[k] = v


def pod_requests(pod: dict, non_zero: bool = False) -> dict[str, int]:
    """What a pod requests, in :func:`resource_amounts` units, as Kubernetes computes it:
    the larger of (all app containers plus sidecar init containers) and the largest
    init-container step (each regular init container plus the sidecars started before it),
    plus ``spec.overhead``.

    With ``non_zero``, a container without a cpu or memory request counts as
    :data:`DEFAULT_MILLI_CPU_REQUEST` / :data:`DEFAULT_MEMORY_REQUEST` (for scoring only);
    only ``cpu`` and ``memory`` are returned then."""
    spec = pod.get("spec") or {}

    def one(container: dict) -> dict[str, int]:
        req = resource_amounts((container.get("resources") or {}).get("requests"))
        if non_zero:
            return {"cpu": req.get("cpu") or DEFAULT_MILLI_CPU_REQUEST,
                    "memory": req.get("memory") or DEFAULT_MEMORY_REQUEST}
        return req

    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add_into(total, one(c))
    init_max: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        req = one(c)
        if c.get("restartPolicy") == "Always":
            _add_into(total, req)
            _add_into(sidecars, req)
            step = dict(sidecars)
        else:
            step = dict(req)
            _add_into(step, sidecars)
        _max_into(init_max, step)
    _max_into(total, init_max)
    if spec.get("overhead"):
        over = resource_amounts(spec["overhead"])
        _add_into(total, {k: v for k, v in over.items()
                          if not non_zero or k in ("cpu", "memory")})
    return total


def pod_priority(pod: dict) -> int:
    """The pod's priority (``spec.priority``, 0 when unset)."""
    return (pod.get("spec") or {}).get("priority") or 0


def pod_key(pod: dict) -> str:
    """``namespace/name`` of a pod."""
    m = pod["metadata"]
    return f"{m.get('namespace') or 'default'}/{m['name']}"


def normalized_image_name(name: str) -> str:
    """An image reference as node ``status.images`` list it: ``:latest`` added when the
    reference has neither tag nor digest (``nginx`` → ``nginx:latest``)."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" in last:
        return name
    return name + ":latest"


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for a JSON-like ``value`` (dicts, lists, strings, numbers, bools,
    None), for :meth:`Sign.sign` fragments built from pod fields: equal values give equal
    results, different values different ones. Dicts become frozensets of (key, frozen value)
    pairs (key order does not matter), lists tuples (order matters); bools and floats are
    tagged so that ``True``, ``1`` and ``1.0`` stay distinct. Costs a few microseconds for a
    typical toleration list; call it once per cycle, not per node. Since 0.2."""
    t = type(value)
    if t is dict:
        return frozenset((k, freeze(v)) for k, v in value.items())
    if t is list or t is tuple:
        return tuple(freeze(v) for v in value)
    if t is bool or t is float:
        return (_TAGS[t], value)
    return value


class _Tag:
    """A marker no JSON value can equal (keeps ``True`` apart from ``1``, ``1.0`` from
    ``1``)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<{self.kind}>"


_TAGS = {bool: _Tag("bool"), float: _Tag("float")}


def _pod_identity(pod: dict) -> str:
    m = pod["metadata"]
    return m.get("uid") or f"{m.get('namespace')}/{m['name']}"


def _has_affinity(pod: dict) -> tuple[bool, bool]:
    """(has any pod (anti-)affinity, has required anti-affinity)."""
    aff = (pod.get("spec") or {}).get("affinity") or {}
    pa, paa = aff.get("podAffinity"), aff.get("podAntiAffinity")
    return bool(pa or paa), bool(paa and paa.get("requiredDuringSchedulingIgnoredDuringExecution"))


#: Source of :attr:`NodeInfo.generation`: one counter per process, so no two states of any
#: NodeInfo objects ever share a generation (a deleted and re-added node, two clones changed
#: differently, two NodeInfos built for the same Node all get different ones).
_generations = itertools.count(1)


@dataclasses.dataclass(slots=True)
class NodeInfo:
    """The scheduler's snapshot of one node: the Node object, the pods assigned to it
    (including pods assumed by this scheduler but not yet bound), and what those pods use.

    ``requested`` sums :func:`pod_requests` of ``pods`` (resource name → amount in base units,
    cpu in millicores); ``non_zero_requested`` is the same with the scoring defaults for
    request-less containers; ``allocatable`` is the node's ``status.allocatable`` in the same
    units (``pods`` included); ``images`` maps each image name the node reports
    (``status.images[].names``, through :func:`normalized_image_name`) to its size in bytes;
    ``pods_with_affinity`` and ``pods_with_required_anti_affinity`` are the subsets of
    ``pods`` with pod (anti-)affinity, so affinity plugins skip the rest cheaply. ``name``,
    ``labels`` and ``taints`` are the Node's ``metadata.name``, ``metadata.labels`` and
    ``spec.taints`` (``{}`` / ``[]`` when absent), read once per :meth:`set_node`; they are
    plain attributes for speed in per-node loops: read them, never assign or change them.

    ``generation`` identifies the NodeInfo's content: :meth:`set_node`, :meth:`add_pod` and
    :meth:`remove_pod` give it a new value from one process-wide counter, and :meth:`clone`
    keeps it. So two NodeInfos (the cache's and a snapshot's copy, or one object at two
    times) with the same generation hold the same pods and the same Node as far as scheduling
    reads it, and a deleted and re-added node never repeats an old generation. The host may
    swap in newer objects without a new generation: a Node whose changes no plugin reads
    (e.g. a heartbeat), and a pod whose new version differs only in ``status``,
    ``metadata.resourceVersion``, ``metadata.managedFields`` or ``metadata.generation`` (the
    binding's confirmation of an assumed pod, a kubelet's status report; since 0.2): the
    snapshot holds the newest objects, but the Filter and Score results of a plugin that
    implements :class:`Sign` must not depend on the ``status`` of the pods on a node (what-if
    code such as preemption may read it). Pod scheduling signatures
    (:class:`Sign`) rely on this to reuse Filter and Score results per node. (Since 0.2;
    in 0.1 each object counted from 0 on its own.) The ``generation`` argument of the
    constructor is ignored; ``==`` compares content, not generations.

    Plugins read a NodeInfo and never change the one the framework hands them; what-if code
    (preemption) changes a :meth:`clone` through :meth:`add_pod` / :meth:`remove_pod`.
    Constructing ``NodeInfo(node, pods)`` computes the derived fields (``requested`` is taken
    as given when it is passed non-empty).
    """

    node: dict
    pods: list[dict] = dataclasses.field(default_factory=list)
    requested: dict[str, int] = dataclasses.field(default_factory=dict)
    non_zero_requested: dict[str, int] = dataclasses.field(default_factory=dict)
    allocatable: dict[str, int] = dataclasses.field(default_factory=dict)
    images: dict[str, int] = dataclasses.field(default_factory=dict)
    pods_with_affinity: list[dict] = dataclasses.field(default_factory=list)
    pods_with_required_anti_affinity: list[dict] = dataclasses.field(default_factory=list)
    generation: int = dataclasses.field(default=0, compare=False)
    name: str = dataclasses.field(default="", init=False, compare=False)
    labels: dict[str, str] = dataclasses.field(default_factory=dict, init=False,
                                               repr=False, compare=False)
    taints: list[dict] = dataclasses.field(default_factory=list, init=False, repr=False,
                                           compare=False)

    def __post_init__(self) -> None:
        self.set_node(self.node)
        pods, given = list(self.pods), dict(self.requested)
        self.pods, self.requested, self.non_zero_requested = [], {}, {}
        self.pods_with_affinity, self.pods_with_required_anti_affinity = [], []
        for pod in pods:
            self.add_pod(pod)
        if given:
            self.requested = given

    def set_node(self, node: dict) -> None:
        """Replace the Node object and recompute ``name``, ``labels``, ``taints``,
        ``allocatable`` and ``images``; a new ``generation``."""
        self.node = node
        meta = node["metadata"]
        self.name = meta["name"]
        self.labels = meta.get("labels") or {}
        self.taints = (node.get("spec") or {}).get("taints") or []
        status = node.get("status") or {}
        self.allocatable = resource_amounts(status.get("allocatable") or status.get("capacity"))
        images: dict[str, int] = {}
        for image in status.get("images") or ():
            for n in image.get("names") or ():
                images[normalized_image_name(n)] = image.get("sizeBytes") or 0
        self.images = images
        self.generation = next(_generations)

    def add_pod(self, pod: dict) -> None:
        """Account ``pod`` on this node (its requests, affinity lists)."""
        self.pods.append(pod)
        _add_into(self.requested, pod_requests(pod))
        _add_into(self.non_zero_requested, pod_requests(pod, non_zero=True))
        any_aff, req_anti = _has_affinity(pod)
        if any_aff:
            self.pods_with_affinity.append(pod)
        if req_anti:
            self.pods_with_required_anti_affinity.append(pod)
        self.generation = next(_generations)

    def remove_pod(self, pod: dict) -> bool:
        """Undo :meth:`add_pod` for the pod with ``pod``'s uid; False if it is not here."""
        ident = _pod_identity(pod)
        for i, p in enumerate(self.pods):
            if _pod_identity(p) == ident:
                break
        else:
            return False
        stored = self.pods.pop(i)
        for k, v in pod_requests(stored).items():
            self.requested[k] = self.requested.get(k, 0) - v
        for k, v in pod_requests(stored, non_zero=True).items():
            self.non_zero_requested[k] = self.non_zero_requested.get(k, 0) - v
        self.pods_with_affinity = [p for p in self.pods_with_affinity
                                   if _pod_identity(p) != ident]
        self.pods_with_required_anti_affinity = [
            p for p in self.pods_with_required_anti_affinity if _pod_identity(p) != ident]
        self.generation = next(_generations)
        return True

    def clone(self) -> "NodeInfo":
        """A copy whose pod lists and sums can change without touching this one (the pod
        and Node dicts themselves are shared and must not be changed)."""
        other = object.__new__(NodeInfo)
        other.node = self.node
        other.pods = list(self.pods)
        other.requested = dict(self.requested)
        other.non_zero_requested = dict(self.non_zero_requested)
        other.allocatable = self.allocatable
        other.images = self.images
        other.pods_with_affinity = list(self.pods_with_affinity)
        other.pods_with_required_anti_affinity = list(self.pods_with_required_anti_affinity)
        other.generation = self.generation
        other.name, other.labels, other.taints = self.name, self.labels, self.taints
        return other


# ------------------------------------------------------------------------ the handle


@runtime_checkable
class Handle(Protocol):
    """What the framework offers plugins (:class:`HandleAware`), one per profile.

    Attributes: ``client`` — the :class:`pilothouse.client.Client` the host uses (for
    plugins that write, e.g. preemption deleting victims; never call it from Filter or
    Score); ``profile`` — the profile's schedulerName.
    """

    client: Any
    profile: str

    def node_infos(self) -> list[NodeInfo]:
        """Every node of the current scheduling cycle's snapshot (the same objects PreFilter
        received). Valid during a cycle; do not change them (clone first)."""

    def node_info(self, name: str) -> NodeInfo | None:
        """The snapshot's NodeInfo for ``name``, or None."""

    def node_infos_with_pod_affinity(self) -> list[NodeInfo]:
        """The snapshot's NodeInfos that have at least one pod with pod affinity or
        anti-affinity (``pods_with_affinity`` not empty), in :meth:`node_infos` order. Kept
        up to date as nodes change, so it costs O(result), not O(nodes): affinity plugins
        use it to skip all work when no pod anywhere has affinity. Valid during a cycle; do
        not change the list or its NodeInfos. Since 0.2."""

    def node_infos_with_required_anti_affinity(self) -> list[NodeInfo]:
        """Like :meth:`node_infos_with_pod_affinity`, for pods with *required* pod
        anti-affinity (``pods_with_required_anti_affinity`` not empty). Since 0.2."""

    def node_infos_with_taints(self) -> list[NodeInfo]:
        """The snapshot's NodeInfos whose Node has taints (``taints`` not empty), in
        :meth:`node_infos` order, kept up to date like :meth:`node_infos_with_pod_affinity`
        (O(result)): taint plugins use it to skip all work when no node has taints of the
        kind they score, without reading every feasible node. Valid during a cycle; do not
        change the list or its NodeInfos. Since 0.2."""

    def node_changes(self, since: Hashable | None) -> tuple[Hashable, frozenset[str] | None]:
        """The names of the nodes whose snapshot NodeInfo was replaced (a new
        :attr:`NodeInfo.generation`) since the cursor ``since``, with the cursor to pass
        next time: for plugins that keep per-node state across cycles (e.g. topology counts)
        and would otherwise compare :meth:`node_infos` with their last copy, node by node.
        ``since`` is a cursor an earlier call returned, or None. The names are None when the
        snapshot cannot tell: ``since`` None, nodes added or removed since (names and
        positions changed), or so far behind that the feed was trimmed; rescan
        :meth:`node_infos` then. O(changes). Call during a cycle. Since 0.2."""

    def nodes_with_image(self, image: str) -> int:
        """How many nodes of the snapshot report ``image`` (a name as in
        ``status.images[].names``); for image-locality scoring."""

    def informer(self, api_version: str, kind: str) -> Any:
        """A shared :class:`pilothouse.client.Informer` for a kind (cluster-wide), e.g.
        ``("v1", "Namespace")``. Call it from ``set_handle`` only: the host starts every
        informer requested there and waits for them to sync before the first cycle. Read
        ``.cache`` / ``.list()`` afterwards; never block on it."""

    def run_filter_plugins(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        """Run the profile's Filter plugins for ``pod`` on ``node`` (which may be a changed
        clone), in order, stopping at the first failure; pods nominated to the node with at
        least the pod's priority are taken into account as the scheduling cycle does.
        Synchronous: every Filter of a profile that preemption runs under must be a plain
        function. For PostFilter plugins."""

    def run_pre_filter_extension_add_pod(self, state: CycleState, pod: dict,
                                         pod_to_add: dict, node: NodeInfo) -> Status:
        """Tell every :class:`PreFilterExtensions` plugin that ``pod_to_add`` was added to
        ``node`` (a clone) in the what-if ``state``."""

    def run_pre_filter_extension_remove_pod(self, state: CycleState, pod: dict,
                                            pod_to_remove: dict, node: NodeInfo) -> Status:
        """Tell every :class:`PreFilterExtensions` plugin that ``pod_to_remove`` was removed
        from ``node`` (a clone) in the what-if ``state``."""

    def nominated_pods(self, node_name: str) -> list[dict]:
        """Pending pods nominated to run on ``node_name`` (``status.nominatedNodeName``, or
        set by this scheduler's post-filter and not yet visible in the API)."""

    def record_event(self, obj: dict, type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event about ``obj`` (e.g. ``Normal``, ``Preempted``). Returns at
        once; the write happens in the background and a failure is only logged."""

    def waiting_pods(self) -> list[dict]:
        """Pods held by a Permit plugin's WAIT."""

    def allow_waiting_pod(self, uid: str, plugin: str) -> None:
        """Permit plugin ``plugin`` now allows the waiting pod ``uid``; it binds when every
        plugin that answered WAIT has allowed it."""

    def reject_waiting_pod(self, uid: str, message: str) -> None:
        """Reject the waiting pod ``uid``: it is unreserved and requeued as unschedulable
        with ``message``."""


@runtime_checkable
class HandleAware(Protocol):
    def set_handle(self, handle: Handle) -> None:
        """Called once by the scheduler host after the plugin is constructed and before its
        first cycle, with the profile's :class:`Handle`. Request shared informers here.
        Runs on the scheduler's event loop; must not block."""


@runtime_checkable
class PreFilterExtensions(Protocol):
    def pre_filter_add_pod(self, state: CycleState, pod: dict, pod_to_add: dict,
                           node: NodeInfo) -> Status:
        """Update what :meth:`PreFilter.pre_filter` wrote into ``state`` as if ``pod_to_add``
        ran on ``node``. Called by the framework on cloned states (nominated pods, preemption);
        must not do I/O."""

    def pre_filter_remove_pod(self, state: CycleState, pod: dict, pod_to_remove: dict,
                              node: NodeInfo) -> Status:
        """Update ``state`` as if ``pod_to_remove`` no longer ran on ``node`` (a preemption
        victim). Must not do I/O."""


@runtime_checkable
class EnqueueExtensions(Protocol):
    def events_to_register(self) -> list[str]:
        """The cluster events (names from :data:`EVENTS`) after which a pod this plugin
        rejected may fit. Called once at start-up. A pod that failed is retried when any of
        the plugins that rejected it registered the event; a plugin that does not implement
        this interface is treated as registering ``*`` (retry on every event)."""


@runtime_checkable
class Sign(Protocol):
    def sign(self, state: CycleState, pod: dict) -> Hashable | None:
        """This plugin's part of the pod's *scheduling signature* (after Kubernetes'
        KEP-5598), so the framework can reuse per-node work across pods. Since 0.2.

        Who calls it and when: the framework, once per scheduling cycle, right after every
        PreFilter plugin succeeded, on each plugin of the profile that will run Filter for
        this pod (its PreFilter did not answer SKIP) or that has Score with weight > 0, in
        configured order. May be a plain function or a coroutine; must be fast and must not
        do I/O. ``state`` holds what PreFilter wrote; ``pod`` is the pod being scheduled.

        Return a hashable *fragment* (use :func:`freeze` for dict/list pod fields) that
        captures everything this plugin's Filter, PreScore and Score read besides the
        :class:`NodeInfo` passed to them: the pod fields they look at, what PreFilter derived
        from them, and any cluster-wide data read through the :class:`Handle` (e.g. how many
        nodes hold an image, the node count), folded in as values or versions. Options fixed
        per plugin instance need not be included (the framework keys by plugin name within one
        profile). Return None when the results depend on other nodes or pods than the one
        passed (e.g. affinity to existing pods, spreading over domains): the pod then gets no
        signature and takes the normal path.

        The promise: for two pods whose fragments are equal (``==``), on a NodeInfo with the
        same :attr:`NodeInfo.generation`, Filter returns an equal :class:`Status` and Score the
        same raw score. The framework joins the fragments into the pod's signature
        ((plugin name, fragment) pairs) only when every plugin asked returned non-None, and
        keeps, per signature (a bounded LRU of recent signatures), per node: the
        generation, the Filter status and each Score plugin's raw score. Filtering and scoring
        then use a node's stored result when its generation equals the snapshot NodeInfo's and
        no pod is nominated to the node; otherwise they compute and store it (only for the
        nodes the cycle reaches; nodes known to fail are passed over without a call, so a
        cycle costs in proportion to the nodes changed since the signature's last cycle,
        not to the nodes visited). Unchanged:
        PreScore still runs every cycle on the feasible nodes (SKIP still removes the plugin
        from scoring), normalize_scores runs every cycle on the full raw scores, sampling
        (``percentageOfNodesToScore``, rotating start) is the same, and preemption and other
        what-if paths (:meth:`Handle.run_filter_plugins`) never use stored results. A wrong
        fragment (too coarse) makes pods reuse results that are not theirs: include every
        input, or return None.

        A plugin that does not implement Sign disables reuse for every pod of each profile in
        which it has Filter or Score with weight > 0: third-party plugins without it keep
        working exactly as before, only slower. An exception raised here is logged and counts
        as None.
        """


# ------------------------------------------------------------------- extension points


@runtime_checkable
class QueueSort(Protocol):
    def less(self, pod_a: dict, pod_b: dict) -> bool:
        """Return True if ``pod_a`` should be scheduled before ``pod_b``. Only the first
        QueueSort plugin of a profile is used, and every profile of one scheduler process
        must name the same QueueSort plugin (they share one queue). Called by the scheduling
        queue on every push and pop; pods neither of which is ``less`` keep their arrival
        order. Must be a pure, fast, plain function."""


@runtime_checkable
class PreFilter(Protocol):
    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        """Called once per cycle before filtering, with every node of the snapshot: compute
        per-pod data into ``state`` or reject the pod outright (UNSCHEDULABLE..., whose
        reasons then count for every node). SKIP means this plugin's Filter is not called
        for this pod."""


@runtime_checkable
class Filter(Protocol):
    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        """Called for each candidate node: SUCCESS if the pod may run there, else
        UNSCHEDULABLE(_AND_UNRESOLVABLE) with reasons that feed the unschedulable summary.
        Must not do I/O. For large clusters the host stops filtering once it has found
        enough feasible nodes (``percentageOfNodesToScore``), so not every node is seen."""


@runtime_checkable
class PostFilter(Protocol):
    def post_filter(self, state: CycleState, pod: dict,
                    statuses: dict[str, Status]) -> tuple[Status, str | None]:
        """Called only when no node passed Filter, with each node's failing status. Return
        (SUCCESS, nominated_node_name) if the plugin made room (e.g. preemption evicted
        pods; the framework sets ``status.nominatedNodeName`` and requeues the pod, which is
        retried when the victims are gone) or an UNSCHEDULABLE status whose reasons are
        appended to the pod's message (e.g. ``"preemption: 0/3 nodes are available: ..."``).
        Plugins run in order until one succeeds. May do API I/O through the handle's client.
        """


@runtime_checkable
class PreScore(Protocol):
    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        """Called once with the feasible nodes before scoring; SKIP skips this plugin's
        Score. Not called when only one node is feasible (there is nothing to rank)."""


@runtime_checkable
class Score(Protocol):
    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        """Return a raw score for the node (higher is better). Called per feasible node."""

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        """Map raw scores (node name → score) into [0, MAX_NODE_SCORE]. Called once after
        all nodes are scored; the framework then multiplies by the configured weight, sums
        over the profile's Score plugins and picks the highest total. Return ``scores``
        itself when the raw scores already lie in range.

        A plugin whose raw scores always lie in range and whose ``normalize_scores`` always
        returns them unchanged may say so with a class attribute ``scores_normalized =
        True`` (since 0.2): the framework then neither builds the dict nor calls
        ``normalize_scores`` for it (the range check still applies; an out-of-range score
        is an error). Without the attribute (or with any other value) it is called as
        described."""


@runtime_checkable
class Reserve(Protocol):
    def reserve(self, state: CycleState, pod: dict, node_name: str) -> Status:
        """The pod is assumed onto ``node_name``: update the plugin's own caches. A failure
        aborts the cycle (and unreserve is called)."""

    def unreserve(self, state: CycleState, pod: dict, node_name: str) -> None:
        """Undo :meth:`reserve`. Called in reverse order when any later step fails; must be
        idempotent and must not fail."""


@runtime_checkable
class Permit(Protocol):
    def permit(self, state: CycleState, pod: dict, node_name: str) -> tuple[Status, float]:
        """Approve (SUCCESS), reject (UNSCHEDULABLE) or delay (WAIT, timeout seconds) the
        binding. A waiting pod keeps its reservation; it binds when every plugin that said
        WAIT has called :meth:`Handle.allow_waiting_pod`, and is unreserved and requeued
        when one rejects it or the shortest timeout passes. Used for gang scheduling and
        similar."""


@runtime_checkable
class PreBind(Protocol):
    async def pre_bind(self, state: CycleState, pod: dict, node_name: str) -> Status:
        """Prepare the node before binding (e.g. provision volumes); may do API I/O. Runs
        in the binding cycle, concurrently with other pods' scheduling."""


@runtime_checkable
class Bind(Protocol):
    async def bind(self, state: CycleState, pod: dict, node_name: str, client: Any) -> Status:
        """Bind the pod to the node through ``client`` (the pods/binding subresource).
        Return SKIP to let the next Bind plugin do it. A 409 means another scheduler won:
        return UNSCHEDULABLE and the pod is requeued, never double-booked."""


@runtime_checkable
class PostBind(Protocol):
    def post_bind(self, state: CycleState, pod: dict, node_name: str) -> None:
        """Informational, after a successful bind; cannot fail the pod."""

