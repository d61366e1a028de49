"""The scheduling queue: pending pods in three places, as kube-scheduler keeps them.

* **active** — a heap ordered by the profile's QueueSort ``less`` (arrival order breaks
  ties); :meth:`SchedulingQueue.pop` waits on it.
* **backoff** — pods that failed recently wait ``initial * 2**(attempts-1)`` seconds (capped)
  before going back to active; a timer per pod moves it, nothing polls.
* **unschedulable** — pods no node could take. They stay until a cluster event that one of
  the plugins that rejected them registered for (:meth:`move_all`), or until
  ``max_unschedulable`` seconds pass (a safety net, like kube-scheduler's five minutes).

A pod popped for scheduling is *in flight*. An event that arrives while pods are in flight
bumps the move-request cycle, so a pod whose cycle started before it goes to backoff rather
than to unschedulable: otherwise a node added during the cycle would never wake it.

The nominator remembers which pending pods were nominated to which node (by preemption), so
filters can keep room for them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable

from pilothouse.interfaces.scheduler import pod_key

log = logging.getLogger("pilothouse.scheduler")

ACTIVE, BACKOFF, UNSCHEDULABLE, IN_FLIGHT = "active", "backoff", "unschedulable", "in-flight"


class QueuedPod:
    """A pending pod and its queue bookkeeping."""

    __slots__ = ("pod", "key", "attempts", "timestamp", "initial_timestamp", "where", "token",
                 "unschedulable_plugins", "cycle", "backoff_until", "seq", "updated")

    def __init__(self, pod: dict, now: float):
        self.pod = pod
        self.key = pod_key(pod)
        self.attempts = 0
        self.timestamp = self.initial_timestamp = now
        self.where: str | None = None
        self.token = 0
        self.unschedulable_plugins: frozenset[str] = frozenset()
        self.cycle = 0
        self.backoff_until = 0.0
        self.seq = 0
        self.updated = False  # changed while in flight

    def __repr__(self) -> str:
        return f"<QueuedPod {self.key} {self.where} attempts={self.attempts}>"


class _Entry:
    __slots__ = ("qp", "token", "seq", "less")

    def __init__(self, qp: QueuedPod, less: Callable[[dict, dict], bool] | None):
        self.qp, self.token, self.seq, self.less = qp, qp.token, qp.seq, less

    def __lt__(self, other: "_Entry") -> bool:
        # ``less`` orders strictly (never both less(a, b) and less(b, a)); arrival order
        # breaks ties. So one call decides: the earlier pod goes first unless the later
        # one is less, the later one only if it is less
        less = self.less
        if less is None:
            return self.seq < other.seq
        if self.seq < other.seq:
            return not less(other.qp.pod, self.qp.pod)
        return less(self.qp.pod, other.qp.pod)


def _scheduling_view(pod: dict) -> tuple:
    m = pod.get("metadata") or {}
    return (pod.get("spec"), m.get("labels"), m.get("annotations"))


def event_matches(registered: str, event: str) -> bool:
    """True when a plugin registered for ``registered`` cares about ``event``."""
    if registered == "*" or registered == event:
        return True
    if registered.endswith("/*"):
        return event.startswith(registered[:-1])
    return registered == "Node/Update" and event.startswith("Node/Update")


class Nominator:
    """node name → pending pods nominated there (and the reverse)."""

    def __init__(self) -> None:
        self.by_node: dict[str, dict[str, dict]] = {}
        self.node_of: dict[str, str] = {}

    def add(self, pod: dict, node: str) -> None:
        key = pod_key(pod)
        self.delete(pod)
        self.by_node.setdefault(node, {})[key] = pod
        self.node_of[key] = node

    def delete(self, pod: dict) -> None:
        if not self.node_of:  # nothing nominated (the common case): no key to compute
            return
        key = pod_key(pod)
        node = self.node_of.pop(key, None)
        if node is not None:
            pods = self.by_node.get(node)
            if pods is not None:
                pods.pop(key, None)
                if not pods:
                    del self.by_node[node]

    def update(self, old: dict | None, new: dict) -> None:
        """Follow ``status.nominatedNodeName`` of a pending pod's update."""
        nominated = (new.get("status") or {}).get("nominatedNodeName")
        if nominated:
            self.add(new, nominated)
        elif old is not None and (old.get("status") or {}).get("nominatedNodeName"):
            self.delete(new)
        elif self.node_of:
            key = pod_key(new)
            if key in self.node_of:  # nominated by us, not yet in the API: keep, new object
                self.by_node[self.node_of[key]][key] = new

    def pods_on(self, node: str) -> list[dict]:
        pods = self.by_node.get(node)
        return list(pods.values()) if pods else []


