"""Shared helpers for the store_raft tests: free loopback ports and in-process clusters."""

from __future__ import annotations

import asyncio
import socket
import sys
import os

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the tests' own support modules

from pilothouse_store_raft import RaftStore  # noqa: E402
from pilothouse.testing import build_driver  # noqa: E402


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cluster_options(tmp_path, n: int = 3, **extra) -> list[dict]:
    """Options for ``n`` members on loopback, each with its own data dir under tmp_path."""
    members = [f"127.0.0.1:{p}" for p in free_ports(n)]
    return [{"data_dir": str(tmp_path / f"m{i}"), "members": members,
             "self_address": members[i], **extra} for i in range(n)]


def make_store(options: dict) -> RaftStore:
    return build_driver("store", "raft", options)


async def open_cluster(options: list[dict]) -> list[RaftStore]:
    stores = [make_store(o) for o in options]
    await asyncio.gather(*(s.open() for s in stores))
    return stores


async def wait_leader(stores, timeout: float = 10.0) -> RaftStore:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        leaders = [s for s in stores if s.member is not None and s.member.is_leader()]
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no single leader elected")


@pytest.fixture
def run():
    """Run a coroutine to completion on a fresh event loop."""
    def runner(coro, timeout: float = 120.0):
        return asyncio.run(asyncio.wait_for(coro, timeout))
    return runner
