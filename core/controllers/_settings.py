"""Settings of the controller host (``components.controller-manager`` in the config file)."""

from __future__ import annotations

import dataclasses

from pilothouse._options import build_options
from pilothouse.config import Config, ConfigError

COMPONENT = "controller-manager"


@dataclasses.dataclass
class Settings:
    """``components.controller-manager``::

        components:
          controller-manager:
            leaderElect: true            # one Lease per controller; false: act at once
            leaseNamespace: kube-system
            leasePrefix: pilothouse-controller-   # Lease name = prefix + controller name
            leaseDuration: 15            # seconds a holder's lease stays valid unrenewed
            renewDeadline: 10            # a leader that cannot renew this long stops acting
            retryPeriod: 2               # how often leases are renewed or tried
            restartBackoffSeconds: 1     # first wait before restarting a crashed controller
            restartMaxBackoffSeconds: 60 # the wait doubles per crash up to this
            resyncSeconds: 300           # informers re-deliver every cached object this
                                         #   often (0 = never); level-triggered safety net
            shutdownGraceSeconds: 0.5    # on stop: time a controller gets to return on
                                         #   its own before it is cancelled
    """

    leaderElect: bool = True
    leaseNamespace: str = "kube-system"
    leasePrefix: str = "pilothouse-controller-"
    leaseDuration: float = 15.0
    renewDeadline: float = 10.0
    retryPeriod: float = 2.0
    restartBackoffSeconds: float = 1.0
    restartMaxBackoffSeconds: float = 60.0
    resyncSeconds: float = 300.0
    shutdownGraceSeconds: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.retryPeriod < self.renewDeadline < self.leaseDuration:
            raise ValueError("need 0 < retryPeriod < renewDeadline < leaseDuration")
        if not 0 <= self.restartBackoffSeconds <= self.restartMaxBackoffSeconds:
            raise ValueError("need 0 <= restartBackoffSeconds <= restartMaxBackoffSeconds")
        if self.resyncSeconds < 0 or not 0 <= self.shutdownGraceSeconds <= 1:
            raise ValueError("need resyncSeconds >= 0 and 0 <= shutdownGraceSeconds <= 1")


def settings(config: Config) -> Settings:
    """The validated ``components.controller-manager`` settings of ``config``."""
    built, errors = build_options(Settings, config.component(COMPONENT),
                                  f"components.{COMPONENT}")
    if errors:
        raise ConfigError(errors, config.source)
    return built
