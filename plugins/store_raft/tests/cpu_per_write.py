#!/usr/bin/env python3
"""CPU time per committed write of an embedded raft store (a benchmark, not a test).

    python plugins/store_raft/tests/cpu_per_write.py                  # 1 member
    python plugins/store_raft/tests/cpu_per_write.py --members 3      # leader embedded
    python plugins/store_raft/tests/cpu_per_write.py --idle 3         # idle CPU too
    python plugins/store_raft/tests/cpu_per_write.py --watch 4 --others 20 --rate 500
    python plugins/store_raft/tests/cpu_per_write.py --store memory --watch 4 --others 20

N concurrent writers (``--writers``) create keys against a store opened in this process
until ``--writes`` writes are acknowledged; fsync is on. Printed: process CPU time
(``time.process_time()``: the event loop and the raft thread together) per write, the raft
thread's share, writes per fdatasync, the latency of one call (p50, p99), and with
``--idle`` the CPU an idle member burns per second.

With ``--members 3`` the two other members run as separate processes (tests/
member_runner.py) with a long election timeout, so that the member embedded here, with a
short one, wins the first election and leads, as the API server's member would. Their CPU
(from /proc/PID/stat) is printed per write as well. Every process started here is ended by
its PID and the temporary directory is removed.

``--watch K`` (renewal mode) instead updates ``--keys`` existing keys in turn, as Lease
renewals do, while K watchers on their prefix and ``--others`` watchers on other prefixes
(as the API server's per-resource watch caches) consume every event, with progress events
every second. Writes come one at a time at ``--rate`` per second (0: back to back). Printed:
process CPU per write, including delivering its event to every watcher. ``--store memory``
measures the in-memory store the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from raft_processes import ProcessCluster  # noqa: E402
from raft_testing import make_store  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process or one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def _ctx_switches(pid: int) -> int:
    """Context switches of all threads of a process (voluntary and not)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.endswith("ctxt_switches:\t" + line.split("\t")[-1]) and \
                            "ctxt_switches" in line:
                        total += int(line.split()[-1])
        except FileNotFoundError:
            pass
    return total


def _proc_cpu(pid: int, tid: int | None = None) -> float:
    return sum(_proc_times(pid, tid))


class _TickCounter:
    """Counts raft ticks (all members of this process) by wrapping the node class."""

    def __init__(self):
        from pilothouse_store_raft import _node
        self.count = 0
        inner = _node._Node._onTick

        def counting(node, *args, **kwargs):
            self.count += 1
            return inner(node, *args, **kwargs)

        _node._Node._onTick = counting


def _raft_tid(store) -> int | None:
    thread = store.member._thread if store.member is not None else None
    return getattr(thread, "native_id", None)


async def _measure(store, writers: int, writes: int, size: int, idle: float,
                   others: list[int], ticks: _TickCounter) -> None:
    value = os.urandom(size)
    run = os.urandom(4).hex()
    # warm up: first writes pay for imports and allocations
    await asyncio.gather(*(store.create(f"/warm/{run}/{i}", value) for i in range(200)))
    if idle:
        await asyncio.sleep(0.5)
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(idle)
        c1, t1 = time.process_time(), time.monotonic()
        print(f"idle: {1000 * (c1 - c0) / (t1 - t0):.1f} ms CPU per second")
    tid = _raft_tid(store)
    syncs0 = store.member.journal.syncs
    ticks0 = ticks.count
    raft0 = _proc_times(os.getpid(), tid)
    times0 = os.times()
    ctx0 = _ctx_switches(os.getpid())
    others0 = [_proc_cpu(p) for p in others]
    counter = iter(range(writes))
    latencies: list[float] = []
    clock = time.perf_counter

    async def writer(w: int) -> None:
        for i in counter:
            t = clock()
            await store.create(f"/bench/{run}/{i}", value)
            latencies.append(clock() - t)

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    c1, t1 = time.process_time(), time.perf_counter()
    times1 = os.times()
    ctx = _ctx_switches(os.getpid()) - ctx0
    raft1 = _proc_times(os.getpid(), tid)
    syncs = store.member.journal.syncs - syncs0
    n_ticks = ticks.count - ticks0
    cpu = c1 - c0
    sys_cpu = times1.system - times0.system
    raft = sum(raft1) - sum(raft0)
    raft_sys = raft1[1] - raft0[1]
    print(f"writers={writers} writes={writes} value={size}B: "
          f"{1e6 * cpu / writes:.0f} us CPU/write (process; {1e6 * sys_cpu / writes:.0f} "
          f"system), raft thread {1e6 * raft / writes:.0f} us/write "
          f"({1e6 * raft_sys / writes:.0f} system); "
          f"{writes / (t1 - t0):.0f} writes/s wall, {writes / max(1, syncs):.1f} writes/fsync, "
          f"{n_ticks / writes:.2f} ticks/write, {ctx / writes:.2f} context switches/write")
    latencies.sort()
    print(f"  latency per write: p50 {1e3 * latencies[len(latencies) // 2]:.2f} ms, "
          f"p99 {1e3 * latencies[int(len(latencies) * 0.99)]:.2f} ms")
    for pid, before in zip(others, others0):
        print(f"  member process {pid}: {1e6 * (_proc_cpu(pid) - before) / writes:.0f} "
              f"us CPU/write")


