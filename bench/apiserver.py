#!/usr/bin/env python3
"""API server benchmark on loopback: prints figures, asserts nothing.

    python bench/apiserver.py [--store raft|memory] [--quick]

Starts ``pilothouse apiserver`` in its own process (so the load generator does not share its
interpreter) with the chosen store, then measures with aiohttp clients:

* create, get, list (100 objects) and watch-event throughput with p50/p99 latency at 1 and
  50 concurrent clients;
* mutating latency under an open-loop load of 500 writes/s (Kubernetes' SLO: p99 <= 1 s;
  goal here: p99 < 50 ms);
* watch fan-out: 1,000 watchers, time from a write's acknowledgement to the last watcher's
  event (goal: p99 < 100 ms);
* the server's CPU per request (from /proc, its idle use subtracted) of a Lease renewal as
  a kubelet sends it (PUT of the last response with a new ``renewTime``), of a PUT that
  changes nothing, of a pod create and of the ``pods/status`` merge patch a node agent
  sends when the pod runs.
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

import aiohttp
import yaml


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: str, workdir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    options = {"data_dir": os.path.join(workdir, "store")} if store == "raft" else {}
    cfg = {"store": {"plugin": store, "options": options},
           "components": {"apiserver": {"port": port, "address": "127.0.0.1",
                                        "kubeconfig": os.path.join(workdir, "kubeconfig")}}}
    path = os.path.join(workdir, "config.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    proc = subprocess.Popen([sys.executable, "-m", "pilothouse.cli", "apiserver", "--config", path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"apiserver exited: {proc.stdout.read()}")
            time.sleep(0.2)
    return proc, url


CM = "/api/v1/namespaces/default/configmaps"


async def closed_loop(session, url, op, clients: int, total: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    counter = iter(range(total))

    async def worker():
        for i in counter:
            t0 = time.perf_counter()
            await op(session, url, i)
            lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return total / (time.perf_counter() - t0), lat


async def op_create(prefix):
    async def create(session, url, i):
        async with session.post(url + CM, json={"metadata": {"name": f"{prefix}-{i}"},
                                                "data": {"k": "v" * 100}}) as r:
            assert r.status == 201, await r.text()
    return create


async def op_get(session, url, i):
    async with session.get(f"{url}{CM}/bench1-{i % 100}") as r:
        assert r.status == 200
        await r.read()


async def op_list(session, url, i):
    async with session.get(url + CM, params={"labelSelector": "", "limit": "100"}) as r:
        assert r.status == 200
        await r.read()


def line(name: str, rate: float, lat: list[float]) -> str:
    return (f"  {name:<28} {rate:>9.0f}/s   p50 {pct(lat, 50) * 1000:7.2f} ms   "
            f"p99 {pct(lat, 99) * 1000:7.2f} ms")


async def open_loop(session, url, rate: float, seconds: float) -> list[float]:
    lat: list[float] = []
    tasks = []

    async def one(i):
        t0 = time.perf_counter()
        async with session.put(f"{url}{CM}/bench1-{i % 100}", json={
                "metadata": {"name": f"bench1-{i % 100}"}, "data": {"i": str(i)}}) as r:
            assert r.status == 200, await r.text()
        lat.append(time.perf_counter() - t0)
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return lat


async def fanout(url: str, watchers: int, writes: int) -> list[float]:
    """Open ``watchers`` watches, then make ``writes`` writes; per write, the time from the
    write's response to the moment the last watcher got its event."""
    connector = aiohttp.TCPConnector(limit=watchers + 10)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url + CM, params={"limit": "1"}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        arrivals: dict[str, list[float]] = {}
        ready = asyncio.Semaphore(0)

        async def watch():
            async with session.get(url + CM, params={
                    "watch": "true", "resourceVersion": rv, "fieldSelector":
                    "metadata.name=fan", "timeoutSeconds": "120"},
                    timeout=aiohttp.ClientTimeout(total=None)) as resp:
                ready.release()
                buf = b""
                got = 0
                async for chunk in resp.content.iter_any():
                    now = time.perf_counter()
                    buf += chunk
                    while b"\n" in buf:
                        raw, buf = buf.split(b"\n", 1)
                        ev = json.loads(raw)
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            arrivals.setdefault(ev["object"]["metadata"]["resourceVersion"],
                                                []).append(now)
                            got += 1
                    if got >= writes:
                        return
        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        for _ in range(watchers):
            await ready.acquire()
        await asyncio.sleep(1.0)
        sent: dict[str, float] = {}
        for i in range(writes):
            body = {"metadata": {"name": "fan"}, "data": {"i": str(i)}}
            if i == 0:
                async with session.post(url + CM, json=body) as r:
                    obj = await r.json()
            else:
                async with session.put(f"{url}{CM}/fan", json=body) as r:
                    obj = await r.json()
            sent[obj["metadata"]["resourceVersion"]] = time.perf_counter()
            await asyncio.sleep(0.3)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return [max(arrivals[rv]) - t for rv, t in sent.items() if len(arrivals.get(rv, [])) ==
                watchers]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def micro_time(i: int) -> str:
    t = time.time() + i * 1e-6
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


