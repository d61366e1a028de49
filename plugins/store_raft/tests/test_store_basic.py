"""Behaviour of the raft store with one member and with three members in one process."""

from __future__ import annotations

import asyncio
import time

import pytest

from raft_testing import cluster_options, make_store, open_cluster, wait_leader
from pilothouse.interfaces.store import (
    Compacted, EventType, KeyExists, KeyNotFound, RevisionConflict, StoreError,
    StoreUnavailable)


def test_single_member_crud_and_restart(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        a = await s.create("/r/a", b"1")
        assert (a.create_revision, a.mod_revision) == (1, 1)
        with pytest.raises(KeyExists) as ei:
            await s.create("/r/a", b"x")
        assert ei.value.kv == a
        b = await s.update("/r/a", b"2", expected_revision=1)
        assert (b.create_revision, b.mod_revision, b.value) == (1, 2, b"2")
        with pytest.raises(RevisionConflict) as ei:
            await s.update("/r/a", b"3", expected_revision=1)
        assert ei.value.kv == b
        with pytest.raises(KeyNotFound):
            await s.update("/r/zz", b"3", expected_revision=0)
        await s.create("/r/b", b"b")
        d = await s.delete("/r/b")
        assert d.value == b"b"
        assert await s.current_revision() == 4
        assert await s.get("/r/b") is None
        assert (await s.get("/r/b", revision=3)).value == b"b"
        assert (await s.get("/r/a", revision=1)).value == b"1"
        with pytest.raises(StoreError):
            await s.get("/r/a", revision=99)
        lst = await s.list("/r/")
        assert [kv.key for kv in lst.items] == ["/r/a"] and lst.revision == 4
        await s.close()
        await s.close()  # idempotent
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        assert await s.current_revision() == 4
        assert (await s.get("/r/a")).value == b"2"
        assert (await s.get("/r/b", revision=3)).value == b"b"
        await s.create("/r/c", b"c")
        assert await s.current_revision() == 5
        await s.close()
    run(main())


def test_data_dir_locked_while_open(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        other = make_store({"data_dir": str(tmp_path)})
        with pytest.raises(StoreUnavailable, match="in use"):
            await other.open()
        await s.close()
    run(main())


def test_three_members_in_process(tmp_path, run):
    async def main():
        stores = await open_cluster(cluster_options(tmp_path, 3))
        try:
            leader = await wait_leader(stores)
            follower = next(s for s in stores if s is not leader)
            kv = await follower.create("/f/a", b"from-follower")  # forwarded
            assert kv.mod_revision == 1
            for s in stores:  # linearizable reads from every member
                assert (await s.get("/f/a")).value == b"from-follower"
            w = follower.watch("/f/", after_revision=0)
            await leader.update("/f/a", b"2", expected_revision=1)
            ev = await asyncio.wait_for(w.__anext__(), 10)
            assert ev.type is EventType.PUT and ev.revision == 1
            ev = await asyncio.wait_for(w.__anext__(), 10)
            assert ev.type is EventType.PUT and ev.revision == 2 and ev.prev_kv.value == b"from-follower"
            await w.aclose()
            results = await asyncio.gather(*(s.update("/f/a", b"x", expected_revision=2)
                                             for s in stores), return_exceptions=True)
            assert sum(not isinstance(r, Exception) for r in results) == 1
            await leader.compact(2)
            with pytest.raises(Compacted):
                await follower.get("/f/a", revision=1)
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    run(main())


def test_data_dir_remembers_the_cluster_layout(tmp_path, run):
    async def main():
        opts = cluster_options(tmp_path, 3)
        other = cluster_options(tmp_path, 3)[0]
        other["data_dir"] = opts[0]["data_dir"]
        s = make_store(opts[0])
        await s.open()
        await s.close()
        with pytest.raises(StoreUnavailable, match="membership changes are not supported"):
            await make_store(other).open()
        # a lone member may move to another address
        lone = {"data_dir": str(tmp_path / "lone")}
        s = make_store(lone)
        await s.open()
        await s.create("/k", b"v")
        await s.close()
        s = make_store({**lone, "members": [opts[0]["self_address"]]})
        await s.open()
        assert (await s.get("/k")).value == b"v"
        await s.close()
    run(main())


@pytest.mark.parametrize("options, message", [
    ({"members": ["a:1", "b:2"]}, "self_address is required"),
    ({"members": ["a:1", "b:2"], "self_address": "c:3"}, "not one of members"),
    ({"members": ["nohost"]}, "host:port"),
    ({"members": ["a:1", "a:1"], "self_address": "a:1"}, "twice"),
    ({"heartbeat_interval": 0.2, "election_timeout": 0.5}, "third"),
    ({"max_inflight_batches": 0}, "at least 1"),
])
def test_bad_options_are_config_errors(options, message):
    from pilothouse.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        make_store(options)


def test_options_are_documented():
    import dataclasses
    from pilothouse_store_raft import Options
    for f in dataclasses.fields(Options):
        assert f.metadata.get("help"), f"option {f.name} has no help text"


def test_values_above_max_value_bytes_are_refused(tmp_path, run):
    async def main():
        s = make_store({"data_dir": str(tmp_path), "max_value_bytes": 2 << 20})
        await s.open()
        big = b"v" * (2 << 20)
        kv = await s.create("/big", big)  # at the limit: fine
        with pytest.raises(StoreError, match="max_value_bytes"):
            await s.update("/big", big + b"!", expected_revision=kv.mod_revision)
        assert (await s.get("/big")).value == big
        await s.close()
    run(main())


def test_idle_follower_connections_stay_fresh(tmp_path, run):
    """Followers exchange nothing between elections. pysyncobj checks its idle timeout
    (``connectionTimeout``, 2 s here) lazily, when it next sends: the first message on a
    connection idle for longer, i.e. the vote request after a leader crash, closed the
    connection and was dropped, so elections took two or three rounds. The driver pings
    every connection; the time of the last message received must stay recent."""
    async def main():
        stores = await open_cluster(cluster_options(tmp_path, 3))
        try:
            leader = await wait_leader(stores)
            a, b = [s.member._node for s in stores if s is not leader]
            await asyncio.sleep(3.0)
            for x, y in ((a, b), (b, a)):
                conn = x._SyncObj__transport._connections.get(y.selfNode)
                if conn is None:  # only one side dials; the other holds the accepted one
                    continue
                idle = time.monotonic() - conn._TcpConnection__lastReadTime
                assert idle < 1.9, f"follower connection idle for {idle:.1f} s"
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    run(main())


def test_without_quorum_requests_time_out_as_unavailable(tmp_path, run):
    async def main():
        opts = cluster_options(tmp_path, 3, request_timeout=0.5)
        s = make_store(opts[0])  # the other two members never start
        await s.open()
        with pytest.raises(StoreUnavailable, match="no quorum"):
            await s.create("/q", b"v")
        with pytest.raises(StoreUnavailable):
            await s.get("/q")
        await s.close()
        with pytest.raises(StoreUnavailable):
            await s.get("/q")
    run(main())


def test_five_members_keep_serving_with_two_down(tmp_path, run):
    async def main():
        options = cluster_options(tmp_path, 5)
        stores = await open_cluster(options)
        try:
            leader = await wait_leader(stores)
            for i, s in enumerate(stores):
                await s.create(f"/five/{i}", b"%d" % i)
            down = [s for s in stores if s is not leader][:1] + [leader]
            for s in down:
                await s.close()
            up = [s for s in stores if s not in down]
            await wait_leader(up)
            for s in up:
                await s.update(f"/five/{stores.index(s)}", b"again", expected_revision=0)
            lst = await up[0].list("/five/")
            assert lst.count == 5
            for s in down:  # they come back and catch up
                i = stores.index(s)
                stores[i] = make_store(options[i])
                await stores[i].open()
                assert (await stores[i].list("/five/")).revision == lst.revision
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    run(main())


def test_a_failing_fsync_stops_the_member(tmp_path, run):
    """fsync errors are not retried (the kernel may have dropped the dirty pages): the
    member stops, and requests fail with StoreUnavailable instead of being acknowledged."""
    async def main():
        s = make_store({"data_dir": str(tmp_path), "request_timeout": 60.0})
        await s.open()
        await s.create("/ok", b"1")
        journal = s.member.journal

        def broken_sync():
            raise OSError(5, "Input/output error")
        journal.sync = broken_sync
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            await s.create("/lost", b"2")  # fails at once, not after request_timeout
        for _ in range(100):
            if s.member.fatal is not None:
                break
            await asyncio.sleep(0.01)
        assert isinstance(s.member.fatal, OSError)
        with pytest.raises(StoreUnavailable, match="stopped"):
            await s.get("/ok")
        await s.close()
    run(main())


def test_unusable_data_dir_or_address_is_store_unavailable(tmp_path, run):
    import socket

    async def main():
        not_a_dir = tmp_path / "file"
        not_a_dir.write_text("x")
        with pytest.raises(StoreUnavailable, match="data_dir"):
            await make_store({"data_dir": str(not_a_dir / "sub")}).open()
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        try:
            addr = f"127.0.0.1:{busy.getsockname()[1]}"
            with pytest.raises(StoreUnavailable, match="cannot start member"):
                await make_store({"data_dir": str(tmp_path / "d"), "members": [addr]}).open()
        finally:
            busy.close()
        # the failed open released the data dir
        s = make_store({"data_dir": str(tmp_path / "d")})
        await s.open()
        await s.close()
    run(main())
