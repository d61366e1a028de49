"""One pod worker per pod: a level-triggered loop that compares the pod's spec with what
the runtime shows and acts (sandbox, init containers in order, containers, restarts with
back-off, probes, graceful termination), then reports the pod's status.

A worker wakes up when its pod changes in the API, when the agent's relist sees one of its
containers change, when a probe outcome changes, when a back-off it waits for expires, and
at least every ``syncFrequency`` seconds. Every sync starts from the runtime's state
(containers carry labels with the pod UID and their name, and their restart attempt), so a
restarted agent adopts running containers instead of restarting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from pilothouse.interfaces import runtime as rt
from pilothouse.model import errors
from pilothouse.model.meta import now_rfc3339
from pilothouse.node import _podspec as ps
from pilothouse.node._env import ConfigError, expand, resolve_env
from pilothouse.node._logs import parse_record
from pilothouse.node._probes import ContainerProber, run_handler
from pilothouse.node._status import (AGENT_CONDITIONS, ContainerView, container_status,
                                     is_sidecar, pod_status, should_restart)
from pilothouse.node._volumes import VolumeError

if TYPE_CHECKING:
    from pilothouse.node._agent import NodeAgent

__all__ = ["Observation", "PodWorker"]

log = logging.getLogger("pilothouse.node.worker")

#: Seconds before retrying a pod whose volumes or container config are not ready.
CONFIG_RETRY = 2.0
#: The shortest stop timeout after a preStop hook used up the grace period (the kubelet's).
MIN_GRACE = 2.0
_TERMINATION_MESSAGE_MAX = 4096
_FALLBACK_LINES, _FALLBACK_BYTES = 80, 2048


def _order(items):
    return sorted(items, key=lambda x: (x.metadata.attempt, x.created_at), reverse=True)


@dataclasses.dataclass
class Observation:
    """The runtime's view of one pod: its sandboxes and containers, newest first."""

    sandboxes: list[rt.PodSandbox]
    containers: dict[str, list[rt.ContainerStatus]]

    @property
    def current(self) -> rt.PodSandbox | None:
        """The newest READY sandbox."""
        for s in self.sandboxes:
            if s.state is rt.PodSandboxState.READY:
                return s
        return None

    def instances(self, name: str, sandbox_id: str | None = None) -> list[rt.ContainerStatus]:
        found = self.containers.get(name, [])
        return [c for c in found if sandbox_id is None or c.sandbox_id == sandbox_id]

    def latest(self, name: str, sandbox_id: str | None = None) -> rt.ContainerStatus | None:
        found = self.instances(name, sandbox_id)
        return found[0] if found else None

    def all(self) -> list[rt.ContainerStatus]:
        return [c for cs in self.containers.values() for c in cs]


def _spec_containers(pod: dict) -> tuple[list[dict], list[dict]]:
    spec = pod.get("spec") or {}
    return list(spec.get("initContainers") or []), list(spec.get("containers") or [])


def _running(c: rt.ContainerStatus | None) -> bool:
    return c is not None and c.state is rt.ContainerState.RUNNING


def _exited(c: rt.ContainerStatus | None) -> bool:
    return c is not None and c.state in (rt.ContainerState.EXITED, rt.ContainerState.UNKNOWN)


