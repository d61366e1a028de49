"""The server side of ``exec`` and ``attach``: a process's stdin, stdout and stderr over
the WebSocket channel protocol (:mod:`pilothouse.streaming.channel`) or, for old clients,
SPDY/3.1 streams.

The caller (the node agent, or a test) supplies ``start(options) -> Process``: a coroutine
that starts the command (exec) or connects to the container's main process (attach) and
returns an object shaped like :class:`asyncio.subprocess.Process`. :func:`serve_exec`
completes the handshake, calls ``start``, copies the streams, and ends with the final
Status (exit code) on the error channel.

SPDY variant (``POST`` + ``Upgrade: SPDY/3.1``, ``X-Stream-Protocol-Version:
v4.channel.k8s.io``): the client opens one SPDY stream per channel, each with a
``streamtype`` header — ``error`` first, then ``stdin``, ``stdout``, ``stderr`` (the ones
the request asks for; no stderr with a TTY) and ``resize`` (TTY). The server answers each
with SYN_REPLY, starts the command once the expected streams are there, writes output on
``stdout``/``stderr``, reads input until the client's FIN on ``stdin``, reads a sequence of
JSON ``{"Width","Height"}`` objects on ``resize``, and ends by writing the Status JSON on
``error`` and closing every stream (FIN).

Since 0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from pilothouse.streaming import channel as ch
from pilothouse.streaming.channel import StreamingError
from pilothouse.streaming.spdy import SpdySession, SpdyStream, StreamReset
from pilothouse.streaming.transport import (accept_upgrade, is_spdy_upgrade,
                                            is_websocket_upgrade, requested_stream_protocols)

__all__ = ["SPDY_REMOTE_COMMAND_PROTOCOLS", "ExecOptions", "Process", "StartProcess",
           "parse_bool", "serve_attach", "serve_exec"]

log = logging.getLogger("pilothouse.streaming")

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
#: Remote-command protocols served over SPDY (in the server's preference order).
SPDY_REMOTE_COMMAND_PROTOCOLS = ("v4.channel.k8s.io",)


def parse_bool(value: str | None, name: str) -> bool:
    """Go's ``strconv.ParseBool``, which is what Kubernetes clients expect."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StreamingError(f"invalid boolean value for {name}: {value!r}", 400)


@dataclasses.dataclass(frozen=True)
class ExecOptions:
    """What an exec or attach request asks for.

    ``command`` is empty for attach. ``stdin``/``stdout``/``stderr`` say which streams the
    client wants; with ``tty`` the command runs on a terminal, stderr is merged into
    stdout and the client may send resize events. ``terminal_size`` is the client's
    initial ``(width, height)`` when it sent one before the session started (TTY over
    WebSocket; see ``initial_size_wait`` of :func:`serve_exec`): a backend that can create
    the terminal with that size avoids a first frame drawn at the wrong size. The same size
    is also delivered through ``Process.resize`` right after ``start``.
    """

    command: tuple[str, ...] = ()
    container: str = ""
    stdin: bool = False
    stdout: bool = True
    stderr: bool = False
    tty: bool = False
    terminal_size: tuple[int, int] | None = None

    @classmethod
    def from_query(cls, query, *, container: str | None = None) -> "ExecOptions":
        """Parse the API's ``PodExecOptions``/``PodAttachOptions`` query (what kubectl
        and the Python client send: ``command`` (repeated), ``container``, ``stdin``,
        ``stdout`` (default true), ``stderr``, ``tty``)."""
        return cls(
            command=tuple(query.getall("command", [])),
            container=container if container is not None else query.get("container", ""),
            stdin=parse_bool(query.get("stdin"), "stdin"),
            stdout=parse_bool(query.get("stdout"), "stdout") if "stdout" in query else True,
            stderr=parse_bool(query.get("stderr"), "stderr"),
            tty=parse_bool(query.get("tty"), "tty"))

    @classmethod
    def from_node_query(cls, query, *, container: str = "") -> "ExecOptions":
        """Parse the node endpoint's query: the kubelet's ``input``, ``output``, ``error``,
        ``tty`` flags (``1`` = on, absent = off) and ``command`` (repeated)."""
        return cls(command=tuple(query.getall("command", [])), container=container,
                   stdin=query.get("input") == "1", stdout=query.get("output") == "1",
                   stderr=query.get("error") == "1", tty=query.get("tty") == "1")

    def to_node_query(self) -> list[tuple[str, str]]:
        """The query for the node endpoint (inverse of :meth:`from_node_query`)."""
        out = [(flag, "1") for flag, on in (("input", self.stdin), ("output", self.stdout),
                                            ("error", self.stderr), ("tty", self.tty)) if on]
        return out + [("command", c) for c in self.command]

    def validate(self, *, exec_: bool) -> None:
        """Raise :class:`StreamingError` (400) the way Kubernetes words it."""
        if exec_ and not self.command:
            raise StreamingError("you must specify at least 1 command", 400)
        if not (self.stdin or self.stdout or self.stderr):
            raise StreamingError("you must specify at least 1 of stdin, stdout, stderr", 400)

    @property
    def wants_stderr(self) -> bool:
        return self.stderr and not self.tty


