"""Bridges between the node endpoint's streaming sessions and the runtime.

* :class:`SpdyProcess` — an exec or attach session on the runtime's own streaming server
  (CRI: the URL that :meth:`Runtime.exec`/:meth:`Runtime.attach` return), reached as a
  SPDY/3.1 client with the ``v4.channel.k8s.io`` streams, presented as the ``Process`` that
  :func:`pilothouse.streaming.serve_exec` drives. SPDY (not WebSocket) because it can
  half-close stdin, which ``kubectl exec -i`` needs when its input ends.
* :class:`ExecSyncProcess` — for runtimes without a streaming server: a non-interactive
  command through :meth:`Runtime.exec_sync`, its output delivered when it ends.
* :func:`connect_in_netns` — a TCP connection to ``localhost:port`` inside a pod's network
  namespace, for port-forward (as the kubelet and containerd do).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import threading
import urllib.parse

from pilothouse.interfaces import runtime as rt

__all__ = ["ExecSyncProcess", "SpdyProcess", "connect_in_netns"]

_CLONE_NEWNET = 0x40000000


class _Reader:
    """``read(n)`` over a SPDY stream, with an optional tail appended at its end."""

    def __init__(self, stream, tail=None):
        self.stream, self.tail = stream, tail
        self._buf = b""

    async def read(self, n: int = -1) -> bytes:
        from pilothouse.streaming import StreamReset
        if not self._buf:
            try:
                self._buf = await self.stream.read() if self.stream is not None else b""
            except StreamReset:
                self._buf = b""
            if not self._buf and self.tail is not None:
                tail, self.tail = self.tail, None
                self._buf = await tail()
            if not self._buf:
                return b""
        if n is None or n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class _Writer:
    """The writer side of stdin on a SPDY stream (``write``/``drain``/``close``)."""

    def __init__(self, stream):
        self.stream = stream
        self._pending: list[bytes] = []
        self._closing: asyncio.Task | None = None

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))

    async def drain(self) -> None:
        from pilothouse.streaming import StreamReset
        while self._pending:
            data = self._pending.pop(0)
            try:
                await self.stream.write(data)
            except (StreamReset, ConnectionError) as exc:
                raise BrokenPipeError(str(exc)) from None

    def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain()
            await self.stream.close()


def _exit_code(status: dict) -> tuple[int, str]:
    """(exit code, error message) from a remotecommand Status."""
    if not status or status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            with contextlib.suppress(ValueError, TypeError):
                return int(cause.get("message")), ""
    return 126, status.get("message") or "the command failed"


class SpdyProcess:
    """A remote command on a CRI streaming URL, as a ``Process``."""

    def __init__(self, session, served: asyncio.Task, streams: dict, tty: bool):
        self.session, self._served, self._streams, self._tty = session, served, streams, tty
        self._status: asyncio.Task = asyncio.get_running_loop().create_task(self._read_status())
        self.stdin = _Writer(streams["stdin"]) if "stdin" in streams else None
        self.stdout = _Reader(streams.get("stdout")) if "stdout" in streams else None
        self.stderr = _Reader(streams.get("stderr"), self._error_text) \
            if "stderr" in streams else None
        if self.stderr is None and self.stdout is not None:
            self.stdout.tail = self._error_text

    @classmethod
    async def open(cls, url: str, *, stdin: bool, stdout: bool, stderr: bool,
                   tty: bool) -> "SpdyProcess":
        from pilothouse.streaming import SpdySession, StreamingError
        from pilothouse.streaming.transport import open_upgrade
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ssl = None
        if parts.scheme == "https":
            import ssl as ssl_module
            ssl = ssl_module.create_default_context()
            ssl.check_hostname, ssl.verify_mode = False, ssl_module.CERT_NONE
        response = await open_upgrade(parts.hostname, port, "POST", target, [
            ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
            ("X-Stream-Protocol-Version", "channel.k8s.io")], ssl=ssl)
        if response.status != 101:
            raise StreamingError(f"the runtime's streaming server refused the session: "
                                 f"{response.status} {response.body.decode(errors='replace')}",
                                 500)
        session = SpdySession(response.transport, server=False)
        served = asyncio.get_running_loop().create_task(session.serve())
        streams = {}
        try:
            wanted = ["error"] + [n for n, on in (("stdin", stdin), ("stdout", stdout),
                                                  ("stderr", stderr and not tty),
                                                  ("resize", tty)) if on]
            for name in wanted:
                streams[name] = await session.open_stream({"streamtype": name},
                                                          fin=(name == "error"), timeout=30)
        except BaseException:
            await session.close()
            served.cancel()
            raise
        return cls(session, served, streams, tty)

    async def _read_status(self) -> tuple[int, str]:
        from pilothouse.streaming import StreamReset
        raw = b""
        stream = self._streams["error"]
        while True:  # the peer may reset the stream right after writing the status
            try:
                chunk = await stream.read()
            except StreamReset:
                break
            if not chunk:
                break
            raw += chunk
        if not raw:
            return 0, ""
        try:
            return _exit_code(json.loads(raw))
        except ValueError:
            return 126, raw.decode(errors="replace")

    async def _error_text(self) -> bytes:
        _, message = await self._status
        return (message.rstrip("\n") + "\n").encode() if message else b""

    async def wait(self) -> int:
        code, _ = await asyncio.shield(self._status)
        # the streams end with the status; leave the session a moment to flush them
        return code

    async def resize(self, width: int, height: int) -> None:
        stream = self._streams.get("resize")
        if stream is not None and width and height:
            with contextlib.suppress(Exception):
                await stream.write(json.dumps({"Width": width, "Height": height}).encode())

    def kill(self) -> None:
        asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()
        self._served.cancel()
        self._status.cancel()


class _Once:
    def __init__(self, task: asyncio.Task, index: int):
        self.task, self.index, self.done = task, index, False

    async def read(self, n: int = -1) -> bytes:
        if self.done:
            return b""
        self.done = True
        try:
            result = await asyncio.shield(self.task)
        except Exception:
            return b""
        return result[self.index]


class ExecSyncProcess:
    """A command run to completion with :meth:`Runtime.exec_sync` (no stdin, no TTY)."""

    stdin = None

    def __init__(self, runtime: rt.Runtime, container_id: str, command: list[str]):
        self._task = asyncio.get_running_loop().create_task(self._run(runtime, container_id,
                                                                      command))
        self.stdout = _Once(self._task, 1)
        self.stderr = _Once(self._task, 2)

    @staticmethod
    async def _run(runtime, container_id, command):
        try:
            return await runtime.exec_sync(container_id, command)
        except rt.ContainerRuntimeError as exc:
            return rt.ExecResult(126, b"", (str(exc) + "\n").encode())

    async def wait(self) -> int:
        return (await asyncio.shield(self._task)).exit_code

    def kill(self) -> None:
        self._task.cancel()


def _socket_in_netns(netns_path: str, family: int) -> socket.socket:
    """A new TCP socket that belongs to the network namespace at ``netns_path``. Runs on a
    thread of its own: the thread enters the namespace, makes the socket and leaves."""
    result: list = []

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(netns_path, os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result.append(OSError(err, f"cannot enter network namespace {netns_path}: "
                                           f"{os.strerror(err)}"))
                return
            try:
                result.append(socket.socket(family, socket.SOCK_STREAM))
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:  # never leave a thread behind in it
                    os._exit(70)
        except OSError as exc:
            result.append(exc)
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=work, name="netns-socket", daemon=True)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


async def connect_in_netns(netns_path: str, port: int, host: str = "127.0.0.1",
                           timeout: float = 10.0
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port`` as seen from inside the network namespace."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await asyncio.to_thread(_socket_in_netns, netns_path, family)
    try:
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)),
                               timeout)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
