"""Settings of the node agent (``components.node`` in the config file), checked like every
plugin's options: unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from pilothouse._options import build_options
from pilothouse.config import Config, ConfigError
from pilothouse.model.quantity import Quantity, QuantityError

__all__ = ["Settings", "settings"]


@dataclasses.dataclass
class Settings:
    """``components.node``. Durations are seconds. See :mod:`pilothouse.node`."""

    #: The Node's name ("": the host name, lower-cased).
    nodeName: str = ""
    #: Where the agent keeps pod volumes, logs and its own state.
    dataDir: str = "/var/lib/pilothouse/node"
    #: The node's pod CIDR, handed to the runtime (and written to ``spec.podCIDR`` when the
    #: Node has none). "": take it from the Node object when a controller sets it.
    podCIDR: str = ""
    #: Listen address and port of the node endpoint (logs, exec, attach, port-forward).
    #: Port 0 picks a free port; the Node publishes the one in use.
    address: str = "0.0.0.0"
    port: int = 10250
    #: The node's InternalIP ("": the address of the default route's interface).
    nodeIP: str = ""
    #: Serve the endpoint over TLS with this certificate and key (both or neither).
    tlsCertFile: str = ""
    tlsKeyFile: str = ""
    #: Capacity in pods.
    maxPods: int = 110
    #: Resources held back from pods: ``{cpu: 100m, memory: 256Mi}``; allocatable is
    #: capacity minus both.
    kubeReserved: dict[str, str] = dataclasses.field(default_factory=dict)
    systemReserved: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Cluster DNS servers for ``dnsPolicy: ClusterFirst`` pods (none: the node's resolver).
    clusterDNS: list[str] = dataclasses.field(default_factory=list)
    clusterDomain: str = "cluster.local"
    #: Extra labels of the Node.
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Every pod is re-synced at least this often (volumes refreshed, state re-checked).
    syncFrequency: float = 10.0
    #: How often the runtime is re-listed to notice containers that exited.
    relistPeriod: float = 1.0
    #: How often the Node status is recomputed (written only when it changed, or every
    #: ``statusReportFrequency``).
    statusUpdateFrequency: float = 10.0
    statusReportFrequency: float = 60.0
    #: The node Lease's duration; it is renewed every quarter of it.
    leaseDurationSeconds: int = 40
    #: CA bundle written as ``ca.crt`` into service-account volumes ("": the
    #: ``kube-root-ca.crt`` ConfigMap of the pod's namespace if any, else empty).
    caFile: str = ""
    #: Mount a service-account directory (placeholder token, namespace, ca.crt) at
    #: /var/run/secrets/kubernetes.io/serviceaccount in pods that do not opt out and have
    #: no volume there (what the ServiceAccount admission plugin adds in Kubernetes).
    serviceAccountVolume: bool = True
    #: Start pods only when the runtime and network report ready.
    requireRuntimeReady: bool = True

    def __post_init__(self):
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if self.podCIDR:
            ipaddress.ip_network(self.podCIDR, strict=False)
        if self.nodeIP:
            ipaddress.ip_address(self.nodeIP)
        if bool(self.tlsCertFile) != bool(self.tlsKeyFile):
            raise ValueError("tlsCertFile and tlsKeyFile go together")
        for what, table in (("kubeReserved", self.kubeReserved),
                            ("systemReserved", self.systemReserved)):
            for key, value in table.items():
                try:
                    Quantity(str(value))
                except QuantityError as exc:
                    raise ValueError(f"{what}.{key}: {exc}") from None
        for name in ("syncFrequency", "relistPeriod", "statusUpdateFrequency",
                     "statusReportFrequency"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.leaseDurationSeconds < 4:
            raise ValueError("leaseDurationSeconds must be at least 4")

    def node_name(self) -> str:
        return (self.nodeName or socket.gethostname()).lower()


def settings(config: Config, overrides: dict | None = None) -> Settings:
    """The validated ``components.node`` section of ``config`` (``overrides`` win)."""
    raw = {**config.component("node"), **(overrides or {})}
    built, errors = build_options(Settings, raw, "components.node")
    if errors:
        raise ConfigError(errors, config.source)
    return built