class Process(Protocol):
    """What ``start`` returns: an :class:`asyncio.subprocess.Process` fits as it is.

    ``stdin`` is a writer (``write(bytes)``, ``await drain()``, ``close()``) or None;
    ``stdout`` and ``stderr`` are readers (``await read(n)``, ``b""`` at the end) or None
    (with a TTY the backend merges stderr into stdout and leaves ``stderr`` None).
    ``await wait()`` returns the exit code once the process has ended (a negative value
    -N, as asyncio reports a death by signal N, is sent as 128 + N).

    Optional members, used when present: ``resize(width, height)`` (plain or coroutine)
    for TTY resize events; ``kill()`` called when the client disconnects before the process
    ends (see ``kill_on_disconnect``).

    A reader that raises ``OSError`` is treated as ended. Backends reading a pty master
    through asyncio should turn its final ``EIO`` into end-of-file in their protocol's
    ``connection_lost``: an ``asyncio.StreamReader`` given the exception instead drops the
    output it still buffers.
    """

    stdin: Any
    stdout: Any
    stderr: Any

    async def wait(self) -> int:
        """Wait for the process to end; return its exit code."""


#: ``start(options) -> Process``: called once per session, after the handshake.
StartProcess = Callable[[ExecOptions], Awaitable[Process]]


async def serve_exec(request: web.BaseRequest, start: StartProcess, *,
                     options: ExecOptions | None = None, kill_on_disconnect: bool = True,
                     stream_timeout: float = 30.0,
                     initial_size_wait: float = 0.5) -> web.StreamResponse:
    """Serve one exec session on ``request`` (WebSocket v5/v4/v4.base64, or the SPDY
    upgrade) and return the response for the aiohttp handler to return.

    ``options`` default to :meth:`ExecOptions.from_node_query` of the request with the
    container from the route's ``{container}``. Invalid options are answered with 400
    before the upgrade; everything after it — including a :class:`StreamingError` or any
    other exception from ``start`` — is reported in the final Status. When the client goes
    away before the process has ended, stdin is closed and, with ``kill_on_disconnect``,
    ``process.kill()`` is called. ``stream_timeout`` bounds the wait for a SPDY client's
    streams. With a TTY over WebSocket, ``start`` is delayed until the client's first
    message or at most ``initial_size_wait`` seconds, so a terminal size the client sends
    at once (kubectl does) is known before the process starts (``options.terminal_size``).
    """
    return await _serve(request, start, options, True, kill_on_disconnect, stream_timeout,
                        initial_size_wait)


async def serve_attach(request: web.BaseRequest, start: StartProcess, *,
                       options: ExecOptions | None = None, kill_on_disconnect: bool = False,
                       stream_timeout: float = 30.0,
                       initial_size_wait: float = 0.5) -> web.StreamResponse:
    """:func:`serve_exec` for attach: no command; ``start`` connects to the container's
    main process, which by default is not killed when the client leaves."""
    return await _serve(request, start, options, False, kill_on_disconnect, stream_timeout,
                        initial_size_wait)


async def _serve(request, start, options, exec_, kill_on_disconnect, stream_timeout,
                 initial_size_wait):
    try:
        if options is None:
            options = ExecOptions.from_node_query(
                request.query, container=request.match_info.get("container", ""))
        options.validate(exec_=exec_)
        if is_websocket_upgrade(request):
            cws = await ch.ChannelWebSocket.accept(request, ch.REMOTE_COMMAND_PROTOCOLS)
            io = _WebSocketIO(cws)
            if options.tty and initial_size_wait > 0:
                options = dataclasses.replace(
                    options, terminal_size=await io.initial_size(initial_size_wait))
            await _run(io, start, options, exec_, kill_on_disconnect)
            return cws.ws
        if is_spdy_upgrade(request):
            return await _serve_spdy(request, start, options, exec_, kill_on_disconnect,
                                     stream_timeout)
        raise StreamingError("Upgrade request required", 400)
    except StreamingError as exc:
        return exc.to_response()


