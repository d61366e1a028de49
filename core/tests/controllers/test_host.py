"""The controller host and QueueController against a real API server: hooks, leases (two
hosts never both run a controller), restarts with back-off, prompt shutdown, the initial
sweep that makes a restarted controller level-triggered, retries and requeues."""

from __future__ import annotations

import asyncio
import json

import pytest

from pilothouse.config import ConfigError, parse_config
from pilothouse.controllers import ControllerHost, QueueController, Settings, settings
from pilothouse.controllers.testing import ControllerHostThread
from pilothouse.hooks import hookimpl
from pilothouse.interfaces.controllers import Controller
from pilothouse.model import errors
from pilothouse.plugins import make_plugin_manager


class Recorder:
    """A broadcast plugin recording the controller hooks."""

    def __init__(self):
        self.started, self.reconciled = [], []

    @hookimpl
    def pilothouse_controller_started(self, name):
        self.started.append(name)

    @hookimpl
    def pilothouse_object_reconciled(self, controller, key, error):
        self.reconciled.append((controller, key, type(error).__name__ if error else None))


def _pm(recorder):
    pm = make_plugin_manager()
    pm.register(recorder)
    return pm


class Labeler(QueueController):
    """Labels every ConfigMap ``seen=<name of the controller host identity>``; fails the
    first reconcile of ConfigMaps named ``flaky-*``; asks to look again at ``later-*``."""

    def __init__(self):
        self.calls: list[str] = []
        self.failed: set[str] = set()

    def setup(self):
        self.cms = self.watch("v1", "ConfigMap", namespace="default")

    async def reconcile(self, key):
        self.calls.append(key)
        cm = self.cms.get(key)
        if cm is None:
            return None
        name = cm["metadata"]["name"]
        if name.startswith("flaky-") and name not in self.failed:
            self.failed.add(name)
            raise RuntimeError("first attempt fails")
        labels = cm["metadata"].get("labels") or {}
        if labels.get("seen") != self.context.identity:
            await self.client.resource("v1", "ConfigMap").patch(
                name, {"metadata": {"labels": {"seen": self.context.identity}}}, "default")
        if name.startswith("later-") and self.calls.count(key) < 3:
            return 0.05
        return None


class Crasher(Controller):
    def __init__(self, crashes):
        self.crashes, self.runs = crashes, 0

    async def run(self, context):
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"crash {self.runs}")
        await context.stop.wait()


def _cm(name, **labels):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": labels}}


