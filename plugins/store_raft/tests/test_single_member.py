"""The single-member fast path: a lone member writes its journal itself once recovered.

It must keep every guarantee of the raft path (durable before acknowledged, group commit,
bounded journal, kill -9 safety) and the same files, so that a data directory moves freely
between the two paths.
"""

from __future__ import annotations

import asyncio
import os

from raft_processes import ProcessCluster
from raft_testing import cluster_options, make_store, open_cluster, wait_leader
from pilothouse.api.store_client import RemoteStore
from pilothouse.interfaces.store import StoreError
from pilothouse_store_raft import _node


class _TickCounter:
    def __init__(self, monkeypatch):
        self.count = 0
        inner = _node._Node._onTick

        def counting(node, *args, **kwargs):
            self.count += 1
            return inner(node, *args, **kwargs)

        monkeypatch.setattr(_node._Node, "_onTick", counting)


def test_a_lone_member_writes_without_pysyncobj(tmp_path, run, monkeypatch):
    ticks = _TickCounter(monkeypatch)

    async def main():
        for opts in ({"data_dir": str(tmp_path / "a")},
                     {"data_dir": str(tmp_path / "b"), "members": ["127.0.0.1:1"]}):
            s = make_store(opts)
            await s.open()
            try:
                assert s.member.alone and s.member.status()["fast_path"]
                before, syncs = ticks.count, s.member.journal.syncs
                kvs = await asyncio.gather(*(s.create(f"/k/{i}", b"v") for i in range(50)))
                assert sorted(kv.mod_revision for kv in kvs) == list(range(1, 51))
                assert ticks.count == before  # no pysyncobj tick served a write
                assert s.member.journal.syncs - syncs < 50  # group commit
                st = s.member.status()
                assert st["is_leader"] and st["leader"] == st["self"]
                assert st["commit_index"] == st["last_applied"] == s.member.journal[-1][1]
                assert (await s.get("/k/7")).value == b"v"

                async def write_then_read(i: int):  # a read after an ack sees the write
                    kv = await s.create(f"/r/{i}", b"%d" % i)
                    assert (await s.get(f"/r/{i}")).mod_revision == kv.mod_revision
                    assert await s.current_revision() >= kv.mod_revision
                    assert (await s.list("/r/")).revision >= kv.mod_revision
                await asyncio.gather(*(write_then_read(i) for i in range(50)))
            finally:
                await s.close()
    run(main())


def test_members_of_a_cluster_keep_the_raft_path(tmp_path, run):
    async def main():
        stores = await open_cluster(cluster_options(tmp_path, 3))
        try:
            leader = await wait_leader(stores)
            await leader.create("/x", b"1")
            assert not any(s.member.alone or s.member.status()["fast_path"] for s in stores)
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    run(main())


async def _write(store, prefix: str, n: int):
    for i in range(n):
        await store.create(f"{prefix}/{i:03d}", b"%d" % i)
    await store.update(f"{prefix}/000", b"again", expected_revision=0)
    await store.delete(f"{prefix}/001")


async def _check(store, prefixes: list[str], n: int):
    for prefix in prefixes:
        lst = await store.list(prefix + "/")
        assert lst.count == n - 1, prefix
        assert (await store.get(f"{prefix}/000")).value == b"again"
        assert await store.get(f"{prefix}/001") is None


def test_data_dirs_move_between_the_raft_path_and_the_fast_path(tmp_path, run, monkeypatch):
    """Both paths write the same journal entries and snapshots: each opens what the other
    wrote, including a snapshot, a journal tail after it, and history at old revisions."""
    opts = {"data_dir": str(tmp_path), "snapshot_entries": 15}

    async def session(fast: bool, prefix: str, done: list[str]):
        monkeypatch.setattr(_node.RaftMember, "single_member_fast_path", fast)
        s = make_store(opts)
        await s.open()
        try:
            assert s.member.alone is fast
            await _check(s, done, 40)
            rev = await s.current_revision()
            snaps = s.member.snapshots_written
            await _write(s, prefix, 40)
            assert s.member.snapshots_written > snaps
            assert await s.current_revision() == rev + 42
            if done:  # history from before the previous restart is still readable
                kv = await s.get(f"{done[-1]}/000", revision=rev - 1)
                assert kv.value == b"again"
        finally:
            await s.close()
        done.append(prefix)

    async def main():
        done: list[str] = []
        await session(False, "/old1", done)
        await session(True, "/fast1", done)
        await session(False, "/old2", done)
        await session(True, "/fast2", done)
        monkeypatch.setattr(_node.RaftMember, "single_member_fast_path", True)
        s = make_store(opts)
        await s.open()
        try:
            await _check(s, done, 40)
            w = s.watch("/fast2/", after_revision=0)
            assert (await asyncio.wait_for(anext(w), 5)).kv.key == "/fast2/000"
            await w.aclose()
        finally:
            await s.close()
    run(main())


