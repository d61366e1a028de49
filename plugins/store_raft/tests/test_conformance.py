"""The store conformance suite (pilothouse.testing.store) against the raft store.

* ``TestRaftSingleMember``: the default deployment, one member with its data dir.
* ``TestRaftThreeMembers``: the driver under test is member 0 of a 3-member cluster whose
  two other members run in this process as bare raft members (threads, no event loop).
  Whichever member is leader, requests may be forwarded and reads confirmed through the
  log. ``restart`` stops and restarts *all three* members on their data dirs, so the
  durability tests check that the cluster as a whole keeps acknowledged writes (kill -9 of
  separate processes is covered by test_faults.py).
"""

from __future__ import annotations

import asyncio

import pytest

from raft_testing import cluster_options
from pilothouse.testing.store import StoreConformance
from pilothouse_store_raft._node import MemberConfig, RaftMember


class TestRaftSingleMember(StoreConformance):
    plugin = "raft"

    def store_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "store")}


def _peer(options: dict) -> RaftMember:
    defaults = {"election_timeout": 0.5, "heartbeat_interval": 0.05}
    cfg = MemberConfig(
        data_dir=options["data_dir"], self_address=options["self_address"],
        members=options["members"], bind_address=None,
        election_timeout=options.get("election_timeout", defaults["election_timeout"]),
        heartbeat_interval=options.get("heartbeat_interval", defaults["heartbeat_interval"]),
        snapshot_entries=options.get("snapshot_entries", 10000), snapshot_interval=300.0)
    import os
    os.makedirs(cfg.data_dir, exist_ok=True)
    member = RaftMember(cfg, lambda: None)
    member.start()
    return member


class TestRaftThreeMembers(StoreConformance):
    plugin = "raft"

    @pytest.fixture(autouse=True)
    def _cluster(self, tmp_path):
        self.cluster = cluster_options(tmp_path, 3)
        self.peers = [_peer(o) for o in self.cluster[1:]]
        yield
        for p in self.peers:
            p.stop()

    def store_options(self, tmp_path):
        return self.cluster[0]

    async def restart(self, store, tmp_path):
        await store.close()
        loop = asyncio.get_running_loop()
        for p in self.peers:
            await loop.run_in_executor(None, p.stop)
        self.peers = [await loop.run_in_executor(None, _peer, o) for o in self.cluster[1:]]
        return await self.open_store(tmp_path)
