#!/usr/bin/env python3
"""Store benchmark: the embedded raft store and etcd, both with 3 durable members on loopback.

    python bench/store.py                 # both stores, full run (a few minutes)
    python bench/store.py --quick         # short smoke run
    python bench/store.py --only etcd     # one store only (etcd | raft)

Measured for each store, with 256-byte values (``--value-size``):

* sequential write latency p50/p99: one client creating keys one after another;
* throughput with 16 and 64 concurrent writers (creates/s);
* watch delivery latency p50/p99: from issuing a write to its event arriving on a watch;
* new leader: time from SIGKILL of the leader to the first successful write (p50 of the
  trials, max in brackets).

How the stores run:

* etcd: three ``etcd`` processes (Debian's etcd-server; real fsync) started here on free
  loopback ports; a client process drives them through the ``etcd`` store plugin
  (pilothouse-store-etcd), connected to the leader first. The leader is found with etcd's
  Maintenance.Status, killed with SIGKILL, and restarted between trials.
* raft: three member processes, each an embedded ``raft`` store (pilothouse-store-raft) with
  its own data directory and fsync on; the measurements run inside the leader's process, as
  an API server embedding that member would see them. After the leader is killed, a
  surviving member does the writes.

Every process started here is stopped by its PID and every temporary directory removed, also
on errors and Ctrl-C. Figures depend on the machine; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

# --- worker side: one process hosting one store instance --------------------------------


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Progress:
    """Reports ``done/total`` of a long phase to the orchestrator about once a second."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.next_report = time.monotonic() + 1.0

    def step(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() >= self.next_report:
            self.next_report = time.monotonic() + 1.0
            _emit({"progress": f"{self.label} {self.done}/{self.total}"})


async def _seq(store, n: int, size: int) -> dict:
    value = os.urandom(size)
    run = uuid.uuid4().hex[:8]
    lat = []
    progress = _Progress("sequential writes", n)
    for i in range(n):
        t = time.perf_counter()
        await store.create(f"/bench/seq/{run}/{i:08d}", value)
        lat.append(time.perf_counter() - t)
        progress.step()
    return {"latencies": lat}


async def _conc(store, writers: int, n: int, size: int) -> dict:
    value = os.urandom(size)
    run = uuid.uuid4().hex[:8]
    per_writer = max(1, n // writers)
    progress = _Progress(f"{writers} concurrent writers", per_writer * writers)
    errors = 0

    async def writer(w: int) -> None:
        nonlocal errors
        for i in range(per_writer):
            try:
                await store.create(f"/bench/conc/{run}/{w:03d}/{i:08d}", value)
            except Exception:
                errors += 1
            progress.step()

    t = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return {"elapsed": time.perf_counter() - t, "writes": per_writer * writers - errors,
            "errors": errors}


async def _watch(store, n: int, size: int) -> dict:
    value = os.urandom(size)
    prefix = f"/bench/watch/{uuid.uuid4().hex[:8]}/"
    arrived: dict[str, float] = {}
    waiters: dict[str, asyncio.Future] = {}
    after = await store.current_revision()
    stream = store.watch(prefix, after_revision=after)
    loop = asyncio.get_running_loop()

    async def consume() -> None:
        async for event in stream:
            if event.kv is None:
                continue
            arrived[event.kv.key] = time.perf_counter()
            fut = waiters.pop(event.kv.key, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    task = loop.create_task(consume())
    try:
        # Let the watch get established (etcd syncs a new watcher within ~100 ms).
        warm = prefix + "warmup"
        fut = waiters[warm] = loop.create_future()
        await store.create(warm, value)
        await asyncio.wait_for(fut, 30)
        lat = []
        progress = _Progress("watched writes", n)
        for i in range(n):
            key = f"{prefix}{i:08d}"
            fut = waiters[key] = loop.create_future()
            t = time.perf_counter()
            await store.create(key, value)
            await asyncio.wait_for(fut, 30)
            lat.append(arrived[key] - t)
            progress.step()
        return {"latencies": lat}
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(BaseException):
            await stream.aclose()


async def _failover(store, killed_at: float, size: int, limit: float = 60.0) -> dict:
    """Probe with writes until one succeeds; report the time since ``killed_at`` (wall clock).

    A write sent to a member that still believes in the dead leader can hang until etcd's or
    raft's own request timeout, so a new probe starts every 20 ms while earlier ones are
    pending (as many independent clients would); each probe gives up after 5 s."""
    value = os.urandom(size)
    errors = 0
    last = ""
    done = asyncio.Event()
    succeeded: list[float] = []

    async def probe() -> None:
        nonlocal errors, last
        try:
            await asyncio.wait_for(
                store.create(f"/bench/failover/{uuid.uuid4().hex}", value), 5.0)
            succeeded.append(time.time() - killed_at)
            done.set()
        except Exception as exc:  # StoreUnavailable and friends while there is no leader
            errors += 1
            last = f"{type(exc).__name__}: {exc}"

    probes: set[asyncio.Task] = set()
    try:
        while not done.is_set() and time.time() - killed_at < limit:
            if len(probes) < 250:
                task = asyncio.get_running_loop().create_task(probe())
                probes.add(task)
                task.add_done_callback(probes.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.02)
    finally:
        for task in list(probes):
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    if succeeded:
        return {"elapsed": min(succeeded), "errors": errors}
    return {"elapsed": None, "errors": errors, "last_error": last}


def _is_leader(store) -> bool | None:
    member = getattr(store, "member", None)
    is_leader = getattr(member, "is_leader", None) or getattr(store, "is_leader", None)
    if callable(is_leader):
        return bool(is_leader())
    return None


async def _worker() -> None:
    from pilothouse.testing import build_driver

    loop = asyncio.get_running_loop()
    config = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    store = build_driver("store", config["plugin"], config["options"])
    await store.open()
    _emit({"ready": True, "version": getattr(store, "server_version", "")})
    handlers = {
        "seq": lambda c: _seq(store, c["n"], c["size"]),
        "conc": lambda c: _conc(store, c["writers"], c["n"], c["size"]),
        "watch": lambda c: _watch(store, c["n"], c["size"]),
        "failover": lambda c: _failover(store, c["killed_at"], c["size"]),
    }
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return  # the orchestrator is gone
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "close":
                return
            try:
                if op == "leader":
                    result = {"leader": _is_leader(store)}
                elif op == "ping":
                    await store.current_revision()
                    result = {"leader": _is_leader(store)}
                else:
                    result = await handlers[op](cmd)
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            _emit({"result": result})
    finally:
        with contextlib.suppress(Exception):
            await store.close()


# --- orchestrator side --------------------------------------------------------------------

def _die_with_parent() -> None:
    """Child pre-exec hook: get SIGKILL when the benchmark process dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Worker:
    """A worker process hosting one store instance, driven over JSON lines."""

    def __init__(self, name: str, plugin: str, options: dict, log_dir: str):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            preexec_fn=_die_with_parent)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send({"plugin": plugin, "options": options})
        self.ready: dict | None = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def _next(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no answer within {timeout:.0f}s") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}); log "
                                   f"{self.log_path}:\n{self.log_tail()}")
            msg = json.loads(line)
            if "progress" in msg:
                _say(f"  {self.name}: {msg['progress']}")
                continue
            return msg

    def wait_ready(self, timeout: float = 60.0) -> dict:
        if self.ready is None:
            self.ready = self._next(timeout)
        return self.ready

    def request(self, op: str, timeout: float = 600.0, **args) -> dict:
        self._send({"op": op, **args})
        result = self._next(timeout)["result"]
        if "error" in result:
            raise RuntimeError(f"{self.name}: {op} failed: {result['error']}")
        return result

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._send({"op": "close"})
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._log):
            with contextlib.suppress(Exception):
                f.close()

    def log_tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        return ""


class EtcdBackend:
    """Three etcd members and one client worker using the ``etcd`` store plugin."""

    name = "etcd"

    def __init__(self, tmp: str):
        from pilothouse_store_etcd.testing import EtcdCluster

        self.tmp = tmp
        self.cluster = EtcdCluster(size=3, data_dir=os.path.join(tmp, "etcd"),
                                   preexec_fn=_die_with_parent)
        self.worker: Worker | None = None
        self.version = ""

    def start(self) -> None:
        _say("etcd: starting 3 members")
        self.cluster.start()
        leader = self.cluster.leader()
        endpoints = self.cluster.endpoints
        endpoints = [endpoints[leader]] + [e for i, e in enumerate(endpoints) if i != leader]
        self.worker = Worker("etcd-client", "etcd", {"endpoints": endpoints,
                                                     "prefix": "/bench"}, self.tmp)
        self.version = "etcd " + self.worker.wait_ready()["version"]

    def measuring(self) -> Worker:
        return self.worker

    def kill_leader(self) -> tuple[float, Worker, int]:
        leader = self.cluster.leader()
        self.cluster.kill(leader)
        return time.time(), self.worker, leader

    def recover(self, killed: int) -> None:
        self.cluster.start_member(killed)
        self.worker.request("ping", timeout=60)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.close()
        self.cluster.stop()


class RaftBackend:
    """Three member workers, each an embedded ``raft`` store with its own data directory."""

    name = "raft"

    def __init__(self, tmp: str):
        self.tmp = tmp
        self.addresses = [f"127.0.0.1:{p}" for p in _free_ports(3)]
        self.workers: list[Worker | None] = [None] * 3
        self.version = "raft"

    def _options(self, i: int) -> dict:
        # Three durable members (fsync on, the plugin's default), default timeouts.
        return {"members": self.addresses, "self_address": self.addresses[i],
                "data_dir": os.path.join(self.tmp, f"raft-m{i}")}

    def _start_member(self, i: int) -> Worker:
        self.workers[i] = Worker(f"raft-m{i}", "raft", self._options(i), self.tmp)
        return self.workers[i]

    def start(self) -> None:
        from importlib.metadata import version

        _say("raft: starting 3 members")
        for i in range(3):
            self._start_member(i)
        for w in self.workers:
            w.wait_ready(timeout=120)
        self.leader()  # wait until one is elected
        self.version = f"raft ({version('pilothouse-store-raft')})"

    def leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            for i, w in enumerate(self.workers):
                if w is not None and w.alive() and w.request("leader", timeout=30)["leader"]:
                    return i
            if time.monotonic() > deadline:
                raise RuntimeError("raft: no member reports being the leader")
            time.sleep(0.05)

    def measuring(self) -> Worker:
        return self.workers[self.leader()]

    def kill_leader(self) -> tuple[float, Worker, int]:
        leader = self.leader()
        self.workers[leader].kill()
        killed_at = time.time()
        survivor = next(w for i, w in enumerate(self.workers) if i != leader)
        return killed_at, survivor, leader

    def recover(self, killed: int) -> None:
        self.workers[killed].close()
        self._start_member(killed).wait_ready(timeout=120)
        self.workers[killed].request("ping", timeout=60)
        self.leader()

    def stop(self) -> None:
        for w in self.workers:
            if w is not None:
                w.close()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def run_backend(backend, plan: dict, size: int) -> dict:
    results: dict = {"version": backend.version}
    w = backend.measuring()
    w.request("seq", n=min(50, plan["seq"]), size=size)  # warm-up
    _say(f"{backend.name}: sequential writes ({plan['seq']})")
    lat = w.request("seq", n=plan["seq"], size=size)["latencies"]
    results["seq_p50"], results["seq_p99"] = _pct(lat, 50), _pct(lat, 99)
    for writers in (16, 64):
        n = plan[f"conc{writers}"]
        _say(f"{backend.name}: {writers} concurrent writers ({n} writes)")
        r = w.request("conc", writers=writers, n=n, size=size)
        results[f"tput{writers}"] = r["writes"] / r["elapsed"]
        results[f"errors{writers}"] = r["errors"]
    _say(f"{backend.name}: watch delivery ({plan['watch']} writes)")
    lat = w.request("watch", n=plan["watch"], size=size)["latencies"]
    results["watch_p50"], results["watch_p99"] = _pct(lat, 50), _pct(lat, 99)
    times = []
    for trial in range(plan["failover"]):
        _say(f"{backend.name}: killing the leader (trial {trial + 1}/{plan['failover']})")
        killed_at, writer, killed = backend.kill_leader()
        r = writer.request("failover", killed_at=killed_at, size=size, timeout=120)
        if r["elapsed"] is None:
            _say(f"{backend.name}: no successful write within 60 s ({r.get('last_error')})")
        else:
            times.append(r["elapsed"])
            _say(f"{backend.name}: first write {r['elapsed']:.2f}s after SIGKILL")
        backend.recover(killed)
    results["failover"] = times
    return results


ROWS = [
    ("sequential write p50", "seq_p50", "ms"),
    ("sequential write p99", "seq_p99", "ms"),
    ("throughput, 16 writers", "tput16", "/s"),
    ("throughput, 64 writers", "tput64", "/s"),
    ("watch delivery p50", "watch_p50", "ms"),
    ("watch delivery p99", "watch_p99", "ms"),
    ("new leader: first write", "failover", "s"),
]


def _cell(value, unit: str) -> str:
    if isinstance(value, str):
        return value
    if unit == "ms":
        return f"{value * 1000:.2f} ms"
    if unit == "/s":
        return f"{value:,.0f} writes/s"
    if not value:
        return "no write succeeded"
    if len(value) == 1:
        return f"{value[0]:.2f} s"
    return f"{statistics.median(value):.2f} s (max {max(value):.2f}, n={len(value)})"


def print_table(results: dict[str, dict], size: int, plan: dict,
                load_before: float) -> None:
    names = list(results)
    cols = [[results[n].get("version", n) if isinstance(results[n], dict) else n
             for n in names]]
    body = []
    for label, key, unit in ROWS:
        row = []
        for n in names:
            r = results[n]
            row.append("not measured" if isinstance(r, str) else _cell(r[key], unit))
        body.append([label] + row)
    header = ["metric"] + cols[0]
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print()
    print(f"Store benchmark: 3 members per store on loopback, {size} B values, fsync on")
    print(f"  runs: {plan['seq']} sequential writes; {plan['conc16']} and {plan['conc64']} "
          f"writes with 16 and 64 writers; {plan['watch']} watched writes; "
          f"{plan['failover']} leader kill(s)")
    print(f"  machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load "
          f"average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after (other load "
          f"skews the figures)")
    print(line)
    print("  ".join(str(c).ljust(w) for c, w in zip(header, widths)))
    print(line)
    for r in body:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(line)
    for n in names:
        r = results[n]
        if isinstance(r, str):
            print(f"{n}: {r}")
        elif r.get("errors16") or r.get("errors64"):
            print(f"{n}: {r['errors16']} / {r['errors64']} failed writes in the 16/64 writer "
                  f"runs (not counted)")


PLANS = {
    "full": {"seq": 2000, "conc16": 8000, "conc64": 16000, "watch": 1000, "failover": 5},
    "quick": {"seq": 100, "conc16": 480, "conc64": 640, "watch": 50, "failover": 1},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the raft and etcd stores "
                                                 "(3 members each, loopback).")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--only", choices=("etcd", "raft"), help="benchmark one store only")
    parser.add_argument("--value-size", type=int, default=256, help="bytes per value")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_worker())
        return 0

    plan = PLANS["quick" if args.quick else "full"]
    names = [args.only] if args.only else ["etcd", "raft"]
    tmp = tempfile.mkdtemp(prefix="pilothouse-bench-store-")
    results: dict[str, dict | str] = {}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    load_before = os.getloadavg()[0]
    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        for name in names:
            cls = EtcdBackend if name == "etcd" else RaftBackend
            backend = None
            try:
                backend = cls(os.path.join(tmp, name))
                os.makedirs(backend.tmp, exist_ok=True)
                backend.start()
                results[name] = run_backend(backend, plan, args.value_size)
            except (ImportError, RuntimeError, OSError) as exc:
                _say(f"{name}: not measured: {exc}")
                results[name] = f"not measured: {str(exc).splitlines()[0]}"
            finally:
                if backend is not None:
                    backend.stop()
        print_table(results, args.value_size, plan, load_before)
    except KeyboardInterrupt:
        _say("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(isinstance(r, dict) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