async def _watched(store, args) -> None:
    """Renewals of existing keys, one at a time, delivered to watchers."""
    loop = asyncio.get_running_loop()
    value = os.urandom(args.value_size)
    run = os.urandom(4).hex()
    prefix = f"/renew/{run}/"
    revs = {}
    for i in range(args.keys):
        revs[i] = (await store.create(f"{prefix}{i}", value)).mod_revision
    for i in range(args.others):
        await store.create(f"/other{i}/{run}/x", value)
    start = await store.current_revision()
    target = start + args.writes
    counts = [0] * (args.watch + args.others)
    done = asyncio.Event()
    reached = [0]

    async def consume(n: int, pfx: str) -> None:
        async for ev in store.watch(pfx, after_revision=start, progress_interval=1.0):
            counts[n] += 1
            if ev.revision >= target and n < args.watch:
                reached[0] += 1
                if reached[0] == args.watch:
                    done.set()
                return

    tasks = [asyncio.create_task(consume(n, prefix)) for n in range(args.watch)]
    tasks += [asyncio.create_task(consume(args.watch + n, f"/other{n}/"))
              for n in range(args.others)]
    await asyncio.sleep(0.05)
    interval = 1.0 / args.rate if args.rate else 0.0
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    next_at = loop.time()
    for i in range(args.writes):
        k = i % args.keys
        revs[k] = (await store.update(f"{prefix}{k}", value,
                                      expected_revision=revs[k])).mod_revision
        if interval:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
    if args.watch:
        await done.wait()
    c1, m1, t1 = time.process_time(), time.thread_time(), time.perf_counter()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"renewals={args.writes} rate={args.rate or 'back-to-back'} watchers={args.watch}"
          f"+{args.others} other prefixes: {1e6 * (c1 - c0) / args.writes:.0f} us CPU/write "
          f"(process; event loop thread {1e6 * (m1 - m0) / args.writes:.0f}), {args.writes / (t1 - t0):.0f} writes/s wall, "
          f"{sum(counts[:args.watch])} events delivered")


async def _main(args, tmp: str) -> None:
    if args.store == "memory":
        from pilothouse.testing import build_driver
        from pilothouse.testing.memory_store import MemoryStore
        store = build_driver("store", MemoryStore)
        await store.open()
        try:
            await _watched(store, args)
        finally:
            await store.close()
        return
    cluster = None
    ticks = _TickCounter()
    if args.members == 1:
        store = make_store({"data_dir": os.path.join(tmp, "m0")})
        others = []
    else:
        cluster = ProcessCluster(tmp, args.members, election_timeout=5.0,
                                 heartbeat_interval=0.05)
        opts = dict(cluster.options[0], election_timeout=0.3, heartbeat_interval=0.05)
        store = make_store(opts)
    try:
        if cluster is not None:
            for i in range(1, args.members):
                cluster.start(i)
            others = [cluster.procs[i].pid for i in range(1, args.members)]
        await store.open()
        if cluster is not None:
            deadline = time.monotonic() + 30
            while not store.member.is_leader():
                if time.monotonic() > deadline:
                    raise RuntimeError("the embedded member did not become leader")
                await asyncio.sleep(0.05)
        if args.watch is not None:
            await _watched(store, args)
            return
        for writers in args.writers:
            await _measure(store, writers, args.writes, args.value_size, args.idle, others,
                           ticks)
    finally:
        await store.close()
        if cluster is not None:
            cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1, choices=(1, 3, 5))
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--idle", type=float, default=0.0,
                        help="also measure CPU while idle for this many seconds")
    parser.add_argument("--watch", type=int, default=None, metavar="K",
                        help="renewal mode: K watchers on the renewed prefix")
    parser.add_argument("--others", type=int, default=0,
                        help="renewal mode: watchers on other (idle) prefixes")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="renewal mode: writes per second, one at a time (0: back to "
                             "back)")
    parser.add_argument("--keys", type=int, default=100,
                        help="renewal mode: keys renewed in turn")
    parser.add_argument("--store", choices=("raft", "memory"), default="raft")
    parser.add_argument("--uvloop", action="store_true",
                        help="run on uvloop, as the API server does")
    args = parser.parse_args()
    if args.store == "memory" and args.watch is None:
        args.watch = 1
    tmp = tempfile.mkdtemp(prefix="raft-cpu-")
    try:
        if args.uvloop:
            import uvloop
            uvloop.run(_main(args, tmp))
        else:
            asyncio.run(_main(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