def _sync_key(pod: dict) -> tuple:
    """What of a pod, when changed, needs a sync: its metadata (but its resourceVersion
    and managedFields), its spec, and the conditions the agent does not own."""
    meta = {k: v for k, v in (pod.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields")}
    others = [c for c in (pod.get("status") or {}).get("conditions") or []
              if c.get("type") not in AGENT_CONDITIONS]
    return meta, pod.get("spec"), others


def _shorter_grace(old: dict, new: dict) -> bool:
    """True when a deletion's grace period was shortened (``kubectl delete --force``)."""
    before = (old.get("metadata") or {}).get("deletionGracePeriodSeconds")
    after = (new.get("metadata") or {}).get("deletionGracePeriodSeconds")
    return after is not None and (before is None and (old.get("metadata") or {}).get(
        "deletionTimestamp") is not None or before is not None and after < before)


def _field_path(kind: str, name: str) -> str:
    return f"spec.{'initContainers' if kind == 'init' else 'containers'}{{{name}}}"


class PodWorker:
    """Drives one pod (by UID) through the runtime. See the module docstring."""

    def __init__(self, agent: "NodeAgent", uid: str, pod: dict | None):
        self.agent, self.uid = agent, uid
        self.pod = pod
        self.last_pod = pod
        self.finished = False
        self.terminated = False
        self.admitted = False
        self.waiting: dict[str, tuple[str, str]] = {}
        self.probers: dict[str, ContainerProber] = {}
        self.seen_exited: set[str] = set()
        self.first_sync = True
        self.volume_paths: dict[str, str] | None = None
        self.volumes_synced_at = 0.0
        self.sandbox_ips: dict[str, tuple[str, ...]] = {}
        self.retry_at: dict[str, float] = {}
        self._retry_steps: dict[str, int] = {}
        self.messages: dict[str, str] = {}
        self.killed: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._errors = 0
        if pod is not None:
            agent.status.seed(uid, pod)

    # -- plumbing -------------------------------------------------------------------------

    @property
    def runtime(self) -> rt.Runtime:
        return self.agent.runtime

    def clock(self) -> float:
        return self.agent.clock()

    def name(self) -> str:
        m = (self.last_pod or {}).get("metadata") or {}
        return f"{m.get('namespace', '?')}/{m.get('name', self.uid)}"

    def update(self, pod: dict | None) -> None:
        """The pod changed in the API (None: it is gone). A change of its status alone
        (most often the agent's own write) needs no sync, unless a condition that
        another writer owns changed (readiness gates)."""
        old, self.pod = self.pod, pod
        if pod is not None:
            self.last_pod = pod
        if pod is None or old is None or _sync_key(old) != _sync_key(pod):
            self.notify()
        if old is not None and (pod is None or _shorter_grace(old, pod)):
            self._hurry.set()  # a forced or shortened deletion: stop what is stopping now

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"pod {self.name()}")

    async def stop(self) -> None:
        """Stop the worker (not the pod: its containers keep running)."""
        for prober in self.probers.values():
            prober.cancel()
        self.probers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        wake: float | None = 0.0
        while not self.finished:
            timeout = self.agent.settings.syncFrequency if wake is None else \
                min(max(wake, 0.0), self.agent.settings.syncFrequency)
            if timeout > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                wake = await self.sync()
                self._errors = 0
            except asyncio.CancelledError:
                raise
            except rt.Unavailable as exc:
                log.warning("pod %s: runtime unavailable: %s", self.name(), exc)
                wake = min(30.0, 1.0 * 2 ** self._errors)
                self._errors += 1
            except Exception:
                log.exception("pod %s: sync failed", self.name())
                wake = min(30.0, 1.0 * 2 ** self._errors)
                self._errors += 1
        self.agent.worker_finished(self)

    # -- observing --------------------------------------------------------------------------

    async def observe(self) -> Observation:
        labels = {ps.POD_UID: self.uid}
        sandboxes = _order(await self.runtime.list_pod_sandboxes(labels=labels))
        listed = await self.runtime.list_containers(labels=labels)
        statuses = []
        for c in listed:
            try:
                statuses.append(await self.runtime.container_status(c.id))
            except rt.NotFound:
                continue
        by_name: dict[str, list[rt.ContainerStatus]] = {}
        for st in statuses:
            by_name.setdefault(st.labels.get(ps.CONTAINER_NAME) or st.metadata.name, []
                               ).append(st)
        return Observation(sandboxes, {k: _order(v) for k, v in by_name.items()})

    # -- the sync ---------------------------------------------------------------------------

    async def sync(self) -> float | None:
        """One level-triggered pass. Returns seconds until the worker wants to run again
        (None: only on events and the periodic resync)."""
        pod = self.pod
        if pod is None:
            await self.cleanup()
            self.finished = True
            return None
        obs = await self.observe()
        if self.first_sync:
            self._adopt(pod, obs)
        self._report_exits(pod, obs)
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            if not self.terminated:
                await self.terminate(obs)
            else:
                await self._delete_from_api(pod)
            return None
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not obs.current \
                and not any(_running(c) for c in obs.all()):
            return None  # finished before; nothing to run, nothing new to report
        if not self.admitted:
            status = pod.get("status") or {}
            if obs.sandboxes or obs.all() or status.get("startTime"):
                self.admitted = True  # it ran here before (an agent restart)
            else:
                rejected = self.agent.admit(pod)
                if rejected is not None:
                    self._reject(pod, *rejected)
                    return None
                self.admitted = True
        wake, acted = await self._drive(pod, obs)
        if acted:
            obs = await self.observe()
            self._report_exits(pod, obs)
        status, terminal = await self._status(pod, obs)
        if terminal:
            stopped = await self._finish(pod, obs)
            if stopped:
                obs = await self.observe()
                status, _ = await self._status(pod, obs, terminal=True)
            wake = None
        self.agent.status.set(self.uid, pod, status)
        await self._garbage_collect(pod, obs)
        return wake

    def _reject(self, pod: dict, reason: str, message: str) -> None:
        status = {k: v for k, v in (pod.get("status") or {}).items()
                  if k in ("conditions", "qosClass")}
        status.update(phase="Failed", reason=reason, message=message,
                      startTime=now_rfc3339())
        self.agent.events.event(pod, "Warning", reason, message)
        self.agent.status.set(self.uid, pod, status)

    def _adopt(self, pod: dict, obs: Observation) -> None:
        """First sync (new pod, or an agent restart): exits that happened before are not
        news, and running containers get probers seeded with their last reported
        readiness."""
        self.first_sync = False
        for c in obs.all():
            if _exited(c):
                self.seen_exited.add(c.id)
        reported = {}
        status = pod.get("status") or {}
        for st in (status.get("containerStatuses") or []) + \
                (status.get("initContainerStatuses") or []):
            cid = (st.get("containerID") or "").partition("://")[2]
            if cid:
                reported[cid] = bool(st.get("ready"))
        inits, regular = _spec_containers(pod)
        specs = {c["name"]: c for c in inits + regular}
        current = obs.current
        for name, spec in specs.items():
            latest = obs.latest(name, current.id if current else None)
            if _running(latest) and latest.id not in self.probers:
                self._start_prober(pod, spec, latest, ready=reported.get(latest.id))

    def _report_exits(self, pod: dict, obs: Observation) -> None:
        for c in obs.all():
            if _exited(c) and c.id not in self.seen_exited:
                self.seen_exited.add(c.id)
                prober = self.probers.pop(c.id, None)
                if prober is not None:
                    prober.cancel()
                reason = c.reason or ("Completed" if c.exit_code == 0 else "Error")
                self.agent.hook("pilothouse_container_exited", pod=pod,
                                container_name=c.metadata.name, container_id=c.id,
                                exit_code=c.exit_code, reason=reason)

    async def _drive(self, pod: dict, obs: Observation) -> tuple[float | None, bool]:
        """Start what should run; returns (seconds until needed again, whether anything
        was done)."""
        now = self.clock()
        wakes: list[float] = []
        acted = False
        inits, regular = _spec_containers(pod)
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        sandbox = obs.current
        if sandbox is None:
            if not self._may_create_sandbox(pod, obs):
                return None, False
            if not self.agent.runtime_ready:
                return 1.0, False
            try:
                sandbox = await self._create_sandbox(pod, obs)
            except (VolumeError, rt.ContainerRuntimeError) as exc:
                log.info("pod %s: no sandbox yet: %s", self.name(), exc)
                return self._retry_delay("sandbox"), False
            acted = True
            self.waiting.clear()
        else:
            await self._refresh_volumes(pod, now)
        self._clear_retry("sandbox")
        sb_config = self._sandbox_config(pod, sandbox.metadata.attempt)
        pod_ips = await self._pod_ips(pod, sandbox)
        hosts = None
        if not (pod.get("spec") or {}).get("hostNetwork"):
            hosts = self.agent.volumes.write_hosts(pod, pod_ips[0] if pod_ips else "")

        # init containers, one at a time, in order
        for c in inits:
            name = c["name"]
            latest = obs.latest(name, sandbox.id)
            if latest is None:
                started = await self._start(pod, c, "init", sandbox, sb_config, obs, pod_ips,
                                            hosts)
                acted = acted or started
                wakes.append(self._pending_wake(name))
                return self._min(wakes), acted
            if latest.state is rt.ContainerState.CREATED:
                await self._start_created(pod, c, latest, pod_ips)
                return None, True
            if _running(latest):
                if await self._check_kill(pod, c, latest):
                    return 0.0, True
                if is_sidecar(c):
                    prober = self.probers.get(latest.id)
                    if prober is None or prober.started:
                        continue
                return None, acted
            # exited
            if latest.state is rt.ContainerState.EXITED and latest.exit_code == 0 \
                    and not is_sidecar(c):
                self.waiting.pop(name, None)
                continue
            if policy == "Never" and not is_sidecar(c):
                return None, acted  # the pod has failed
            delay = await self._restart_after_backoff(pod, c, "init", latest, sandbox, sb_config,
                                                      obs, pod_ips, hosts)
            if delay is None:
                acted = True
                wakes.append(self._pending_wake(name))
            else:
                wakes.append(delay)
            return self._min(wakes), acted

        # regular containers, and sidecars that exited
        for c in [c for c in inits if is_sidecar(c)] + regular:
            name = c["name"]
            kind = "init" if c in inits else "regular"
            latest = obs.latest(name, sandbox.id)
            if latest is None:
                if kind == "init":
                    continue
                started = await self._start(pod, c, kind, sandbox, sb_config, obs, pod_ips,
                                            hosts)
                acted = acted or started
                wakes.append(self._pending_wake(name))
            elif latest.state is rt.ContainerState.CREATED:
                await self._start_created(pod, c, latest, pod_ips)
                acted = True
            elif _running(latest):
                self.waiting.pop(name, None)
                if await self._check_kill(pod, c, latest):
                    acted = True
                    wakes.append(0.0)
            elif kind == "init" or should_restart(policy, latest.exit_code
                                                  if latest.state is rt.ContainerState.EXITED
                                                  else 137):
                delay = await self._restart_after_backoff(pod, c, kind, latest, sandbox,
                                                          sb_config, obs, pod_ips, hosts)
                if delay is None:
                    acted = True
                    wakes.append(self._pending_wake(name))
                else:
                    wakes.append(delay)
            else:
                self.waiting.pop(name, None)
        return self._min(wakes), acted

    @staticmethod
    def _min(wakes: list[float]) -> float | None:
        found = [w for w in wakes if w is not None]
        return min(found) if found else None

    def _pending_wake(self, name: str) -> float | None:
        at = self.retry_at.get(name)
        return None if at is None else max(0.0, at - self.clock())

    def _retry_delay(self, key: str, base: float = CONFIG_RETRY) -> float:
        """A growing retry delay for repeated errors of one kind (2 s doubling to 60 s)."""
        now = self.clock()
        previous = self._retry_steps.get(key, 0)
        self._retry_steps[key] = previous + 1
        delay = min(60.0, base * 2 ** previous)
        self.retry_at[key] = now + delay
        return delay

    def _clear_retry(self, key: str) -> None:
        self._retry_steps.pop(key, None)
        self.retry_at.pop(key, None)

    def _may_create_sandbox(self, pod: dict, obs: Observation) -> bool:
        """A first sandbox is always made. A replacement (the old one died) is not when
        the pod has run and will not restart: restartPolicy Never, or OnFailure with every
        container done successfully."""
        if not obs.sandboxes:
            return True
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if policy == "Never" and obs.all():
            return False
        if policy == "OnFailure":
            _, regular = _spec_containers(pod)
            done = [obs.latest(c["name"]) for c in regular]
            if done and all(c is not None and c.state is rt.ContainerState.EXITED and
                            c.exit_code == 0 for c in done):
                return False
        return True

    def _sandbox_config(self, pod: dict, attempt: int) -> rt.PodSandboxConfig:
        s = self.agent.settings
        return ps.sandbox_config(pod, node_name=self.agent.node_name,
                                 log_directory=str(self.agent.log_dir(pod)), attempt=attempt,
                                 cluster_dns=list(s.clusterDNS),
                                 cluster_domain=s.clusterDomain)

    async def _volumes(self, pod: dict, refresh: bool) -> dict[str, str]:
        paths = await self.agent.volumes.setup(
            pod, host_ip=self.agent.node_ip, pod_ips=tuple(self._known_ips(pod)),
            allocatable=self.agent.allocatable, refresh=refresh)
        self.volume_paths = paths
        self.volumes_synced_at = self.clock()
        return paths

    async def _refresh_volumes(self, pod: dict, now: float) -> None:
        if self.volume_paths is not None and \
                now - self.volumes_synced_at < self.agent.settings.syncFrequency:
            return
        try:
            await self._volumes(pod, refresh=True)
        except VolumeError as exc:
            log.debug("pod %s: volume refresh: %s", self.name(), exc)

    def _known_ips(self, pod: dict) -> list[str]:
        for ips in self.sandbox_ips.values():
            return list(ips)
        return [p.get("ip") for p in (pod.get("status") or {}).get("podIPs") or []
                if p.get("ip")]

    async def _create_sandbox(self, pod: dict, obs: Observation) -> rt.PodSandbox:
        """Volumes, then a new sandbox (the next attempt), then its network."""
        try:
            await self._volumes(pod, refresh=True)
        except VolumeError as exc:
            self.agent.events.event(pod, "Warning", "FailedMount", str(exc))
            raise
        for running in [c for c in obs.all() if _running(c)]:
            await self.runtime.stop_container(running.id, 0)
        for old in obs.sandboxes:
            if old.state is rt.PodSandboxState.READY:
                await self._stop_sandbox(pod, old.id)
        attempt = obs.sandboxes[0].metadata.attempt + 1 if obs.sandboxes else 0
        config = self._sandbox_config(pod, attempt)
        os.makedirs(config.log_directory, exist_ok=True)
        try:
            sandbox_id = await self.runtime.run_pod_sandbox(config)
        except rt.AlreadyExists as exc:
            if exc.id:
                await self.runtime.remove_pod_sandbox(exc.id)
            sandbox_id = await self.runtime.run_pod_sandbox(config)
        except rt.ContainerRuntimeError as exc:
            msg = f"Failed to create pod sandbox: {exc}"
            self.agent.events.event(pod, "Warning", "FailedCreatePodSandBox", msg)
            raise
        status = await self.runtime.pod_sandbox_status(sandbox_id)
        ips = tuple(ip for ip in (status.ip, *status.additional_ips) if ip)
        network = self.agent.network
        if network is not None and network.mode == "direct" and not config.host_network:
            try:
                attached = await network.attach_pod(pod, status.netns_path)
            except Exception as exc:
                msg = f"Failed to set up the pod network: {exc}"
                self.agent.events.event(pod, "Warning", "FailedCreatePodSandBox", msg)
                await self.runtime.stop_pod_sandbox(sandbox_id)
                await self.runtime.remove_pod_sandbox(sandbox_id)
                raise rt.ContainerRuntimeError(msg) from None
            ips = tuple(attached.ips)
        if config.host_network:
            ips = (self.agent.node_ip,)
        self.sandbox_ips = {sandbox_id: ips}
        if ips and not config.host_network:
            self.agent.hook("pilothouse_pod_network_attached", pod=pod, ips=list(ips))
        return rt.PodSandbox(id=sandbox_id, metadata=config.metadata,
                             state=rt.PodSandboxState.READY, created_at=status.created_at,
                             labels=config.labels)

    async def _pod_ips(self, pod: dict, sandbox: rt.PodSandbox) -> tuple[str, ...]:
        if sandbox.id in self.sandbox_ips:
            return self.sandbox_ips[sandbox.id]
        if (pod.get("spec") or {}).get("hostNetwork"):
            ips = (self.agent.node_ip,)
        else:
            status = await self.runtime.pod_sandbox_status(sandbox.id)
            ips = tuple(ip for ip in (status.ip, *status.additional_ips) if ip)
            network = self.agent.network
            if network is not None and network.mode == "direct":
                with contextlib.suppress(Exception):
                    ips = tuple((await network.attach_pod(pod, status.netns_path)).ips)
        self.sandbox_ips = {sandbox.id: ips}
        return ips

    # -- containers -------------------------------------------------------------------------

    def _next_attempt(self, pod: dict, name: str, obs: Observation) -> int:
        found = obs.instances(name)
        if found:
            return max(c.metadata.attempt for c in found) + 1
        status = pod.get("status") or {}
        for st in (status.get("containerStatuses") or []) + \
                (status.get("initContainerStatuses") or []):
            if st.get("name") == name and st.get("containerID"):
                return int(st.get("restartCount") or 0) + 1
        return 0

    async def _ensure_image(self, pod: dict, c: dict, kind: str,
                            sb_config: rt.PodSandboxConfig) -> bool:
        """Apply imagePullPolicy; False (with a waiting reason) when the image is not
        usable yet."""
        name, image = c["name"], c.get("image") or ""
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        field = _field_path(kind, name)
        present = await self.runtime.image_status(image)
        if policy == "Never":
            if present is None:
                msg = f'Container image "{image}" is not present with pull policy of Never'
                self.waiting[name] = ("ErrImageNeverPull", msg)
                self.agent.events.event(pod, "Warning", "ErrImageNeverPull", msg, field)
                self.retry_at[name] = self.clock() + CONFIG_RETRY
                return False
            self._pulled_event(pod, image, field)
            return True
        if policy != "Always" and present is not None:
            self._pulled_event(pod, image, field)
            return True
        key = (self.uid, image)
        left = self.agent.pull_backoff.remaining_since_update(key)
        if left > 0:
            self.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self.agent.events.event(pod, "Normal", "BackOff",
                                    f'Back-off pulling image "{image}"', field)
            self.retry_at[name] = self.clock() + left
            return False
        self.agent.events.event(pod, "Normal", "Pulling", f'Pulling image "{image}"', field)
        t0 = time.monotonic()
        try:
            await self.runtime.pull_image(image, sandbox_config=sb_config)
        except rt.ContainerRuntimeError as exc:
            delay = self.agent.pull_backoff.next(key, self.clock())
            msg = f'Failed to pull image "{image}": {exc}'
            self.waiting[name] = ("ErrImagePull", msg)
            self.agent.events.event(pod, "Warning", "Failed", msg, field)
            self.agent.events.event(pod, "Warning", "Failed", "Error: ErrImagePull", field)
            self.retry_at[name] = self.clock() + delay
            return False
        self.agent.pull_backoff.reset(key)
        self.agent.events.event(pod, "Normal", "Pulled",
                                f'Successfully pulled image "{image}" in '
                                f'{(time.monotonic() - t0) * 1000:.0f}ms', field)
        return True

    def _pulled_event(self, pod: dict, image: str, field: str) -> None:
        self.agent.events.event(pod, "Normal", "Pulled",
                                f'Container image "{image}" already present on machine', field)

    async def _container_config(self, pod: dict, c: dict, kind: str, attempt: int,
                                pod_ips: tuple[str, ...], hosts: str | None
                                ) -> rt.ContainerConfig:
        """Raises ConfigError or VolumeError (CreateContainerConfigError)."""
        env_list = await resolve_env(pod, c, self.agent.lookup, host_ip=self.agent.node_ip,
                                     pod_ips=pod_ips, allocatable=self.agent.allocatable,
                                     service_env=self.agent.service_env(pod))
        env = dict(env_list)
        paths = self.volume_paths
        if paths is None:
            paths = await self._volumes(pod, refresh=False)
        termination = self.agent.volumes.termination_log(self.uid, c["name"], attempt)
        mounts = self.agent.volumes.mounts(pod, c, paths, env, hosts_file=hosts or "",
                                           termination_log=str(termination))
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return rt.ContainerConfig(
            metadata=rt.ContainerMetadata(name=c["name"], attempt=attempt),
            image=c.get("image") or "",
            command=[expand(x, env) for x in c.get("command") or []],
            args=[expand(x, env) for x in c.get("args") or []],
            working_dir=c.get("workingDir") or "", env=env_list, mounts=mounts,
            labels=ps.container_labels(pod, c["name"], self.agent.node_name),
            annotations={ps.HASH_ANNOTATION: ps.container_hash(c),
                         ps.RESTART_ANNOTATION: str(attempt), ps.KIND_ANNOTATION: kind,
                         ps.GRACE_ANNOTATION: str(30 if grace is None else grace)},
            log_path=f"{c['name']}/{attempt}.log", stdin=bool(c.get("stdin")),
            stdin_once=bool(c.get("stdinOnce")), tty=bool(c.get("tty")),
            resources=ps.container_resources(pod, c, self.agent.machine.memory),
            security=ps.security_context(pod, c))

    async def _start(self, pod: dict, c: dict, kind: str, sandbox: rt.PodSandbox,
                     sb_config: rt.PodSandboxConfig, obs: Observation,
                     pod_ips: tuple[str, ...], hosts: str | None) -> bool:
        """Pull (per policy), create and start one container. False, with a waiting
        reason recorded, when it could not be started."""
        name = c["name"]
        field = _field_path(kind, name)
        at = self.retry_at.get(name)
        if at is not None and at > self.clock() and self.waiting.get(name, ("",))[0] not in \
                ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"):
            return False  # (image errors are retried by their own back-off)
        if not await self._ensure_image(pod, c, kind, sb_config):
            return False
        attempt = self._next_attempt(pod, name, obs)
        try:
            config = await self._container_config(pod, c, kind, attempt, pod_ips, hosts)
        except (ConfigError, VolumeError) as exc:
            self.waiting[name] = ("CreateContainerConfigError", str(exc))
            self.agent.events.event(pod, "Warning", "Failed", f"Error: {exc}", field)
            self._retry_delay(name)
            return False
        try:
            try:
                cid = await self.runtime.create_container(sandbox.id, config, sb_config)
            except rt.AlreadyExists as exc:
                if not exc.id:
                    raise
                await self.runtime.remove_container(exc.id)
                cid = await self.runtime.create_container(sandbox.id, config, sb_config)
        except rt.ImageNotFound as exc:
            self.waiting[name] = ("ErrImagePull", str(exc))
            self._retry_delay(name)
            return False
        except rt.ContainerRuntimeError as exc:
            self.waiting[name] = ("CreateContainerError", str(exc))
            self.agent.events.event(pod, "Warning", "Failed", f"Error: {exc}", field)
            self._retry_delay(name)
            return False
        self.agent.events.event(pod, "Normal", "Created", f"Created container {name}", field)
        try:
            await self.runtime.start_container(cid)
        except rt.ContainerRuntimeError as exc:
            self.waiting[name] = ("RunContainerError", str(exc))
            self.agent.events.event(pod, "Warning", "Failed", f"Error: {exc}", field)
            self._retry_delay(name)
            return True
        self.waiting.pop(name, None)
        self._clear_retry(name)
        self.agent.events.event(pod, "Normal", "Started", f"Started container {name}", field)
        await self._after_start(pod, c, kind, cid, pod_ips)
        return True

    async def _start_created(self, pod: dict, c: dict, created: rt.ContainerStatus,
                             pod_ips: tuple[str, ...]) -> None:
        """A container left CREATED (an agent stopped between create and start)."""
        try:
            await self.runtime.start_container(created.id)
        except rt.ContainerRuntimeError as exc:
            self.waiting[c["name"]] = ("RunContainerError", str(exc))
            await self.runtime.remove_container(created.id)
            return
        kind = created.annotations.get(ps.KIND_ANNOTATION, "regular")
        await self._after_start(pod, c, kind, created.id, pod_ips)

    async def _after_start(self, pod: dict, c: dict, kind: str, cid: str,
                           pod_ips: tuple[str, ...]) -> None:
        self.agent.hook("pilothouse_container_started", pod=pod, container_name=c["name"],
                        container_id=cid)
        post = (c.get("lifecycle") or {}).get("postStart")
        if post:
            ok, message = await run_handler(post, runtime=self.runtime, container_id=cid,
                                            container=c, pod_ip=pod_ips[0] if pod_ips else "",
                                            timeout=float(self._grace(pod)),
                                            session=self.agent.http)
            if not ok:
                msg = f"PostStartHook failed: {message}"
                field = _field_path(kind, c["name"])
                self.agent.events.event(pod, "Warning", "FailedPostStartHook", msg, field)
                self.killed[cid] = msg
                await self._kill(pod, c, cid, self._grace(pod), run_pre_stop=True,
                                 reason="FailedPostStartHook", message=msg, kind=kind)
                return
        try:
            status = await self.runtime.container_status(cid)
        except rt.NotFound:
            return
        if _running(status):
            self._start_prober(pod, c, status)

    def _start_prober(self, pod: dict, c: dict, status: rt.ContainerStatus,
                      ready: bool | None = None) -> None:
        if status.id in self.probers:
            return
        ips = self.sandbox_ips.get(status.sandbox_id) or tuple(self._known_ips(pod))
        field = _field_path(status.annotations.get(ps.KIND_ANNOTATION, "regular"), c["name"])

        def failed(kind: str, message: str, pod=pod, field=field) -> None:
            self.agent.events.event(pod, "Warning", "Unhealthy",
                                    f"{kind.capitalize()} probe failed: {message}", field)
        prober = ContainerProber(runtime=self.runtime, container=c, container_id=status.id,
                                 pod_ip=ips[0] if ips else self.agent.node_ip,
                                 started_at=status.started_at or self.clock(),
                                 on_change=self.notify, on_failure=failed,
                                 session=self.agent.http, ready=ready, clock=self.clock)
        self.probers[status.id] = prober
        prober.start()

    async def _check_kill(self, pod: dict, c: dict, latest: rt.ContainerStatus) -> bool:
        """Kill a running container whose liveness or startup probe failed, or whose spec
        (image) changed. True when it was killed."""
        prober = self.probers.get(latest.id)
        reason = prober.kill_reason if prober is not None else ""
        probe = None
        if reason:
            probe = c.get("startupProbe") if not prober.started else c.get("livenessProbe")
        elif latest.annotations.get(ps.HASH_ANNOTATION) not in (None, ps.container_hash(c)):
            reason = f"Container {c['name']} definition changed, will be restarted"
        if not reason:
            return False
        grace = self._grace(pod)
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            grace = int(probe["terminationGracePeriodSeconds"])
        kind = latest.annotations.get(ps.KIND_ANNOTATION, "regular")
        await self._kill(pod, c, latest.id, grace, run_pre_stop=True, reason="Killing",
                         message=reason, kind=kind)
        return True

    def _grace(self, pod: dict) -> int:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
            return int(meta["deletionGracePeriodSeconds"])
        grace = spec.get("terminationGracePeriodSeconds")
        return 30 if grace is None else int(grace)

    async def _kill(self, pod: dict, c: dict | None, cid: str, grace: float, *,
                    run_pre_stop: bool, reason: str = "Killing", message: str = "",
                    kind: str = "regular") -> None:
        """Stop one container gracefully: its preStop hook, then the runtime's stop
        (SIGTERM, SIGKILL after what is left of the grace period, at least 2 s when a
        grace period was given)."""
        name = c["name"] if c else "?"
        self.agent.events.event(pod, "Normal", "Killing",
                                message or f"Stopping container {name}", _field_path(kind, name))
        prober = self.probers.pop(cid, None)
        if prober is not None:
            prober.cancel()
        t0 = time.monotonic()
        pre_stop = ((c or {}).get("lifecycle") or {}).get("preStop")
        if run_pre_stop and pre_stop and grace > 0 and not self._hurry.is_set():
            ips = tuple(self._known_ips(pod))
            hook = run_handler(pre_stop, runtime=self.runtime, container_id=cid, container=c,
                               pod_ip=ips[0] if ips else "", timeout=grace,
                               session=self.agent.http)
            ok, why = await self._unless_hurried(asyncio.wait_for(hook, grace),
                                                 (False, "the deletion was forced"))
            if not ok:
                self.agent.events.event(pod, "Warning", "FailedPreStopHook",
                                        f"PreStopHook failed: {why}", _field_path(kind, name))
        if run_pre_stop and pre_stop and grace > 0:
            timeout = max(grace - (time.monotonic() - t0), MIN_GRACE)
        else:
            timeout = max(grace, 0)
        if self._hurry.is_set():
            timeout = 0
        stopping = asyncio.ensure_future(self.runtime.stop_container(cid, timeout))
        try:
            hurried = await self._unless_hurried(asyncio.shield(stopping), "hurried")
        except rt.NotFound:
            return
        if hurried == "hurried":
            with contextlib.suppress(rt.NotFound):
                await self.runtime.stop_container(cid, 0)
            with contextlib.suppress(rt.ContainerRuntimeError, asyncio.TimeoutError):
                await asyncio.wait_for(stopping, 10)  # returns once the container is gone

    async def _unless_hurried(self, awaitable, instead):
        """Await ``awaitable``, or return ``instead`` as soon as the deletion is forced."""
        task = asyncio.ensure_future(awaitable)
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            done, _ = await asyncio.wait({task, hurry}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                try:
                    return task.result()
                except asyncio.TimeoutError:
                    return (False, "did not finish within the grace period")
            task.cancel()
            return instead
        finally:
            hurry.cancel()

    async def _restart_after_backoff(self, pod, c, kind, latest, sandbox, sb_config, obs,
                                     pod_ips, hosts) -> float | None:
        """Restart an exited container unless it is in its back-off (then return the
        seconds left, with CrashLoopBackOff as its waiting reason). None: restarted (or
        tried to)."""
        name = c["name"]
        key = (self.uid, name)
        finished = latest.finished_at or latest.created_at
        left = self.agent.restart_backoff.remaining(key, finished)
        if left > 0:
            delay = self.agent.restart_backoff.delay(key)
            pod_name = f"{pod['metadata']['name']}_{pod['metadata'].get('namespace', '')}"
            msg = (f"back-off {delay:g}s restarting failed container={name} "
                   f"pod={pod_name}({self.uid})")
            if self.waiting.get(name, ("",))[0] != "CrashLoopBackOff":
                self.agent.events.event(pod, "Warning", "BackOff",
                                        "Back-off restarting failed container " + name,
                                        _field_path(kind, name))
            self.waiting[name] = ("CrashLoopBackOff", msg)
            return left
        at = self.retry_at.get(name)
        if at is not None and at > self.clock():
            return at - self.clock()
        self.agent.restart_backoff.next(key, finished)
        await self._start(pod, c, kind, sandbox, sb_config, obs, pod_ips, hosts)
        return None

    # -- status -----------------------------------------------------------------------------

    def _termination_message(self, pod: dict, c: dict, inst: rt.ContainerStatus) -> str:
        if inst.id in self.messages:
            return self.messages[inst.id]
        text = ""
        path = self.agent.volumes.termination_log(self.uid, c["name"], inst.metadata.attempt)
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                text = f.read(_TERMINATION_MESSAGE_MAX).decode(errors="replace")
        if not text and c.get("terminationMessagePolicy") == "FallbackToLogsOnError" \
                and inst.exit_code != 0 and inst.log_path:
            with contextlib.suppress(OSError):
                with open(inst.log_path, "rb") as f:
                    f.seek(max(0, os.path.getsize(inst.log_path) - 64 * 1024))
                    lines = []
                    for line in f.read().split(b"\n"):
                        rec = parse_record(line)
                        if rec is not None:
                            lines.append(rec[3] + (b"" if rec[2] else b"\n"))
                    text = b"".join(lines).decode(errors="replace")
                    text = "\n".join(text.split("\n")[-_FALLBACK_LINES - 1:])
                    text = text[-_FALLBACK_BYTES:]
        if self.killed.get(inst.id) and not text:
            text = self.killed[inst.id]
        self.messages[inst.id] = text
        return text

    async def _image_ids(self, instances) -> dict[str, str]:
        out = {}
        for inst in instances:
            if inst is not None:
                out[inst.id] = await self.agent.image_ref(inst.image_id or inst.image)
        return out

    async def _views(self, pod: dict, obs: Observation, init_done: bool
                     ) -> tuple[list[dict], list[dict]]:
        inits, regular = _spec_containers(pod)
        current = obs.current
        runtime_name = self.agent.runtime_name
        old = {s["name"]: s for s in ((pod.get("status") or {}).get("containerStatuses") or [])
               + ((pod.get("status") or {}).get("initContainerStatuses") or [])}
        out: tuple[list[dict], list[dict]] = ([], [])
        for group, specs in ((0, inits), (1, regular)):
            for c in specs:
                name = c["name"]
                found = obs.instances(name)
                latest = found[0] if found else None
                previous = found[1] if len(found) > 1 else None
                view = ContainerView(name=name, latest=latest, previous=previous,
                                     restart_count=int((old.get(name) or {}).get(
                                         "restartCount") or 0))
                waiting = self.waiting.get(name)
                if latest is None:
                    if waiting is None and group == 1 and not init_done:
                        waiting = ("PodInitializing", "")
                elif _exited(latest) and waiting is None and current is not None \
                        and latest.sandbox_id != current.id:
                    waiting = ("PodInitializing", "") if group == 1 and not init_done \
                        else ("ContainerCreating", "")
                view.waiting = waiting
                prober = self.probers.get(latest.id) if latest is not None else None
                if prober is not None:
                    view.ready, view.started = prober.ready and prober.started, prober.started
                elif _running(latest):
                    view.ready = view.started = not (c.get("readinessProbe") or
                                                     c.get("startupProbe"))
                view.image_ids = await self._image_ids([latest, previous])
                for inst in (latest, previous):
                    if _exited(inst):
                        view.messages[inst.id] = self._termination_message(pod, c, inst)
                out[group].append(container_status(c, view, runtime_name))
        return out

    async def _status(self, pod: dict, obs: Observation, terminal: bool = False
                      ) -> tuple[dict, bool]:
        """The pod's status, and whether the pod has finished (will not run again)."""
        inits, regular = _spec_containers(pod)
        current = obs.current
        init_done = True
        for c in inits:
            latest = obs.latest(c["name"], current.id if current else None)
            if is_sidecar(c):
                if not _running(latest):
                    init_done = False
                    break
                continue
            if latest is None or latest.state is not rt.ContainerState.EXITED or \
                    latest.exit_code != 0:
                init_done = False
                break
        init_statuses, statuses = await self._views(pod, obs, init_done)
        no_sandbox_ever = current is None and not self._may_create_sandbox(pod, obs)
        now = now_rfc3339()
        api_status = pod.get("status") or {}
        start_time = api_status.get("startTime") or now
        ips = self.sandbox_ips.get(current.id) if current else None
        if ips is None:
            ips = tuple(self._known_ips(pod))
        status = pod_status(pod, init_statuses=init_statuses, statuses=statuses,
                            sandbox_ready=current is not None, host_ip=self.agent.node_ip,
                            pod_ips=ips, start_time=start_time, now=now,
                            terminal=terminal or no_sandbox_ever)
        return status, status["phase"] in ("Succeeded", "Failed")

    # -- endings ----------------------------------------------------------------------------

    async def _finish(self, pod: dict, obs: Observation) -> bool:
        """The pod has finished (Succeeded/Failed): stop what still runs (sidecars) and
        its sandbox. True when something was stopped."""
        stopped = False
        inits, regular = _spec_containers(pod)
        specs = {c["name"]: c for c in inits + regular}
        for c in obs.all():
            if _running(c) or c.state is rt.ContainerState.CREATED:
                await self._kill(pod, specs.get(c.metadata.name), c.id, self._grace(pod),
                                 run_pre_stop=True)
                stopped = True
        for prober in self.probers.values():
            prober.cancel()
        self.probers.clear()
        for sb in obs.sandboxes:
            if sb.state is rt.PodSandboxState.READY:
                await self._stop_sandbox(pod, sb.id)
                stopped = True
        return stopped

    async def _stop_sandbox(self, pod: dict, sandbox_id: str) -> None:
        network = self.agent.network
        if network is not None and network.mode == "direct" and \
                not (pod.get("spec") or {}).get("hostNetwork"):
            netns = None
            with contextlib.suppress(rt.ContainerRuntimeError):
                netns = (await self.runtime.pod_sandbox_status(sandbox_id)).netns_path or None
            try:
                await network.detach_pod(pod, netns)
            except Exception:
                log.exception("pod %s: network detach failed", self.name())
        with contextlib.suppress(rt.NotFound):
            await self.runtime.stop_pod_sandbox(sandbox_id)
        if not (pod.get("spec") or {}).get("hostNetwork"):
            self.agent.hook("pilothouse_pod_network_detached", pod=pod)

    async def terminate(self, obs: Observation) -> None:
        """Graceful deletion: preStop hooks and SIGTERM within the grace period, SIGKILL
        after it, the sandbox stopped, a final status written, then the pod deleted from
        the API for good (grace period 0, with its UID as precondition)."""
        pod = self.pod
        grace = self._grace(pod)
        for prober in self.probers.values():
            prober.cancel()
        self.probers.clear()
        self.waiting.clear()
        inits, regular = _spec_containers(pod)
        specs = {c["name"]: c for c in inits + regular}
        live = [c for c in obs.all() if _running(c) or c.state is rt.ContainerState.CREATED]
        regular_live = [c for c in live if c.metadata.name in {x["name"] for x in regular}]
        sidecars = [c for c in live if c not in regular_live]
        await asyncio.gather(*(self._kill(pod, specs.get(c.metadata.name), c.id, grace,
                                          run_pre_stop=True,
                                          kind=c.annotations.get(ps.KIND_ANNOTATION, "regular"))
                               for c in regular_live))
        await asyncio.gather(*(self._kill(pod, specs.get(c.metadata.name), c.id, grace,
                                          run_pre_stop=True, kind="init")
                               for c in sidecars))
        for sb in obs.sandboxes:
            if sb.state is rt.PodSandboxState.READY:
                await self._stop_sandbox(pod, sb.id)
        obs = await self.observe()
        self._report_exits(pod, obs)
        status, _ = await self._status(pod, obs, terminal=True)
        self.agent.status.set(self.uid, pod, status)
        await self.agent.status.flush(self.uid)
        self.terminated = True
        await self._delete_from_api(pod)

    async def _delete_from_api(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            await self.agent.pods.delete(meta["name"], meta.get("namespace"),
                                         grace_period_seconds=0,
                                         preconditions={"uid": self.uid})
        except (errors.NotFound, errors.Conflict):
            pass

    async def cleanup(self) -> None:
        """The pod is gone from the API: kill whatever is left at once, remove its
        sandboxes, volumes, logs and every trace of it on the node."""
        for prober in self.probers.values():
            prober.cancel()
        self.probers.clear()
        pod = self.last_pod or {"metadata": {"uid": self.uid, "name": "", "namespace": ""}}
        obs = await self.observe()
        for c in obs.all():
            if _running(c):
                with contextlib.suppress(rt.NotFound):
                    await self.runtime.stop_container(c.id, 0)
        for sb in obs.sandboxes:
            if sb.state is rt.PodSandboxState.READY:
                await self._stop_sandbox(pod, sb.id)
            await self.runtime.remove_pod_sandbox(sb.id)
        for c in obs.all():  # containers of a sandbox that was already gone
            await self.runtime.remove_container(c.id)
        await self.agent.volumes.teardown(self.uid)
        if self.last_pod is not None:
            await asyncio.to_thread(shutil.rmtree, self.agent.log_dir(self.last_pod), True)
        self.agent.restart_backoff.forget(lambda k: k[0] == self.uid)
        self.agent.pull_backoff.forget(lambda k: k[0] == self.uid)
        self.agent.status.forget(self.uid)

    async def _garbage_collect(self, pod: dict, obs: Observation) -> None:
        """Keep the newest instance of each container and, when that one runs, the exited
        one before it (``lastState``, ``logs --previous``); keep the current sandbox and
        the one before it. Remove the rest."""
        current = obs.current
        keep_sandboxes = set()
        if current is not None:
            keep_sandboxes.add(current.id)
            older = [s for s in obs.sandboxes if s.id != current.id]
            if older:
                keep_sandboxes.add(older[0].id)
        elif obs.sandboxes:
            keep_sandboxes.add(obs.sandboxes[0].id)
        for name, instances in obs.containers.items():
            keep = instances[:1]
            if instances and not _exited(instances[0]):
                keep += [c for c in instances[1:] if _exited(c)][:1]
            for c in instances:
                if c not in keep and _exited(c) and c.sandbox_id in keep_sandboxes:
                    await self.runtime.remove_container(c.id)
                    self.messages.pop(c.id, None)
                    self.killed.pop(c.id, None)
        for sb in obs.sandboxes:
            if sb.id not in keep_sandboxes and sb.state is rt.PodSandboxState.NOTREADY:
                await self.runtime.remove_pod_sandbox(sb.id)
                self.sandbox_ips.pop(sb.id, None)

