"""NodeName and NodeUnschedulable: the two simplest filters."""

from __future__ import annotations

from collections.abc import Hashable

from pilothouse.interfaces.scheduler import CycleState, NodeInfo, Status

from pilothouse_sched_default._helpers import tolerated

ERR_NODE_NAME = "node(s) didn't match the requested node name"
ERR_UNSCHEDULABLE = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

_OK = Status()
_NAME_MISMATCH = Status.unschedulable(ERR_NODE_NAME, resolvable=False)
_CORDONED = Status.unschedulable(ERR_UNSCHEDULABLE, resolvable=False)


class NodeName:
    """Filter + Sign: a pod that names a node (``spec.nodeName``) fits only that node."""

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node.name:
            return _NAME_MISMATCH
        return _OK

    def sign(self, state: CycleState, pod: dict) -> Hashable:
        return (pod.get("spec") or {}).get("nodeName") or ""

    def events_to_register(self) -> list[str]:
        return ["Node/Add"]


class NodeUnschedulable:
    """Filter: cordoned nodes (``spec.unschedulable``) take only pods tolerating the
    ``node.kubernetes.io/unschedulable:NoSchedule`` taint. Sign: whether the pod tolerates
    it."""

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        if not (node.node.get("spec") or {}).get("unschedulable"):
            return _OK
        if tolerated(UNSCHEDULABLE_TAINT, (pod.get("spec") or {}).get("tolerations") or ()):
            return _OK
        return _CORDONED

    def sign(self, state: CycleState, pod: dict) -> Hashable:
        return tolerated(UNSCHEDULABLE_TAINT, (pod.get("spec") or {}).get("tolerations") or ())

    def events_to_register(self) -> list[str]:
        return ["Node/Add", "Node/UpdateTaint"]
