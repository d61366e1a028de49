"""The store conformance suite against a real etcd.

Each test gets a fresh key prefix on the session's etcd server (a fresh prefix is a fresh
store at revision 0). ``restart`` kills the etcd server with SIGKILL and starts it again on
the same data directory before reopening the store, so the durability tests check that
acknowledged writes survive a crash of etcd itself, not only a reconnect.
"""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.testing.store import StoreConformance

from pilothouse_store_etcd.testing import prefix_for


class TestEtcdStoreConformance(StoreConformance):
    plugin = "etcd"
    durable = True

    @pytest.fixture(autouse=True)
    def _etcd(self, etcd_server):
        self.etcd = etcd_server

    def store_options(self, tmp_path) -> dict:
        return {"endpoints": self.etcd.endpoints, "prefix": prefix_for(tmp_path),
                "request_timeout": 15.0}

    async def restart(self, store, tmp_path):
        await store.close()

        def crash_and_restart() -> None:
            self.etcd.kill(0)  # SIGKILL: no clean shutdown, only what etcd fsynced survives
            self.etcd.start_member(0)

        await asyncio.get_running_loop().run_in_executor(None, crash_and_restart)
        return await self.open_store(tmp_path)
