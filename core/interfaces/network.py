"""The network driver interface: pod IPs and routes between nodes.

One network driver is active per node agent (config slot ``network``, entry-point group
``pilothouse.network``). The node agent calls it; nothing else does.

Two ways exist to give pods a network, and a driver picks one per node:

* *CNI mode*: the runtime attaches pods itself through CNI. The driver writes the CNI
  configuration the runtime reads (:meth:`NetworkDriver.cni_config`) and programs routes
  between nodes; :meth:`attach_pod` is not called.
* *Direct mode*: the runtime creates the sandbox's network namespace and the agent calls
  :meth:`attach_pod` with its path; the driver creates interfaces, assigns addresses and
  returns them.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import abc
import dataclasses

__all__ = ["NetworkDriver", "NodeNetwork", "PodNetwork"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeNetwork:
    """What the agent knows about a node's network: its name, the pod CIDRs assigned to it
    (``spec.podCIDRs``) and its InternalIP addresses."""

    node_name: str
    pod_cidrs: tuple[str, ...]
    addresses: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PodNetwork:
    """A pod's network identity: its addresses (first is the primary, ``status.podIP``)."""

    ips: tuple[str, ...]


class NetworkDriver(abc.ABC):
    """Gives pods addresses and makes them reachable from every node."""

    #: ``"cni"`` or ``"direct"``; see the module docstring.
    mode: str = "cni"

    @abc.abstractmethod
    async def setup_node(self, node: NodeNetwork) -> None:
        """Prepare this node: bridges, CNI config files, forwarding sysctls. Called by the
        node agent once at start and again when the node's pod CIDRs change. Idempotent: a
        restarted agent calls it again over existing state. Raises ``RuntimeError`` with a
        message naming what is missing (binary, permission) to abort the agent's start."""

    @abc.abstractmethod
    async def sync_routes(self, nodes: list[NodeNetwork]) -> None:
        """Make pods on every node in ``nodes`` reachable from this node (routes, tunnels).
        Called by the node agent with the full list whenever Nodes change (level-triggered:
        stale routes for nodes not in the list are removed). Idempotent."""

    def cni_config(self) -> dict | None:
        """Return the CNI network configuration list (as a dict) the runtime should use, or
        None when the driver is in direct mode. Called by the node agent after
        :meth:`setup_node`, which hands it to the runtime driver. Must not do I/O."""
        return None

    async def attach_pod(self, pod: dict, netns_path: str) -> PodNetwork:
        """Direct mode only: give the pod's network namespace its interfaces and addresses.
        Called by the node agent after the runtime created the sandbox; must be idempotent
        for a pod that is already attached (returns its addresses). Raises ``RuntimeError``;
        the agent then removes the sandbox and retries with back-off."""
        raise NotImplementedError(f"{type(self).__name__} works in CNI mode")

    async def detach_pod(self, pod: dict, netns_path: str | None) -> None:
        """Direct mode only: release the pod's addresses. Called by the node agent before the
        sandbox is removed; idempotent; ``netns_path`` may be None if the namespace is gone."""
        return None

    async def close(self) -> None:
        """Release resources; the node's network stays up (pods keep running)."""
        return None