def _get_cm(api, name):
    out = api.kubectl("get", "configmap", name, "-o", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def _seen(api, name):
    cm = _get_cm(api, name)
    return cm and (cm["metadata"].get("labels") or {}).get("seen")


def test_queue_controller_reconciles_retries_requeues_and_reports(start_apiserver):
    api = start_apiserver()
    rec, ctrl = Recorder(), Labeler()
    with ControllerHostThread(api.url, controllers={"labeler": ctrl}, pm=_pm(rec),
                              identity="host-a") as h:
        for name in ("plain", "flaky-1", "later-1"):
            h.run(h.client.resource("v1", "ConfigMap").create(_cm(name)))
        for name in ("plain", "flaky-1", "later-1"):
            h.wait_for(lambda: _seen(api, name) == "host-a", what=f"{name} labeled")
        h.wait_for(lambda: h.call(lambda: ctrl.calls.count("default/later-1")) >= 3,
                   what="requeued key looked at again")
        assert h.state("labeler").leader
    assert rec.started == ["labeler"]
    assert ("labeler", "default/flaky-1", "RuntimeError") in rec.reconciled
    assert ("labeler", "default/flaky-1", None) in rec.reconciled
    assert ("labeler", "default/plain", None) in rec.reconciled


def test_a_second_host_does_nothing_while_the_first_holds_the_lease(start_apiserver):
    api = start_apiserver()
    first, second = Labeler(), Labeler()
    a = ControllerHostThread(api.url, controllers={"labeler": first}, identity="host-a").start()
    try:
        a.wait_for(lambda: a.state("labeler").leader, what="host-a leading")
        b = ControllerHostThread(api.url, controllers={"labeler": second},
                                 identity="host-b").start()
        try:
            a.run(a.client.resource("v1", "ConfigMap").create(_cm("one")))
            a.wait_for(lambda: _seen(api, "one") == "host-a", what="host-a acted")
            assert not b.state("labeler").leader and b.state("labeler").starts == 0
            assert b.call(lambda: list(second.calls)) == []
            lease = json.loads(api.kubectl("get", "lease", "-n", "kube-system",
                                           "pilothouse-controller-labeler", "-o",
                                           "json").stdout)
            assert lease["spec"]["holderIdentity"] == "host-a"
            a.stop()  # graceful: the lease is released, host-b takes over at once
            b.wait_for(lambda: b.state("labeler").leader, what="host-b leading")
            # level-triggered: the new leader re-checks every object from the API alone
            b.wait_for(lambda: _seen(api, "one") == "host-b", what="host-b re-labeled")
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_crashed_host_is_replaced_after_its_lease_expires(start_apiserver):
    api = start_apiserver()
    a = ControllerHostThread(api.url, controllers={"labeler": Labeler()},
                             identity="host-a").start()
    a.wait_for(lambda: a.state("labeler").leader, what="host-a leading")
    a.crash()  # nothing released
    lease = json.loads(api.kubectl("get", "lease", "-n", "kube-system",
                                   "pilothouse-controller-labeler", "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] == "host-a"
    with ControllerHostThread(api.url, controllers={"labeler": Labeler()},
                              identity="host-b") as b:
        b.wait_for(lambda: b.state("labeler").leader, what="host-b leading after expiry")
        b.run(b.client.resource("v1", "ConfigMap").create(_cm("two")))
        b.wait_for(lambda: _seen(api, "two") == "host-b", what="host-b acted")


def test_a_crashing_controller_is_restarted_with_back_off(start_apiserver):
    api = start_apiserver()
    rec, ctrl = Recorder(), Crasher(crashes=3)
    with ControllerHostThread(api.url, controllers={"crasher": ctrl}, pm=_pm(rec),
                              settings={"restartBackoffSeconds": 0.01},
                              identity="host-a") as h:
        h.wait_for(lambda: h.state("crasher").running and h.state("crasher").starts == 4,
                   what="fourth start")
        st = h.state("crasher")
        assert st.crashes == 3 and st.last_error == "RuntimeError: crash 3" and st.leader
    assert rec.started == ["crasher"] * 4


def test_stop_returns_promptly_even_when_a_controller_ignores_stop(start_apiserver):
    class Stubborn(Controller):
        async def run(self, context):
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    raise

    api = start_apiserver()
    h = ControllerHostThread(api.url, controllers={"stubborn": Stubborn(), "ok": Labeler()},
                             settings={"leaderElect": False}).start()
    h.wait_for(lambda: h.state("stubborn").running and h.state("ok").running, what="running")
    h.run(h.host.stop(), timeout=5)  # bounded: the host cancels what does not return
    assert not h.state("stubborn").running
    h.stop()


def test_from_config_loads_enabled_controllers_with_options(fake_dist, start_apiserver):
    fake_dist("pilothouse-fake-ctrl", {"pilothouse.controllers": {"fake": "fakectrl:Fake"}},
              {"fakectrl.py": '''
import dataclasses
from pilothouse.controllers import QueueController

class Fake(QueueController):
    @dataclasses.dataclass
    class Options:
        greeting: str = "hello"
    def __init__(self, options):
        self.options = options
    async def reconcile(self, key):
        return None
'''})
    api = start_apiserver()
    cfg = parse_config({"controllers": {"enabled": ["fake"],
                                        "options": {"fake": {"greeting": "hi"}}},
                        "components": {"controller-manager": {"leaderElect": False}}})

    async def build():
        from pilothouse.client import Client
        async with Client(api.url) as client:
            return ControllerHost.from_config(cfg, client)
    host = asyncio.run(build())
    assert list(host.controllers) == ["fake"]
    assert host.controllers["fake"].options.greeting == "hi"
    assert host.settings.leaderElect is False
    with pytest.raises(ConfigError, match="'nope' is not installed"):
        ControllerHost.from_config(parse_config({"controllers": {"enabled": ["nope"]}}), None)


def test_settings_are_checked():
    assert settings(parse_config({})) == Settings()
    with pytest.raises(ConfigError, match="renewDeadline"):
        settings(parse_config({"components": {"controller-manager": {"renewDeadline": 20}}}))
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        settings(parse_config({"components": {"controller-manager": {"bogus": 1}}}))


def test_conflicts_are_retried(start_apiserver):
    class Conflicting(QueueController):
        def __init__(self):
            self.attempts = 0

        def initial_keys(self):
            return ["only"]

        async def reconcile(self, key):
            self.attempts += 1
            if self.attempts < 3:
                raise errors.Conflict("configmaps", "x")
            return None

    api = start_apiserver()
    rec, ctrl = Recorder(), Conflicting()
    with ControllerHostThread(api.url, controllers={"c": ctrl}, pm=_pm(rec),
                              settings={"leaderElect": False}) as h:
        h.wait_for(lambda: ("c", "only", None) in h.call(lambda: list(rec.reconciled)),
                   what="success after conflicts")
    assert [e for _, _, e in rec.reconciled][:3] == ["Conflict", "Conflict", None]


def test_a_restarted_queue_controller_does_not_stack_handlers(start_apiserver):
    from pilothouse.client import object_key

    class Restarting(QueueController):
        def __init__(self):
            self.runs, self.seen = 0, []

        def setup(self):
            self.cms = self.watch("v1", "ConfigMap", namespace="default",
                                  keys=lambda o: [object_key(o)])  # a new lambda each run

        async def run(self, context):
            self.runs += 1
            if self.runs == 1:  # the first run ends early: the host restarts it
                asyncio.get_running_loop().call_later(0.3, context.stop.set)
            await super().run(context)

        async def reconcile(self, key):
            self.seen.append(key)

    api = start_apiserver()
    ctrl = Restarting()
    with ControllerHostThread(api.url, controllers={"r": ctrl},
                              settings={"leaderElect": False}) as h:
        h.wait_for(lambda: h.state("r").starts == 2 and h.state("r").running,
                   what="second run")
        assert h.call(lambda: len(ctrl.cms.handlers)) == 1
        assert h.call(lambda: len(ctrl._key_funcs)) == 1
        h.run(h.client.resource("v1", "ConfigMap").create(_cm("after-restart")))
        h.wait_for(lambda: "default/after-restart" in h.call(lambda: list(ctrl.seen)),
                   what="reconciled")


def test_event_helper_records_a_core_v1_event(start_apiserver):
    class Announcer(QueueController):
        def setup(self):
            self.cms = self.watch("v1", "ConfigMap", namespace="default")

        async def reconcile(self, key):
            cm = self.cms.get(key)
            if cm is not None:
                self.event({**cm, "apiVersion": "v1", "kind": "ConfigMap"}, "Normal", "Seen",
                           f"saw {key}")

    api = start_apiserver()
    with ControllerHostThread(api.url, controllers={"announcer": Announcer()},
                              settings={"leaderElect": False}) as h:
        h.run(h.client.resource("v1", "ConfigMap").create(_cm("hello")))

        def recorded():
            events = h.run(h.client.resource("v1", "Event").list("default"))["items"]
            return [e for e in events if e["reason"] == "Seen"]
        [ev] = h.wait_for(recorded, what="event")
    assert ev["message"] == "saw default/hello" and ev["type"] == "Normal"
    assert ev["involvedObject"]["kind"] == "ConfigMap" and ev["involvedObject"]["name"] == "hello"
    assert ev["source"]["component"] == "announcer-controller"
