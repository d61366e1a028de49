"""``pilothouse scheduler`` (here through ``python -m pilothouse.scheduler``, which registers
the same command): a real process against a real API server, stopped by SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import yaml

from pilothouse.scheduler._cli import client_settings_from_kubeconfig
from pilothouse.scheduler.testing import SchedulerThread, node, pod

TOY = '''
from pilothouse.interfaces.scheduler import Status
class Bind:
    async def bind(self, state, pod, node, client):
        m = pod["metadata"]
        await client.resource("v1", "Pod").bind(m["name"], m["namespace"], node)
        return Status()
'''


def test_scheduler_command_binds_and_stops_on_sigterm(start_apiserver, fake_dist, tmp_path):
    site = fake_dist("pilothouse-clitoy", {"pilothouse.scheduler": {"CliBind": "clitoy:Bind"}},
                     {"clitoy.py": TOY})
    api = start_apiserver({"store": {"plugin": "memory"}, "scheduler": {"profiles": []}})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scheduler": {"profiles": [
        {"schedulerName": "default-scheduler", "plugins": [{"name": "CliBind"}]}]}}))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "pilothouse.scheduler", "--config",
                             str(config), "--kubeconfig", str(api.kubeconfig), "--leader-elect",
                             "--identity", "cli-test"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    helper = SchedulerThread(api.url, {"unused": []}).start()
    try:
        helper.create(node("n1"))
        helper.create(pod("p"))
        assert helper.wait_bound("p", timeout=30) == "n1"
        lease = helper.get("coordination.k8s.io/v1", "Lease", "pilothouse-scheduler",
                           "kube-system")
        assert lease["spec"]["holderIdentity"] == "cli-test"
    finally:
        helper.stop()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "serving profiles default-scheduler" in out


def test_bad_config_exits_1(tmp_path, start_apiserver):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scheduler": {"profiles": [
        {"schedulerName": "default-scheduler", "plugins": [{"name": "NoSuchPlugin"}]}]}}))
    api = start_apiserver({"store": {"plugin": "memory"}, "scheduler": {"profiles": []}})
    proc = subprocess.run([sys.executable, "-m", "pilothouse.scheduler", "--config",
                           str(config), "--server", api.url], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "NoSuchPlugin" in proc.stderr and "is not installed" in proc.stderr


def test_kubeconfig_current_context(tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "current-context": "b",
        "contexts": [{"name": "a", "context": {"cluster": "ca", "user": "ua"}},
                     {"name": "b", "context": {"cluster": "cb", "user": "ub"}}],
        "clusters": [{"name": "ca", "cluster": {"server": "http://a"}},
                     {"name": "cb", "cluster": {"server": "https://b:6443",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "ub", "user": {"token": "secret"}}]}))
    assert client_settings_from_kubeconfig(str(kc)) == {
        "url": "https://b:6443", "token": "secret", "ca_file": None, "insecure": True}
