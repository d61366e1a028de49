"""Probes (liveness, readiness, startup) and lifecycle handlers (postStart, preStop).

:func:`run_handler` runs one ``exec``/``httpGet``/``tcpSocket``/``grpc``/``sleep`` action
and returns ``(ok, message)``. :class:`ProbeState` turns a stream of results into the probe's
outcome with ``successThreshold``/``failureThreshold``. :class:`ContainerProber` runs a
container's probes on their periods and tells its pod worker when an outcome changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

import aiohttp

from pilothouse.interfaces import runtime as rt

__all__ = ["ContainerProber", "ProbeState", "resolve_port", "run_handler"]

log = logging.getLogger("pilothouse.node.probes")
USER_AGENT = "kube-probe/1.32"


def resolve_port(port, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ValueError(f"port {text!r} is not a port of container {container.get('name')!r}")


def _grpc_request(service: str) -> bytes:
    data = service.encode()
    return (b"\x0a" + _varint(len(data)) + data) if data else b""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _grpc_status(body: bytes) -> int:
    # HealthCheckResponse { ServingStatus status = 1; }: SERVING is 1
    i = 0
    while i < len(body):
        key = body[i]
        i += 1
        if key == 0x08:
            value = shift = 0
            while i < len(body):
                b = body[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            return value
        return 0
    return 0


async def run_handler(handler: dict, *, runtime: rt.Runtime, container_id: str,
                      container: dict, pod_ip: str, timeout: float,
                      session: aiohttp.ClientSession | None = None) -> tuple[bool, str]:
    """Run a probe or lifecycle action; ``(True, "")`` on success, else ``(False, why)``.
    Never raises for a failing target (errors are a failed outcome)."""
    try:
        if handler.get("exec") is not None:
            cmd = handler["exec"].get("command") or []
            code, out, err = await runtime.exec_sync(container_id, cmd, timeout=timeout)
            if code == 0:
                return True, ""
            text = (out + err).decode(errors="replace").strip()
            return False, text or f"command {cmd!r} exited with {code}"
        if handler.get("httpGet") is not None:
            return await _http(handler["httpGet"], container, pod_ip, timeout, session)
        if handler.get("tcpSocket") is not None:
            t = handler["tcpSocket"]
            host, port = t.get("host") or pod_ip, resolve_port(t.get("port"), container)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                return False, f"dial tcp {host}:{port}: {_why(exc)}"
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True, ""
        if handler.get("grpc") is not None:
            return await _grpc(handler["grpc"], pod_ip, timeout)
        if handler.get("sleep") is not None:
            await asyncio.sleep(float(handler["sleep"].get("seconds") or 0))
            return True, ""
    except rt.ExecTimeout:
        return False, f"command timed out after {timeout:g}s"
    except (rt.ContainerRuntimeError, ValueError) as exc:
        return False, str(exc)
    return False, "the handler names no action (exec, httpGet, tcpSocket, grpc or sleep)"


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "i/o timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc) or type(exc).__name__


async def _http(spec: dict, container: dict, pod_ip: str, timeout: float,
                session: aiohttp.ClientSession | None) -> tuple[bool, str]:
    scheme = (spec.get("scheme") or "HTTP").lower()
    host = spec.get("host") or pod_ip
    port = resolve_port(spec.get("port"), container)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"{scheme}://{hostport}{path}"
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for h in spec.get("httpHeaders") or []:
        headers[h.get("name", "")] = h.get("value", "")
    own = session is None
    s = session or aiohttp.ClientSession()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        async with s.get(url, headers=headers, allow_redirects=False,
                         ssl=ctx if scheme == "https" else None,
                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.content.read(10 * 1024)
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        return False, f'Get "{url}": {_why(exc)}'
    finally:
        if own:
            await s.close()


async def _grpc(spec: dict, pod_ip: str, timeout: float) -> tuple[bool, str]:
    import grpc
    target = f"{pod_ip}:{int(spec.get('port'))}"
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        try:
            body = await call(_grpc_request(spec.get("service") or ""), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return False, f"failed to connect service {target!r} within {timeout:g}s: " \
                          f"{exc.details() or exc.code()}"
    status = _grpc_status(body)
    if status == 1:
        return True, ""
    return False, f"service unhealthy (responded with \"{ {0: 'UNKNOWN', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN'}.get(status, status)}\")"


class ProbeState:
    """Outcome of one probe from its results: it turns to success after
    ``successThreshold`` consecutive successes and to failure after ``failureThreshold``
    consecutive failures. ``outcome`` starts as ``initial`` (readiness: False; liveness
    and startup: True/unknown)."""

    def __init__(self, probe: dict, initial: bool):
        self.success_threshold = max(1, int(probe.get("successThreshold") or 1))
        self.failure_threshold = max(1, int(probe.get("failureThreshold") or 3))
        self.outcome = initial
        self.successes = self.failures = 0
        self.message = ""

    def record(self, ok: bool, message: str = "") -> bool:
        """Add one result; return True when the outcome changed."""
        before = self.outcome
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.success_threshold:
                self.outcome = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            self.message = message
            if self.failures >= self.failure_threshold:
                self.outcome = False
        return self.outcome != before


class ContainerProber:
    """Runs the probes of one running container.

    ``started`` is true once the startup probe succeeded (at once without one); ``ready``
    follows the readiness probe (true once started, without one); ``kill_reason`` is set
    when the liveness or startup probe failed for good: the worker then restarts the
    container. ``on_change()`` is called whenever one of them changes.
    """

    def __init__(self, *, runtime: rt.Runtime, container: dict, container_id: str,
                 pod_ip: str, started_at: float, on_change: Callable[[], None],
                 on_failure: Callable[[str, str], None] | None = None,
                 session: aiohttp.ClientSession | None = None, ready: bool | None = None,
                 clock: Callable[[], float] = time.time):
        self.runtime, self.container, self.container_id = runtime, container, container_id
        self.pod_ip, self.started_at = pod_ip, started_at or clock()
        self.on_change, self.on_failure = on_change, on_failure or (lambda kind, msg: None)
        self.session, self.clock = session, clock
        self.startup = container.get("startupProbe")
        self.liveness = container.get("livenessProbe")
        self.readiness = container.get("readinessProbe")
        self.started = self.startup is None
        self.ready = (self.readiness is None and self.started) if ready is None else ready
        if ready and self.startup is not None:
            self.started = True  # adopted: it was ready before, so it had started
        self.kill_reason = ""
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        if self._tasks:
            return
        if not self.started:
            self._tasks.append(asyncio.create_task(self._loop("startup", self.startup)))
        else:
            self._start_main()

    def _start_main(self) -> None:
        if self.liveness is not None:
            self._tasks.append(asyncio.create_task(self._loop("liveness", self.liveness)))
        if self.readiness is not None:
            self._tasks.append(asyncio.create_task(self._loop("readiness", self.readiness)))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def cancel(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    async def _loop(self, kind: str, probe: dict) -> None:
        state = ProbeState(probe, initial=(kind != "readiness") or self.ready)
        period = max(1.0, float(probe.get("periodSeconds") or 10))
        timeout = max(1.0, float(probe.get("timeoutSeconds") or 1))
        first = self.started_at + float(probe.get("initialDelaySeconds") or 0)
        delay = first - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            t0 = time.monotonic()
            ok, message = await run_handler(probe, runtime=self.runtime,
                                            container_id=self.container_id,
                                            container=self.container, pod_ip=self.pod_ip,
                                            timeout=timeout, session=self.session)
            if not ok:
                self.on_failure(kind, message)
            changed = state.record(ok, message)
            if kind == "startup":
                if state.outcome is True and state.successes >= state.success_threshold:
                    self.started = True
                    if self.readiness is None:
                        self.ready = True
                    self.on_change()
                    self._start_main()
                    return
                if state.failures >= state.failure_threshold:
                    self.kill_reason = f"Container {self.container.get('name')} failed " \
                                       f"startup probe, will be restarted"
                    self.on_change()
                    return
            elif kind == "liveness":
                if changed and state.outcome is False:
                    self.kill_reason = f"Container {self.container.get('name')} failed " \
                                       f"liveness probe, will be restarted"
                    self.on_change()
                    return
            elif changed:
                self.ready = state.outcome
                self.on_change()
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))
