"""In-memory doubles for the node agent's unit tests: a runtime whose containers exit when
the test says so, a clock the test moves, and the slice of the agent a pod worker uses."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import pathlib
import types

from pilothouse.interfaces import runtime as rt
from pilothouse.model.quantity import Quantity
from pilothouse.node._backoff import Backoff
from pilothouse.node._settings import Settings
from pilothouse.node._volumes import VolumeManager


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _match(labels, want) -> bool:
    return all(labels.get(k) == v for k, v in (want or {}).items())


class FakeRuntime(rt.Runtime):
    """Sandboxes and containers as dicts; nothing runs. ``exit(id, code)`` ends a
    container; ``exec_results`` maps a command's first word to its ExecResult."""

    features = frozenset({rt.Feature.IMAGES, rt.Feature.POD_NETWORK, rt.Feature.MOUNTS})

    def __init__(self, clock: Clock):
        self.clock = clock
        self.sandboxes: dict[str, dict] = {}
        self.containers: dict[str, dict] = {}
        self.images = {"busybox:1": "sha256:" + "1" * 64}
        self.calls: list[tuple] = []
        self.exec_results: dict[str, rt.ExecResult] = {}
        self.ids = itertools.count(1)
        self.fail_pull = False
        self.ignore_sigterm = False

    def _call(self, *args):
        self.calls.append(args)

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c[0] == method)

    async def open(self):
        pass

    async def close(self):
        pass

    async def version(self):
        return rt.RuntimeVersion("fake", "1.0", "pilothouse/0.1")

    # sandboxes
    async def run_pod_sandbox(self, config):
        self._call("run_pod_sandbox", config.metadata.attempt)
        for s in self.sandboxes.values():
            if s["config"].metadata == config.metadata:
                raise rt.AlreadyExists("sandbox", config.metadata.name, s["id"])
        n = next(self.ids)
        sid = f"sb{n}"
        self.sandboxes[sid] = {"id": sid, "config": config, "state": rt.PodSandboxState.READY,
                               "created": self.clock(), "ip": f"10.0.0.{n}"}
        return sid

    async def stop_pod_sandbox(self, sandbox_id):
        self._call("stop_pod_sandbox", sandbox_id)
        s = self.sandboxes.get(sandbox_id)
        if s is None:
            raise rt.NotFound("sandbox", sandbox_id)
        s["state"] = rt.PodSandboxState.NOTREADY
        for c in self.containers.values():
            if c["sandbox"] == sandbox_id and c["state"] is rt.ContainerState.RUNNING:
                self.exit(c["id"], 137)

    async def remove_pod_sandbox(self, sandbox_id):
        self._call("remove_pod_sandbox", sandbox_id)
        self.sandboxes.pop(sandbox_id, None)
        for cid in [c["id"] for c in self.containers.values() if c["sandbox"] == sandbox_id]:
            del self.containers[cid]

    def _sandbox(self, s) -> rt.PodSandbox:
        c = s["config"]
        return rt.PodSandbox(s["id"], c.metadata, s["state"], s["created"], dict(c.labels),
                             dict(c.annotations))

    async def pod_sandbox_status(self, sandbox_id):
        s = self.sandboxes.get(sandbox_id)
        if s is None:
            raise rt.NotFound("sandbox", sandbox_id)
        c = s["config"]
        ready = s["state"] is rt.PodSandboxState.READY
        return rt.PodSandboxStatus(s["id"], c.metadata, s["state"], s["created"],
                                   ip=s["ip"] if ready and not c.host_network else "",
                                   host_network=c.host_network, labels=dict(c.labels))

    async def list_pod_sandboxes(self, *, id=None, state=None, labels=None):
        return [self._sandbox(s) for s in self.sandboxes.values()
                if (id is None or s["id"] == id) and (state is None or s["state"] is state)
                and _match(s["config"].labels, labels)]

    # containers
    async def create_container(self, sandbox_id, config, sandbox_config):
        self._call("create_container", config.metadata.name, config.metadata.attempt)
        if config.image not in self.images:
            raise rt.ImageNotFound(config.image)
        s = self.sandboxes.get(sandbox_id)
        if s is None:
            raise rt.NotFound("sandbox", sandbox_id)
        if s["state"] is not rt.PodSandboxState.READY:
            raise rt.InvalidArgument("sandbox not ready")
        for c in self.containers.values():
            if c["sandbox"] == sandbox_id and c["config"].metadata == config.metadata:
                raise rt.AlreadyExists("container", config.metadata.name, c["id"])
        cid = f"c{next(self.ids)}"
        self.containers[cid] = {"id": cid, "sandbox": sandbox_id, "config": config,
                                "state": rt.ContainerState.CREATED, "created": self.clock(),
                                "started": None, "finished": None, "exit": 0,
                                "log": f"{sandbox_config.log_directory}/{config.log_path}"}
        return cid

    async def start_container(self, container_id):
        self._call("start_container", container_id)
        c = self.containers[container_id]
        c["state"], c["started"] = rt.ContainerState.RUNNING, self.clock()

    async def stop_container(self, container_id, timeout):
        self._call("stop_container", container_id, timeout)
        c = self.containers.get(container_id)
        if c is None:
            raise rt.NotFound("container", container_id)
        if self.ignore_sigterm and timeout > 0:  # like a process that ignores SIGTERM
            deadline = asyncio.get_running_loop().time() + timeout
            while c["state"] is rt.ContainerState.RUNNING and \
                    asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        if c["state"] is rt.ContainerState.RUNNING:
            self.exit(container_id, 137)

    async def remove_container(self, container_id):
        self._call("remove_container", container_id)
        self.containers.pop(container_id, None)

    def exit(self, container_id: str, code: int) -> None:
        c = self.containers[container_id]
        c["state"], c["exit"], c["finished"] = rt.ContainerState.EXITED, code, self.clock()

    def _status(self, c) -> rt.ContainerStatus:
        cfg = c["config"]
        exited = c["state"] is rt.ContainerState.EXITED
        return rt.ContainerStatus(
            id=c["id"], sandbox_id=c["sandbox"], metadata=cfg.metadata, state=c["state"],
            image=cfg.image, image_id=self.images.get(cfg.image, ""), created_at=c["created"],
            started_at=c["started"], finished_at=c["finished"], exit_code=c["exit"],
            reason=("Completed" if c["exit"] == 0 else "Error") if exited else "",
            log_path=c["log"], labels=dict(cfg.labels), annotations=dict(cfg.annotations))

    async def container_status(self, container_id):
        c = self.containers.get(container_id)
        if c is None:
            raise rt.NotFound("container", container_id)
        return self._status(c)

    async def list_containers(self, *, id=None, sandbox_id=None, state=None, labels=None):
        out = []
        for c in self.containers.values():
            if (id is None or c["id"] == id) and (sandbox_id is None or
                                                  c["sandbox"] == sandbox_id) \
                    and (state is None or c["state"] is state) and \
                    _match(c["config"].labels, labels):
                st = self._status(c)
                out.append(rt.Container(st.id, st.sandbox_id, st.metadata, st.image,
                                        st.image_id, st.state, st.created_at, st.labels,
                                        st.annotations))
        return out

    def latest(self, name: str) -> dict | None:
        found = [c for c in self.containers.values() if c["config"].metadata.name == name]
        found.sort(key=lambda c: c["config"].metadata.attempt)
        return found[-1] if found else None

    def config(self, name: str) -> rt.ContainerConfig:
        return self.latest(name)["config"]

    async def exec_sync(self, container_id, cmd, timeout=0):
        self._call("exec_sync", container_id, tuple(cmd))
        return self.exec_results.get(cmd[0], rt.ExecResult(0, b"", b""))

    # images
    async def list_images(self):
        return [rt.Image(i, (r,)) for r, i in self.images.items()]

    async def image_status(self, ref):
        return rt.Image(self.images[ref], (ref,)) if ref in self.images else None

    async def pull_image(self, ref, *, sandbox_config=None):
        self._call("pull_image", ref)
        if ref in self.images and not self.fail_pull:
            return self.images[ref]
        raise rt.ImagePullError(f"failed to resolve reference {ref!r}: no registry")

    async def remove_image(self, ref):
        self.images.pop(ref, None)

    async def import_image(self, path, progress=None):
        raise rt.Unsupported("no")


