"""NodeInfo fixtures and a tiny runner that drives one plugin the way the framework does."""

from __future__ import annotations

from pilothouse.interfaces.scheduler import CycleState, NodeInfo, Status
from pilothouse.scheduler.testing import node as node_obj
from pilothouse.scheduler.testing import pod as pod_obj

_uid = [0]


def pod(name, node_name=None, priority=None, uid=None, **kw):
    """A pod dict (see pilothouse.scheduler.testing.pod) with a uid and optional node."""
    p = pod_obj(name, **kw)
    _uid[0] += 1
    p["metadata"]["uid"] = uid or f"uid-{name}-{_uid[0]}"
    p["metadata"]["creationTimestamp"] = f"2024-01-01T00:00:{_uid[0] % 60:02}Z"
    if node_name:
        p["spec"]["nodeName"] = node_name
    if priority is not None:
        p["spec"]["priority"] = priority
    return p


def node(name, pods=(), **kw):
    """A NodeInfo for a node built like pilothouse.scheduler.testing.node, with pods."""
    return NodeInfo(node_obj(name, **kw), [dict(p, spec={**p["spec"], "nodeName": name})
                                           for p in pods])


def filter_all(plugin, p, nodes, state=None):
    """PreFilter (if any) then Filter on every node: node name → Status (SKIP → all OK)."""
    state = state or CycleState()
    if hasattr(plugin, "pre_filter"):
        s = plugin.pre_filter(state, p, nodes)
        if s.code.name == "SKIP":
            return {n.name: Status() for n in nodes}
        if not s.ok:
            return {n.name: s for n in nodes}
    return {n.name: plugin.filter(state, p, n) for n in nodes}


def feasible(plugin, p, nodes):
    return [name for name, s in filter_all(plugin, p, nodes).items() if s.ok]


def scores(plugin, p, nodes, state=None):
    """PreScore (if any), Score and normalize: node name → normalized score (SKIP → {})."""
    state = state or CycleState()
    if hasattr(plugin, "pre_filter"):
        plugin.pre_filter(state, p, nodes)
    if hasattr(plugin, "pre_score"):
        s = plugin.pre_score(state, p, nodes)
        if s.code.name == "SKIP":
            return {}
    raw = {n.name: plugin.score(state, p, n) for n in nodes}
    return plugin.normalize_scores(state, p, raw)


def reasons(statuses):
    return {name: s.reasons for name, s in statuses.items() if not s.ok}


class FakeHandle:
    """Enough of the framework Handle for PostFilter unit tests: runs ``plugins``' filters
    and pre-filter extensions over the given NodeInfos. Writes are recorded, not sent."""

    def __init__(self, nodes, plugins, nominated=None):
        self.nodes = nodes
        self.plugins = plugins
        self.profile = "default-scheduler"
        self.nominated = nominated or {}
        self.events = []
        self.client = None

    def node_infos(self):
        return self.nodes

    def node_info(self, name):
        return next((n for n in self.nodes if n.name == name), None)

    def nodes_with_image(self, image):
        return sum(1 for n in self.nodes if image in n.images)

    def pre_filter(self, state, p):
        for plugin in self.plugins:
            if hasattr(plugin, "pre_filter"):
                plugin.pre_filter(state, p, self.nodes)

    def run_filter_plugins(self, state, p, info):
        for plugin in self.plugins:
            s = plugin.filter(state, p, info)
            if not s.ok:
                return s
        return Status()

    def run_pre_filter_extension_add_pod(self, state, p, other, info):
        for plugin in self.plugins:
            if hasattr(plugin, "pre_filter_add_pod"):
                plugin.pre_filter_add_pod(state, p, other, info)
        return Status()

    def run_pre_filter_extension_remove_pod(self, state, p, other, info):
        for plugin in self.plugins:
            if hasattr(plugin, "pre_filter_remove_pod"):
                plugin.pre_filter_remove_pod(state, p, other, info)
        return Status()

    def nominated_pods(self, node_name):
        return list(self.nominated.get(node_name, []))

    def record_event(self, obj, type, reason, message):
        self.events.append((obj["metadata"]["name"], reason, message))

    def waiting_pods(self):
        return []

    def allow_waiting_pod(self, uid, plugin):
        pass

    def reject_waiting_pod(self, uid, message):
        pass
