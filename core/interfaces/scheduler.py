"""The scheduling framework's extension points.

Scheduler plugins (entry-point group ``pilothouse.scheduler``) are classes implementing one or
more of the extension-point interfaces below. A *profile* in the config
(``scheduler.profiles[]``, selected by a pod's ``spec.schedulerName``) lists plugins in order
with a weight; the scheduler host calls, for each pod, per scheduling cycle:

``QueueSort`` (first configured plugin only) → ``PreFilter`` → ``Filter`` (per node) →
``PostFilter`` (only when no node passed; e.g. preemption) → ``PreScore`` → ``Score`` (per
node) and ``normalize_scores`` → weighted sum, highest wins → ``Reserve`` → ``Permit`` →
then, in the binding cycle: ``PreBind`` → ``Bind`` (first plugin not answering SKIP binds) →
``PostBind``. If anything after Reserve fails, ``unreserve`` is called on every Reserve plugin
in reverse order.

Within an extension point plugins run in configured order. Every method may be a plain
function or a coroutine; the scheduler host awaits coroutines. Filter and Score are called
once per candidate node and must be fast and must not do I/O (read the
:class:`NodeInfo` snapshot instead).

Version history: appeared in 0.1.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from typing import Any, Protocol, runtime_checkable

__all__ = ["Bind", "Code", "CycleState", "Filter", "NodeInfo", "Permit", "PostBind",
           "PostFilter", "PreBind", "PreFilter", "PreScore", "QueueSort", "Reserve", "Score",
           "Status", "MAX_NODE_SCORE"]

#: Scores returned by normalize_scores must lie in [0, MAX_NODE_SCORE].
MAX_NODE_SCORE = 100


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
    of the plugin that failed (filled in by the framework)."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code in (Code.SUCCESS, Code.SKIP)

    @classmethod
    def unschedulable(cls, *reasons: str, resolvable: bool = True) -> "Status":
        return cls(Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                   reasons)


class CycleState:
    """Per-cycle data shared between a plugin's extension points for one pod.

    Keys are strings owned by the writing plugin (use the plugin's name as a prefix). Values
    stored must support ``copy.deepcopy`` or define ``clone()``: preemption clones the state
    to try evictions without disturbing the real cycle.
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def read(self, key: str) -> Any:
        """Return the value stored under ``key``; raises ``KeyError`` if absent."""
        return self._data[key]

    def write(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for later extension points of this cycle."""
        self._data[key] = value

    def clone(self) -> "CycleState":
        """A deep copy for what-if evaluation (preemption)."""
        other = CycleState()
        other._data = {k: v.clone() if hasattr(v, "clone") else copy.deepcopy(v)
                       for k, v in self._data.items()}
        return other


@dataclasses.dataclass(slots=True)
class NodeInfo:
    """The scheduler's snapshot of one node: the Node object, the pods assigned to it
    (including pods assumed by this scheduler but not yet bound), and the summed requests of
    those pods (``requested``: resource name → amount in base units, cpu in millicores)."""

    node: dict
    pods: list[dict] = dataclasses.field(default_factory=list)
    requested: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]


@runtime_checkable
class QueueSort(Protocol):
    def less(self, pod_a: dict, pod_b: dict) -> bool:
        """Return True if ``pod_a`` should be scheduled before ``pod_b``. Only the first
        QueueSort plugin of a profile is used; called by the scheduling queue on every push.
        Must be a pure function."""


@runtime_checkable
class PreFilter(Protocol):
    def pre_filter(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        """Called once per cycle before filtering: compute per-pod data into ``state`` or
        reject the pod outright (UNSCHEDULABLE...). SKIP means this plugin's Filter is not
        called for this pod."""


@runtime_checkable
class Filter(Protocol):
    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        """Called for each candidate node: SUCCESS if the pod may run there, else
        UNSCHEDULABLE(_AND_UNRESOLVABLE) with reasons that feed the unschedulable summary.
        Must not do I/O."""


@runtime_checkable
class PostFilter(Protocol):
    def post_filter(self, state: CycleState, pod: dict,
                    statuses: dict[str, Status]) -> tuple[Status, str | None]:
        """Called only when no node passed Filter, with each node's failing status. Return
        (SUCCESS, nominated_node_name) if the plugin made room (e.g. preemption evicted
        pods; the framework sets ``status.nominatedNodeName`` and requeues the pod) or an
        UNSCHEDULABLE status. Plugins run in order until one succeeds."""


@runtime_checkable
class PreScore(Protocol):
    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        """Called once with the feasible nodes before scoring; SKIP skips this plugin's
        Score."""


@runtime_checkable
class Score(Protocol):
    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        """Return a raw score for the node (higher is better). Called per feasible node."""

    def normalize_scores(self, state: CycleState, pod: dict,
                         scores: dict[str, int]) -> dict[str, int]:
        """Map raw scores (node name → score) into [0, MAX_NODE_SCORE]. Called once after
        all nodes are scored; the framework then multiplies by the configured weight."""


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
        binding. Used for gang scheduling and similar."""


@runtime_checkable
class PreBind(Protocol):
    async def pre_bind(self, state: CycleState, pod: dict, node_name: str) -> Status:
        """Prepare the node before binding (e.g. provision volumes); may do API I/O."""


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
