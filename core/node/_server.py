"""The node endpoint (the kubelet's port): ``/containerLogs``, ``/exec``, ``/attach``,
``/portForward`` (the paths and protocols of :mod:`pilothouse.streaming`, which the API
server proxies ``pods/log|exec|attach|portforward`` to), plus ``/healthz`` and ``/pods``.
Plain HTTP, or HTTPS with ``tlsCertFile``/``tlsKeyFile``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING

from aiohttp import web

from pilothouse.interfaces import runtime as rt
from pilothouse.node import _podspec as ps
from pilothouse.node._logs import read_logs
from pilothouse.node._streams import ExecSyncProcess, SpdyProcess, connect_in_netns
from pilothouse.streaming import (ExecOptions, LogOptions, NodeStreamingBackend,
                                  StreamingError, add_node_routes)

if TYPE_CHECKING:
    from pilothouse.node._agent import NodeAgent

__all__ = ["NodeServer"]

log = logging.getLogger("pilothouse.node.server")


def _order(items):
    return sorted(items, key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)


class _Backend(NodeStreamingBackend):
    def __init__(self, agent: "NodeAgent"):
        self.agent = agent

    def _pod(self, namespace: str, name: str) -> dict:
        informer = self.agent.pod_informer
        pod = informer.get(f"{namespace}/{name}") if informer is not None else None
        if pod is None:
            raise StreamingError(f'pods "{name}" not found', 404)
        return pod

    @staticmethod
    def _spec(pod: dict, container: str) -> dict:
        spec = pod.get("spec") or {}
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) + \
                (spec.get("ephemeralContainers") or []):
            if c.get("name") == container:
                return c
        name = pod["metadata"]["name"]
        raise StreamingError(f"container {container} is not valid for pod {name}", 400)

    async def _instances(self, pod: dict, container: str) -> list[rt.Container]:
        return _order(await self.agent.runtime.list_containers(labels={
            ps.POD_UID: pod["metadata"]["uid"], ps.CONTAINER_NAME: container}))

    def _waiting(self, pod: dict, container: str) -> str:
        status = pod.get("status") or {}
        for st in (status.get("containerStatuses") or []) + \
                (status.get("initContainerStatuses") or []):
            if st.get("name") == container:
                waiting = (st.get("state") or {}).get("waiting")
                if waiting:
                    return waiting.get("reason") or "ContainerCreating"
        return "ContainerCreating"

    async def _running(self, pod: dict, container: str) -> rt.Container:
        self._spec(pod, container)
        found = await self._instances(pod, container)
        if not found or found[0].state is not rt.ContainerState.RUNNING:
            name = pod["metadata"]["name"]
            if not found:
                raise StreamingError(f'container "{container}" in pod "{name}" is waiting '
                                     f'to start: {self._waiting(pod, container)}', 400)
            raise StreamingError(f"container {container} is not running in pod {name}", 400)
        return found[0]

    # -- logs -------------------------------------------------------------------------------

    def _log_container_id(self, pod: dict, container: str, previous: bool) -> str:
        """Which container instance's log to read, from the pod's reported status, with
        the kubelet's rules and messages."""
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        st = next((s for s in (status.get("containerStatuses") or []) +
                   (status.get("initContainerStatuses") or []) if s.get("name") == container),
                  None)
        if st is None:
            raise StreamingError(f'container "{container}" in pod "{name}" is waiting to '
                                 f'start: ContainerCreating', 400)
        state, last = st.get("state") or {}, (st.get("lastState") or {}).get("terminated")
        last_id = (last or {}).get("containerID") or ""
        if previous:
            if not last_id:
                raise StreamingError(f'previous terminated container "{container}" in pod '
                                     f'"{name}" not found', 400)
            return last_id
        if "running" in state:
            return st.get("containerID") or ""
        if "terminated" in state:
            cid = state["terminated"].get("containerID") or last_id
            if not cid:
                raise StreamingError(f'container "{container}" in pod "{name}" is '
                                     f'terminated', 400)
            return cid
        if last_id:
            return last_id
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        reason = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise StreamingError(f'container "{container}" in pod "{name}" is waiting to start: '
                             f'{reason}', 400)

    async def container_logs(self, namespace, pod_name, container, options: LogOptions):
        pod = self._pod(namespace, pod_name)
        self._spec(pod, container)
        wanted = self._log_container_id(pod, container, options.previous).partition("://")[2]
        found = [c for c in await self._instances(pod, container) if c.id == wanted]
        if not found:
            raise StreamingError(f'container "{container}" in pod "{pod_name}" is not '
                                 f'available on this node', 404)
        target = found[0]
        runtime = self.agent.runtime
        try:
            path = (await runtime.container_status(target.id)).log_path
        except rt.NotFound:
            path = ""
        if not path:
            path = str(self.agent.log_dir(pod) / container / f"{target.metadata.attempt}.log")

        async def running() -> bool:
            try:
                return (await runtime.container_status(target.id)).state in (
                    rt.ContainerState.RUNNING, rt.ContainerState.CREATED)
            except rt.ContainerRuntimeError:
                return False
        since = options.since
        stream = {"Stdout": "stdout", "Stderr": "stderr"}.get(options.stream or "All")
        return read_logs(path, follow=options.follow, tail_lines=options.tail_lines,
                         since=since.timestamp() if since else None,
                         timestamps=options.timestamps, limit_bytes=options.limit_bytes,
                         running=running, stream=stream)

    # -- exec and attach --------------------------------------------------------------------

    async def exec(self, namespace, pod_name, container, options: ExecOptions):
        pod = self._pod(namespace, pod_name)
        target = await self._running(pod, container)
        runtime = self.agent.runtime
        if rt.Feature.STREAMING in runtime.features:
            url = await runtime.exec(target.id, list(options.command), tty=options.tty,
                                     stdin=options.stdin, stdout=options.stdout,
                                     stderr=options.stderr)
            return await SpdyProcess.open(url, stdin=options.stdin, stdout=options.stdout,
                                          stderr=options.stderr, tty=options.tty)
        if options.stdin or options.tty:
            raise StreamingError(f"the {self.agent.runtime_name} runtime cannot run an "
                                 f"interactive command (no streaming support); run it "
                                 f"without -i/-t", 400)
        return ExecSyncProcess(runtime, target.id, list(options.command))

    async def attach(self, namespace, pod_name, container, options: ExecOptions):
        pod = self._pod(namespace, pod_name)
        target = await self._running(pod, container)
        runtime = self.agent.runtime
        if rt.Feature.STREAMING not in runtime.features:
            raise StreamingError(f"the {self.agent.runtime_name} runtime cannot attach to "
                                 f"containers (no streaming support)", 400)
        url = await runtime.attach(target.id, tty=options.tty, stdin=options.stdin,
                                   stdout=options.stdout, stderr=options.stderr)
        return await SpdyProcess.open(url, stdin=options.stdin, stdout=options.stdout,
                                      stderr=options.stderr, tty=options.tty)

    # -- port-forward -----------------------------------------------------------------------

    async def port_forward(self, namespace, pod_name, port):
        pod = self._pod(namespace, pod_name)
        runtime = self.agent.runtime
        sandboxes = [s for s in await runtime.list_pod_sandboxes(
            labels={ps.POD_UID: pod["metadata"]["uid"]}) if s.state is rt.PodSandboxState.READY]
        if not sandboxes:
            raise StreamingError(f"pod {namespace}/{pod_name} has no running sandbox", 400)
        status = await runtime.pod_sandbox_status(sandboxes[0].id)
        if status.netns_path and not status.host_network:
            return await connect_in_netns(status.netns_path, port)
        host = "127.0.0.1" if status.host_network or not status.ip or \
            rt.Feature.POD_NETWORK not in runtime.features else status.ip
        return await asyncio.wait_for(asyncio.open_connection(host, port), 10)


class NodeServer:
    """The aiohttp application and site of the node endpoint."""

    def __init__(self, agent: "NodeAgent"):
        self.agent = agent
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/pods", self._pods)
        add_node_routes(self.app, _Backend(agent))
        self._runner: web.AppRunner | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _pods(self, request: web.Request) -> web.Response:
        informer = self.agent.pod_informer
        items = informer.list() if informer is not None else []
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                  "items": items})

    async def start(self, address: str, port: int) -> int:
        """Listen; return the port in use."""
        s = self.agent.settings
        context = None
        if s.tlsCertFile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(s.tlsCertFile, s.tlsKeyFile)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address, port, ssl_context=context,
                           reuse_address=True)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
