"""The controller interface.

Controllers (entry-point group ``pilothouse.controllers``) are enabled by name in the config
(``controllers.enabled``). The controller host builds each enabled controller, wins the
leader-election Lease for it (so two hosts never both act), and awaits :meth:`run`.

A controller is level-triggered (ARCHITECTURE.md rule 2): it compares desired and observed
state read through the API and acts; watches only make it react sooner. Restarted, it
converges from the API alone. It talks only to the API server through the client it is given.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from typing import Any

__all__ = ["Controller", "ControllerContext"]


@dataclasses.dataclass(slots=True)
class ControllerContext:
    """What the controller host hands a controller.

    ``client``: a :mod:`pilothouse.client` API client authenticated as the controller's
    service account. ``informers``: the host's shared informer factory (one list+watch per
    resource, shared by every controller in the process). ``stop``: set when the controller
    must return (lost leadership, shutdown). ``name``: the configured controller name.
    """

    client: Any
    informers: Any
    stop: asyncio.Event
    name: str


class Controller(abc.ABC):
    """A reconciliation loop over API objects."""

    @abc.abstractmethod
    async def run(self, context: ControllerContext) -> None:
        """Reconcile until ``context.stop`` is set, then return promptly (within a second).

        Called by the controller host once leadership is acquired; called again after a
        later re-acquisition with a fresh context. An exception is logged with the
        controller's name and the controller is restarted with back-off; it must therefore be
        safe to run again from any state.
        """
