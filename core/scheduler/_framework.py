"""The framework runner: one per profile. It sorts the profile's plugins by extension point
(keeping the configured order), and runs a pod through them.

Hot path: Filter and Score run once per node. Plain-function plugins are called directly in a
tight loop over the snapshot's NodeInfos; only plugins whose method is a coroutine function
make the loop ``await``. For clusters of 100 nodes or more, filtering stops once
``numFeasibleNodesToFind`` nodes passed (kube-scheduler's ``percentageOfNodesToScore``),
starting where the previous cycle stopped so every node gets its turn.

Pod scheduling signatures (:class:`pilothouse.interfaces.scheduler.Sign`): when every Filter
and weighted Score plugin of the profile signs the pod, the cycle keeps, per signature and
node name, the node's generation, Filter status and raw scores; later pods with the same
signature reuse them on nodes whose generation did not change (most of them: one pod changes
one node).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import itertools
import logging
import random
from typing import Any

from pilothouse.interfaces.scheduler import (MAX_NODE_SCORE, Bind, Code, CycleState,
                                             EnqueueExtensions, Filter, HandleAware, NodeInfo,
                                             Permit, PostBind, PostFilter, PreBind, PreFilter,
                                             PreFilterExtensions, PreScore, QueueSort, Reserve,
                                             Score, Sign, Status, fit_error_message,
                                             pod_priority)

log = logging.getLogger("pilothouse.scheduler")

#: CycleState key holding the plugins whose PreFilter answered SKIP and the Filter plugins
#: left to run for this pod.
SKIP_FILTER_KEY = "pilothouse/skip-filter"


class _Skipped:
    """Which plugins' PreFilter answered SKIP, and the filters still to run. Immutable once
    written, so clones share it."""

    __slots__ = ("names", "filters")

    def __init__(self, names: set[str], filters: list) -> None:
        self.names, self.filters = frozenset(names), filters

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def clone(self) -> "_Skipped":
        return self


#: CycleState key holding the :class:`_Results` of the pod's signature (absent: no reuse).
SIGNATURE_KEY = "pilothouse/signature"
#: CycleState key holding a :class:`_Found` (set by find_feasible when there is a signature).
FEASIBLE_KEY = "pilothouse/feasible-entries"
#: How many signatures keep their per-node results (least recently used dropped first).
SIGNATURE_CACHE_SIZE = 32


class _Entry:
    """One node's results for one signature: valid while the node's generation is this."""

    __slots__ = ("generation", "status", "scores")

    def __init__(self, generation: int, status: Status, scores: list) -> None:
        self.generation, self.status, self.scores = generation, status, scores


class _Found:
    """The feasible list find_feasible returned and each node's entry (None: not stored),
    for run_score. Only the real cycle reads it; clones share it."""

    __slots__ = ("nodes", "entries")

    def __init__(self, nodes: list[NodeInfo], entries: list[_Entry | None]) -> None:
        self.nodes, self.entries = nodes, entries

    def clone(self) -> "_Found":
        return self


class _Results(dict):
    """node name → :class:`_Entry` for one signature. Only the real cycle reads it, so clones
    of the state (what-ifs) share it."""

    __slots__ = ()

    def clone(self) -> "_Results":
        return self


MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5


@dataclasses.dataclass
class ProfilePlugin:
    """One plugin of a profile: its configured ``name``, the constructed ``plugin`` and its
    score ``weight``."""

    name: str
    plugin: Any
    weight: int = 1


class FitError(Exception):
    """No node fits: per-node statuses and the numbers for the message."""

    def __init__(self, num_all_nodes: int, statuses: dict[str, Status],
                 pre_filter_msg: str = "", error: Status | None = None):
        self.num_all_nodes, self.statuses = num_all_nodes, statuses
        self.pre_filter_msg = pre_filter_msg
        self.post_filter_msg = ""
        super().__init__(self.message())

    def plugins(self) -> set[str]:
        return {s.plugin for s in self.statuses.values() if s.plugin}

    def message(self) -> str:
        return fit_error_message(self.num_all_nodes, self.statuses, self.pre_filter_msg,
                                 self.post_filter_msg)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)


async def _call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _as_status(value: Any, name: str) -> Status:
    if value is None:
        return Status()
    if not isinstance(value, Status):
        return Status.error(f"plugin {name} returned {type(value).__name__}, not a Status")
    return value


class Framework:
    """The plugins of one profile by extension point, and the code that runs them."""

    def __init__(self, profile: str, plugins: list[ProfilePlugin], *,
                 signature_cache_size: int = SIGNATURE_CACHE_SIZE):
        self.profile = profile
        self.plugins = plugins
        self.handle: Any = None

        def having(proto: type) -> list[ProfilePlugin]:
            return [p for p in plugins if isinstance(p.plugin, proto)]

        sorters = having(QueueSort)
        self.queue_sort: ProfilePlugin | None = sorters[0] if sorters else None
        self.pre_filter = [(p.name, p.plugin.pre_filter) for p in having(PreFilter)]
        self.filter = [(p.name, p.plugin.filter) for p in having(Filter)]
        self.filter_async = any(_is_async(fn) for _, fn in self.filter)
        self.pre_filter_ext = [(p.name, p.plugin) for p in having(PreFilterExtensions)]
        self.post_filter = [(p.name, p.plugin.post_filter) for p in having(PostFilter)]
        self.pre_score = [(p.name, p.plugin.pre_score) for p in having(PreScore)]
        self.score = [(p.name, p.plugin.score, p.plugin.normalize_scores, p.weight)
                      for p in having(Score) if p.weight > 0]
        self.reserve = [(p.name, p.plugin) for p in having(Reserve)]
        self.permit = [(p.name, p.plugin.permit) for p in having(Permit)]
        self.pre_bind = [(p.name, p.plugin.pre_bind) for p in having(PreBind)]
        self.bind = [(p.name, p.plugin.bind) for p in having(Bind)]
        self.post_bind = [(p.name, p.plugin.post_bind) for p in having(PostBind)]
        self.handle_aware = having(HandleAware)
        self._next_start = 0
        # signing: every Filter and weighted Score plugin must implement Sign, else no reuse
        asked = {name for name, _ in self.filter} | {s[0] for s in self.score}
        signers = [p for p in plugins if p.name in asked]
        self.signers: list[tuple[str, Any, bool]] | None = None
        if signature_cache_size > 0 and signers and all(isinstance(p.plugin, Sign)
                                                        for p in signers):
            scored = {s[0] for s in self.score}
            self.signers = [(p.name, p.plugin.sign, p.name in scored) for p in signers]
        self.signature_cache_size = signature_cache_size
        self._results: collections.OrderedDict[tuple, _Results] = collections.OrderedDict()

    def plugin_events(self) -> dict[str, frozenset[str] | None]:
        """plugin name → the events it registered (None: every event)."""
        out: dict[str, frozenset[str] | None] = {}
        for p in self.plugins:
            if isinstance(p.plugin, EnqueueExtensions):
                out[p.name] = frozenset(p.plugin.events_to_register())
            else:
                out[p.name] = None
        return out

    # ---------------------------------------------------------------- filtering

    async def run_pre_filter(self, state: CycleState, pod: dict,
                             nodes: list[NodeInfo]) -> Status:
        skip: set[str] = set()
        state.write(SKIP_FILTER_KEY, _Skipped(skip, self.filter))
        for name, fn in self.pre_filter:
            status = _as_status(await _call(fn, state, pod, nodes), name)
            if status.code is Code.SKIP:
                skip.add(name)
            elif not status.ok:
                return status.with_plugin(name)
        state.write(SKIP_FILTER_KEY, _Skipped(skip, [(n, f) for n, f in self.filter
                                                     if n not in skip]))
        if self.signers is not None:
            await self._sign(state, pod, skip)
        return Status()

    async def _sign(self, state: CycleState, pod: dict, skip: set[str]) -> None:
        """Build the pod's signature and put its stored results into ``state``."""
        parts = []
        for name, sign, scored in self.signers:
            if name in skip and not scored:
                continue  # its Filter does not run for this pod and it does not score
            try:
                fragment = await _call(sign, state, pod)
            except Exception:
                log.exception("sign of plugin %s failed (counts as no signature)", name)
                return
            if fragment is None:
                return
            parts.append((name, fragment))
        signature = tuple(parts)
        cache = self._results
        try:
            results = cache[signature]
            cache.move_to_end(signature)
        except KeyError:
            results = cache[signature] = _Results()
            if len(cache) > self.signature_cache_size:
                cache.popitem(last=False)
        except TypeError:
            log.exception("a sign fragment of profile %s is not hashable", self.profile)
            return
        state.write(SIGNATURE_KEY, results)

    def run_filters(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        """Every Filter plugin, in order, stopping at the first failure (plain functions)."""
        skipped = state.get(SKIP_FILTER_KEY)
        for name, fn in (skipped.filters if skipped is not None else self.filter):
            status = fn(state, pod, node)
            if status.code is not Code.SUCCESS and status.code is not Code.SKIP:
                return status.with_plugin(name)
        return _OK

    async def run_filters_async(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        skip = state.get(SKIP_FILTER_KEY) or ()
        for name, fn in self.filter:
            if name in skip:
                continue
            status = _as_status(await _call(fn, state, pod, node), name)
            if not status.ok:
                return status.with_plugin(name)
        return _OK

    def run_pre_filter_add_pod(self, state: CycleState, pod: dict, other: dict,
                               node: NodeInfo) -> Status:
        skip = state.get(SKIP_FILTER_KEY) or ()
        for name, plugin in self.pre_filter_ext:
            if name in skip:
                continue
            status = plugin.pre_filter_add_pod(state, pod, other, node)
            if status is not None and not status.ok:
                return status.with_plugin(name)
        return _OK

    def run_pre_filter_remove_pod(self, state: CycleState, pod: dict, other: dict,
                                  node: NodeInfo) -> Status:
        skip = state.get(SKIP_FILTER_KEY) or ()
        for name, plugin in self.pre_filter_ext:
            if name in skip:
                continue
            status = plugin.pre_filter_remove_pod(state, pod, other, node)
            if status is not None and not status.ok:
                return status.with_plugin(name)
        return _OK

    def _with_nominated(self, state: CycleState, pod: dict, node: NodeInfo,
                        nominated: list[dict]) -> tuple[CycleState, NodeInfo] | None:
        """A state and node copy with the nominated pods of at least ``pod``'s priority
        added, or None when there are none."""
        prio = pod_priority(pod)
        uid = pod["metadata"].get("uid")
        adds = [p for p in nominated if pod_priority(p) >= prio
                and p["metadata"].get("uid") != uid]
        if not adds:
            return None
        state2, node2 = state.clone(), node.clone()
        for other in adds:
            node2.add_pod(other)
            status = self.run_pre_filter_add_pod(state2, pod, other, node2)
            if not status.ok:
                break
        return state2, node2

    def filter_node(self, state: CycleState, pod: dict, node: NodeInfo,
                    nominated: list[dict]) -> Status:
        """Filters on ``node``, first with the pods nominated there, then without (a pod
        with affinity to a nominated pod must not count on it), as kube-scheduler does."""
        if nominated:
            what_if = self._with_nominated(state, pod, node, nominated)
            if what_if is not None:
                status = self.run_filters(what_if[0], pod, what_if[1])
                if not status.ok:
                    return status
        return self.run_filters(state, pod, node)

    async def filter_node_async(self, state: CycleState, pod: dict, node: NodeInfo,
                                nominated: list[dict]) -> Status:
        if nominated:
            what_if = self._with_nominated(state, pod, node, nominated)
            if what_if is not None:
                status = await self.run_filters_async(what_if[0], pod, what_if[1])
                if not status.ok:
                    return status
        return await self.run_filters_async(state, pod, node)

    @staticmethod
    def num_feasible_nodes_to_find(total: int, percentage: int) -> int:
        """kube-scheduler's sampling: all nodes below 100; else ``percentage`` (0: adaptive,
        50% minus 1% per 125 nodes, at least 5%) but at least 100 nodes."""
        if total < MIN_FEASIBLE_NODES or percentage >= 100:
            return total
        if percentage <= 0:
            percentage = max(MIN_FEASIBLE_PERCENTAGE, 50 - total // 125)
        return max(MIN_FEASIBLE_NODES, total * percentage // 100)

    async def find_feasible(self, state: CycleState, pod: dict, nodes: list[NodeInfo],
                            nominator: Any, percentage: int
                            ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Filter nodes from where the last cycle stopped until enough passed; returns the
        feasible nodes and the failing status of each rejected node. ``nominator.by_node``
        maps node names to the pods nominated there. With a signature in ``state``, a node
        without nominated pods whose generation matches its stored entry reuses the stored
        status; otherwise the status is computed and stored (ERROR statuses are not)."""
        total = len(nodes)
        if not total:
            return [], {}
        want = self.num_feasible_nodes_to_find(total, percentage)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self._next_start % total
        if not self.filter:
            feasible = (nodes[start:] + nodes[:start])[:want]
            self._next_start = (start + len(feasible)) % total
            return feasible, statuses
        by_node = nominator.by_node
        results = state.get(SIGNATURE_KEY)
        if results is not None and len(results) > 2 * total:
            results.clear()  # entries of nodes long gone
        n_scores = len(self.score)
        processed = 0
        order = itertools.chain(itertools.islice(nodes, start, None),
                                itertools.islice(nodes, start))
        found: list[_Entry | None] = []  # the entry of each feasible node (run_score)
        if not self.filter_async:
            skipped = state.get(SKIP_FILTER_KEY)
            filters = skipped.filters if skipped is not None else self.filter
            filter_node = self.filter_node
            success, skip_code, error = Code.SUCCESS, Code.SKIP, Code.ERROR
            results_get = results.get if results is not None else None
            left = want
            for processed, node in enumerate(order, 1):
                name = node.name
                entry = None
                if by_node and by_node.get(name):
                    if results is not None:
                        results.pop(name, None)
                    status = filter_node(state, pod, node, list(by_node[name].values()))
                else:
                    if results_get is not None:
                        entry = results_get(name)
                        if entry is not None and entry.generation != node.generation:
                            entry = None
                    if entry is not None:
                        status = entry.status
                    else:
                        status = _OK
                        for plugin, fn in filters:
                            st = fn(state, pod, node)
                            if st.code is not success and st.code is not skip_code:
                                status = st.with_plugin(plugin)
                                break
                        if results is not None and status.code is not error:
                            entry = results[name] = _Entry(node.generation, status,
                                                           [None] * n_scores)
                if status is _OK or status.ok:
                    feasible.append(node)
                    found.append(entry)
                    left -= 1
                    if not left:
                        break
                else:
                    statuses[name] = status
        else:
            for processed, node in enumerate(order, 1):
                name = node.name
                nominated = by_node.get(name) if by_node else None
                entry = results.get(name) if results is not None and not nominated else None
                if nominated and results is not None:
                    results.pop(name, None)
                if entry is not None and entry.generation == node.generation:
                    status = entry.status
                else:
                    entry = None
                    status = await self.filter_node_async(
                        state, pod, node, list(nominated.values()) if nominated else [])
                    if results is not None and not nominated and status.code is not Code.ERROR:
                        entry = results[name] = _Entry(node.generation, status,
                                                       [None] * n_scores)
                if status.ok:
                    feasible.append(node)
                    found.append(entry)
                    if len(feasible) >= want:
                        break
                else:
                    statuses[name] = status
        if results is not None:
            state.write(FEASIBLE_KEY, _Found(feasible, found))
        self._next_start = (start + processed) % total
        return feasible, statuses

    async def run_post_filter(self, state: CycleState, pod: dict,
                              statuses: dict[str, Status]) -> tuple[Status, str | None]:
        last = Status.unschedulable()
        for name, fn in self.post_filter:
            result = await _call(fn, state, pod, statuses)
            if isinstance(result, Status):
                result = (result, None)
            status, nominated = result
            status = _as_status(status, name)
            if status.code is Code.SUCCESS:
                return status.with_plugin(name), nominated
            if status.code is Code.ERROR:
                return status.with_plugin(name), None
            if status.code is not Code.SKIP:
                last = status.with_plugin(name)
        return last, None

    # ---------------------------------------------------------------- scoring

    async def run_pre_score(self, state: CycleState, pod: dict,
                            nodes: list[NodeInfo]) -> tuple[Status, set[str]]:
        skip: set[str] = set()
        for name, fn in self.pre_score:
            status = _as_status(await _call(fn, state, pod, nodes), name)
            if status.code is Code.SKIP:
                skip.add(name)
            elif not status.ok:
                return status.with_plugin(name), skip
        return Status(), skip

    async def run_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo],
                        skip: set[str]) -> dict[str, int]:
        """node name → sum over Score plugins of weight × normalized score. With a
        signature in ``state``, raw scores stored for a node of the same generation are
        reused and new ones stored (only for nodes this cycle's filtering stored an entry
        for); normalize_scores always sees every node's raw score."""
        names = [n.name for n in nodes]
        totals = dict.fromkeys(names, 0)
        results = state.get(SIGNATURE_KEY)
        entries = None
        if results is not None:
            found = state.get(FEASIBLE_KEY)
            if found is not None and found.nodes is nodes:
                entries = found.entries
            else:
                entries = [e if e is not None and e.generation == n.generation else None
                           for n, e in zip(nodes, map(results.get, names))]
        for index, (name, score, normalize, weight) in enumerate(self.score):
            if name in skip:
                continue
            is_async = _is_async(score)
            if entries is not None:
                raw = {}
                for node, entry in zip(nodes, entries):
                    if entry is None:
                        value = score(state, pod, node)
                        if is_async:
                            value = await value
                    else:
                        value = entry.scores[index]
                        if value is None:
                            value = score(state, pod, node)
                            if is_async:
                                value = await value
                            entry.scores[index] = value
                    raw[node.name] = value
            elif is_async:
                raw = {n.name: await score(state, pod, n) for n in nodes}
            else:
                raw = {n.name: score(state, pod, n) for n in nodes}
            normalized = await _call(normalize, state, pod, raw)
            values = normalized.values()
            if values and not (0 <= min(values) and max(values) <= MAX_NODE_SCORE):
                for node_name, value in normalized.items():
                    if not 0 <= value <= MAX_NODE_SCORE:
                        raise ValueError(f"plugin {name} scored node {node_name} {value}, "
                                         f"outside [0, {MAX_NODE_SCORE}] after "
                                         f"normalize_scores")
            if weight == 1:
                for node_name, value in normalized.items():
                    totals[node_name] += value
            else:
                for node_name, value in normalized.items():
                    totals[node_name] += value * weight
        return totals

    @staticmethod
    def select_host(totals: dict[str, int]) -> str:
        """The highest total; ties broken uniformly at random."""
        best_score = max(totals.values())
        best = [name for name, value in totals.items() if value == best_score]
        return best[0] if len(best) == 1 else random.choice(best)

    # ---------------------------------------------------------------- reserve .. bind

    async def run_reserve(self, state: CycleState, pod: dict, node: str) -> Status:
        for name, plugin in self.reserve:
            status = _as_status(await _call(plugin.reserve, state, pod, node), name)
            if not status.ok:
                return status.with_plugin(name)
        return Status()

    async def run_unreserve(self, state: CycleState, pod: dict, node: str) -> None:
        for name, plugin in reversed(self.reserve):
            try:
                await _call(plugin.unreserve, state, pod, node)
            except Exception:
                log.exception("unreserve of plugin %s failed (must not fail)", name)

    async def run_permit(self, state: CycleState, pod: dict,
                         node: str) -> tuple[Status, dict[str, float]]:
        """SUCCESS, a rejection, or WAIT with plugin → timeout for every plugin waiting."""
        waits: dict[str, float] = {}
        for name, fn in self.permit:
            result = await _call(fn, state, pod, node)
            if isinstance(result, Status):
                result = (result, 0.0)
            status, timeout = result
            status = _as_status(status, name)
            if status.code is Code.WAIT:
                waits[name] = float(timeout or 0.0)
            elif not status.ok:
                return status.with_plugin(name), {}
        if waits:
            return Status(Code.WAIT), waits
        return Status(), {}

    async def run_pre_bind(self, state: CycleState, pod: dict, node: str) -> Status:
        for name, fn in self.pre_bind:
            status = _as_status(await _call(fn, state, pod, node), name)
            if not status.ok:
                return status.with_plugin(name)
        return Status()

    async def run_bind(self, state: CycleState, pod: dict, node: str, client: Any) -> Status:
        for name, fn in self.bind:
            status = _as_status(await _call(fn, state, pod, node, client), name)
            if status.code is Code.SKIP:
                continue
            return status.with_plugin(name)
        return Status.error(f"no Bind plugin of profile {self.profile} bound the pod")

    async def run_post_bind(self, state: CycleState, pod: dict, node: str) -> None:
        for name, fn in self.post_bind:
            try:
                await _call(fn, state, pod, node)
            except Exception:
                log.exception("post-bind plugin %s failed", name)


_OK = Status()
