"""PrioritySort: higher ``spec.priority`` first; equal priorities keep their arrival order."""

from __future__ import annotations

_NO_SPEC: dict = {}


class PrioritySort:
    """QueueSort."""

    def less(self, pod_a: dict, pod_b: dict) -> bool:
        # pod_priority(pod_a) > pod_priority(pod_b), inline: the queue calls this about
        # ten times per pod
        return ((pod_a.get("spec") or _NO_SPEC).get("priority") or 0) > \
            ((pod_b.get("spec") or _NO_SPEC).get("priority") or 0)
