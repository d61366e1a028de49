"""The pod worker's state machine against a fake runtime and a fake clock: what it starts,
when it restarts (restart policies and the back-off, computed, never waited for), what it
reports, how it terminates and adopts. Each test drives ``worker.sync()`` by hand."""

import asyncio
import copy

import pytest

from pilothouse.interfaces import runtime as rt
from pilothouse.node._worker import PodWorker

from node_fakes import Clock, FakeAgent, FakeRuntime, make_pod


class Harness:
    def __init__(self, tmp_path, pod):
        self.clock = Clock()
        self.runtime = FakeRuntime(self.clock)
        self.agent = FakeAgent(self.runtime, self.clock, tmp_path)
        self.pod = pod
        self.worker = PodWorker(self.agent, pod["metadata"]["uid"], copy.deepcopy(pod))

    async def sync(self):
        """One sync; the status the worker reported becomes the pod's (as after a
        write through pods/status). Returns the worker's requested wake-up delay."""
        wake = await self.worker.sync()
        status = self.agent.status.latest.get(self.worker.uid)
        if status is not None and self.worker.pod is not None:
            self.worker.pod = dict(self.worker.pod, status=status)
        return wake

    @property
    def status(self) -> dict:
        return self.agent.status.latest[self.worker.uid]

    def cstatus(self, name="c", init=False) -> dict:
        key = "initContainerStatuses" if init else "containerStatuses"
        return next(s for s in self.status[key] if s["name"] == name)

    def condition(self, type_) -> dict:
        return next(c for c in self.status["conditions"] if c["type"] == type_)

    def latest(self, name="c") -> dict:
        return self.runtime.latest(name)

    def exit(self, name="c", code=1):
        self.runtime.exit(self.latest(name)["id"], code)

    async def close(self):
        await self.worker.stop()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(pod):
        h = Harness(tmp_path, pod)
        made.append(h)
        return h
    return make


