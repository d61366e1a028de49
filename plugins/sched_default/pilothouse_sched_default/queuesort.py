"""PrioritySort: higher ``spec.priority`` first; equal priorities keep their arrival order."""

from __future__ import annotations

from pilothouse.interfaces.scheduler import pod_priority


class PrioritySort:
    """QueueSort."""

    def less(self, pod_a: dict, pod_b: dict) -> bool:
        return pod_priority(pod_a) > pod_priority(pod_b)