async def cpu_per_request(session, url: str, pid: int, n: int) -> list[tuple[str, float]]:
    """CPU ms of the API server per request of each kind, 8 clients, one kind at a time."""
    leases = f"{url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    pods = f"{url}/api/v1/namespaces/default/pods"
    current: dict[int, dict] = {}
    for i in range(50):
        async with session.post(leases, json={
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": f"bench-{i}"}, "spec": {
                    "holderIdentity": f"bench-{i}", "leaseDurationSeconds": 40,
                    "renewTime": micro_time(0)}}) as r:
            assert r.status == 201, await r.text()
            current[i] = await r.json()
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(2.0)
    idle = (cpu_seconds(pid) - c0) / (time.perf_counter() - t0)
    out = []

    async def measure(label, request):
        counter = iter(range(n))

        async def worker():
            for i in counter:
                await request(i)
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        spent = cpu_seconds(pid) - c0 - idle * (time.perf_counter() - t0)
        out.append((label, spent / n * 1000))

    async def renew(i, change=True):
        lease = current[i % 50]
        body = {**lease, "spec": {**lease["spec"], "renewTime": micro_time(i)
                                  if change else lease["spec"]["renewTime"]}}
        async with session.put(f"{leases}/bench-{i % 50}", json=body) as r:
            assert r.status == 200, await r.text()
            current[i % 50] = await r.json()

    async def create(i):
        async with session.post(pods, json={
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"cpu-{i}"},
                "spec": {"nodeName": "node-1", "containers": [{
                    "name": "pause", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                                  "limits": {"cpu": "100m", "memory": "500Mi"}}}]}}) as r:
            assert r.status == 201, await r.text()

    async def status(i):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ip = f"10.64.{i // 250 % 250}.{i % 250 + 2}"
        conditions = [{"type": t, "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": now}
                      for t in ("Initialized", "ContainersReady", "Ready", "PodScheduled")]
        async with session.patch(f"{pods}/cpu-{i}/status", data=json.dumps({"status": {
                "phase": "Running", "conditions": conditions, "hostIP": "172.16.0.2",
                "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
                "containerStatuses": [{"name": "pause", "ready": True, "restartCount": 0,
                                       "image": "registry.k8s.io/pause:3.10", "imageID": "",
                                       "started": True,
                                       "state": {"running": {"startedAt": now}}}]}}),
                headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status == 200, await r.text()

    await measure("Lease renewal (PUT)", renew)
    await measure("Lease PUT, no change", lambda i: renew(i, change=False))
    await measure("pod create", create)
    await measure("pods/status merge patch", status)
    return out


async def main(args) -> None:
    work = tempfile.mkdtemp(prefix="pilothouse-bench-")
    proc, url = start_server(args.store, work)
    try:
        n = 300 if args.quick else 3000
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            print(f"API server on {url}, store {args.store}; {n} requests per case", flush=True)
            create = await op_create("bench1")
            await closed_loop(session, url, create, 10, 100)  # the objects get/list read
            for clients in (1, 50):
                print(f"-- {clients} concurrent client(s)", flush=True)
                rate, lat = await closed_loop(session, url, await op_create(f"c{clients}"),
                                              clients, n)
                print(line("create", rate, lat), flush=True)
                rate, lat = await closed_loop(session, url, op_get, clients, n)
                print(line("get", rate, lat), flush=True)
                rate, lat = await closed_loop(session, url, op_list, clients, max(n // 10, 30))
                print(line("list (100 objects)", rate, lat), flush=True)
            seconds = 3 if args.quick else 10
            print(f"-- open loop: 500 updates/s for {seconds} s", flush=True)
            lat = await open_loop(session, url, 500, seconds)
            print(line("update @500/s", len(lat) / seconds, lat), flush=True)
            print("-- API server CPU per request (8 clients, one kind at a time)", flush=True)
            for label, ms in await cpu_per_request(session, url, proc.pid, n):
                print(f"  {label:<28} {ms:9.3f} ms", flush=True)
        watchers = 100 if args.quick else 1000
        writes = 5 if args.quick else 20
        print(f"-- watch fan-out: {watchers} watchers, {writes} writes", flush=True)
        delays = await fanout(url, watchers, writes)
        print(f"  write -> last of {watchers} watchers: p50 {pct(delays, 50) * 1000:.1f} ms, "
              f"p99 {pct(delays, 99) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
              f"({len(delays)} writes)", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="raft", help="store plugin (default raft)")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    asyncio.run(main(parser.parse_args()))
