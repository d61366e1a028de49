"""Fixtures for the etcd store tests: real etcd servers on loopback.

``etcd_server`` is one single-member etcd shared by the whole session; each test isolates
itself with its own key prefix (a fresh prefix is a fresh store at revision 0). Tests that
need their own cluster (several members, killing members) start one with
:class:`pilothouse_store_etcd.testing.EtcdCluster`. Every etcd started here is stopped by PID.
"""

from __future__ import annotations

import pytest

from pilothouse_store_etcd.testing import EtcdCluster, EtcdNotFound, etcd_binary, prefix_for


def _need_etcd() -> None:
    try:
        etcd_binary()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def etcd_server():
    """One running single-member etcd for the session."""
    _need_etcd()
    cluster = EtcdCluster(size=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster3():
    """A fresh three-member etcd cluster for one test."""
    _need_etcd()
    cluster = EtcdCluster(size=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix(tmp_path) -> str:
    return prefix_for(tmp_path)