def test_snapshot_thresholds_bound_the_journal(tmp_path, run):
    async def main():
        # entries
        s = make_store({"data_dir": str(tmp_path / "e"), "snapshot_entries": 20})
        await s.open()
        try:
            for i in range(100):
                await s.create(f"/e/{i}", b"v")
            assert s.member.snapshots_written >= 4
            assert len(s.member.journal) <= 21
        finally:
            await s.close()
        # bytes
        s = make_store({"data_dir": str(tmp_path / "b"), "snapshot_bytes": 1 << 20})
        await s.open()
        try:
            for i in range(12):
                await s.create(f"/b/{i}", bytes([i]) * (256 << 10))
            assert s.member.snapshots_written >= 2
            assert s.member.journal.size < 2 << 20
            assert os.path.getsize(tmp_path / "b" / "raft.journal") < 2 << 20
        finally:
            await s.close()
        # time, and force_snapshot
        s = make_store({"data_dir": str(tmp_path / "t"), "snapshot_interval": 0.2})
        await s.open()
        try:
            snaps = s.member.snapshots_written
            for i in range(5):
                await s.create(f"/t/{i}", b"v")
            for _ in range(200):  # the two entries the last snapshot ends with
                if len(s.member.journal) == 2:
                    break
                await asyncio.sleep(0.02)
            assert s.member.snapshots_written > snaps
            assert len(s.member.journal) == 2
            idle = s.member.snapshots_written
            await asyncio.sleep(0.5)  # nothing new written: no new snapshot
            assert s.member.snapshots_written == idle
            await s.create("/t/more", b"v")
            s.member.force_snapshot()
            for _ in range(200):
                if s.member.snapshots_written > idle:
                    break
                await asyncio.sleep(0.01)
            assert s.member.snapshots_written > idle
        finally:
            await s.close()
        s = make_store({"data_dir": str(tmp_path / "t")})
        await s.open()
        try:
            assert (await s.list("/t/")).count == 6
            assert s.member.snapshots_loaded == 1
        finally:
            await s.close()
    run(main())


def test_a_failing_snapshot_keeps_the_journal_and_the_member(tmp_path, run, monkeypatch):
    async def main():
        s = make_store({"data_dir": str(tmp_path), "snapshot_entries": 10})
        await s.open()
        try:
            def broken(path, raft_data):
                raise OSError(28, "No space left on device")
            monkeypatch.setattr(s.member, "write_snapshot", broken)
            for i in range(30):
                await s.create(f"/f/{i}", b"v")
            assert len(s.member.journal) > 30 and s.member.fatal is None
        finally:
            await s.close()
        s = make_store({"data_dir": str(tmp_path), "snapshot_entries": 10})
        await s.open()
        try:
            assert (await s.list("/f/")).count == 30
        finally:
            await s.close()
    run(main())


def test_kill_9_of_a_lone_member_loses_no_acknowledged_write(tmp_path, run):
    """A single member in its own process, written by concurrent clients and killed with
    SIGKILL at random points (snapshots are frequent, so some kills fall near one). Every
    acknowledged write must be there after each restart, and revisions stay dense: one per
    create, so no batch was applied in part."""
    cluster = ProcessCluster(tmp_path, 1, snapshot_entries=40)

    async def main():
        loop = asyncio.get_running_loop()
        acked: dict[str, bytes] = {}
        tried: set[str] = set()
        for round_ in range(5):  # four kills, then a last check
            await loop.run_in_executor(None, cluster.start, 0)
            st = cluster.status(0)
            for _ in range(100):
                if st:
                    break
                await asyncio.sleep(0.02)
                st = cluster.status(0)
            assert st and st["fast_path"], st
            client = RemoteStore(RemoteStore.Options(address=cluster.grpc[0], timeout=4.0))
            await client.open()
            try:
                listed = await client.list("/w/")
                present = {kv.key: kv.value for kv in listed.items}
                missing = [k for k in acked if present.get(k) != acked[k]]
                assert not missing, f"round {round_}: lost {len(missing)}: {missing[:5]}"
                assert set(present) <= tried
                assert listed.revision == len(present)  # creates only: one revision each
                if round_ == 4:
                    break
                stop = False

                async def writer(w: int):
                    seq = 0
                    while not stop:
                        seq += 1
                        key = f"/w/{round_}/{w}/{seq:06d}"
                        tried.add(key)
                        try:
                            await client.create(key, key.encode())
                        except StoreError:
                            return
                        acked[key] = key.encode()

                tasks = [asyncio.create_task(writer(w)) for w in range(16)]
                await asyncio.sleep(0.3 + 0.2 * round_)
                cluster.kill(0)  # mid-stream: writes are in flight
                stop = True
                await asyncio.gather(*tasks)
            finally:
                await client.close()
        assert len(acked) > 100
    try:
        run(main(), timeout=200)
    finally:
        cluster.stop_all()


def test_the_writer_thread_pickles_the_commands_the_loop_used_to(tmp_path, run, monkeypatch):
    # The event loop hands a lone member its batch unpickled; the writer thread pickles
    # it, into the very entry pysyncobj would have logged.
    import pickle
    import threading
    from pilothouse_store_raft import _state as S
    pickled_on = []
    inner = _node.RaftMember.command

    def command(member, batch):
        pickled_on.append(threading.current_thread() is member._thread)
        return inner(member, batch)

    monkeypatch.setattr(_node.RaftMember, "command", command)

    async def main():
        s = make_store({"data_dir": str(tmp_path)})
        await s.open()
        try:
            await s.create("/p/a", b"\x00v")
            await s.update("/p/a", b"w", expected_revision=1)
            journal = s.member.journal
            entries = [journal[i] for i in range(len(journal) - 2, len(journal))]
            ops = []
            for command_bytes, _idx, _term in entries:
                assert command_bytes[:1] == _node._REGULAR_COMMAND
                func_id, (batch_id, batch_ops) = pickle.loads(command_bytes[1:])
                assert func_id == s.member.batch_func_id
                assert command_bytes[1:] == pickle.dumps(
                    (func_id, (batch_id, batch_ops)), protocol=5)
                ops += batch_ops
            assert ops == [(S.OP_CREATE, "/p/a", b"\x00v"), (S.OP_UPDATE, "/p/a", b"w", 1)]
            assert pickled_on and all(pickled_on)
        finally:
            await s.close()
        s = make_store({"data_dir": str(tmp_path)})  # the journal replays
        await s.open()
        try:
            assert (await s.get("/p/a")).value == b"w"
        finally:
            await s.close()
    run(main())
