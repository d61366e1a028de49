"""DefaultBinder: bind through the pods/binding subresource."""

from __future__ import annotations

from typing import Any

from pilothouse.interfaces.scheduler import CycleState, Status
from pilothouse.model import errors


class DefaultBinder:
    """Bind. A 409 (the pod already has a node: another scheduler won the race, or the pod
    is being deleted) and a 404 answer UNSCHEDULABLE, so the host requeues the pod and follows
    the informer instead of retrying blindly; other API errors are ERROR (back-off)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._pods: Any = None  # client.resource("v1", "Pod") of the last client seen

    async def bind(self, state: CycleState, pod: dict, node_name: str, client: Any) -> Status:
        meta = pod["metadata"]
        if client is not self._client:  # one client per scheduler: looked up once
            self._pods, self._client = client.resource("v1", "Pod"), client
        try:
            await self._pods.bind(meta["name"], meta.get("namespace") or "default", node_name)
        except (errors.Conflict, errors.NotFound) as exc:
            return Status.unschedulable(f"binding rejected: {exc}")
        except errors.StatusError as exc:
            return Status.error(f"binding failed: {exc}")
        return Status()
