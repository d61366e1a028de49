"""Fault test: three members in three processes under continuous writes; the leader is
killed with SIGKILL several times (and restarted each time), then a follower, then every
member at once.

Afterwards every acknowledged write must be present with its value, and the recorded
history of each compare-and-swap register must be linearizable (linearizability.py).
The time from each kill to the first successful write invoked after it is printed, not
asserted (tests never assert on wall time).
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from linearizability import Op, check
from raft_processes import ProcessCluster
from pilothouse.api.store_client import RemoteStore
from pilothouse.interfaces.store import KeyExists, RevisionConflict, StoreError

KILLS = 4
APPENDERS = 6
REGISTERS = 3
CLIENTS_PER_REGISTER = 3


class Clients:
    """One RemoteStore per member; a worker sticks to one until a call fails, then moves
    to the next member that is running (calls to a member known to be down would only add
    operations of unknown outcome to the histories)."""

    def __init__(self, cluster: ProcessCluster):
        self.cluster = cluster
        self.stores = [RemoteStore(RemoteStore.Options(address=a, timeout=4.0,
                                                       connect_timeout=30.0))
                       for a in cluster.grpc]

    async def open(self):
        await asyncio.gather(*(s.open() for s in self.stores))

    async def close(self):
        await asyncio.gather(*(s.close() for s in self.stores))

    def next(self, member: int) -> int:
        n = len(self.stores)
        for step in range(1, n + 1):
            if self.cluster.alive((member + step) % n):
                return (member + step) % n
        return (member + 1) % n


async def _retry(clients: Clients, call, deadline: float = 60.0):
    """Run ``call(store)`` on any member until it succeeds (for setup and checks)."""
    end = time.monotonic() + deadline
    i = 0
    while True:
        try:
            return await call(clients.stores[i % len(clients.stores)])
        except StoreError:
            if time.monotonic() > end:
                raise
            i += 1
            await asyncio.sleep(0.1)


class Workload:
    def __init__(self, clients: Clients):
        self.clients = clients
        self.stop = False
        self.acked: dict[str, bytes] = {}
        self.unknown: dict[str, bytes] = {}
        self.writes: list[tuple[float, float]] = []  # (invoke, complete) of acked writes
        self.histories: dict[str, list[Op]] = {f"/reg/{i}": [] for i in range(REGISTERS)}
        self.errors: list[str] = []

    async def appender(self, w: int):
        member = w % len(self.clients.stores)
        seq = 0
        while not self.stop:
            seq += 1
            key, value = f"/app/{w:02d}/{seq:06d}", f"{w}-{seq}".encode()
            t0 = time.monotonic()
            try:
                await self.clients.stores[member].create(key, value)
            except KeyExists as exc:
                self.errors.append(f"{key}: KeyExists though created once: {exc}")
            except StoreError:
                self.unknown[key] = value
                member = self.clients.next(member)
                await asyncio.sleep(0.2)
            else:
                self.acked[key] = value
                self.writes.append((t0, time.monotonic()))

    async def register_client(self, key: str, p: int):
        rng = random.Random(hash((key, p)))
        member = p % len(self.clients.stores)
        history = self.histories[key]
        seen: tuple[bytes, int] | None = None  # (value, mod_revision) of our last read
        n = 0
        while not self.stop:
            n += 1
            store = self.clients.stores[member]
            choice = rng.random()
            t0 = time.monotonic()
            try:
                if choice < 0.4 or seen is None:
                    kv = await store.get(key)
                    history.append(Op("read", t0, time.monotonic(), result=kv.value,
                                      process=p))
                    seen = (kv.value, kv.mod_revision)
                elif choice < 0.6:
                    value = f"w{p}.{n}".encode()
                    op = Op("write", t0, None, value=value, process=p)
                    await store.update(key, value, expected_revision=0)
                    history.append(Op("write", t0, time.monotonic(), value=value, process=p))
                else:
                    # Values are unique, so "mod_revision is R" is "value is the one read
                    # with R": a revision CAS is a value CAS on the register.
                    value = f"c{p}.{n}".encode()
                    op = Op("cas", t0, None, value=value, expected=seen[0], process=p)
                    try:
                        await store.update(key, value, expected_revision=seen[1])
                        ok = True
                    except RevisionConflict:
                        ok = False
                    history.append(Op("cas", t0, time.monotonic(), value=value,
                                      expected=seen[0], result=ok, process=p))
                    seen = None
            except StoreError:
                if choice >= 0.4 and seen is not None or choice >= 0.6:
                    history.append(op)  # outcome unknown
                seen = None
                member = self.clients.next(member)
                await asyncio.sleep(0.2)


def _first_write_after(writes, t_kill):
    done = [c for (i, c) in writes if i >= t_kill]
    return min(done) - t_kill if done else None


@pytest.mark.slow
def test_leader_kills_lose_no_acknowledged_write_and_stay_linearizable(tmp_path, run):
    # Small snapshot threshold: members snapshot, compact their logs and install the
    # leader's snapshot after restarts while the faults happen.
    cluster = ProcessCluster(tmp_path, 3, snapshot_entries=300)
    try:
        run(_scenario(cluster), timeout=280)
    finally:
        cluster.stop_all()


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _scenario(cluster: ProcessCluster):
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, cluster.start_all)
    clients = Clients(cluster)
    await clients.open()
    try:
        for i in range(REGISTERS):
            await _retry(clients, lambda s, i=i: s.create(f"/reg/{i}", b"init"))
        work = Workload(clients)
        tasks = [asyncio.create_task(work.appender(w)) for w in range(APPENDERS)]
        tasks += [asyncio.create_task(work.register_client(f"/reg/{r}", p))
                  for r in range(REGISTERS) for p in range(CLIENTS_PER_REGISTER)]
        kills, elected = [], []
        await asyncio.sleep(2.0)
        for _ in range(KILLS):
            leader = await loop.run_in_executor(None, cluster.wait_leader)
            t_kill = time.monotonic()
            cluster.kill(leader)
            _log(f"killed leader {leader}; {len(work.acked)} acked so far")
            await loop.run_in_executor(None, cluster.wait_leader)
            elected.append(time.monotonic() - t_kill)
            kills.append((leader, t_kill))
            await asyncio.sleep(max(0.0, 1.5 - elected[-1]))
            await loop.run_in_executor(None, cluster.start, leader)
            await asyncio.sleep(1.5)
        # a follower
        leader = await loop.run_in_executor(None, cluster.wait_leader)
        follower = (leader + 1) % cluster.n
        cluster.kill(follower)
        _log(f"killed follower {follower}")
        await asyncio.sleep(1.0)
        await loop.run_in_executor(None, cluster.start, follower)
        await asyncio.sleep(1.0)
        # every member at once
        before = [cluster.status(i) or {} for i in range(cluster.n)]
        snaps = sum(st.get("snapshots_written", 0) for st in before)
        loaded = sum(st.get("snapshots_loaded", 0) for st in before)
        t_all = time.monotonic()
        for i in range(cluster.n):
            cluster.kill(i)
        _log("killed every member")
        await asyncio.sleep(0.5)
        for i in range(cluster.n):
            await loop.run_in_executor(None, cluster.start, i)
        await asyncio.sleep(2.0)
        work.stop = True
        await asyncio.gather(*tasks)
        _log(f"workload stopped; {len(work.acked)} acked; checking")

        assert not work.errors, work.errors[:5]
        listed = await _retry(clients, lambda s: s.list("/app/"))
        present = {kv.key: kv.value for kv in listed.items}
        missing = [k for k in work.acked if present.get(k) != work.acked[k]]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        unexpected = [k for k in present if k not in work.acked and k not in work.unknown]
        assert not unexpected, f"keys nobody wrote: {unexpected[:5]}"
        for key, history in work.histories.items():
            _log(f"checking {key}: {len(history)} operations")
            assert check(history, b"init"), f"history of {key} is not linearizable"
        # every member ends with the same state (each list is a linearizable read there)
        for s in clients.stores:
            lst = await _retry(clients, lambda _s, s=s: s.list(""))
            mine = await _retry(clients, lambda _s, s=clients.stores[0]: s.list(""))
            assert (lst.revision, lst.items) == (mine.revision, mine.items), \
                "members disagree after the faults"
        failovers = [_first_write_after(work.writes, t) for _, t in kills]
        all_down = _first_write_after(work.writes, t_all)
        n_ops = sum(len(h) for h in work.histories.values())
        n_unknown = sum(1 for h in work.histories.values() for op in h if op.complete is None)
        print(f"\nfault test: {len(work.acked)} acknowledged appends, {len(work.unknown)} "
              f"with unknown outcome ({sum(k in present for k in work.unknown)} of them "
              f"applied), {n_ops} register operations ({n_unknown} unknown outcome) on "
              f"{REGISTERS} registers: linearizable; {KILLS} leader kills; before killing all: "
              f"{snaps} snapshots written, {loaded} loaded (at restarts or from the leader) "
              f"by the running members")
        print("fault test: kill of the leader -> another member reports being leader: "
              + ", ".join(f"{e:.2f} s" for e in elected))
        print("fault test: kill of the leader -> first successful write invoked after it: "
              + ", ".join(f"{f:.2f} s" if f is not None else "none" for f in failovers))
        print(f"fault test: kill -9 of all members -> first successful write: "
              f"{all_down:.2f} s (includes 0.5 s down and the restarts)" if all_down else
              "fault test: no write after killing all members")
    finally:
        await clients.close()
