#!/usr/bin/env python3
"""How long a snapshot of a big state stalls the event loop (a benchmark, not a test).

    python plugins/store_raft/tests/snapshot_stall.py [--keys 20000] [--value-size 3000]
                                                       [--history 10000] [--repeat 3]

A single-member raft store (fsync on) in a temporary directory gets ``--keys`` keys of
``--value-size`` bytes, then ``--history`` updates of them (retained history: the events a
snapshot carries too). Then, ``--repeat`` times, a snapshot is forced while a probe on the
event loop wakes every millisecond. Printed per snapshot: the raft thread's longest CPU
time in one serialization call (the GIL is held throughout: the event loop cannot run
meanwhile), the longest gap between two probe wake-ups beyond the millisecond asked for
(wall time: a GIL stall of the loop shows there, but so does the machine's own load, so
compare with ``--no-snapshot``), the number of gaps over 5 ms, the raft thread's CPU time
for the whole snapshot, its wall time, and the latency of a write issued just after the
snapshot began (it waits for the snapshot: the writer thread writes it).
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

from raft_testing import make_store  # noqa: E402


async def _probe(stop: asyncio.Event, gaps: list[float]) -> None:
    clock = time.perf_counter
    last = clock()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = clock()
        gaps.append(now - last - 0.001)
        last = now


async def _main(args, tmp: str) -> None:
    store = make_store({"data_dir": tmp, "snapshot_entries": 10 ** 9,
                        "snapshot_interval": 10 ** 6})
    await store.open()
    member = store.member
    inner = member.write_snapshot
    spent: list[tuple[float, float]] = []

    def timed(path, raft_data):
        c0, t0 = time.thread_time(), time.perf_counter()
        inner(path, raft_data)
        spent.append((time.thread_time() - c0, time.perf_counter() - t0))

    member.write_snapshot = timed
    # The longest stretch of CPU the snapshot spends serializing in one call (the GIL is
    # held throughout one pickle.dumps): each piece, or the whole dump where the state is
    # serialized in one go. CPU time, unlike the probe's gaps, does not depend on what
    # else runs on the machine.
    state = member.state
    holds: list[float] = []
    if hasattr(state, "dump_pieces"):
        pieces = state.dump_pieces

        def timed_pieces():
            gen = pieces()
            while True:
                c0 = time.thread_time()
                try:
                    piece = next(gen)
                except StopIteration:
                    return
                holds.append(time.thread_time() - c0)
                yield piece

        state.dump_pieces = timed_pieces
    else:
        dump = state.dump

        def timed_dump():
            c0 = time.thread_time()
            blob = dump()
            holds.append(time.thread_time() - c0)
            return blob

        state.dump = timed_dump
    try:
        # distinct value objects, as requests bring them (pickle writes an object seen twice only once)
        base = os.urandom(args.value_size)
        revs: dict[str, int] = {}

        async def fill(ws: int, w: int) -> None:
            for i in range(w, args.keys, ws):
                key = f"/registry/things/ns{i % 50}/thing-{i:06d}"
                revs[key] = (await store.create(key, base[1:] + b"%d" % i)).mod_revision

        await asyncio.gather(*(fill(64, w) for w in range(64)))
        keys = sorted(revs)

        async def renew(ws: int, w: int) -> None:
            for i in range(w, args.history, ws):
                key = keys[i % len(keys)]
                revs[key] = (await store.update(key, base[1:] + b"%d" % i,
                                                expected_revision=revs[key])).mod_revision

        await asyncio.gather(*(renew(64, w) for w in range(64)))
        print(f"keys={args.keys} value={args.value_size}B history={args.history} "
              f"revision={store.member.state.rev}")
        for _ in range(args.repeat):
            gaps: list[float] = []
            stop = asyncio.Event()
            probe = asyncio.create_task(_probe(stop, gaps))
            await asyncio.sleep(0.1)
            await store.update(keys[0], b"x", expected_revision=0)  # something new to snapshot
            written = member.snapshots_written
            holds.clear()
            write_wait = 0.0
            if not args.no_snapshot:
                member.force_snapshot()
                await asyncio.sleep(0.002)  # the writer is in the snapshot by now
                t0 = time.perf_counter()
                await store.update(keys[1], b"y", expected_revision=0)
                write_wait = time.perf_counter() - t0
                while member.snapshots_written == written:
                    await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.05)
            stop.set()
            await probe
            cpu, wall = spent[-1] if spent and not args.no_snapshot else (0.0, 0.0)
            size = os.path.getsize(os.path.join(tmp, "snapshot")) if spent else 0
            hold = max(holds) if holds else 0.0
            print(f"  longest serialization step {1e3 * hold:.1f} ms CPU; "
                  f"longest loop stall {1e3 * max(gaps):.1f} ms, "
                  f"{sum(g > 0.005 for g in gaps)} gaps over 5 ms; snapshot: raft thread "
                  f"CPU {1e3 * cpu:.0f} ms, wall {1e3 * wall:.0f} ms, {size >> 20} MiB; a "
                  f"write issued meanwhile took {1e3 * write_wait:.0f} ms")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--value-size", type=int, default=3000)
    parser.add_argument("--history", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-snapshot", action="store_true",
                        help="measure the probe without a snapshot (the noise floor)")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="raft-snap-")
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
