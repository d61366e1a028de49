#!/usr/bin/env python3
"""The API server's CPU per write request and per watch event, in process: prints figures.

    python bench/apiserver_write_path.py [--store memory|raft] [-n 2000] [--clients 8]
                                         [--watchers 30] [--repeat 3]
                                         [--profile KIND] [--only KIND] [--objects N]

An :class:`~pilothouse.apiserver.server.APIServer` with the chosen store (the raft store as
``pilothouse apiserver`` embeds it, in a temporary directory) is driven by calling
``APIServer.handle`` with in-memory requests: no sockets and no HTTP parsing, so the figures
are the handlers' work (decoding, admission, validation, managed fields, store round trip,
watch cache) and not the HTTP layer's. The bodies are those of ``bench/scheduler.py --case
basic``: the pod template, the scheduler's binding and Scheduled Event, the hollow node's
``pods/status`` merge patch and Lease renewal (the last stored Lease without managedFields,
with a new ``renewTime``), then a pod delete and the pod creates again with ``--watchers``
open watches on all pods (real watch handlers writing to a null transport).

CPU is the process's (``time.process_time``: the raft store's threads included), minus what
the idle server uses over the same time; each kind runs ``--repeat`` times on fresh objects
and the lowest figure is printed. The garbage collector is off unless ``--gc`` (its
collections fall on whichever kind runs then). ``--profile KIND`` runs that kind under cProfile and
prints the top functions (by cumulative and by own time).

``--objects N`` makes every kind work on N distinct objects per round (the pod kinds on N
new pods instead of -n, the Lease renewals on N Leases, each renewed once a round, instead
of 100), and gives each Lease an ownerReference to a Node with its own uid as hollow nodes
do: each Lease's managedFields entry is then a field set of its own, as at scale (5,000
nodes, 10,000 pods), where per-set memos of 4,096 entries never hit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import shutil
import sys
import tempfile
import time

from aiohttp.test_utils import make_mocked_request

from pilothouse.config import parse_config
from pilothouse.plugins import load_plugins

from pilothouse.apiserver.server import APIServer

# the bodies the end-to-end benchmark sends (bench/ is this script's sys.path[0])
from scheduler import pod_dict, status_body  # noqa: E402

NAMESPACE = "bench"
KINDS = ("pod create", "pods/binding", "pods/status patch", "event create",
         "lease update (PUT)", "pod delete", "pod create, watched")


class NullWriter:
    """A payload writer that only counts what a response would send."""

    def __init__(self):
        self.buffer_size = self.output_size = self.length = 0
        self.writes = 0

    async def write_headers(self, status_line, headers) -> None:
        pass

    def send_headers(self) -> None:
        pass

    async def write(self, data) -> None:
        self.writes += 1
        self.output_size += len(data)

    async def write_eof(self, data=b"") -> None:
        pass

    async def drain(self) -> None:
        pass

    def enable_chunking(self) -> None:
        pass

    def enable_compression(self, *args, **kwargs) -> None:
        pass


_TEMPLATE: list = []  # one mocked request, cloned for the others (mocks are costly)


def request(method: str, path: str, body: object = None,
            content_type: str = "application/json", writer=None):
    data = b"" if body is None else json.dumps(body).encode()
    headers = {"Content-Type": content_type, "Content-Length": str(len(data)),
               "User-Agent": "bench/v0.0.0 (linux/amd64) kubernetes/bench"}
    if writer is not None:  # a watch: a request of its own with its own writer
        req = make_mocked_request(method, path, headers=headers, writer=writer)
    else:
        if not _TEMPLATE:
            _TEMPLATE.append(make_mocked_request("GET", "/", writer=NullWriter()))
        req = _TEMPLATE[0].clone(method=method, rel_url=path, headers=headers)
    req._read_bytes = data  # what BaseRequest.read() returns once the body was read
    return req


def event_body(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"pod-{i}.{i:016x}", "namespace": NAMESPACE},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": NAMESPACE,
                               "name": f"pod-{i}"},
            "reason": "Scheduled", "message": f"Successfully assigned bench/pod-{i} to node-1",
            "type": "Normal", "action": "Binding", "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler", "reportingInstance": "bench",
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
            "count": 1}


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="pilothouse-write-path-")
        options = {"data_dir": f"{self.work}/store"} if args.store == "raft" else {}
        self.config = parse_config({"store": {"plugin": args.store, "options": options}},
                                   "<bench>")
        self.leases: dict[int, dict] = {}
        self.base = 0  # pod numbers of the current round start here
        self.idle = 0.0
        self.renewals = 0
        self.lease_count = args.objects or 100  # Leases renewed in turn
        self.per_round = args.objects or args.n  # requests of each kind per round

    async def start(self) -> None:
        self.plugins = load_plugins(self.config)
        self.store = self.plugins.driver("store")
        await self.store.open()
        self.api = APIServer(self.store, self.plugins)
        await self.api.start()
        await self.call("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for i in range(self.lease_count):
            metadata: dict = {"name": f"n{i}"}
            if self.args.objects:  # as hollow nodes: owned by their Node (a uid each)
                metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                                "name": f"n{i}",
                                                "uid": f"00000000-0000-4000-8000-{i:012d}"}]
            self.leases[i] = await self.call(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": metadata,
                    "spec": {"holderIdentity": f"n{i}", "leaseDurationSeconds": 40}})
        gc.collect()  # as ``pilothouse apiserver`` does once started
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        if not self.args.gc:
            gc.disable()  # collections land on whichever kind runs then: noise
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(1.0)
        self.idle = (time.process_time() - c0) / (time.perf_counter() - t0)

    async def stop(self) -> None:
        await self.api.stop()
        await self.store.close()
        shutil.rmtree(self.work, ignore_errors=True)

    async def call(self, method, path, body=None, content_type="application/json"):
        resp = await self.api.handle(request(method, path, body, content_type))
        if resp.status >= 300:
            raise SystemExit(f"{method} {path}: {resp.status} {resp.body[:400]!r}")
        return json.loads(resp.body) if resp.body else None

    def op(self, kind: str, i: int):
        ns = f"/api/v1/namespaces/{NAMESPACE}"
        k = self.base + i
        if kind in ("pod create", "pod create, watched"):
            return "POST", f"{ns}/pods", pod_dict(k, False), "application/json"
        if kind == "pods/binding":
            return "POST", f"{ns}/pods/pod-{k}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"pod-{k}"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}, \
                "application/json"
        if kind == "pods/status patch":
            return "PATCH", f"{ns}/pods/pod-{k}/status", status_body(k), \
                "application/merge-patch+json"
        if kind == "event create":
            return "POST", f"{ns}/events", event_body(k), "application/json"
        if kind == "lease update (PUT)":
            lease = self.leases[i]
            spec = {**lease["spec"], "renewTime": time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{(self.renewals + i) % 1000000:06d}Z"}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {k2: v for k2, v in lease["metadata"].items()
                                 if k2 != "managedFields"}, "spec": spec}
            return "PUT", (f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                           f"n{i}"), body, "application/json"
        if kind == "pod delete":
            return "DELETE", f"{ns}/pods/pod-{k}", {"gracePeriodSeconds": 0}, \
                "application/json"
        raise ValueError(kind)

    async def run_kind(self, kind: str, profile: cProfile.Profile | None = None) -> float:
        """CPU µs per request of ``kind`` (the idle server's share subtracted)."""
        n, clients = self.per_round, self.args.clients
        if kind == "lease update (PUT)":
            return await self._run_leases(profile)
        requests = [request(*self.op(kind, i)) for i in range(n)]
        it = iter(requests)

        async def worker():
            for req in it:
                resp = await self.api.handle(req)
                if resp.status >= 300:
                    raise SystemExit(f"{kind}: {resp.status} {resp.body[:400]!r}")
        watchers: list[asyncio.Task] = []
        writers: list[NullWriter] = []
        if kind == "pod create, watched":
            for _ in range(self.args.watchers):
                w = NullWriter()
                writers.append(w)
                watchers.append(asyncio.create_task(self.api.handle(request(
                    "GET", "/api/v1/pods?watch=true&resourceVersion="
                    f"{(await self.store.current_revision())}&timeoutSeconds=600",
                    writer=w))))
            await asyncio.sleep(0.2)
        if profile:
            profile.enable()
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        if writers:  # until every watcher has written its events
            while True:
                cache = await self.api.cache(self.api.registry.get("", "v1", "Pod"))
                if all(w.queue.empty() for w in cache.watchers):
                    await asyncio.sleep(0)
                    if all(w.queue.empty() for w in cache.watchers):
                        break
                await asyncio.sleep(0.001)
        c1, t1 = time.process_time(), time.perf_counter()
        if profile:
            profile.disable()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        return (c1 - c0 - self.idle * (t1 - t0)) / n * 1e6

    async def _run_leases(self, profile) -> float:
        """Lease renewals: each of the 100 leases renewed from its last response, the
        renewals of different leases concurrent (``--clients`` at a time). Only the
        server's part is timed (each body needs the previous response, so the requests
        cannot all be made beforehand). With ``--objects N``: the N leases, each renewed
        once, 100 at a time."""
        clients = self.args.clients
        if self.args.objects:
            batches = [range(b, min(b + 100, self.lease_count))
                       for b in range(0, self.lease_count, 100)]
        else:
            batches = [range(100)] * max(1, self.args.n // 100)
        spent = 0.0
        wall = 0.0
        count = 0
        for batch in batches:
            self.renewals += 100
            reqs = {i: request(*self.op("lease update (PUT)", i)) for i in batch}
            queue = list(batch)
            count += len(queue)

            async def worker():
                while queue:
                    i = queue.pop()
                    resp = await self.api.handle(reqs[i])
                    if resp.status >= 300:
                        raise SystemExit(f"lease: {resp.status} {resp.body[:400]!r}")
                    self.leases[i] = resp.body
            if profile:
                profile.enable()
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            spent += time.process_time() - c0
            wall += time.perf_counter() - t0
            if profile:
                profile.disable()
            for i in batch:
                self.leases[i] = json.loads(self.leases[i])
        return (spent - self.idle * wall) / count * 1e6


async def main(args) -> None:
    bench = Bench(args)
    await bench.start()
    kinds = [k for k in KINDS if not args.only or k in args.only]
    best: dict[str, float] = {}
    try:
        print(f"store {args.store}, {bench.per_round} requests of each kind"
              f"{f' on as many objects ({args.objects} Leases)' if args.objects else ''}, "
              f"{args.clients} at a time, "
              f"{args.watchers} watchers for the watched creates; idle server "
              f"{100 * bench.idle:.1f}% of a core", file=sys.stderr)
        for r in range(args.repeat):
            for kind in KINDS:  # each round needs the pods the previous kinds made
                if kind not in kinds and kind not in ("pod create", "pod delete") \
                        and not (kind == "pods/binding" and "pods/status patch" in kinds):
                    continue
                if kind == "pod create, watched":
                    bench.base += bench.per_round
                prof = cProfile.Profile() if args.profile == kind and r == 0 else None
                us = await bench.run_kind(kind, prof)
                if kind in kinds:
                    best[kind] = min(best.get(kind, us), us)
                    print(f"  round {r + 1}: {kind}: {us:.0f} µs", file=sys.stderr)
                if prof:
                    out = io.StringIO()
                    st = pstats.Stats(prof, stream=out)
                    st.sort_stats("cumulative").print_stats(45)
                    st.sort_stats("tottime").print_stats(30)
                    print(out.getvalue(), file=sys.stderr)
            bench.base += bench.per_round
        print(f"{'request kind':<24} CPU µs each (best of {args.repeat}, store {args.store})")
        for kind in kinds:
            print(f"{kind:<24} {best[kind]:8.0f}")
        if "pod create, watched" in best and "pod create" in best:
            per = (best["pod create, watched"] - best["pod create"]) / max(args.watchers, 1)
            print(f"{'→ per watch event':<24} {per:8.1f}")
    finally:
        await bench.stop()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=("memory", "raft"), default="memory")
    p.add_argument("-n", type=int, default=2000, help="requests of each kind per round")
    p.add_argument("--clients", type=int, default=8, help="requests in flight at once")
    p.add_argument("--watchers", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", action="append", choices=KINDS,
                   help="measure only this kind (repeatable; the pods it needs are made)")
    p.add_argument("--profile", choices=KINDS, help="cProfile this kind (first round)")
    p.add_argument("--objects", type=int, default=0, metavar="N",
                   help="N distinct objects of each kind per round: N pods (instead of -n) "
                        "and N Leases owned by Nodes, each renewed once a round")
    p.add_argument("--gc", action="store_true",
                   help="leave the garbage collector on (as the server runs; noisier)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