# ------------------------------------------------------------------------ the session


async def _run(io, start: StartProcess, options: ExecOptions, exec_: bool,
               kill_on_disconnect: bool) -> None:
    try:
        proc = await start(options)
    except StreamingError as exc:
        await io.finish(exc.to_status())
        await io.close()
        return
    except asyncio.CancelledError:
        await io.close()
        raise
    except Exception as exc:
        log.warning("starting %s failed: %s", "exec" if exec_ else "attach", exc)
        await io.finish(ch.error_status(
            f"error {'executing command' if exec_ else 'attaching'} in container: {exc}"))
        await io.close()
        return

    if options.terminal_size:
        width, height = options.terminal_size
        await _resize(proc, {"Width": width, "Height": height})
    tasks: list[asyncio.Task] = []
    if proc.stdout is not None:
        tasks.append(asyncio.create_task(_pump(proc.stdout, io.stdout if options.stdout
                                               else None)))
    if proc.stderr is not None:
        target = io.stderr if options.wants_stderr else (io.stdout if options.tty and
                                                         options.stdout else None)
        tasks.append(asyncio.create_task(_pump(proc.stderr, target)))
    client = asyncio.create_task(io.run_input(proc, options))
    waiter = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait({waiter, client}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            if tasks:  # the output still in the pipes, unless the client leaves meanwhile
                drained = asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.wait({client, drained}, return_when=asyncio.FIRST_COMPLETED)
            if not client.done():
                code = waiter.result()
                if code is not None and code < 0:
                    code = 128 - code
                await io.finish(ch.exit_status(code or 0, options.command if exec_ else None))
        else:  # the client left first
            _close_stdin(proc)
            if kill_on_disconnect and hasattr(proc, "kill"):
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
    finally:
        await io.close()
        for task in (*tasks, client, waiter):
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, client, waiter, return_exceptions=True)


async def _pump(reader, send: Callable[[bytes], Awaitable[None]] | None) -> None:
    while True:
        try:
            data = await reader.read(32 * 1024)
        except OSError:  # a pty's master reads EIO once the terminal's last user is gone
            return
        if not data:
            return
        if send is not None:
            try:
                await send(data)
            except ConnectionError:
                send = None  # keep draining so the process never blocks on a full pipe


def _close_stdin(proc) -> None:
    stdin = getattr(proc, "stdin", None)
    if stdin is not None:
        try:
            stdin.close()
        except (OSError, RuntimeError):
            pass


async def _write_stdin(proc, data: bytes) -> bool:
    stdin = getattr(proc, "stdin", None)
    if stdin is None:
        return False
    try:
        stdin.write(data)
        await stdin.drain()
        return True
    except (OSError, RuntimeError):  # the process closed its stdin or exited
        return False


async def _resize(proc, payload: bytes | dict) -> None:
    resize = getattr(proc, "resize", None)
    if resize is None:
        return
    try:
        size = json.loads(payload) if isinstance(payload, bytes) else payload
        result = resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        if inspect.isawaitable(result):
            await result
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        log.debug("ignoring resize event %r: %s", payload, exc)


