"""Conformance suite skeleton for network drivers (:class:`pilothouse.interfaces.network.NetworkDriver`).

One line per driver::

    from pilothouse.testing.network import NetworkConformance
    class TestBridgeNetwork(NetworkConformance):
        plugin = "bridge"
        def network_options(self, tmp_path): return {...}

It checks the contract every driver shares: ``setup_node`` and ``sync_routes`` are
idempotent and level-triggered, ``cni_config`` agrees with ``mode``, and direct-mode drivers
attach and detach idempotently. A driver under test implements ``async observe_routes() ->
set[str]`` returning the pod CIDRs of other nodes it currently routes. Suites for real data
paths (network namespaces joined by veth pairs) add traffic tests on top.
"""

from __future__ import annotations

import asyncio

from pilothouse.interfaces.network import NodeNetwork
from pilothouse.testing._drivers import build_driver

__all__ = ["NetworkConformance"]

ME = NodeNetwork("node-a", ("10.244.0.0/24",), ("192.0.2.1",))
OTHERS = [NodeNetwork("node-b", ("10.244.1.0/24",), ("192.0.2.2",)),
          NodeNetwork("node-c", ("10.244.2.0/24",), ("192.0.2.3",))]


class NetworkConformance:
    """Subclass with ``plugin`` (entry-point name or class) and optionally
    ``network_options(tmp_path)``."""

    plugin: str | type = ""

    def network_options(self, tmp_path) -> dict:
        return {}

    def _run(self, tmp_path, body):
        async def go():
            driver = build_driver("network", self.plugin, self.network_options(tmp_path))
            try:
                await body(driver)
            finally:
                await driver.close()
        asyncio.run(go())

    def test_setup_node_is_idempotent(self, tmp_path):
        """setup_node(): a restarted agent calls it again over existing state."""
        async def body(d):
            await d.setup_node(ME)
            await d.setup_node(ME)
        self._run(tmp_path, body)

    def test_cni_config_matches_mode(self, tmp_path):
        """cni_config(): a dict in CNI mode, None in direct mode."""
        async def body(d):
            await d.setup_node(ME)
            assert d.mode in ("cni", "direct")
            config = d.cni_config()
            if d.mode == "cni":
                assert isinstance(config, dict) and config.get("plugins")
            else:
                assert config is None
        self._run(tmp_path, body)

    def test_sync_routes_is_level_triggered(self, tmp_path):
        """sync_routes(): routes to exactly the listed nodes' pod CIDRs, stale ones removed."""
        async def body(d):
            await d.setup_node(ME)
            await d.sync_routes([ME] + OTHERS)
            assert await d.observe_routes() == {"10.244.1.0/24", "10.244.2.0/24"}
            await d.sync_routes([ME, OTHERS[0]])
            assert await d.observe_routes() == {"10.244.1.0/24"}
            await d.sync_routes([ME, OTHERS[0]])
            assert await d.observe_routes() == {"10.244.1.0/24"}
        self._run(tmp_path, body)