class SchedulingQueue:
    """See the module docstring. ``plugin_events`` maps a plugin name to the events it
    registered (absent: every event)."""

    def __init__(self, less: Callable[[dict, dict], bool] | None = None, *,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable: float = 300.0,
                 plugin_events: dict[str, frozenset[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.less = less
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.max_unschedulable = max_unschedulable
        self.plugin_events = plugin_events or {}
        self.clock = clock
        self.pods: dict[str, QueuedPod] = {}
        self._active: list[_Entry] = []
        self._active_count = 0
        self._backoff_count = 0
        self._unschedulable: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._timers: list[asyncio.TimerHandle] = []
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self.nominator = Nominator()
        self._leftover_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        return len(self.pods)

    def counts(self) -> dict[str, int]:
        """How many pods are in each place (for logs, tests and benchmarks)."""
        out = {ACTIVE: 0, BACKOFF: 0, UNSCHEDULABLE: 0, IN_FLIGHT: 0}
        for qp in self.pods.values():
            if qp.where in out:
                out[qp.where] += 1
        return out

    def where(self, pod_or_key: dict | str) -> str | None:
        key = pod_or_key if isinstance(pod_or_key, str) else pod_key(pod_or_key)
        qp = self.pods.get(key)
        return qp.where if qp else None

    # ------------------------------------------------------------------ placement

    def _to_active(self, qp: QueuedPod) -> None:
        qp.where = ACTIVE
        qp.token += 1
        qp.seq = next(self._seq)
        self._unschedulable.pop(qp.key, None)
        heapq.heappush(self._active, _Entry(qp, self.less))
        self._wakeup.set()

    def _backoff_duration(self, qp: QueuedPod) -> float:
        if qp.attempts <= 0:
            return 0.0
        return min(self.initial_backoff * (2 ** (qp.attempts - 1)), self.max_backoff)

    def _backing_off(self, qp: QueuedPod) -> bool:
        return qp.timestamp + self._backoff_duration(qp) > self.clock()

    def _to_backoff(self, qp: QueuedPod) -> None:
        until = qp.timestamp + self._backoff_duration(qp)
        delay = until - self.clock()
        if delay <= 0:
            self._to_active(qp)
            return
        qp.where = BACKOFF
        qp.token += 1
        qp.backoff_until = until
        self._unschedulable.pop(qp.key, None)
        token = qp.token
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._backoff_expired, qp, token)

    def _backoff_expired(self, qp: QueuedPod, token: int) -> None:
        if self._closed or qp.token != token or qp.where != BACKOFF \
                or self.pods.get(qp.key) is not qp:
            return
        self._to_active(qp)

    def _to_active_or_backoff(self, qp: QueuedPod) -> None:
        if self._backing_off(qp):
            self._to_backoff(qp)
        else:
            self._to_active(qp)

    # ------------------------------------------------------------------ informer events

    def add(self, pod: dict) -> None:
        """A new pending pod (or one the queue forgot)."""
        key = pod_key(pod)
        if key in self.pods:
            self.update(None, pod)
            return
        qp = QueuedPod(pod, self.clock())
        self.pods[key] = qp
        self.nominator.update(None, pod)
        self._to_active(qp)

    def update(self, old: dict | None, new: dict) -> None:
        """A pending pod changed. A pod parked as unschedulable whose spec, labels or
        annotations changed gets another chance at once."""
        key = pod_key(new)
        qp = self.pods.get(key)
        if qp is None:
            self.add(new)
            return
        changed = _scheduling_view(qp.pod) != _scheduling_view(new)
        qp.pod = new
        self.nominator.update(old, new)
        if not changed:
            return
        if qp.where == UNSCHEDULABLE:
            self._to_active_or_backoff(qp)
        elif qp.where == IN_FLIGHT:
            qp.updated = True

    def delete(self, pod: dict) -> None:
        """The pod is gone, or was assigned to a node: stop scheduling it."""
        key = pod_key(pod)
        qp = self.pods.pop(key, None)
        self.nominator.delete(pod)
        if qp is not None:
            qp.where = None
            qp.token += 1
            self._unschedulable.pop(key, None)

    def move_all(self, *events: str) -> int:
        """Cluster events happened: move the unschedulable pods that a rejecting plugin
        registered for any of them to active (or backoff). Returns how many moved."""
        self.move_request_cycle = self.scheduling_cycle
        if not self._unschedulable:
            return 0  # the common case (every bound pod's Pod/Add): nothing parked
        moved = 0
        for qp in list(self._unschedulable.values()):
            if self._interested(qp, events):
                self._to_active_or_backoff(qp)
                moved += 1
        return moved

    def _interested(self, qp: QueuedPod, events: tuple[str, ...]) -> bool:
        if not qp.unschedulable_plugins:
            return True
        for plugin in qp.unschedulable_plugins:
            registered = self.plugin_events.get(plugin)
            if registered is None:
                return True
            for event in events:
                for r in registered:
                    if event_matches(r, event):
                        return True
        return False

    def activate(self, pods: list[dict]) -> None:
        """Move these pods (if unschedulable or backing off) to active now."""
        for pod in pods:
            qp = self.pods.get(pod_key(pod))
            if qp is not None and qp.where in (UNSCHEDULABLE, BACKOFF):
                self._to_active(qp)

    # ------------------------------------------------------------------ scheduling loop

    async def pop(self) -> QueuedPod | None:
        """The next pod to schedule (it becomes in flight); None once closed."""
        while True:
            active = self._active
            while active:
                entry = heapq.heappop(active)
                qp = entry.qp
                if qp.where != ACTIVE or entry.token != qp.token:
                    continue
                qp.where = IN_FLIGHT
                qp.updated = False
                qp.attempts += 1
                qp.timestamp = self.clock()
                self.scheduling_cycle += 1
                qp.cycle = self.scheduling_cycle
                return qp
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, qp: QueuedPod) -> None:
        """The pod was bound: forget it."""
        if self.pods.get(qp.key) is qp:
            del self.pods[qp.key]
            qp.where = None
        self.nominator.delete(qp.pod)

    def add_unschedulable(self, qp: QueuedPod, plugins: frozenset[str] | set[str]) -> None:
        """The cycle found no node; ``plugins`` rejected the pod. Parked until an event
        one of them registered, unless an event came while it was in flight."""
        if self.pods.get(qp.key) is not qp:
            return  # deleted or bound meanwhile
        qp.unschedulable_plugins = frozenset(plugins)
        qp.timestamp = self.clock()
        if qp.updated or self.move_request_cycle >= qp.cycle:
            self._to_backoff(qp)
            return
        qp.where = UNSCHEDULABLE
        qp.token += 1
        self._unschedulable[qp.key] = qp
        self._arm_leftover_timer()

    def add_backoff(self, qp: QueuedPod) -> None:
        """An error (or a lost bind) happened: retry after the pod's back-off."""
        if self.pods.get(qp.key) is not qp:
            return
        qp.unschedulable_plugins = frozenset()
        qp.timestamp = self.clock()
        self._to_backoff(qp)

    def _arm_leftover_timer(self) -> None:
        if self._leftover_timer is None and not self._closed:
            period = max(1.0, min(30.0, self.max_unschedulable / 2))
            self._leftover_timer = asyncio.get_running_loop().call_later(
                period, self._flush_leftover)

    def _flush_leftover(self) -> None:
        self._leftover_timer = None
        now = self.clock()
        for qp in list(self._unschedulable.values()):
            if now - qp.timestamp >= self.max_unschedulable:
                self._to_active_or_backoff(qp)
        if self._unschedulable:
            self._arm_leftover_timer()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._leftover_timer is not None:
            self._leftover_timer.cancel()
            self._leftover_timer = None
