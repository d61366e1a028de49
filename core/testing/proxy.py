"""Conformance suite skeleton for proxy drivers (:class:`pilothouse.interfaces.proxy.ProxyDriver`).

Use it with one line, giving the entry-point name (or the class) and the options::

    from pilothouse.testing.proxy import ProxyConformance
    class TestIptablesProxy(ProxyConformance):
        plugin = "iptables"
        def proxy_options(self, tmp_path): return {...}

The suite checks the contract's level-triggered semantics through the driver's own
``observe()`` hook: a driver under test implements ``async observe() -> set[tuple]`` returning
the ``(namespace, name, port_name, cluster_ip, port, protocol, endpoint_ip, target_port)``
tuples its data path currently routes (for iptables: parsed from ``iptables-save`` in the test's
network namespace). Suites for real data paths add their own traffic tests on top.
"""

from __future__ import annotations

import asyncio

from pilothouse.interfaces.proxy import Endpoint, ServicePort
from pilothouse.testing._drivers import build_driver

__all__ = ["ProxyConformance", "sample_ports"]


def sample_ports(n: int = 3, endpoints: int = 2) -> list[ServicePort]:
    """``n`` Services with ``endpoints`` ready backends each, on 10.96.0.x → 10.244.0.x."""
    return [ServicePort("default", f"svc{i}", "http", (f"10.96.0.{10 + i}",), 80, "TCP",
                        tuple((Endpoint(f"10.244.0.{10 * i + j + 2}"), 8080)
                              for j in range(endpoints)))
            for i in range(n)]


def expected(ports: list[ServicePort]) -> set[tuple]:
    return {(p.namespace, p.name, p.port_name, ip, p.port, p.protocol, ep.ip, target)
            for p in ports for ip in p.cluster_ips for ep, target in p.endpoints if ep.ready}


class ProxyConformance:
    """Subclass with ``plugin`` (entry-point name or class) and optionally
    ``proxy_options(tmp_path)``."""

    plugin: str | type = ""

    def proxy_options(self, tmp_path) -> dict:
        return {}

    def _run(self, tmp_path, body):
        async def go():
            driver = build_driver("proxy", self.plugin, self.proxy_options(tmp_path))
            try:
                await body(driver)
            finally:
                await driver.cleanup()
                await driver.close()
        asyncio.run(go())

    def test_sync_programs_exactly_the_given_ports(self, tmp_path):
        """sync(): add what is new; the data path then routes exactly the ready endpoints."""
        async def body(d):
            ports = sample_ports()
            await d.sync(ports)
            assert await d.observe() == expected(ports)
        self._run(tmp_path, body)

    def test_sync_is_level_triggered(self, tmp_path):
        """sync(): change what changed and remove what is no longer listed; repeating a sync
        changes nothing."""
        async def body(d):
            ports = sample_ports(3)
            await d.sync(ports)
            import dataclasses
            smaller = ports[:1] + [dataclasses.replace(ports[1],
                                                       endpoints=ports[1].endpoints[:1])]
            await d.sync(smaller)
            assert await d.observe() == expected(smaller)
            await d.sync(smaller)
            assert await d.observe() == expected(smaller)
            await d.sync([])
            assert await d.observe() == set()
        self._run(tmp_path, body)

    def test_not_ready_endpoints_get_no_traffic(self, tmp_path):
        """Only endpoints with ready=True are routed."""
        async def body(d):
            p = sample_ports(1, 2)[0]
            (first, port), (second, _) = p.endpoints
            mixed = ServicePort(p.namespace, p.name, p.port_name, p.cluster_ips, p.port,
                                p.protocol, ((first, port),
                                             (Endpoint(second.ip, ready=False), port)))
            await d.sync([mixed])
            assert await d.observe() == expected([mixed])
        self._run(tmp_path, body)

    def test_cleanup_is_idempotent(self, tmp_path):
        """cleanup(): removes every rule; calling it again is harmless."""
        async def body(d):
            await d.sync(sample_ports())
            await d.cleanup()
            await d.cleanup()
            assert await d.observe() == set()
        self._run(tmp_path, body)
