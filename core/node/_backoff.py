"""Per-key exponential back-off with the kubelet's semantics, on an injectable clock.

Used for container restarts (CrashLoopBackOff) and image pulls (ImagePullBackOff): the first
failure is retried at once; each further failure waits ``initial`` seconds, doubling up to
``maximum``. A key whose last failure is more than ``2 * maximum`` seconds before the new one
(a container that ran for ten minutes, with the defaults) starts over.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable

__all__ = ["Backoff", "RESTART_INITIAL", "RESTART_MAX"]

#: Kubernetes' container restart back-off: 10 s doubling to 5 min.
RESTART_INITIAL = 10.0
RESTART_MAX = 300.0


@dataclasses.dataclass
class _Entry:
    delay: float
    last: float


class Backoff:
    """Back-off state per key. Times are seconds on ``clock`` (``time.time`` by default,
    so that they compare with container start and finish times)."""

    def __init__(self, initial: float = RESTART_INITIAL, maximum: float = RESTART_MAX,
                 clock: Callable[[], float] = time.time):
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self._entries: dict[Hashable, _Entry] = {}

    def _expired(self, entry: _Entry, event_time: float) -> bool:
        return event_time - entry.last > 2 * self.maximum

    def remaining(self, key: Hashable, event_time: float) -> float:
        """Seconds left before ``key`` may be retried after a failure at ``event_time``;
        0 when it may be retried now."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return 0.0
        return max(0.0, entry.delay - (self.clock() - event_time))

    def remaining_since_update(self, key: Hashable) -> float:
        """Seconds left before ``key`` may be retried, counted from its last recorded
        failure (image pulls, where the failure time is the retry time)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.delay - (self.clock() - entry.last))

    def delay(self, key: Hashable) -> float:
        """The current back-off period of ``key`` (0 when it has none)."""
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: Hashable, event_time: float) -> float:
        """Record a retry of ``key`` after a failure at ``event_time``; return the period
        that the *next* failure will have to wait."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            entry = self._entries[key] = _Entry(self.initial, event_time)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last = event_time
        return entry.delay

    def reset(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def forget(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop every key for which ``predicate`` is true (a pod's keys when it is gone)."""
        for key in [k for k in self._entries if predicate(k)]:
            del self._entries[key]

    def gc(self) -> None:
        """Drop keys that would start over anyway."""
        now = self.clock()
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]
