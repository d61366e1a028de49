"""Helpers for the store_raft tests: free loopback ports and in-process clusters.

(Named raft_testing rather than living in conftest.py so that ``from ... import`` cannot
pick up another distribution's conftest module when the whole repository runs at once.)"""

from __future__ import annotations

import asyncio
import socket

from pilothouse.testing import build_driver
from pilothouse_store_raft import RaftStore


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
