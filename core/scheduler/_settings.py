"""Settings of the scheduler host (``components.scheduler`` in the config file)."""

from __future__ import annotations

import dataclasses

from pilothouse._options import build_options
from pilothouse.config import Config, ConfigError


@dataclasses.dataclass
class Settings:
    """``components.scheduler``::

        components:
          scheduler:
            profiles: []                 # schedulerNames this process serves; [] = all
            percentageOfNodesToScore: 0  # 0 = adaptive (50% - 1% per 125 nodes, >= 5%)
            signatureCacheSize: 32       # pod signatures whose per-node results are kept
                                         # for reuse (0 = never reuse; see Sign)
            podInitialBackoffSeconds: 1
            podMaxBackoffSeconds: 10
            podMaxInUnschedulablePodsDuration: 300  # safety net: retry after this long
            assumedPodTTL: 30            # forget an assumed pod the API never confirmed
            leaderElect: false           # campaign on a Lease before scheduling
            leaseName: pilothouse-scheduler
            leaseNamespace: kube-system
            leaseDuration: 15
            renewDeadline: 10
            retryPeriod: 2
    """

    profiles: list[str] = dataclasses.field(default_factory=list)
    percentageOfNodesToScore: int = 0
    signatureCacheSize: int = 32
    podInitialBackoffSeconds: float = 1.0
    podMaxBackoffSeconds: float = 10.0
    podMaxInUnschedulablePodsDuration: float = 300.0
    assumedPodTTL: float = 30.0
    leaderElect: bool = False
    leaseName: str = "pilothouse-scheduler"
    leaseNamespace: str = "kube-system"
    leaseDuration: float = 15.0
    renewDeadline: float = 10.0
    retryPeriod: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.percentageOfNodesToScore <= 100:
            raise ValueError("percentageOfNodesToScore must be between 0 and 100")
        if self.signatureCacheSize < 0:
            raise ValueError("signatureCacheSize must be 0 or more")
        if self.podInitialBackoffSeconds < 0 or \
                self.podMaxBackoffSeconds < self.podInitialBackoffSeconds:
            raise ValueError("need 0 <= podInitialBackoffSeconds <= podMaxBackoffSeconds")


def settings(config: Config) -> Settings:
    """The validated ``components.scheduler`` settings of ``config``."""
    built, errors = build_options(Settings, config.component("scheduler"),
                                  "components.scheduler")
    if errors:
        raise ConfigError(errors, config.source)
    return built
