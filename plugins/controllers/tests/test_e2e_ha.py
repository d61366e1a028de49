"""Controller hosts and leader election with the real controllers: a host killed (SIGKILL)
in the middle of a rollout is replaced by another that finishes it from the API alone, and a
second host does nothing while the first holds the Leases; the command stops promptly on
SIGTERM and gives its Leases up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import yaml

from ctrl_testlib import ALL, KubeletSim, config_doc, wait_for
from conftest import Cluster
from test_e2e_deployment import manifest, rollout_status

from pilothouse.controllers.testing import ControllerHostThread

LEASES = {"leaseDuration": 3.0, "renewDeadline": 2.0, "retryPeriod": 0.2}


def holders(c) -> dict[str, str]:
    leases = c.api.items("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
    return {lease["metadata"]["name"].removeprefix("pilothouse-controller-"):
            (lease.get("spec") or {}).get("holderIdentity")
            for lease in leases
            if lease["metadata"]["name"].startswith("pilothouse-controller-")}


def test_a_killed_host_mid_rollout_is_replaced_and_the_rollout_finishes(start_apiserver,
                                                                        tmp_path):
    api = start_apiserver({"store": {"plugin": "memory"}})
    kubelet = KubeletSim(api.url).start()
    cfg = tmp_path / "controllers.yaml"
    cfg.write_text(yaml.safe_dump(config_doc(settings=LEASES)))
    # the real command, as a process: `pilothouse controller-manager`
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from pilothouse.cli import "
                             "main; sys.exit(main())", "controller-manager", "--server",
                             api.url, "--config", str(cfg), "--identity", "proc-1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        c = Cluster(api, None, kubelet)
        wait_for(lambda: holders(c).get("deployment") == "proc-1", what="proc-1 leading")
        spec = "  minReadySeconds: 1\n"
        strategy = "type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}"
        c.kubectl("apply", "-f", "-", input=manifest(replicas=6, strategy=strategy,
                                                     extra_spec=spec))
        rollout_status(c, timeout="90s")
        c.kubectl("apply", "-f", "-", input=manifest(replicas=6, strategy=strategy,
                                                     extra_spec=spec, image="nginx:2"))

        def mid_rollout():
            d = c.api.deployment("web")
            st = d.get("status") or {}
            return 1 <= st.get("updatedReplicas", 0) < 6 and \
                d["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2"
        wait_for(mid_rollout, what="rollout under way")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        updated_at_kill = c.api.deployment("web")["status"]["updatedReplicas"]
        assert updated_at_kill < 6
        assert holders(c)["deployment"] == "proc-1"  # a dead holder releases nothing
        second = ControllerHostThread(api.url, config_doc=config_doc(), settings=LEASES,
                                      identity="host-2").start()
        wait_for(lambda: set(holders(c).values()) == {"host-2"}, what="host-2 took over")
        out = rollout_status(c, timeout="90s")
        assert "successfully rolled out" in out.stdout
        wait_for(lambda: {p["spec"]["containers"][0]["image"]
                          for p in c.api.pods(selector="app=web")} == {"nginx:2"}
                 and len(c.api.pods(selector="app=web")) == 6, what="only new pods")
        assert len(c.api.rss(selector="app=web")) == 2  # no duplicate ReplicaSet
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if second is not None:
            second.stop()
        kubelet.stop()


def test_a_second_host_does_nothing_while_the_first_holds_the_leases(start_apiserver):
    api = start_apiserver({"store": {"plugin": "memory"}})
    kubelet = KubeletSim(api.url).start()
    first = ControllerHostThread(api.url, config_doc=config_doc(), settings=LEASES,
                                 identity="host-a").start()
    second = None
    try:
        c = Cluster(api, first, kubelet)
        wait_for(lambda: holders(c) == {name: "host-a" for name in ALL},
                 what="host-a holds every lease")
        second = ControllerHostThread(api.url, config_doc=config_doc(), settings=LEASES,
                                      identity="host-b").start()
        c.kubectl("apply", "-f", "-", input=manifest(replicas=3))
        rollout_status(c)
        c.kubectl("set", "image", "deployment/web", "app=nginx:2")
        rollout_status(c)
        for name in ALL:
            st = second.state(name)
            assert (st.leader, st.starts) == (False, 0), name
            assert first.state(name).leader, name
        assert holders(c) == {name: "host-a" for name in ALL}
        first.stop()  # graceful: leases released, host-b takes over at once
        wait_for(lambda: holders(c) == {name: "host-b" for name in ALL},
                 what="host-b holds every lease")
        c.kubectl("scale", "deployment/web", "--replicas=5")
        wait_for(lambda: len(c.api.pods(selector="app=web", live=True)) == 5,
                 what="host-b acts")
    finally:
        if second is not None:
            second.stop()
        first.stop()
        kubelet.stop()


def test_the_command_stops_on_sigterm_and_releases_its_leases(start_apiserver, tmp_path):
    api = start_apiserver({"store": {"plugin": "memory"}})
    cfg = tmp_path / "controllers.yaml"
    cfg.write_text(yaml.safe_dump(config_doc(enabled=["replicaset", "serviceaccount"],
                                             settings=LEASES)))
    proc = subprocess.Popen([sys.executable, "-m", "pilothouse.controllers", "--server",
                             api.url, "--config", str(cfg), "--identity", "proc-2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = Cluster(api, None, None)
        wait_for(lambda: holders(c) == {"replicaset": "proc-2", "serviceaccount": "proc-2"},
                 what="leading")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0  # a bound, not a measurement
        assert set(holders(c).values()) == {None}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