class _WebSocketIO:
    def __init__(self, cws: ch.ChannelWebSocket):
        self.cws = cws
        self.pending: list[ch.ChannelMessage | None] = []  # read early, replayed later

    async def initial_size(self, wait: float) -> tuple[int, int] | None:
        """The size in a resize message arriving within ``wait`` seconds, before any other
        message (messages read here are kept for :meth:`run_input`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await self.cws.receive(timeout=left)
            except asyncio.TimeoutError:
                return None
            self.pending.append(msg)
            if msg is None or msg.channel != ch.RESIZE or msg.closed:
                return None
            try:
                size = json.loads(msg.data)
                width, height = int(size["Width"]), int(size["Height"])
            except (ValueError, KeyError, TypeError):
                continue
            if width > 0 and height > 0:
                self.pending.pop()  # _run applies it right after start
                return width, height
        return None

    async def stdout(self, data: bytes) -> None:
        await self._send(ch.STDOUT, data)

    async def stderr(self, data: bytes) -> None:
        await self._send(ch.STDERR, data)

    async def _send(self, channel: int, data: bytes) -> None:
        if self.cws.closed:
            raise ConnectionResetError("client closed the WebSocket")
        try:
            await self.cws.send(channel, data)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionResetError(str(exc)) from None

    async def run_input(self, proc, options: ExecOptions) -> None:
        """Copy stdin and resize events until the client closes the WebSocket."""
        stdin_open = options.stdin
        while True:
            msg = self.pending.pop(0) if self.pending else await self.cws.receive()
            if msg is None:
                return
            if msg.channel == ch.STDIN:
                if msg.closed:
                    if stdin_open:
                        _close_stdin(proc)
                    stdin_open = False
                elif stdin_open and msg.data:
                    stdin_open = await _write_stdin(proc, msg.data)
            elif msg.channel == ch.RESIZE and not msg.closed and msg.data:
                await _resize(proc, msg.data)

    async def finish(self, status: dict) -> None:
        try:
            await self.cws.send_status(status)
        except (ConnectionError, RuntimeError):
            pass

    async def close(self) -> None:
        await self.cws.close()


class _SpdyIO:
    def __init__(self, session: SpdySession, streams: dict[str, SpdyStream],
                 served: asyncio.Task, late: asyncio.Queue):
        self.session, self.streams, self.served, self.late = session, streams, served, late

    async def stdout(self, data: bytes) -> None:
        await self._write("stdout", data)

    async def stderr(self, data: bytes) -> None:
        await self._write("stderr", data)

    async def _write(self, name: str, data: bytes) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        await stream.write(data)

    async def run_input(self, proc, options: ExecOptions) -> None:
        """Copy stdin (until FIN) and resize events until the connection ends."""
        tasks = []
        if "stdin" in self.streams:
            tasks.append(asyncio.create_task(self._stdin(proc, self.streams["stdin"])))
        if "resize" in self.streams:
            tasks.append(asyncio.create_task(self._resizes(proc, self.streams["resize"])))
        try:
            while True:
                getter = asyncio.create_task(self.late.get())
                await asyncio.wait({getter, self.served}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                stream = getter.result()
                if stream.header("streamtype") == "resize":
                    tasks.append(asyncio.create_task(self._resizes(proc, stream)))
        finally:
            for task in tasks:
                task.cancel()

    async def _stdin(self, proc, stream: SpdyStream) -> None:
        try:
            while data := await stream.read():
                if not await _write_stdin(proc, data):
                    break
        except StreamReset:
            pass
        _close_stdin(proc)

    async def _resizes(self, proc, stream: SpdyStream) -> None:
        decoder, buf = json.JSONDecoder(), ""
        try:
            while data := await stream.read():
                buf += data.decode("utf-8", "replace")
                while True:
                    buf = buf.lstrip()
                    try:
                        size, end = decoder.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    if isinstance(size, dict):
                        await _resize(proc, size)
        except StreamReset:
            pass

    async def finish(self, status: dict) -> None:
        for name in ("stdout", "stderr"):
            if name in self.streams:
                await self.streams[name].close()
        error = self.streams.get("error")
        if error is not None:
            try:
                await error.write(json.dumps(status).encode())
            except ConnectionError:
                pass
            await error.close()

    async def close(self) -> None:
        await self.session.close()


async def _serve_spdy(request, start, options: ExecOptions, exec_: bool,
                      kill_on_disconnect: bool, stream_timeout: float):
    offered = requested_stream_protocols(request.headers)
    chosen = ch.choose_protocol(offered, SPDY_REMOTE_COMMAND_PROTOCOLS)
    if chosen is None:
        raise StreamingError(
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
            f"server supports {list(SPDY_REMOTE_COMMAND_PROTOCOLS)}", 403)
    conn = await accept_upgrade(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                          "X-Stream-Protocol-Version": chosen})
    expected = {"error"} | {name for name, on in (("stdin", options.stdin),
                                                  ("stdout", options.stdout),
                                                  ("stderr", options.wants_stderr)) if on}
    streams: dict[str, SpdyStream] = {}
    ready = asyncio.Event()
    late: asyncio.Queue = asyncio.Queue()

    async def on_stream(stream: SpdyStream) -> None:
        kind = stream.header("streamtype", "")
        if kind not in ("error", "stdin", "stdout", "stderr", "resize") or kind in streams:
            await stream.reset()
            return
        await stream.reply()
        if ready.is_set():
            await late.put(stream)
            return
        streams[kind] = stream
        if expected <= set(streams):
            ready.set()

    session = SpdySession(conn, server=True, on_stream=on_stream)
    served = asyncio.create_task(session.serve())
    try:
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({waiter, served}, timeout=stream_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if "error" in streams:
                await streams["error"].write(json.dumps(ch.error_status(
                    f"timed out waiting for client streams (expected {sorted(expected)}, "
                    f"got {sorted(streams)})")).encode())
            return conn.response
        await _run(_SpdyIO(session, streams, served, late), start, options, exec_,
                   kill_on_disconnect)
        return conn.response
    finally:
        await session.close()
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)
