#!/usr/bin/env python3
"""API server CPU per request: its own HTTP/1.1 front against aiohttp's, side by side.

    python bench/apiserver_http.py [--store memory|raft] [--rounds 3] [--requests 3000]
                                   [--slices 6] [--quick]

Starts two ``pilothouse apiserver`` processes (as ``pilothouse up`` and the scheduler
benchmark do, so on uvloop when it is installed): one with the default front
(``pilothouse.apiserver._http``), one with ``PILOTHOUSE_APISERVER_HTTP=aiohttp``. Keep-alive
clients (bare asyncio protocols, on uvloop when installed) then send, one kind at a time,
with 1 and with 16 clients:

* ``GET`` of one pod;
* pod create (``POST``, a pod as the load generator of ``bench/scheduler.py`` makes it);
* ``pods/status`` merge patch (``PATCH``, what a node agent sends when the pod runs);
* Lease renewal (``PUT`` of a Lease with the resourceVersion of its last answer, its
  managedFields left out, as the hollow nodes renew theirs: 100 Leases in turn).

``--baseline REV`` adds a third server: the fast path as ``core/apiserver/_http.py`` was
at git revision ``REV`` (the rest of the tree as it is), in a column of its own, with the
CPU the working tree's front saves against it: a before/after of the front alone, under the
same conditions.

``--cases`` picks some of them (comma-separated names or their first words, e.g.
``--cases Lease`` for the Lease renewals alone); ``--clients 1`` the one-at-a-time runs only
(the pattern of the node Leases: one request at a time per keep-alive connection).

Each case's requests go to the two servers in ``--slices`` turns each, alternating which
goes first, so that what the rest of the (shared) machine does meanwhile falls on both
alike; ``--rounds`` rounds, each with fresh processes. The figure is the server process's
CPU time (its threads' run time, from /proc/<pid>/task/*/schedstat) per request, its idle
use subtracted: the median over the rounds, with the spread (min-max), and the requests per
second. CPU time, not wall time: the machine is shared, and the clients run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

# the bodies the end-to-end benchmark sends (bench/ is this script's sys.path[0])
from scheduler import pod_dict, status_body  # noqa: E402

POD_PATH = "/api/v1/namespaces/default/pods"
CASES = ("GET pod", "pod create", "pods/status patch", "Lease PUT")
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
LEASES = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs the API server with pilothouse.apiserver._http loaded from the file argv[1] first.
_LAUNCH_WITH_FRONT = """
import importlib.util, runpy, sys
spec = importlib.util.spec_from_file_location("pilothouse.apiserver._http", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
sys.argv = ["pilothouse"] + sys.argv[2:]
runpy.run_module("pilothouse.cli", run_name="__main__")
"""


def start_server(store: str, workdir: str, front: str, front_file: str | None = None
                 ) -> tuple[subprocess.Popen, int]:
    port = free_port()
    options = {"data_dir": os.path.join(workdir, "store")} if store == "raft" else {}
    cfg = {"store": {"plugin": store, "options": options},
           "components": {"apiserver": {"port": port, "address": "127.0.0.1",
                                        "compactionInterval": 0,
                                        "kubeconfig": os.path.join(workdir, "kubeconfig")}}}
    path = os.path.join(workdir, "config.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    env = {**os.environ}
    env.pop("PILOTHOUSE_APISERVER_HTTP", None)
    if front == "aiohttp":
        env["PILOTHOUSE_APISERVER_HTTP"] = "aiohttp"
    command = [sys.executable, "-m", "pilothouse.cli"]
    if front_file is not None:
        command = [sys.executable, "-c", _LAUNCH_WITH_FRONT, front_file]
    proc = subprocess.Popen(command + ["apiserver", "--config", path], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if "serving on" in line:
            return proc, port
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"apiserver did not start: {proc.stdout.read()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far: its threads' run time from /proc/<pid>/task/*/schedstat
    (nanoseconds; /proc/<pid>/stat counts in 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


class Conn(asyncio.Protocol):
    """One keep-alive client connection: one request at a time, the answer read by
    Content-Length. A bare protocol, so that the load generator (one process, beside the
    server on a shared machine) spends little per request and keeps the server busy."""

    def __init__(self):
        self.transport = None
        self.waiter: asyncio.Future | None = None
        self.buf = b""
        self.status = 0
        self.length = -1

    @classmethod
    async def open(cls, port: int) -> "Conn":
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, "127.0.0.1", port)
        return conn

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.length < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head, buf = buf[:end], buf[end + 4:]
            self.status = int(head[9:12])
            self.length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    self.length = int(line[15:])
        if len(buf) >= self.length:
            body, self.buf, self.length = buf, b"", -1
            self.waiter.set_result((self.status, body))
        else:
            self.buf = buf

    async def call(self, method: str, path: str, body: bytes = b"",
                   ctype: str = "application/json") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                f"User-Agent: bench-apiserver-http/0.1\r\n")
        if body:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head.encode() + b"\r\n" + body)
        return await self.waiter

    def close(self) -> None:
        self.transport.close()


def pod(name: str) -> bytes:
    body = pod_dict(0, anti=False)
    body["metadata"].update(name=name, namespace="default")
    return json.dumps(body).encode()


def status_patch(i: int) -> bytes:
    return json.dumps(status_body(i)).encode()


def lease(name: str) -> bytes:
    return json.dumps({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                "renewTime": micro_now()}}).encode()


def micro_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def renewal(last: bytes) -> bytes:
    """The hollow node's renewal of the Lease ``last`` answered: that Lease without its
    managedFields, a new renewTime."""
    obj = json.loads(last)
    obj["metadata"].pop("managedFields", None)
    obj["spec"]["renewTime"] = micro_now()
    return json.dumps(obj, separators=(",", ":")).encode()


FRONTS = ("aiohttp", "fast path")


class Server:
    """One API server process under test and its client connections."""

    def __init__(self, front: str, proc: subprocess.Popen, conns: list[Conn]):
        self.front, self.proc, self.conns = front, proc, conns
        self.idle = 0.0  # CPU seconds per second when no request is sent
        self.leases: dict[int, bytes] = {}  # the last answer for each Lease renewed


async def idle_rate(server: Server, seconds: float = 1.0) -> float:
    c0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_seconds(server.proc.pid) - c0) / (time.perf_counter() - t0)


async def run_slice(server: Server, clients: int, indexes: range, request, expect: int
                    ) -> tuple[float, float]:
    """Send requests ``indexes`` over ``clients`` connections; the server's CPU seconds
    (idle use subtracted) and the wall time."""
    pid = server.proc.pid
    counter = iter(indexes)

    async def worker(conn):
        for i in counter:
            status, body = await request(conn, i)
            if status != expect:
                raise SystemExit(f"{server.front}: unexpected {status}: {body[:300]!r}")
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in server.conns[:clients]))
    wall = time.perf_counter() - t0
    return cpu_seconds(pid) - c0 - server.idle * wall, wall


async def one_round(servers: list[Server], n: int, slices: int, tag: str,
                    cases: tuple[str, ...] = CASES, client_counts: tuple[int, ...] = (1, 16)
                    ) -> dict[str, dict[tuple[str, int], tuple[float, float]]]:
    """Every case on both servers, in ``slices`` turns each, alternating which goes first:
    what the rest of the machine does meanwhile falls on both alike."""
    out: dict[str, dict] = {s.front: {} for s in servers}
    for server in servers:
        status, body = await server.conns[0].call("POST", POD_PATH, pod("bench-get"))
        assert status == 201, body
        for _ in range(200):  # warm-up: first-request caches, code paths
            await server.conns[0].call("GET", f"{POD_PATH}/bench-get")
        if "Lease PUT" in cases:
            server.leases = {}
            for k in range(LEASES):
                status, body = await server.conns[0].call("POST", LEASE_PATH,
                                                          lease(f"{tag}-lease-{k}"))
                assert status == 201, body
                server.leases[k] = body
        server.idle = await idle_rate(server)
    step = max(1, n // slices)
    for clients in client_counts:
        prefix = f"{tag}-c{clients}"

        async def get(conn, i):
            return await conn.call("GET", f"{POD_PATH}/bench-get")

        async def create(conn, i):
            return await conn.call("POST", POD_PATH, pod(f"{prefix}-{i}"))

        async def patch(conn, i):
            return await conn.call("PATCH", f"{POD_PATH}/{prefix}-{i}/status",
                                   status_patch(i), "application/merge-patch+json")
        def renew(server):
            async def put(conn, i):
                k = i % LEASES
                status, body = await conn.call("PUT", f"{LEASE_PATH}/{tag}-lease-{k}",
                                               renewal(server.leases[k]))
                if status == 200:
                    server.leases[k] = body
                return status, body
            return put
        for case, request, expect in (("GET pod", get, 200), ("pod create", create, 201),
                                      ("pods/status patch", patch, 200),
                                      ("Lease PUT", renew, 200)):
            if case not in cases:
                continue
            spent = {s.front: 0.0 for s in servers}
            wall = {s.front: 0.0 for s in servers}
            for k in range(slices):
                indexes = range(k * step, (k + 1) * step)
                for server in (servers if k % 2 == 0 else servers[::-1]):
                    cpu, w = await run_slice(server, clients, indexes,
                                             request(server) if request is renew else request,
                                             expect)
                    spent[server.front] += cpu
                    wall[server.front] += w
            for server in servers:
                done = step * slices
                out[server.front][(case, clients)] = (spent[server.front] / done * 1e6,
                                                      done / wall[server.front])
    return out


def spread(values: list[tuple[float, float]]) -> str:
    cpu = [v[0] for v in values]
    rate = statistics.median(v[1] for v in values)
    return f"{statistics.median(cpu):4.0f} ({min(cpu):.0f}-{max(cpu):.0f}) {rate:6.0f}/s"


async def main(args) -> None:
    fronts = list(FRONTS)
    front_file = None
    if args.baseline:
        fronts.append(f"fast path @{args.baseline}")
        source = subprocess.run(["git", "show", f"{args.baseline}:core/apiserver/_http.py"],
                                cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, check=True).stdout
        fd, front_file = tempfile.mkstemp(prefix="pilothouse-bench-http-", suffix=".py")
        with os.fdopen(fd, "wb") as fh:
            fh.write(source)
    results: dict[str, list[dict]] = {front: [] for front in fronts}
    n = 600 if args.quick else args.requests
    cases = CASES
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = tuple(c for c in CASES if any(c == w or c.split()[0] == w for w in wanted))
        if not cases:
            raise SystemExit(f"no case matches {args.cases!r}; cases: {', '.join(CASES)}")
    client_counts = tuple(int(c) for c in args.clients.split(","))
    for rnd in range(args.rounds):
        servers, works = [], []
        try:
            for front in fronts:
                work = tempfile.mkdtemp(prefix="pilothouse-bench-http-")
                works.append(work)
                proc, port = start_server(args.store, work, front,
                                          front_file if front.startswith("fast path @") else None)
                servers.append(Server(front, proc, []))
                servers[-1].conns = [await Conn.open(port)
                                     for _ in range(max(client_counts))]
            print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
                f"{s.front} pid {s.proc.pid}" for s in servers), file=sys.stderr, flush=True)
            for front, figures in (await one_round(servers, n, args.slices, f"r{rnd}",
                                                   cases, client_counts)).items():
                results[front].append(figures)
        finally:
            for server in servers:
                for conn in server.conns:
                    conn.close()
                stop_server(server.proc)
            import shutil
            for work in works:
                shutil.rmtree(work, ignore_errors=True)
    if front_file is not None:
        os.unlink(front_file)
    base = fronts[2] if args.baseline else None
    print(f"API server CPU per request in µs (median of {args.rounds} rounds, min-max) and "
          f"requests/s; store {args.store}, {n} requests per case in {args.slices} turns")
    extra = f"   {base:>24}   {'vs @' + args.baseline[:12]:>17}" if base else ""
    print(f"  {'request':<18} {'clients':>7}   {'aiohttp':>24}   {'fast path':>24}   "
          f"{'CPU saved':>9}{extra}")
    for case in cases:
        for clients in client_counts:
            a = [r[(case, clients)] for r in results["aiohttp"]]
            f = [r[(case, clients)] for r in results["fast path"]]
            saved = 1 - statistics.median(v[0] for v in f) / statistics.median(
                v[0] for v in a)
            extra = ""
            if base:
                b = [r[(case, clients)] for r in results[base]]
                fb = statistics.median(v[0] for v in f) - statistics.median(v[0] for v in b)
                extra = f"   {spread(b):>24}   {fb:+12.1f} µs"
            print(f"  {case:<18} {clients:>7}   {spread(a):>24}   {spread(f):>24}   "
                  f"{saved:9.0%}{extra}", flush=True)


def run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory", help="store plugin (default memory)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (default 3)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per case")
    parser.add_argument("--slices", type=int, default=6,
                        help="turns each server takes per case (default 6)")
    parser.add_argument("--quick", action="store_true", help="600 requests per case")
    parser.add_argument("--baseline", default="", metavar="REV",
                        help="also run the fast path as _http.py was at git revision REV")
    parser.add_argument("--cases", default="",
                        help=f"comma-separated cases (default all: {', '.join(CASES)})")
    parser.add_argument("--clients", default="1,16",
                        help="comma-separated client counts (default 1,16)")
    run(main(parser.parse_args()))