@dataclasses.dataclass
class Deleted:
    name: str
    namespace: str
    grace: int | None
    preconditions: dict | None


class _Pods:
    def __init__(self):
        self.deleted: list[Deleted] = []

    async def delete(self, name, namespace=None, *, grace_period_seconds=None,
                     preconditions=None, propagation_policy=None):
        self.deleted.append(Deleted(name, namespace, grace_period_seconds, preconditions))
        return {}


class _Status:
    """Records the statuses a worker sets (what the status manager would write)."""

    def __init__(self):
        self.latest: dict[str, dict] = {}
        self.writes = 0

    def seed(self, uid, pod):
        pass

    def set(self, uid, pod, status):
        if self.latest.get(uid) != status:
            self.writes += 1
        self.latest[uid] = status

    async def flush(self, uid, timeout=30.0):
        pass

    def forget(self, uid):
        pass


class _Events:
    def __init__(self):
        self.items: list[tuple] = []

    def event(self, obj, type_, reason, message, field_path=""):
        self.items.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.items]


class FakeAgent:
    """What a :class:`~pilothouse.node._worker.PodWorker` uses of its agent."""

    def __init__(self, runtime: FakeRuntime, clock: Clock, tmp_path: pathlib.Path):
        self.runtime, self.clock = runtime, clock
        self.settings = Settings(dataDir=str(tmp_path), syncFrequency=10.0)
        self.node_name, self.node_ip, self.runtime_name = "node-1", "192.0.2.10", "fake"
        self.runtime_ready = True
        self.network = None
        self.http = None
        self.status = _Status()
        self.events = _Events()
        self.pods = _Pods()
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.volumes = VolumeManager(tmp_path, self.lookup, service_account_volume=False)
        self.restart_backoff = Backoff(clock=clock)
        self.pull_backoff = Backoff(clock=clock)
        self.allocatable = {"cpu": Quantity("4"), "memory": Quantity("8Gi")}
        self.machine = types.SimpleNamespace(memory=8 << 30)
        self.hooks: list[tuple[str, dict]] = []
        self.tmp = tmp_path

    async def lookup(self, kind, namespace, name):
        return self.objects.get((kind, namespace, name))

    async def image_ref(self, ref):
        return ref

    def log_dir(self, pod):
        m = pod["metadata"]
        return self.tmp / "logs" / f"{m['namespace']}_{m['name']}_{m['uid']}"

    def hook(self, name, **kwargs):
        self.hooks.append((name, kwargs))

    def worker_finished(self, worker):
        pass


def make_pod(name="p", *, uid="uid-1", containers=None, init=None, restart="Always",
             **spec) -> dict:
    """A defaulted pod bound to ``node-1``."""
    from pilothouse.model.defaults import apply_defaults
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "uid": uid},
           "spec": {"nodeName": "node-1", "restartPolicy": restart,
                    "containers": containers or [{"name": "c", "image": "busybox:1"}],
                    **({"initContainers": init} if init else {}), **spec},
           "status": {"phase": "Pending"}}
    apply_defaults("Pod", pod)
    return pod


def _no_services(pod):
    return {}


FakeAgent.service_env = staticmethod(_no_services)
FakeAgent.admit = staticmethod(lambda pod: None)
