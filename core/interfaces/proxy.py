"""The proxy driver interface: Service virtual IPs routed to endpoints.

One proxy driver is active per proxy host (config slot ``proxy``, entry-point group
``pilothouse.proxy``). The proxy host watches Services and EndpointSlices through the API and
calls :meth:`ProxyDriver.sync` with the complete desired state (level-triggered): the driver
computes what changed since its last sync and applies only that, atomically where the
backend allows (e.g. one ``iptables-restore`` transaction).

Version history: appeared in 0.1.
"""

from __future__ import annotations

import abc
import dataclasses

__all__ = ["Endpoint", "ProxyDriver", "ServicePort"]


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address: ``ip`` with ``ready`` (from the EndpointSlice conditions) and the
    node it runs on (``node_name``, may be None)."""

    ip: str
    ready: bool = True
    node_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with its backends.

    ``namespace``/``name``/``port_name`` identify it; ``cluster_ips`` are the Service's
    virtual IPs; ``port`` the Service port; ``protocol`` ``"TCP"``, ``"UDP"`` or ``"SCTP"``;
    ``node_port`` (0 if none); ``target_port`` is resolved per endpoint already, so
    ``endpoints`` pairs each :class:`Endpoint` with its target port;
    ``session_affinity`` ``"None"`` or ``"ClientIP"``; ``external_traffic_local`` for
    ``externalTrafficPolicy: Local``.
    """

    namespace: str
    name: str
    port_name: str
    cluster_ips: tuple[str, ...]
    port: int
    protocol: str
    endpoints: tuple[tuple[Endpoint, int], ...]
    node_port: int = 0
    session_affinity: str = "None"
    external_traffic_local: bool = False


class ProxyDriver(abc.ABC):
    """Programs the data path that sends Service traffic to endpoints."""

    @abc.abstractmethod
    async def sync(self, ports: list[ServicePort]) -> None:
        """Make the data path match ``ports`` exactly: add what is new, change what
        changed, remove what is no longer listed.

        Called by the proxy host after every batch of Service/EndpointSlice changes and at
        least once per resync period, never concurrently. The first call after start may find
        rules left by a previous run of the same driver and must adopt or replace them without
        a window in which established Services stop working. Raises ``RuntimeError`` when the
        backend refused the change; the host retries with back-off and the previous rules must
        still be in force (all-or-nothing).
        """

    @abc.abstractmethod
    async def cleanup(self) -> None:
        """Remove every rule this driver created. Called by ``pilothouse proxy --cleanup`` and
        when the driver is swapped for another; idempotent."""

    async def close(self) -> None:
        """Release resources at shutdown; rules stay in force so traffic keeps flowing."""
        return None
