"""The network and proxy conformance skeletons run against small in-memory reference drivers,
and catch a driver that is not level-triggered."""

import pytest

from pilothouse.interfaces.network import NetworkDriver
from pilothouse.interfaces.proxy import ProxyDriver
from pilothouse.testing.network import NetworkConformance
from pilothouse.testing.proxy import ProxyConformance


class TableProxy(ProxyDriver):
    """Reference proxy: the 'data path' is a set of routes."""

    def __init__(self):
        self.routes = set()

    async def sync(self, ports):
        self.routes = {(p.namespace, p.name, p.port_name, ip, p.port, p.protocol, ep.ip, t)
                       for p in ports for ip in p.cluster_ips for ep, t in p.endpoints
                       if ep.ready}

    async def cleanup(self):
        self.routes = set()

    async def observe(self):
        return set(self.routes)


class AddOnlyProxy(TableProxy):
    """Broken: never removes what is no longer listed."""

    async def sync(self, ports):
        before = set(self.routes)
        await super().sync(ports)
        self.routes |= before


class TableNetwork(NetworkDriver):
    mode = "cni"

    def __init__(self):
        self.me, self.routes = None, set()

    async def setup_node(self, node):
        self.me = node

    async def sync_routes(self, nodes):
        self.routes = {c for n in nodes if n.node_name != self.me.node_name for c in n.pod_cidrs}

    def cni_config(self):
        return {"cniVersion": "1.0.0", "name": "ref", "plugins": [{"type": "bridge"}]}

    async def observe_routes(self):
        return set(self.routes)


class TestReferenceProxy(ProxyConformance):
    plugin = TableProxy


class TestReferenceNetwork(NetworkConformance):
    plugin = TableNetwork


def test_the_proxy_suite_catches_a_driver_that_only_adds(tmp_path):
    class Broken(ProxyConformance):
        plugin = AddOnlyProxy
    with pytest.raises(AssertionError):
        Broken().test_sync_is_level_triggered(tmp_path)
