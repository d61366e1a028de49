"""Hollow nodes against a real API server (memory store): registration, leases, pods bound
through pods/binding becoming Running and Ready, deletion, restart, and the CLI."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import subprocess
import sys
import time

import pytest

from pilothouse.client import Client
from pilothouse.model import errors
from pilothouse.model.meta import parse_rfc3339

from pilothouse_hollow_node import HollowNodes, Options, parse_taint

ZONE = "topology.kubernetes.io/zone"
GPU = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def run(coro):
    return asyncio.run(coro)


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll the async ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


def pod(name: str, *, init: list[dict] | None = None, containers: int = 1) -> dict:
    spec = {"containers": [{"name": f"c{i}", "image": f"registry.local/app:{i}",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
                           for i in range(containers)],
            "terminationGracePeriodSeconds": 30}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


@pytest.fixture
def api(start_apiserver):
    return start_apiserver({"store": {"plugin": "memory"}})


def test_options_and_taint_parsing():
    assert parse_taint("dedicated=gpu:NoSchedule") == GPU
    assert parse_taint("spot:PreferNoSchedule") == {"key": "spot", "effect":
                                                     "PreferNoSchedule"}
    with pytest.raises(ValueError):
        parse_taint("no-effect")
    with pytest.raises(ValueError):
        Options(taints=[{"key": "k", "effect": "Sometimes"}])
    with pytest.raises(ValueError, match="too small"):
        HollowNodes(Client("http://127.0.0.1:1"), count=5000, pod_cidr="10.0.0.0/24")
    big = HollowNodes(Client("http://127.0.0.1:1"), count=2, pods=300)
    assert big.nodes["hollow-node-1"].cidr() == "10.64.2.0/23"  # 300 pods: a /23 each


def test_registers_nodes_with_capacity_labels_taints_and_leases(api):
    async def main():
        async with Client(api.url) as client:
            hollow = HollowNodes(client, count=6, cpu="2", memory="4Gi", pods=20, zones=3,
                                 region="r1", labels={"team": "infra"}, taints=[GPU],
                                 status_interval=0)
            await hollow.start()
            try:
                nodes = (await client.resource("v1", "Node").list())["items"]
                leases = (await client.resource("coordination.k8s.io/v1", "Lease").list(
                    "kube-node-lease"))["items"]
            finally:
                await hollow.stop()
            return nodes, leases
    nodes, leases = run(main())
    assert sorted(n["metadata"]["name"] for n in nodes) == [f"hollow-node-{i}"
                                                            for i in range(6)]
    zones = {}
    cidrs = set()
    for n in nodes:
        name = n["metadata"]["name"]
        labels = n["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["team"] == "infra"
        assert labels["topology.kubernetes.io/region"] == "r1"
        zones.setdefault(labels[ZONE], []).append(name)
        assert n["spec"]["taints"] == [GPU]
        status = n["status"]
        for field in ("capacity", "allocatable"):
            assert {k: status[field][k] for k in ("cpu", "memory", "pods")} == \
                {"cpu": "2", "memory": "4Gi", "pods": "20"}
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
        cidrs.add(n["spec"]["podCIDR"])
    assert sorted(zones) == ["zone-0", "zone-1", "zone-2"]
    assert all(len(v) == 2 for v in zones.values())   # spread evenly
    assert len(cidrs) == 6
    assert sorted(lease["metadata"]["name"] for lease in leases) == \
        sorted(n["metadata"]["name"] for n in nodes)
    uids = {n["metadata"]["name"]: n["metadata"]["uid"] for n in nodes}
    for lease in leases:
        name = lease["metadata"]["name"]
        assert lease["spec"]["holderIdentity"] == name
        assert lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == uids[name]


def test_leases_are_renewed_on_their_cadence(api):
    async def main():
        async with Client(api.url) as client:
            leases = client.resource("coordination.k8s.io/v1", "Lease")
            async with HollowNodes(client, count=4, lease_interval=0.5,
                                   status_interval=0) as hollow:
                first = {n: (await leases.get(n, "kube-node-lease")) for n in hollow.nodes}

                async def all_renewed():
                    for name, lease in first.items():
                        now = await leases.get(name, "kube-node-lease")
                        if parse_rfc3339(now["spec"]["renewTime"]) <= \
                                parse_rfc3339(lease["spec"]["renewTime"]):
                            return False
                    return True
                await wait_for(all_renewed, timeout=10)
                await asyncio.sleep(1.2)
                return hollow.stats["lease_ok"], hollow.stats["lease_failed"]
    renewed, failed = run(main())
    assert renewed >= 8    # four nodes, at least twice each by now
    assert failed == 0


def test_lease_renewals_keep_what_others_set_and_the_field_owners(api):
    async def main():
        async with Client(api.url) as client:
            leases = client.resource("coordination.k8s.io/v1", "Lease")
            async with HollowNodes(client, count=2, lease_interval=0.3,
                                   status_interval=0) as hollow:
                name = next(iter(hollow.nodes))
                marked = await leases.patch(name, {"metadata": {"labels": {"seen-by": "test"}}},
                                            "kube-node-lease")

                async def renewed_after_mark():
                    now = await leases.get(name, "kube-node-lease")
                    return now if parse_rfc3339(now["spec"]["renewTime"]) > \
                        parse_rfc3339(marked["spec"]["renewTime"]) else None
                return marked, await wait_for(renewed_after_mark, timeout=10)
    marked, renewed = run(main())
    # the renewal wrote on top of the other writer's change (after a 409 and a re-read)
    assert renewed["metadata"]["labels"] == {"seen-by": "test"}
    assert renewed["metadata"]["ownerReferences"] == marked["metadata"]["ownerReferences"]
    assert int(renewed["metadata"]["resourceVersion"]) > \
        int(marked["metadata"]["resourceVersion"])
    # the body left managedFields out, so the server kept every owner
    managers = {e["manager"] for e in renewed["metadata"]["managedFields"]}
    assert managers == {e["manager"] for e in marked["metadata"]["managedFields"]}


def test_spread_serves_nodes_in_order_with_bounded_concurrency():
    async def main():
        async with Client("http://127.0.0.1:1") as client:  # never called
            hollow = HollowNodes(client, count=6, concurrency=3)
            calls, inflight, most = [], [0], [0]

            async def action(node):
                calls.append(node.name)
                inflight[0] += 1
                most[0] = max(most[0], inflight[0])
                await asyncio.sleep(0.05)
                inflight[0] -= 1
                if node.index == 5:
                    raise RuntimeError("one failure is counted, not fatal")
            task = asyncio.create_task(hollow._spread("probe", 0.12, action))
            while len(calls) < 13:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return calls, most[0], hollow.stats
    calls, most, stats = run(main())
    names = [f"hollow-node-{i}" for i in range(6)]
    assert calls[:12] == names + names  # every node once per interval, in node order
    assert most <= 3
    assert stats["probe_failed"] >= 1 and stats["probe_ok"] >= 9


def test_bound_pods_become_running_and_ready_and_deleted_pods_disappear(api):
    async def main():
        async with Client(api.url) as client:
            pods = client.resource("v1", "Pod")
            nodes = client.resource("v1", "Node")
            async with HollowNodes(client, count=2, status_interval=0) as hollow:
                await pods.create(pod("web", containers=2, init=[
                    {"name": "setup", "image": "registry.local/setup:1"},
                    {"name": "proxy", "image": "registry.local/proxy:1",
                     "restartPolicy": "Always"}]))
                await pods.create(pod("api"))
                await pods.create(pod("elsewhere"))
                await pods.create(pod("pending"))
                await pods.bind("web", "default", "hollow-node-0")
                await pods.bind("api", "default", "hollow-node-0")
                await pods.bind("elsewhere", "default", "not-a-hollow-node")

                async def running(name):
                    p = await pods.get(name, "default")
                    return p if (p.get("status") or {}).get("phase") == "Running" else None
                web = await wait_for(lambda: running("web"))
                api_pod = await wait_for(lambda: running("api"))
                await asyncio.sleep(0.3)
                others = [await pods.get(n, "default") for n in ("elsewhere", "pending")]
                node0 = await nodes.get("hollow-node-0")

                # deletion with the default grace period: the hollow node finishes it
                await pods.delete("api", "default")

                async def gone():
                    try:
                        await pods.get("api", "default")
                        return False
                    except errors.NotFound:
                        return True
                await wait_for(gone)
                # the freed address is handed out again
                await pods.create(pod("next"))
                await pods.bind("next", "default", "hollow-node-0")
                nxt = await wait_for(lambda: running("next"))
                return web, api_pod, others, node0, nxt, hollow.stats.copy()
    web, api_pod, others, node0, nxt, stats = run(main())
    status = web["status"]
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert conds[t] == "True", conds
    cidr = ipaddress.ip_network(node0["spec"]["podCIDR"])
    assert ipaddress.ip_address(status["podIP"]) in cidr
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    node_ip = next(a["address"] for a in node0["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert status["hostIP"] == node_ip
    assert status["startTime"]
    assert [c["name"] for c in status["containerStatuses"]] == ["c0", "c1"]
    for c in status["containerStatuses"]:
        assert c["ready"] and c["started"] and "running" in c["state"]
        assert c["containerID"].startswith("hollow://")
        assert c["image"].startswith("registry.local/app:")
    init = {c["name"]: c for c in status["initContainerStatuses"]}
    assert init["setup"]["state"]["terminated"]["reason"] == "Completed"
    assert "running" in init["proxy"]["state"]   # a sidecar keeps running
    assert status["qosClass"] == "Burstable"
    assert api_pod["status"]["podIP"] != status["podIP"]
    for other in others:   # not ours (or not bound): untouched
        assert (other.get("status") or {}).get("phase") != "Running"
    assert nxt["status"]["podIP"] == api_pod["status"]["podIP"]
    assert stats["pods_deleted"] == 1
    assert stats["pod_write_failures"] == 0


def test_a_restarted_process_adopts_its_nodes_and_pods(api):
    async def main():
        async with Client(api.url) as client:
            pods = client.resource("v1", "Pod")
            nodes = client.resource("v1", "Node")
            async with HollowNodes(client, count=2, status_interval=0) as first:
                await pods.create(pod("kept"))
                await pods.bind("kept", "default", "hollow-node-1")

                async def running():
                    p = await pods.get("kept", "default")
                    return p if (p.get("status") or {}).get("phase") == "Running" else None
                before = await wait_for(running)
                uids = {n: (await nodes.get(n))["metadata"]["uid"] for n in first.nodes}
            # a second process (same prefix) while the objects exist; a label changed meanwhile
            await nodes.patch("hollow-node-0", {"metadata": {"labels": {
                "kubernetes.io/hostname": "wrong"}}})
            async with HollowNodes(client, count=2, status_interval=0) as second:
                after_nodes = {n: await nodes.get(n) for n in second.nodes}
                await pods.create(pod("new"))
                await pods.bind("new", "default", "hollow-node-1")

                async def new_running():
                    p = await pods.get("new", "default")
                    return p if (p.get("status") or {}).get("phase") == "Running" else None
                new = await wait_for(new_running)
                kept = await pods.get("kept", "default")
                return before, kept, new, uids, after_nodes, second.stats.copy()
    before, kept, new, uids, after_nodes, stats = run(main())
    assert {n: o["metadata"]["uid"] for n, o in after_nodes.items()} == uids
    assert after_nodes["hollow-node-0"]["metadata"]["labels"]["kubernetes.io/hostname"] == \
        "hollow-node-0"
    assert kept["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert new["status"]["podIP"] != kept["status"]["podIP"]   # the old address stays taken
    assert stats["pods_started"] == 1


def test_cli_registers_and_cleans_up(api):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilothouse_hollow_node", "--server", api.url, "--nodes", "3",
         "--cpu", "8", "--memory", "16Gi", "--pods", "50", "--zones", "2", "--label",
         "pool=hollow", "--taint", "dedicated=gpu:NoSchedule", "--prefix", "cli",
         "--delete-on-exit"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    try:
        line = proc.stdout.readline()
        assert "ready: 3 nodes cli-0..cli-2" in line, line + proc.stderr.read()

        async def listed():
            async with Client(api.url) as client:
                return (await client.resource("v1", "Node").list(
                    label_selector="pool=hollow"))["items"]
        nodes = run(listed())
        assert sorted(n["metadata"]["name"] for n in nodes) == ["cli-0", "cli-1", "cli-2"]
        assert {n["status"]["capacity"]["cpu"] for n in nodes} == {"8"}
        assert {n["metadata"]["labels"][ZONE] for n in nodes} == {"zone-0", "zone-1"}
        assert all(n["spec"]["taints"] == [GPU] for n in nodes)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert run(listed()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pilothouse_cli_has_the_hollow_nodes_command():
    out = subprocess.run([sys.executable, "-m", "pilothouse.cli", "hollow-nodes", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--nodes" in out.stdout and "--zones" in out.stdout
    listing = subprocess.run([sys.executable, "-m", "pilothouse.cli", "plugins", "list"],
                             capture_output=True, text=True, timeout=60)
    assert "hollow-nodes" in listing.stdout and "pilothouse-hollow-node" in listing.stdout


def test_spread_calls_never_start_before_their_slot_and_share_ticks():
    """Each call starts at or after its slot (offset ``k * interval / n``) and at most one
    tick later; the calls due within one tick share one timer of the event loop."""
    from pilothouse_hollow_node import _nodes

    async def main():
        async with Client("http://127.0.0.1:1") as client:  # never called
            hollow = HollowNodes(client, count=40, concurrency=8)
            loop = asyncio.get_running_loop()
            starts, timers = [], []
            call_at = loop.call_at

            def counting_call_at(when, callback, *args, **kw):
                if getattr(callback, "__module__", "") in ("asyncio.futures", _nodes.__name__):
                    timers.append(when)  # the spread's: its own or an asyncio.sleep's
                return call_at(when, callback, *args, **kw)

            done = loop.create_future()

            async def action(node):
                starts.append((node.index, loop.time()))
                if len(starts) == 40:
                    done.set_result(None)
            loop.call_at = counting_call_at
            t0 = loop.time()
            task = asyncio.create_task(hollow._spread("probe", 0.4, action))
            await done
            del loop.call_at
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return t0, starts[:40], timers
    t0, starts, timers = run(main())
    step, tick = 0.4 / 40, _nodes._TICK
    assert [k for k, _ in starts] == list(range(40))
    for k, at in starts:
        slot = t0 + (k + 1) * step
        assert slot - 0.002 <= at <= slot + tick + 0.05, (k, at - slot)
    # 40 calls 10 ms apart, and the 8 slots the workers took next, over 50 ms ticks: about
    # 10 timers (one per call would be 48)
    assert len(timers) <= (40 + 8) * step / tick + 2


def test_pod_addresses_are_written_as_ipaddress_writes_them():
    from pilothouse_hollow_node._nodes import _dotted
    for value in (0, 1, 255, 256, 0x0A400102, 0xAC100001, 0x7F000001, 0xFFFFFFFF,
                  *range(0x0A40FF00, 0x0A410100, 7)):
        assert _dotted(value) == str(ipaddress.IPv4Address(value))
