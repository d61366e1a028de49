"""The scheduler's view of the cluster: a NodeInfo per node, built from informers, plus pods
this scheduler *assumed* onto nodes before the API confirmed their binding.

An assumed pod counts on its node from Reserve on, so the next cycle does not give its room
away while the bind is in flight. When the pod informer reports the pod bound, the assumption
is confirmed (moved if the API says another node: another scheduler won). A failed bind
forgets it. An assumption whose bind finished but was never confirmed expires after a TTL.

:meth:`Cache.update_snapshot` copies only the nodes that changed since the last snapshot,
so a cycle on a 5,000-node cluster does not clone 5,000 NodeInfos.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

from pilothouse.interfaces.scheduler import NodeInfo

log = logging.getLogger("pilothouse.scheduler")


def _uid(pod: dict) -> str:
    m = pod["metadata"]
    return m.get("uid") or f"{m.get('namespace')}/{m['name']}"


#: Metadata a pod update may change without changing what scheduling reads of the pod
#: (``generation`` follows ``spec``, which is compared itself).
_VOLATILE_METADATA = frozenset(("resourceVersion", "managedFields", "generation"))


def same_for_scheduling(a: dict, b: dict) -> bool:
    """True when two versions of an assigned pod differ at most in ``status`` and in
    :data:`_VOLATILE_METADATA`: the node's accounting and every Filter and Score reading
    the pod give the same answers for both (see :attr:`NodeInfo.generation`)."""
    if a is b:
        return True
    if a.get("spec") != b.get("spec"):
        return False
    ma, mb = a["metadata"], b["metadata"]
    if ma is mb:
        return True
    for k, v in ma.items():
        if k not in _VOLATILE_METADATA and (k not in mb or mb[k] != v):
            return False
    for k in mb:
        if k not in ma and k not in _VOLATILE_METADATA:
            return False
    return True


def _swap(pods: list[dict], old: dict, new: dict) -> bool:
    for i, p in enumerate(pods):
        if p is old:
            pods[i] = new
            return True
    return False


class _PodState:
    __slots__ = ("pod", "node", "assumed", "deadline")

    def __init__(self, pod: dict, node: str, assumed: bool):
        self.pod, self.node, self.assumed = pod, node, assumed
        self.deadline: float | None = None


#: Source of :attr:`Snapshot.epoch`: no two node lists of a process share an epoch.
_epochs = itertools.count(1)


class Snapshot:
    """The nodes one scheduling cycle sees: ``nodes`` (list, stable order) and ``by_name``,
    plus the nodes having pods with pod (anti-)affinity, kept incrementally.

    A change feed says which positions of ``nodes`` were replaced, so per-node results kept
    by position (the framework's signature tables) are brought up to date in proportion to
    what changed: ``epoch`` names the current list of nodes (a new value, process-wide
    unique, whenever nodes are added or removed and positions move); :meth:`changes_since`
    lists the positions replaced since a :attr:`position` of the feed."""

    #: The feed keeps at least this many entries (and at least twice the node count).
    MIN_FEED = 1024

    def __init__(self) -> None:
        self.nodes: list[NodeInfo] = []
        self.names: list[str] = []  # the names of ``nodes``, in the same order
        self.by_name: dict[str, NodeInfo] = {}
        self._index: dict[str, int] = {}
        self._affinity: dict[str, NodeInfo] = {}
        self._anti: dict[str, NodeInfo] = {}
        self._tainted: dict[str, NodeInfo] = {}
        # id of one of the three dicts above -> its values in ``nodes`` order, and each
        # name's position in that list (see _ordered and Cache.update_snapshot)
        self._lists: dict[int, tuple[list[NodeInfo], dict[str, int]]] = {}
        self.epoch = next(_epochs)
        self._feed: list[int] = []  # positions replaced, oldest first
        self._feed_base = 0  # the feed position of _feed[0]

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, name: str) -> NodeInfo | None:
        return self.by_name.get(name)

    def index_of(self, name: str) -> int | None:
        """The position of node ``name`` in ``nodes``, or None."""
        return self._index.get(name)

    @property
    def position(self) -> int:
        """The change feed's current position (within this :attr:`epoch`)."""
        return self._feed_base + len(self._feed)

    def changes_since(self, epoch: int, position: int) -> list[int] | None:
        """Positions of ``nodes`` replaced since feed ``position`` of ``epoch`` (repeats
        possible), or None when that is unknown: another epoch, or entries dropped since."""
        if epoch != self.epoch or position < self._feed_base:
            return None
        return self._feed[position - self._feed_base:]

    def _renumber(self) -> None:
        self.epoch = next(_epochs)
        self._feed.clear()
        self._feed_base = 0

    def _replaced(self, index: int) -> None:
        feed = self._feed
        feed.append(index)
        if len(feed) > max(self.MIN_FEED, 2 * len(self.nodes)):
            half = len(feed) // 2
            del feed[:half]
            self._feed_base += half

    def _ordered(self, which: dict[str, NodeInfo]) -> list[NodeInfo]:
        cached = self._lists.get(id(which))
        if cached is None:
            index = self._index
            ordered = sorted(which.values(), key=lambda info: index[info.name])
            cached = self._lists[id(which)] = (
                ordered, {info.name: i for i, info in enumerate(ordered)})
        return cached[0]

    def _patch_lists(self, changes: dict[int, list[str] | None]) -> None:
        """After an update: drop the ordered list of a dict whose members changed (None);
        in the list of a dict whose members only got new NodeInfos (their names), put them
        in place in a copy (plugins may still hold the old list), without sorting again."""
        lists = self._lists
        for which in (self._affinity, self._anti, self._tainted):
            key = id(which)
            cached, names = lists.get(key), changes[key]
            if cached is None:
                continue
            if names is None:
                del lists[key]
                continue
            ordered, positions = cached
            ordered = list(ordered)
            for name in names:
                ordered[positions[name]] = which[name]
            lists[key] = (ordered, positions)

    def with_pod_affinity(self) -> list[NodeInfo]:
        """NodeInfos with ``pods_with_affinity``, in ``nodes`` order."""
        return self._ordered(self._affinity) if self._affinity else []

    def with_required_anti_affinity(self) -> list[NodeInfo]:
        """NodeInfos with ``pods_with_required_anti_affinity``, in ``nodes`` order."""
        return self._ordered(self._anti) if self._anti else []

    def with_taints(self) -> list[NodeInfo]:
        """NodeInfos whose Node has taints, in ``nodes`` order."""
        return self._ordered(self._tainted) if self._tainted else []


class Cache:
    def __init__(self, assumed_ttl: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.assumed_ttl, self.clock = assumed_ttl, clock
        self.infos: dict[str, NodeInfo] = {}  # every node name we know pods of
        self.real: dict[str, None] = {}  # names with a Node object, in arrival order
        self.pods: dict[str, _PodState] = {}
        self.image_nodes: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._refreshed: set[str] = set()  # same content, newer pod objects (see add_pod)
        self._membership_changed = True

    # ---------------------------------------------------------------- nodes

    def _info(self, name: str) -> NodeInfo:
        info = self.infos.get(name)
        if info is None:
            info = NodeInfo({"metadata": {"name": name}})
            self.infos[name] = info
        return info

    def _count_images(self, info: NodeInfo, sign: int) -> None:
        for image in info.images:
            n = self.image_nodes.get(image, 0) + sign
            if n > 0:
                self.image_nodes[image] = n
            else:
                self.image_nodes.pop(image, None)

    def add_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        info = self._info(name)
        if name in self.real:
            self._count_images(info, -1)
        info.set_node(node)
        self._count_images(info, +1)
        if name not in self.real:
            self.real[name] = None
            self._membership_changed = True
        self._dirty.add(name)

    update_node = add_node

    def remove_node(self, node: dict) -> None:
        name = node["metadata"]["name"]
        info = self.infos.get(name)
        if name in self.real:
            del self.real[name]
            self._membership_changed = True
            if info is not None:
                self._count_images(info, -1)
        if info is not None and not info.pods:
            del self.infos[name]
        self._dirty.add(name)

    # ---------------------------------------------------------------- pods

    def _place(self, pod: dict, node: str) -> None:
        self._info(node).add_pod(pod)
        self._dirty.add(node)

    def _unplace(self, pod: dict, node: str) -> None:
        info = self.infos.get(node)
        if info is not None:
            info.remove_pod(pod)
            self._dirty.add(node)
            if not info.pods and node not in self.real:
                del self.infos[node]

    def add_pod(self, pod: dict) -> None:
        """An assigned pod from the informer (confirms an assumption).

        When the cache already holds the pod on the same node and the new version is
        :func:`same_for_scheduling` (the binding's confirmation of an assumption, a kubelet's
        status report), the new object only replaces the old one in the node's lists: the
        accounting and the node's ``generation`` stay, so results stored per generation
        (pod scheduling signatures) stay valid; the next snapshot gets the new objects."""
        node = pod["spec"]["nodeName"]
        uid = _uid(pod)
        state = self.pods.get(uid)
        if state is not None:
            if state.node == node and same_for_scheduling(state.pod, pod):
                info = self.infos.get(node)
                if info is not None and self._swap_pod(info, state.pod, pod):
                    state.pod, state.assumed, state.deadline = pod, False, None
                    return
            self._unplace(state.pod, state.node)
        self._place(pod, node)
        self.pods[uid] = _PodState(pod, node, assumed=False)

    def _swap_pod(self, info: NodeInfo, old: dict, new: dict) -> bool:
        if not _swap(info.pods, old, new):
            return False
        if info.pods_with_affinity:
            _swap(info.pods_with_affinity, old, new)
        if info.pods_with_required_anti_affinity:
            _swap(info.pods_with_required_anti_affinity, old, new)
        self._refreshed.add(info.name)
        return True

    update_pod = add_pod

    def remove_pod(self, pod: dict) -> None:
        state = self.pods.pop(_uid(pod), None)
        if state is not None:
            self._unplace(state.pod, state.node)

    def assume_pod(self, pod: dict, node: str) -> None:
        uid = _uid(pod)
        if uid in self.pods:
            raise ValueError(f"pod {pod['metadata'].get('name')} is already in the cache")
        self._place(pod, node)
        self.pods[uid] = _PodState(pod, node, assumed=True)

    def finish_binding(self, pod: dict) -> None:
        state = self.pods.get(_uid(pod))
        if state is not None and state.assumed:
            state.deadline = self.clock() + self.assumed_ttl

    def forget_pod(self, pod: dict) -> None:
        state = self.pods.get(_uid(pod))
        if state is not None and state.assumed:
            del self.pods[_uid(pod)]
            self._unplace(state.pod, state.node)

    def is_assumed(self, pod: dict) -> bool:
        state = self.pods.get(_uid(pod))
        return state is not None and state.assumed

    def node_of(self, pod: dict) -> str | None:
        state = self.pods.get(_uid(pod))
        return state.node if state else None

    def cleanup_expired(self) -> int:
        now, expired = self.clock(), []
        for uid, state in self.pods.items():
            if state.assumed and state.deadline is not None and state.deadline < now:
                expired.append(uid)
        for uid in expired:
            state = self.pods.pop(uid)
            log.warning("assumed pod %s on %s expired without confirmation",
                        state.pod["metadata"].get("name"), state.node)
            self._unplace(state.pod, state.node)
        return len(expired)

    # ---------------------------------------------------------------- snapshot

    def update_snapshot(self, snap: Snapshot) -> None:
        """Bring ``snap`` up to date, cloning only the nodes that changed."""
        if self._refreshed:
            for name in self._refreshed:
                copy = snap.by_name.get(name)
                info = self.infos.get(name)
                if copy is not None and info is not None and name not in self._dirty \
                        and copy.generation == info.generation:
                    # newer objects, same content: the lists only, the generation stays
                    copy.pods = list(info.pods)
                    copy.pods_with_affinity = list(info.pods_with_affinity)
                    copy.pods_with_required_anti_affinity = list(
                        info.pods_with_required_anti_affinity)
            self._refreshed.clear()
        if not self._dirty and not self._membership_changed:
            return
        by_name, affinity, anti = snap.by_name, snap._affinity, snap._anti
        tainted = snap._tainted
        # per dict: names whose NodeInfo was replaced, or None once its members changed
        changes: dict[int, list[str] | None] = {id(affinity): [], id(anti): [], id(tainted): []}
        for name in self._dirty:
            if name in self.real:
                info = by_name[name] = self.infos[name].clone()
                for which, has in ((affinity, info.pods_with_affinity),
                                   (anti, info.pods_with_required_anti_affinity),
                                   (tainted, info.taints)):
                    if has:
                        replaced = changes[id(which)]
                        if replaced is not None and name in which:
                            replaced.append(name)
                        else:
                            changes[id(which)] = None
                        which[name] = info
                    elif which.pop(name, None) is not None:
                        changes[id(which)] = None
            else:
                by_name.pop(name, None)
                for which in (affinity, anti, tainted):
                    if which.pop(name, None) is not None:
                        changes[id(which)] = None
        if self._membership_changed:
            snap._lists.clear()  # positions move
        else:
            snap._patch_lists(changes)
        if self._membership_changed:
            snap.nodes = [by_name[n] for n in self.real]
            snap.names = list(self.real)
            snap._index = {n: i for i, n in enumerate(self.real)}
            snap._renumber()
        else:
            nodes, index = snap.nodes, snap._index
            for name in self._dirty:
                i = index.get(name)
                if i is not None:
                    nodes[i] = by_name[name]
                    snap._replaced(i)
        self._dirty.clear()
        self._membership_changed = False
