"""The framework runner: one per profile. It sorts the profile's plugins by extension point
(keeping the configured order), and runs a pod through them.

Hot path: Filter and Score run once per node. Plain-function plugins are called directly in a
tight loop over the snapshot's NodeInfos; only plugins whose method is a coroutine function
make the loop ``await``. For clusters of 100 nodes or more, filtering stops once
``numFeasibleNodesToFind`` nodes passed (kube-scheduler's ``percentageOfNodesToScore``),
starting where the previous cycle stopped so every node gets its turn.

Pod scheduling signatures (:class:`pilothouse.interfaces.scheduler.Sign`): when every Filter
and weighted Score plugin of the profile signs the pod, the cycle keeps, per signature, a
:class:`_Table` of per-node results by position in the snapshot's node list: each node's
generation, Filter status and raw scores, and the sorted positions of the nodes not known to
fail. A later pod with the same signature first forgets the nodes the snapshot's change feed
names (those whose generation changed: one pod changes one node), then finds its feasible
nodes by slicing that sorted list from the rotating start (bisect), calling Filter only on
the forgotten or never-seen nodes the slice reaches, and scores with the stored raw scores
(Score only for nodes without one). So a cycle costs in proportion to what changed, not to
the number of nodes visited; the nodes found, the start rotation, normalization and host
selection are exactly those of the plain per-node walk, which pods without a signature (and
profiles with a plugin that does not sign) take.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import inspect
import itertools
import logging
import operator
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


#: A :class:`_Table`'s raw score not computed yet: an int, so finding the missing ones in
#: the ~500 picked for a cycle compares ints with ints (``None`` takes the slow path of a
#: mixed comparison). A plugin returning this very value only gets asked again next time.
_UNSCORED = -(1 << 62) + 7

#: CycleState key holding the :class:`_Table` of the pod's signature (absent: no reuse).
SIGNATURE_KEY = "pilothouse/signature"
#: CycleState key holding a :class:`_Walk` (set by find_feasible on the table path).
FEASIBLE_KEY = "pilothouse/feasible-walk"
#: How many signatures keep their per-node results (least recently used dropped first).
SIGNATURE_CACHE_SIZE = 32


class _Table:
    """One signature's per-node results, by position in a snapshot's node list.

    ``gens[i]`` is the generation of ``snapshot.nodes[i]`` that ``status[i]`` (its Filter
    status) and ``raw[k][i]`` (Score plugin ``k``'s raw score, :data:`_UNSCORED` until
    computed) belong to; 0 (no generation is 0) means unknown, and then ``status[i]`` is
    None and every ``raw[k][i]`` is :data:`_UNSCORED`. A column of a ``scores_normalized``
    plugin holds only ints within [0, MAX_NODE_SCORE] (anything else is never stored).
    ``cand`` lists, sorted, every position not known to fail Filter: the known feasible
    ones and the unknown ones. ``epoch`` and ``position`` say how far the snapshot's change
    feed was applied. Only the real cycle reads it; clones share it."""

    __slots__ = ("snapshot", "epoch", "position", "gens", "status", "cand", "raw")

    def __init__(self, n_scores: int) -> None:
        self.snapshot: Any = None
        self.epoch = self.position = 0
        self.gens: list[int] = []
        self.status: list[Status | None] = []
        self.cand: list[int] = []
        self.raw: list[list] = [[] for _ in range(n_scores)]

    def clone(self) -> "_Table":
        return self

    def sync(self, snapshot: Any) -> None:
        """Forget the nodes replaced in ``snapshot`` since the last sync (everything when
        the node list is another one)."""
        changes = snapshot.changes_since(self.epoch, self.position) \
            if self.snapshot is snapshot else None
        nodes = snapshot.nodes
        if changes is None:
            n = len(nodes)
            self.gens, self.status, self.cand = [0] * n, [None] * n, list(range(n))
            self.raw = [[_UNSCORED] * n for _ in self.raw]
            self.snapshot = snapshot
        elif changes:
            gens = self.gens
            for i in changes:
                if gens[i] and gens[i] != nodes[i].generation:
                    self.forget(i)
        self.epoch, self.position = snapshot.epoch, snapshot.position

    def forget(self, i: int) -> None:
        """Make position ``i`` unknown (a candidate again)."""
        status = self.status[i]
        if status is not None:
            if not status.ok:
                bisect.insort(self.cand, i)
            self.status[i] = None
        self.gens[i] = 0
        for raw in self.raw:
            raw[i] = _UNSCORED


class _Walk:
    """What the table path of find_feasible found, for scoring: the feasible NodeInfos,
    their positions, and the table. Only the real cycle reads it; clones share it."""

    __slots__ = ("nodes", "indexes", "table")

    def __init__(self, nodes: list[NodeInfo], indexes: list[int], table: _Table) -> None:
        self.nodes, self.indexes, self.table = nodes, indexes, table

    def clone(self) -> "_Walk":
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


#: Result types that are never awaitable: _call skips the (slower) awaitable check.
_PLAIN_RESULTS = frozenset((Status, tuple, dict, list, str, int, bool, frozenset,
                            type(None)))


async def _call(fn: Any, *args: Any) -> Any:
    result = fn(*args)
    if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
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
        self.score = [(p.name, p.plugin.score,
                       None if getattr(p.plugin, "scores_normalized", False) is True
                       else p.plugin.normalize_scores, p.weight)
                      for p in having(Score) if p.weight > 0]
        self._score_async: list[bool] = []
        self._skipped: dict[frozenset, _Skipped] = {}  # see _skipped_for
        self._skipped_of: list | None = None
        self._score_async_of: list | None = None  # the score list the flags belong to
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
        self._results: collections.OrderedDict[tuple, _Table] = collections.OrderedDict()

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
        state.write(SKIP_FILTER_KEY, self._skipped_for(skip))
        for name, fn in self.pre_filter:
            status = fn(state, pod, nodes)
            if type(status) is not Status:  # None, another value, or awaitable
                if inspect.isawaitable(status):
                    status = await status
                status = _as_status(status, name)
            if status.code is Code.SKIP:
                skip.add(name)
            elif not status.ok:
                return status.with_plugin(name)
        state.write(SKIP_FILTER_KEY, self._skipped_for(skip))
        if self.signers is not None:
            await self._sign(state, pod, skip)
        return Status()

    def _skipped_for(self, skip: set[str]) -> _Skipped:
        """The (immutable, shared) :class:`_Skipped` for these skipped PreFilter plugins:
        made once per set of names and Filter list, not twice per cycle."""
        filters = self.filter
        if self._skipped_of is not filters:
            self._skipped.clear()
            self._skipped_of = filters
        names = frozenset(skip)
        found = self._skipped.get(names)
        if found is None:
            found = self._skipped[names] = _Skipped(
                names, [(n, f) for n, f in filters if n not in names])
        return found

    async def _sign(self, state: CycleState, pod: dict, skip: set[str]) -> None:
        """Build the pod's signature and put its stored results into ``state``."""
        parts = []
        for name, sign, scored in self.signers:
            if name in skip and not scored:
                continue  # its Filter does not run for this pod and it does not score
            try:
                fragment = sign(state, pod)
                if type(fragment) not in _PLAIN_RESULTS and inspect.isawaitable(fragment):
                    fragment = await fragment
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
            results = cache[signature] = _Table(len(self.score))
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
                            nominator: Any, percentage: int, *, snapshot: Any = None
                            ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Filter nodes from where the last cycle stopped until enough passed; returns the
        feasible nodes and the failing status of each rejected node. ``nominator.by_node``
        maps node names to the pods nominated there.

        With a signature in ``state`` and ``nodes`` being ``snapshot.nodes`` (the host's
        cycle), the signature's :class:`_Table` answers: the same nodes are found, but the
        statuses returned are only those computed in this cycle, unless no node fits (then
        every node's). Otherwise every node visited is filtered."""
        total = len(nodes)
        if not total:
            return [], {}
        want = self.num_feasible_nodes_to_find(total, percentage)
        start = self._next_start % total
        if not self.filter:
            feasible = (nodes[start:] + nodes[:start])[:want]
            self._next_start = (start + len(feasible)) % total
            return feasible, {}
        table = state.get(SIGNATURE_KEY)
        if table is not None and snapshot is not None and snapshot.nodes is nodes:
            return await self._find_in_table(state, pod, nodes, snapshot, table, nominator,
                                             want, start)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        by_node = nominator.by_node
        processed = 0
        order = itertools.chain(itertools.islice(nodes, start, None),
                                itertools.islice(nodes, start))
        if not self.filter_async:
            skipped = state.get(SKIP_FILTER_KEY)
            filters = skipped.filters if skipped is not None else self.filter
            filter_node = self.filter_node
            success, skip_code = Code.SUCCESS, Code.SKIP
            left = want
            for processed, node in enumerate(order, 1):
                name = node.name
                if by_node and by_node.get(name):
                    status = filter_node(state, pod, node, list(by_node[name].values()))
                else:
                    status = _OK
                    for plugin, fn in filters:
                        st = fn(state, pod, node)
                        if st.code is not success and st.code is not skip_code:
                            status = st.with_plugin(plugin)
                            break
                if status is _OK or status.ok:
                    feasible.append(node)
                    left -= 1
                    if not left:
                        break
                else:
                    statuses[name] = status
        else:
            for processed, node in enumerate(order, 1):
                nominated = by_node.get(node.name) if by_node else None
                status = await self.filter_node_async(
                    state, pod, node, list(nominated.values()) if nominated else [])
                if status.ok:
                    feasible.append(node)
                    if len(feasible) >= want:
                        break
                else:
                    statuses[node.name] = status
        self._next_start = (start + processed) % total
        return feasible, statuses

    async def _find_in_table(self, state: CycleState, pod: dict, nodes: list[NodeInfo],
                             snapshot: Any, table: _Table, nominator: Any, want: int,
                             start: int) -> tuple[list[NodeInfo], dict[str, Status]]:
        """find_feasible from a signature's table: the first ``want`` candidates from
        ``start`` on, in node order (wrapping), are sliced out of ``table.cand``; only the
        unknown ones among them are filtered (their results stored, except ERROR statuses
        and nodes with nominated pods, which are filtered with those pods every cycle), and
        the slice is extended past the ones that fail. Known failures are never visited:
        they would only have been skipped."""
        total = len(nodes)
        table.sync(snapshot)
        gens, status, cand = table.gens, table.status, table.cand
        by_node = nominator.by_node
        nominated: set[int] = set()
        if by_node:
            for name, pods in by_node.items():
                i = snapshot.index_of(name) if pods else None
                if i is not None:
                    table.forget(i)  # filtered with its nominated pods, never stored
                    nominated.add(i)
        is_async, error = self.filter_async, Code.ERROR
        found: list[int] = []
        rejected: dict[int, Status] = {}
        failed: list[tuple[int, int, Status]] = []  # new known failures: to store at the end
        n = len(cand)
        pos = bisect.bisect_left(cand, start)
        visited = 0
        try:
            while len(found) < want and visited < n:
                take = min(want - len(found), n - visited)
                first = (pos + visited) % n
                end = first + take
                chunk = cand[first:end] if end <= n else cand[first:] + cand[:end - n]
                visited += take
                known = _pick(gens, chunk)
                try:
                    j = known.index(0)
                except ValueError:
                    found += chunk  # all known feasible
                    continue
                done = 0
                while True:
                    found += chunk[done:j]  # known feasible up to the next unknown one
                    i = chunk[j]
                    node = nodes[i]
                    if i in nominated:
                        others = list(by_node[node.name].values())
                        st = await self.filter_node_async(state, pod, node, others) \
                            if is_async else self.filter_node(state, pod, node, others)
                        store = False
                    else:
                        st = await self.run_filters_async(state, pod, node) if is_async \
                            else self.run_filters(state, pod, node)
                        store = st.code is not error
                    if st is _OK or st.ok:
                        found.append(i)
                        if store:
                            gens[i], status[i] = node.generation, st
                    else:
                        rejected[i] = st
                        if store:  # stored at the end: cand must keep "known = feasible"
                            failed.append((i, node.generation, st))
                    done = j + 1
                    try:
                        j = known.index(0, done)
                    except ValueError:
                        break
                found += chunk[done:]
        finally:
            if failed:  # known failures leave cand (also when a plugin raised meanwhile)
                for i, generation, st in failed:
                    gens[i], status[i] = generation, st
                if len(failed) < 16:
                    for i, _, _ in failed:
                        del cand[bisect.bisect_left(cand, i)]
                else:
                    drop = {i for i, _, _ in failed}
                    cand[:] = [i for i in cand if i not in drop]
        if found:
            statuses = {nodes[i].name: st for i, st in rejected.items()}
            processed = (found[-1] - start) % total + 1 if len(found) >= want else total
        else:  # nothing fits: every node's status, for the message and PostFilter
            statuses = {}
            for k in range(total):
                i = (start + k) % total
                st = rejected.get(i) or status[i]
                if st is not None:
                    statuses[nodes[i].name] = st
            processed = total
        feasible = _pick(nodes, found)
        state.write(FEASIBLE_KEY, _Walk(feasible, found, table))
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
            status = fn(state, pod, nodes)
            if type(status) is not Status:  # None, another value, or awaitable
                if inspect.isawaitable(status):
                    status = await status
                status = _as_status(status, name)
            if status.code is Code.SKIP:
                skip.add(name)
            elif not status.ok:
                return status.with_plugin(name), skip
        return Status(), skip

    async def run_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo],
                        skip: set[str]) -> dict[str, int]:
        """node name → sum over Score plugins of weight × normalized score. When ``nodes``
        are what find_feasible found from a signature's table, raw scores stored there are
        reused and new ones stored; normalize_scores always sees every node's raw score."""
        walk = state.get(FEASIBLE_KEY)
        if walk is not None and walk.nodes is nodes:
            names, totals = await self._score_walk(state, pod, walk, skip)
            if names is None:
                names = _pick(walk.table.snapshot.names, walk.indexes)
            return dict(zip(names, totals))
        names = [n.name for n in nodes]
        totals = dict.fromkeys(names, 0)
        for name, score, normalize, weight in self.score:
            if name in skip:
                continue
            if _is_async(score):
                raw = {n.name: await score(state, pod, n) for n in nodes}
            else:
                raw = {n.name: score(state, pod, n) for n in nodes}
            normalized = raw if normalize is None else await _call(normalize, state, pod, raw)
            values = normalized.values()
            if values and not (0 <= min(values) and max(values) <= MAX_NODE_SCORE):
                _out_of_range(name, normalized)
            if weight == 1:
                for node_name, value in normalized.items():
                    totals[node_name] += value
            else:
                for node_name, value in normalized.items():
                    totals[node_name] += value * weight
        return totals

    async def _score_walk(self, state: CycleState, pod: dict, walk: _Walk,
                          skip: set[str]) -> tuple[list[str] | None, list[int]]:
        """run_score on the table path, as lists in feasible order: the names (None when
        no plugin needed them: :meth:`select` picks by position) and the totals. Raw scores
        come from the table, computed (and stored where the node's status is stored) only
        where missing."""
        nodes, indexes, table = walk.nodes, walk.indexes, walk.table
        names: list[str] | None = None
        if self._score_async_of is not self.score:  # once per score list, not per cycle
            self._score_async = [_is_async(s[1]) for s in self.score]
            self._score_async_of = self.score
        score_async = self._score_async
        totals: list[int] | None = None
        stored = table.gens
        for k, (name, score, normalize, weight) in enumerate(self.score):
            if name in skip:
                continue
            column = table.raw[k]
            values = _pick(column, indexes)
            unchecked = False  # a score computed now that is not an int in range
            if _UNSCORED in values:
                is_async = score_async[k]
                j = values.index(_UNSCORED)
                while True:
                    value = score(state, pod, nodes[j])
                    if is_async:
                        value = await value
                    values[j] = value
                    if normalize is not None or \
                            (type(value) is int and 0 <= value <= MAX_NODE_SCORE):
                        i = indexes[j]
                        if stored[i]:
                            column[i] = value
                    else:  # never stored: checked below, in every cycle that reads it
                        unchecked = True
                    try:
                        j = values.index(_UNSCORED, j + 1)
                    except ValueError:
                        break
            if normalize is None:
                # scores_normalized: no dict, no call. The column stores only ints within
                # [0, MAX_NODE_SCORE], so only a cycle with another new score checks them
                if unchecked and values and \
                        not (0 <= min(values) and max(values) <= MAX_NODE_SCORE):
                    _out_of_range(name, dict(zip(_pick(table.snapshot.names, indexes),
                                                 values)))
            else:
                if names is None:
                    names = _pick(table.snapshot.names, indexes)
                raw = dict(zip(names, values))
                normalized = await _call(normalize, state, pod, raw)
                checked = normalized.values()
                if checked and not (0 <= min(checked) and max(checked) <= MAX_NODE_SCORE):
                    _out_of_range(name, normalized)
                if normalized is raw and len(raw) == len(names):
                    values = list(raw.values())
                elif normalized.keys() == raw.keys():
                    values = list(map(normalized.__getitem__, names))
                else:  # as run_score: a missing node adds 0, an unknown one is a KeyError
                    for node_name in normalized:
                        if node_name not in raw:
                            raise KeyError(node_name)
                    values = [normalized.get(n, 0) for n in names]
            if weight != 1:
                values = list(map(operator.mul, values, itertools.repeat(weight)))
            totals = values if totals is None else list(map(operator.add, totals, values))
        return names, totals if totals is not None else [0] * len(indexes)

    async def select(self, state: CycleState, pod: dict, nodes: list[NodeInfo],
                     skip: set[str]) -> str:
        """:meth:`run_score` then :meth:`select_host`, without building the totals dict on
        the table path (same scores, same choice, same random draws on ties)."""
        walk = state.get(FEASIBLE_KEY)
        if walk is None or walk.nodes is not nodes:
            return self.select_host(await self.run_score(state, pod, nodes, skip))
        _, totals = await self._score_walk(state, pod, walk, skip)
        names = walk.table.snapshot.names  # by position: names[walk.indexes[j]]
        indexes = walk.indexes
        best_score = max(totals)
        packed = None  # the totals as bytes when all are ints within a byte (the common
        if type(best_score) is int and 0 <= best_score <= 255:  # case): searched in C
            try:
                packed = bytes(totals)
            except (TypeError, ValueError):
                pass
        if packed is not None:
            if packed.count(best_score) == 1:
                return names[indexes[packed.index(best_score)]]
            mask: Any = packed.translate(_equal_to(best_score))
        else:
            if totals.count(best_score) == 1:
                return names[indexes[totals.index(best_score)]]
            mask = map(operator.eq, totals, itertools.repeat(best_score))
        # the tied positions, in feasible order (random.choice draws only on their count)
        return names[random.choice(list(itertools.compress(indexes, mask)))]

    @staticmethod
    def select_host(totals: dict[str, int]) -> str:
        """The highest total; ties broken uniformly at random."""
        best_score = max(totals.values())
        best = [name for name, value in totals.items() if value == best_score]
        return best[0] if len(best) == 1 else random.choice(best)

    # ---------------------------------------------------------------- reserve .. bind

    async def run_reserve(self, state: CycleState, pod: dict, node: str) -> Status:
        for name, plugin in self.reserve:
            status = plugin.reserve(state, pod, node)
            if type(status) is not Status:  # None, another value, or awaitable
                if inspect.isawaitable(status):
                    status = await status
                status = _as_status(status, name)
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
            result = fn(state, pod, node)
            if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                result = await result
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
            status = fn(state, pod, node, client)
            if type(status) is not Status:  # None, another value, or awaitable
                if inspect.isawaitable(status):
                    status = await status
                status = _as_status(status, name)
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


_EQUAL_TO: dict[int, bytes] = {}


def _equal_to(value: int) -> bytes:
    """A ``bytes.translate`` table turning byte ``value`` into 1 and every other into 0."""
    table = _EQUAL_TO.get(value)
    if table is None:
        table = _EQUAL_TO[value] = bytes(int(i == value) for i in range(256))
    return table


def _pick(seq: list, indexes: list[int]) -> list:
    """``[seq[i] for i in indexes]``, in C: a slice when ``indexes`` is a run of consecutive
    positions (the common case), else an itemgetter."""
    if not indexes:
        return []
    first, last = indexes[0], indexes[-1]
    if last - first == len(indexes) - 1 and last >= first:
        return seq[first:last + 1]
    if len(indexes) == 1:
        return [seq[first]]
    return list(operator.itemgetter(*indexes)(seq))


def _out_of_range(plugin: str, normalized: dict[str, int]) -> None:
    for node_name, value in normalized.items():
        if not 0 <= value <= MAX_NODE_SCORE:
            raise ValueError(f"plugin {plugin} scored node {node_name} {value}, outside "
                             f"[0, {MAX_NODE_SCORE}] after normalize_scores")


_OK = Status()
