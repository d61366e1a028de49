"""DefaultBinder: bind through the pods/binding subresource."""

from __future__ import annotations

from typing import Any

from pilothouse.interfaces.scheduler import CycleState, Status
from pilothouse.model import errors


class DefaultBinder:
    """Bind. A 409 (the pod already has a node: another scheduler won the race, or the pod
    is being deleted) and a 404 answer UNSCHEDULABLE, so the host requeues the pod and follows
    the informer instead of retrying blindly; other API errors are ERROR (back-off)."""

    async def bind(self, state: CycleState, pod: dict, node_name: str, client: Any) -> Status:
        meta = pod["metadata"]
        try:
            await client.resource("v1", "Pod").bind(meta["name"], meta.get("namespace")
                                                    or "default", node_name)
        except (errors.Conflict, errors.NotFound) as exc:
            return Status.unschedulable(f"binding rejected: {exc}")
        except errors.StatusError as exc:
            return Status.error(f"binding failed: {exc}")
        return Status()