def test_new_pod_gets_sandbox_and_running_container(harness):
    async def scenario():
        h = harness(make_pod())
        assert await h.sync() is None
        assert h.runtime.count("run_pod_sandbox") == 1
        assert h.runtime.count("create_container") == 1
        c = h.latest()
        assert c["state"] is rt.ContainerState.RUNNING
        cfg = c["config"]
        assert cfg.metadata.attempt == 0 and cfg.log_path == "c/0.log"
        assert cfg.labels["io.kubernetes.pod.uid"] == "uid-1"
        assert cfg.labels["io.kubernetes.container.name"] == "c"
        s = h.status
        assert s["phase"] == "Running"
        assert s["podIP"].startswith("10.0.0.") and s["hostIP"] == "192.0.2.10"
        assert s["qosClass"] == "BestEffort"
        cs = h.cstatus()
        assert cs["state"]["running"]["startedAt"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert cs["containerID"] == f"fake://{c['id']}"
        assert cs["imageID"] == "sha256:" + "1" * 64
        assert [c["type"] for c in s["conditions"]] == [
            "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
            "PodScheduled"]
        assert all(c["status"] == "True" for c in s["conditions"])
        names = [n for n, _ in h.agent.hooks]
        assert "pilothouse_container_started" in names
        assert {"Pulled", "Created", "Started"} <= set(h.agent.events.reasons())
        # a second sync changes nothing
        writes = h.agent.status.writes
        await h.sync()
        assert h.runtime.count("create_container") == 1
        assert h.agent.status.writes == writes
        await h.close()
    run(scenario())


def test_crash_loop_back_off_doubles_to_five_minutes(harness):
    async def scenario():
        h = harness(make_pod())
        await h.sync()
        h.clock.advance(1)
        h.exit(code=1)
        await h.sync()  # first failure: restarted at once
        assert h.latest()["config"].metadata.attempt == 1
        assert h.cstatus()["restartCount"] == 1
        assert h.cstatus()["lastState"]["terminated"]["exitCode"] == 1
        assert h.cstatus()["lastState"]["terminated"]["reason"] == "Error"
        assert any(n == "pilothouse_container_exited" and kw["exit_code"] == 1
                   for n, kw in h.agent.hooks)
        waits = []
        for attempt in range(2, 10):
            h.clock.advance(1)
            h.exit(code=1)
            wake = await h.sync()
            cs = h.cstatus()
            assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            assert cs["lastState"]["terminated"]["exitCode"] == 1
            assert cs["restartCount"] == attempt - 1
            assert h.status["phase"] == "Running"
            assert h.condition("Ready")["status"] == "False"
            waits.append(round(wake))
            assert f"back-off {round(wake)}s restarting failed container=c" in \
                cs["state"]["waiting"]["message"]
            # nothing happens before the back-off ends...
            h.clock.advance(wake - 0.5)
            await h.sync()
            assert h.latest()["config"].metadata.attempt == attempt - 1
            # ...and the container is restarted once it has
            h.clock.advance(0.5)
            assert await h.sync() is None
            assert h.latest()["config"].metadata.attempt == attempt
            assert h.cstatus()["state"]["running"]
        assert waits == [10, 20, 40, 80, 160, 300, 300, 300]
        assert "BackOff" in h.agent.events.reasons()
        await h.close()
    run(scenario())


def test_back_off_starts_over_after_ten_minutes_of_running(harness):
    async def scenario():
        h = harness(make_pod())
        await h.sync()
        for _ in range(3):  # build up a back-off of 40 s
            h.exit(code=1)
            wake = await h.sync()
            if wake:
                h.clock.advance(wake)
                await h.sync()
        assert h.agent.restart_backoff.delay(("uid-1", "c")) == 40
        h.clock.advance(601)  # runs for more than ten minutes
        h.exit(code=1)
        assert await h.sync() is None  # restarted at once
        h.exit(code=1)
        assert round(await h.sync()) == 10
        await h.close()
    run(scenario())


@pytest.mark.parametrize("policy,code,phase,restarted", [
    ("Always", 0, "Running", True),
    ("OnFailure", 0, "Succeeded", False),
    ("OnFailure", 2, "Running", True),
    ("Never", 0, "Succeeded", False),
    ("Never", 2, "Failed", False),
])
def test_restart_policies(harness, policy, code, phase, restarted):
    async def scenario():
        h = harness(make_pod(restart=policy))
        await h.sync()
        h.exit(code=code)
        await h.sync()
        assert h.status["phase"] == phase
        assert (h.latest()["config"].metadata.attempt == 1) is restarted
        if not restarted:
            term = h.cstatus()["state"]["terminated"]
            assert term["exitCode"] == code
            assert term["reason"] == ("Completed" if code == 0 else "Error")
            assert h.condition("Ready")["status"] == "False"
            assert h.condition("Ready")["reason"] == "PodCompleted"
            # a finished pod's sandbox is stopped, and its IP still reported
            assert h.runtime.count("stop_pod_sandbox") == 1
            assert h.status["podIP"].startswith("10.0.0.")
            await h.sync()
            assert h.runtime.count("run_pod_sandbox") == 1
        await h.close()
    run(scenario())


def test_init_containers_run_in_order_before_containers(harness):
    async def scenario():
        pod = make_pod(init=[{"name": "i1", "image": "busybox:1"},
                             {"name": "i2", "image": "busybox:1"}])
        h = harness(pod)
        await h.sync()
        assert h.latest("i1")["state"] is rt.ContainerState.RUNNING
        assert h.latest("i2") is None and h.latest("c") is None
        assert h.status["phase"] == "Pending"
        init = h.condition("Initialized")
        assert init["status"] == "False" and init["reason"] == "ContainersNotInitialized"
        assert init["message"] == "containers with incomplete status: [i1 i2]"
        assert h.cstatus()["state"]["waiting"]["reason"] == "PodInitializing"
        h.exit("i1", 0)
        await h.sync()
        assert h.latest("i2")["state"] is rt.ContainerState.RUNNING and h.latest("c") is None
        h.exit("i2", 0)
        await h.sync()
        assert h.latest("c")["state"] is rt.ContainerState.RUNNING
        assert h.status["phase"] == "Running"
        assert h.condition("Initialized")["status"] == "True"
        assert h.cstatus("i2", init=True)["state"]["terminated"]["reason"] == "Completed"
        await h.close()
    run(scenario())


def test_failed_init_container_fails_a_never_pod_and_backs_off_otherwise(harness):
    async def scenario():
        h = harness(make_pod(init=[{"name": "i1", "image": "busybox:1"}], restart="Never"))
        await h.sync()
        h.exit("i1", 3)
        await h.sync()
        assert h.status["phase"] == "Failed"
        assert h.latest("c") is None

        h2 = harness(make_pod(uid="uid-2", init=[{"name": "i1", "image": "busybox:1"}]))
        await h2.sync()
        h2.exit("i1", 3)
        await h2.sync()  # first failure: restarted at once
        assert h2.latest("i1")["config"].metadata.attempt == 1
        h2.exit("i1", 3)
        wake = await h2.sync()
        assert round(wake) == 10
        assert h2.cstatus("i1", init=True)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert h2.status["phase"] == "Pending"
        await h.close()
        await h2.close()
    run(scenario())


def test_image_pull_policies(harness):
    async def scenario():
        never = harness(make_pod(containers=[{"name": "c", "image": "missing:1",
                                              "imagePullPolicy": "Never"}]))
        await never.sync()
        w = never.cstatus()["state"]["waiting"]
        assert w["reason"] == "ErrImageNeverPull"
        assert w["message"] == 'Container image "missing:1" is not present with pull policy ' \
                               'of Never'
        assert never.runtime.count("pull_image") == 0

        h = harness(make_pod(uid="uid-2", containers=[{"name": "c", "image": "missing:1"}]))
        await h.sync()
        assert h.cstatus()["state"]["waiting"]["reason"] == "ErrImagePull"
        assert h.status["phase"] == "Pending"
        wake = await h.sync()
        assert h.cstatus()["state"]["waiting"]["reason"] == "ImagePullBackOff"
        assert h.cstatus()["state"]["waiting"]["message"] == 'Back-off pulling image "missing:1"'
        assert round(wake) == 10 and h.runtime.count("pull_image") == 1
        h.clock.advance(10)
        wake = await h.sync()  # tries again, fails again, waits twice as long
        assert h.runtime.count("pull_image") == 2
        assert h.cstatus()["state"]["waiting"]["reason"] == "ErrImagePull"
        assert round(wake) == 20
        h.runtime.images["missing:1"] = "sha256:" + "2" * 64  # imported meanwhile
        h.clock.advance(20)
        await h.sync()
        assert h.cstatus()["state"]["running"]

        always = harness(make_pod(uid="uid-3", containers=[
            {"name": "c", "image": "busybox:1", "imagePullPolicy": "Always"}]))
        await always.sync()
        assert always.runtime.count("pull_image") == 1
        assert always.cstatus()["state"]["running"]
        present = harness(make_pod(uid="uid-4"))
        await present.sync()
        assert present.runtime.count("pull_image") == 0
        for x in (never, h, always, present):
            await x.close()
    run(scenario())


def test_liveness_failure_kills_and_restarts(harness):
    async def scenario():
        pod = make_pod(containers=[{"name": "c", "image": "busybox:1",
                                    "livenessProbe": {"exec": {"command": ["check"]},
                                                      "periodSeconds": 60,
                                                      "initialDelaySeconds": 3600}}],
                       terminationGracePeriodSeconds=7)
        h = harness(pod)
        await h.sync()
        first = h.latest()["id"]
        prober = h.worker.probers[first]
        prober.kill_reason = "Container c failed liveness probe, will be restarted"
        wake = await h.sync()
        assert ("stop_container", first, 7) in h.runtime.calls
        assert wake == 0.0
        assert "Killing" in h.agent.events.reasons()
        await h.sync()  # the exit is seen: restarted (the first restart is immediate)
        assert h.latest()["config"].metadata.attempt == 1
        assert h.cstatus()["restartCount"] == 1
        assert h.cstatus()["lastState"]["terminated"]["exitCode"] == 137
        await h.close()
    run(scenario())


def test_readiness_gates_the_ready_condition(harness):
    async def scenario():
        pod = make_pod(containers=[{"name": "c", "image": "busybox:1",
                                    "readinessProbe": {"exec": {"command": ["check"]},
                                                       "initialDelaySeconds": 3600}}])
        h = harness(pod)
        await h.sync()
        prober = h.worker.probers[h.latest()["id"]]
        assert h.cstatus()["ready"] is False and h.cstatus()["started"] is True
        assert h.condition("Ready")["status"] == "False"
        assert h.condition("Ready")["message"] == "containers with unready status: [c]"
        assert h.condition("ContainersReady")["reason"] == "ContainersNotReady"
        prober.ready = True
        await h.sync()
        assert h.cstatus()["ready"] is True
        assert h.condition("Ready")["status"] == "True"
        await h.close()
    run(scenario())


def test_readiness_gate_conditions_are_respected(harness):
    async def scenario():
        pod = make_pod(readinessGates=[{"conditionType": "example.com/lb"}])
        h = harness(pod)
        await h.sync()
        ready = h.condition("Ready")
        assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
        assert h.condition("ContainersReady")["status"] == "True"
        h.worker.pod["status"]["conditions"].append(
            {"type": "example.com/lb", "status": "True"})
        await h.sync()
        assert h.condition("Ready")["status"] == "True"
        assert any(c["type"] == "example.com/lb" for c in h.status["conditions"])
        await h.close()
    run(scenario())


def test_graceful_deletion_stops_then_deletes_with_grace_zero(harness, tmp_path):
    async def scenario():
        pod = make_pod(containers=[{"name": "c", "image": "busybox:1",
                                    "lifecycle": {"preStop": {"exec": {"command": ["bye"]}}}}])
        h = harness(pod)
        await h.sync()
        cid = h.latest()["id"]
        h.worker.pod["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
        h.worker.pod["metadata"]["deletionGracePeriodSeconds"] = 12
        await h.sync()
        calls = [c for c in h.runtime.calls if c[0] in ("exec_sync", "stop_container",
                                                        "stop_pod_sandbox")]
        assert calls[0] == ("exec_sync", cid, ("bye",))  # preStop first
        assert calls[1][:2] == ("stop_container", cid) and 11 <= calls[1][2] <= 12
        assert calls[2][0] == "stop_pod_sandbox"
        assert h.status["phase"] == "Failed"  # killed: exit 137
        assert h.cstatus()["state"]["terminated"]["exitCode"] == 137
        [deleted] = h.agent.pods.deleted
        assert (deleted.name, deleted.grace, deleted.preconditions) == \
            ("p", 0, {"uid": "uid-1"})
        # the pod is gone from the API: everything of it is removed from the node
        h.worker.update(None)
        await h.sync()
        assert h.worker.finished
        assert not h.runtime.sandboxes and not h.runtime.containers
        await h.close()
    run(scenario())


def test_a_restarted_worker_adopts_running_containers(harness):
    async def scenario():
        h = harness(make_pod())
        await h.sync()
        h.exit(code=1)
        await h.sync()
        running = h.latest()
        assert running["config"].metadata.attempt == 1
        reported = copy.deepcopy(h.status)
        creates = h.runtime.count("create_container")
        await h.close()
        # a new agent: a new worker over the same runtime, the pod as the API has it
        pod = dict(h.worker.pod, status=reported)
        again = PodWorker(h.agent, "uid-1", copy.deepcopy(pod))
        h.worker = again
        writes = h.agent.status.writes
        await h.sync()
        assert h.runtime.count("create_container") == creates
        assert h.runtime.count("run_pod_sandbox") == 1
        assert h.latest()["id"] == running["id"]
        assert h.cstatus()["restartCount"] == 1
        assert h.cstatus()["containerID"] == reported["containerStatuses"][0]["containerID"]
        assert h.agent.status.latest["uid-1"] == reported
        assert h.agent.status.writes == writes  # nothing changed, nothing written
        await again.stop()
    run(scenario())


def test_dead_sandbox_is_replaced_unless_the_pod_never_restarts(harness):
    async def scenario():
        h = harness(make_pod())
        await h.sync()
        [sb] = h.runtime.sandboxes
        await h.runtime.stop_pod_sandbox(sb)
        await h.sync()
        assert h.runtime.count("run_pod_sandbox") == 2
        assert h.latest()["config"].metadata.attempt == 1
        assert h.status["phase"] == "Running"

        n = harness(make_pod(uid="uid-2", restart="Never"))
        await n.sync()
        [sb] = n.runtime.sandboxes
        await n.runtime.stop_pod_sandbox(sb)
        await n.sync()
        assert n.runtime.count("run_pod_sandbox") == 1
        assert n.status["phase"] == "Failed"
        await h.close()
        await n.close()
    run(scenario())


def test_missing_config_map_is_a_config_error_until_it_exists(harness):
    async def scenario():
        pod = make_pod(containers=[{"name": "c", "image": "busybox:1", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}])
        h = harness(pod)
        wake = await h.sync()
        w = h.cstatus()["state"]["waiting"]
        assert w["reason"] == "CreateContainerConfigError"
        assert w["message"] == 'configmap "cm" not found'
        assert wake == 2.0
        h.agent.objects[("ConfigMap", "default", "cm")] = {"data": {"k": "v"}}
        h.clock.advance(2)
        await h.sync()
        assert h.cstatus()["state"]["running"]
        assert ("X", "v") in h.runtime.config("c").env
        await h.close()
    run(scenario())


def test_resources_become_cgroup_settings(harness):
    async def scenario():
        pod = make_pod(containers=[{"name": "c", "image": "busybox:1", "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "128Mi"}}}])
        h = harness(pod)
        await h.sync()
        r = h.runtime.config("c").resources
        assert (r.cpu_shares, r.cpu_quota, r.cpu_period) == (256, 50000, 100000)
        assert r.memory_limit_bytes == 128 * 1024 * 1024
        assert 2 <= r.oom_score_adj <= 999
        assert h.status["qosClass"] == "Burstable"
        g = harness(make_pod(uid="uid-2", containers=[{"name": "c", "image": "busybox:1",
                                                       "resources": {"limits": {
                                                           "cpu": "1", "memory": "1Gi"}}}]))
        await g.sync()
        r = g.runtime.config("c").resources
        assert (r.cpu_shares, r.cpu_quota, r.oom_score_adj) == (1024, 100000, -997)
        assert g.status["qosClass"] == "Guaranteed"
        await h.close()
        await g.close()
    run(scenario())


def test_forced_deletion_cuts_the_grace_period_short(harness):
    async def scenario():
        h = harness(make_pod(terminationGracePeriodSeconds=3600))
        await h.sync()
        cid = h.latest()["id"]
        h.runtime.ignore_sigterm = True
        pod = copy.deepcopy(h.worker.pod)
        pod["metadata"].update(deletionTimestamp="2030-01-01T00:00:00Z",
                               deletionGracePeriodSeconds=3600)
        h.worker.update(pod)
        terminating = asyncio.create_task(h.worker.sync())
        await asyncio.sleep(0.05)
        assert not terminating.done()  # waiting out the grace period
        h.worker.update(None)  # kubectl delete --force --grace-period=0
        await asyncio.wait_for(terminating, 5)
        assert ("stop_container", cid, 0) in h.runtime.calls
        await h.sync()
        assert h.worker.finished and not h.runtime.containers
        await h.close()
    run(scenario())


def test_a_rejected_pod_fails_without_running(harness):
    async def scenario():
        h = harness(make_pod())
        h.agent.admit = lambda pod: ("OutOfcpu", "Pod was rejected: Node didn't have enough "
                                                 "resource: cpu, requested: 9000, used: 0, "
                                                 "capacity: 2000")
        await h.sync()
        assert h.status["phase"] == "Failed" and h.status["reason"] == "OutOfcpu"
        assert h.runtime.count("run_pod_sandbox") == 0
        await h.sync()
        assert h.runtime.count("run_pod_sandbox") == 0
        await h.close()
    run(scenario())
