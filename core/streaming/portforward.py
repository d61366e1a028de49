"""The server side of port-forward, in the three forms clients use.

The caller supplies ``connect(port) -> (reader, writer)``: a coroutine that opens a TCP
connection to ``port`` inside the pod (the node agent enters the pod's network namespace;
a test connects to a local server) and returns ``asyncio`` streams.
:func:`serve_port_forward` picks the form from the request:

1. **WebSocket, subprotocol** ``SPDY/3.1+portforward.k8s.io`` (kubectl ≥ 1.30): binary
   messages carry the raw bytes of a SPDY/3.1 connection (boundaries mean nothing).
2. ``POST`` with ``Upgrade: SPDY/3.1`` and ``X-Stream-Protocol-Version:
   portforward.k8s.io`` (kubectl's fallback, and every older client): after ``101`` the
   connection itself carries SPDY.
3. **WebSocket channel protocol** ``v4.channel.k8s.io`` (or v5, v4.base64) with
   ``?ports=80,8080`` (the Python client): see below.

SPDY forms (1, 2)
=================

For every local connection the client opens two streams, both with headers ``port`` (the
pod port), ``requestid`` (pairs them) and ``streamtype``: ``error`` first, then ``data``.
The server answers each with SYN_REPLY. Once both are there it connects to the port and
copies bytes both ways on the data stream; the client's FIN on the data stream half-closes
the pod connection. When the pod side ends, the server FINs the data stream, then the error
stream. If the connection cannot be made (or fails), the message
``error forwarding port P to pod NS/NAME: REASON`` is written on the error stream before
its FIN (kubectl prints ``an error occurred forwarding L -> P: ...``). A reset stream
(RST_STREAM, which kubectl sends after each connection) ends the pairing. Clients without
``requestid`` are paired by stream id (data = error + 2), as the kubelet does.

Channel form (3)
================

Ports come from the query: ``ports`` (the API's form, comma-separated or repeated) or
``port`` (repeated; the kubelet's form). Port ``i`` (in query order) uses channel ``2i`` for
data both ways and ``2i+1`` for errors. The server first sends, on every channel, the port
as two bytes little-endian; then connects to every port at once. Data the client sends on
``2i`` goes to port ``i``'s connection; v5's close signal on ``2i`` half-closes it. What the
pod sends comes back on ``2i``; a failure is reported as text on ``2i+1``. When every port's
connection has ended (or failed) the server closes the WebSocket — the only end-of-stream
signal the client has (the Python client then closes its local sockets after delivering
what it received).

Since 0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from pilothouse.streaming import channel as ch
from pilothouse.streaming.channel import StreamingError
from pilothouse.streaming.spdy import ByteTransport, SpdySession, SpdyStream, StreamReset
from pilothouse.streaming.transport import (WebSocketTransport, accept_upgrade,
                                            is_spdy_upgrade, is_websocket_upgrade,
                                            requested_stream_protocols)

__all__ = ["PORT_FORWARD_PROTOCOL", "SPDY_WEBSOCKET_PROTOCOL", "Connect", "parse_ports",
           "serve_port_forward"]

log = logging.getLogger("pilothouse.streaming")

#: The SPDY stream protocol name (``X-Stream-Protocol-Version``).
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
#: The WebSocket subprotocol of kubectl's SPDY-in-WebSocket tunnel.
SPDY_WEBSOCKET_PROTOCOL = "SPDY/3.1+portforward.k8s.io"

#: ``connect(port) -> (reader, writer)``: open a connection to ``port`` in the pod.
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

_CHUNK = 32 * 1024


def _port(value: str) -> int:
    try:
        port = int(value.strip())
    except ValueError:
        raise StreamingError(f"invalid port {value!r}: not a number", 400) from None
    if not 0 < port < 65536:
        raise StreamingError(f"invalid port {port}: must be between 1 and 65535", 400)
    return port


def parse_ports(query) -> list[int]:
    """The ports of a port-forward request: ``ports`` (comma-separated and/or repeated)
    and ``port`` (repeated), in order. Raises :class:`StreamingError` (400) for a value
    that is not a port."""
    out: list[int] = []
    for name in ("ports", "port"):
        for value in query.getall(name, []):
            out += [_port(v) for v in value.split(",") if v.strip()]
    return out


async def serve_port_forward(request: web.BaseRequest, connect: Connect, *, pod: str = "",
                             stream_timeout: float = 30.0,
                             enforce_spdy_flow_control: bool = False) -> web.StreamResponse:
    """Serve one port-forward session on ``request`` and return the response for the
    aiohttp handler to return (see the module docstring for the three forms).

    ``pod`` (``namespace/name``) appears in error messages. ``stream_timeout`` bounds the
    wait for the second stream of a SPDY pair. Requests that are not upgrades get 400;
    a channel-protocol request without ports gets 400 before the upgrade.
    """
    try:
        if is_websocket_upgrade(request):
            if SPDY_WEBSOCKET_PROTOCOL in ch.offered_protocols(request.headers):
                ws = web.WebSocketResponse(protocols=[SPDY_WEBSOCKET_PROTOCOL], autoping=True,
                                           max_msg_size=16 << 20, compress=False)
                await ws.prepare(request)
                await _serve_spdy(WebSocketTransport(ws), connect, pod, stream_timeout,
                                  enforce_spdy_flow_control)
                return ws
            ports = parse_ports(request.query)
            if not ports:
                raise StreamingError("at least one port must be given with the ports "
                                     "query parameter", 400)
            cws = await ch.ChannelWebSocket.accept(request, ch.PORT_FORWARD_PROTOCOLS)
            await _serve_channels(cws, ports, connect, pod)
            return cws.ws
        if is_spdy_upgrade(request):
            offered = requested_stream_protocols(request.headers)
            if PORT_FORWARD_PROTOCOL not in offered:
                raise StreamingError(
                    f"unable to upgrade: unable to negotiate protocol: client supports "
                    f"{offered}, server supports [{PORT_FORWARD_PROTOCOL}]", 403)
            conn = await accept_upgrade(request, {
                "Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                "X-Stream-Protocol-Version": PORT_FORWARD_PROTOCOL})
            await _serve_spdy(conn, connect, pod, stream_timeout, enforce_spdy_flow_control)
            return conn.response
        raise StreamingError("Upgrade request required", 400)
    except StreamingError as exc:
        return exc.to_response()


def _failure(port: int, pod: str, exc: BaseException) -> bytes:
    where = f" to pod {pod}" if pod else ""
    reason = exc.message if isinstance(exc, StreamingError) else (str(exc) or type(exc).__name__)
    return f"error forwarding port {port}{where}: {reason}".encode()


# ------------------------------------------------------------------------------- SPDY


class _Pair:
    def __init__(self) -> None:
        self.error: SpdyStream | None = None
        self.data: SpdyStream | None = None
        self.complete = asyncio.Event()


async def _serve_spdy(transport: ByteTransport, connect: Connect, pod: str,
                      stream_timeout: float, enforce: bool) -> None:
    pairs: dict[str, _Pair] = {}

    async def on_stream(stream: SpdyStream) -> None:
        await stream.reply()
        kind = stream.header("streamtype")
        if kind not in ("error", "data"):
            await stream.reset()
            return
        request_id = stream.header("requestid")
        if request_id is None:  # an old client: pair by stream id, data = error + 2
            request_id = f"stream {stream.id if kind == 'error' else stream.id - 2}"
        pair = pairs.setdefault(request_id, _Pair())
        if getattr(pair, kind) is not None:
            await stream.reset()
            return
        setattr(pair, kind, stream)
        if pair.error is not None and pair.data is not None:
            pairs.pop(request_id, None)
            pair.complete.set()
            return
        try:  # the first stream of the pair waits for the second, then forwards
            await asyncio.wait_for(pair.complete.wait(), stream_timeout)
        except asyncio.TimeoutError:
            pairs.pop(request_id, None)
            if kind == "error":
                with contextlib.suppress(ConnectionError):
                    await stream.write(f"timed out waiting for the data stream of request "
                                       f"{request_id}".encode())
                await stream.close()
            else:
                await stream.reset()
            return
        await _forward_pair(pair, connect, pod)

    session = SpdySession(transport, server=True, on_stream=on_stream,
                          enforce_send_window=enforce)
    await session.serve()


async def _forward_pair(pair: _Pair, connect: Connect, pod: str) -> None:
    data, error = pair.data, pair.error
    assert data is not None and error is not None
    try:
        port = _port(data.header("port", "") or "")
    except StreamingError as exc:
        await _fail(error, data, exc.message.encode())
        return
    try:
        reader, writer = await connect(port)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await _fail(error, data, _failure(port, pod, exc))
        return

    async def upstream() -> bool:  # client -> pod; True when the client reset the stream
        try:
            while chunk := await data.read():
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            return False
        except StreamReset:
            return True
        except (ConnectionError, OSError):
            return False

    async def downstream() -> None:  # pod -> client
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(_CHUNK):
                await data.write(chunk)
        await data.close()

    up, down = asyncio.create_task(upstream()), asyncio.create_task(downstream())
    try:
        while not down.done():
            await asyncio.wait({t for t in (up, down) if not t.done()},
                               return_when=asyncio.FIRST_COMPLETED)
            if up.done() and up.result():  # reset: nothing more to deliver
                break
        await error.close()
        writer.close()
        await up
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        writer.close()


async def _fail(error: SpdyStream, data: SpdyStream, message: bytes) -> None:
    log.info("port-forward: %s", message.decode(errors="replace"))
    with contextlib.suppress(ConnectionError):
        await error.write(message)
    await error.close()
    await data.close()


# --------------------------------------------------------------------------- channels


class _Port:
    def __init__(self, index: int, port: int):
        self.index, self.port = index, port
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()  # connected, or failed
        self.done = asyncio.Event()   # the pod side ended, or the connection failed


async def _serve_channels(cws: ch.ChannelWebSocket, ports: list[int], connect: Connect,
                          pod: str) -> None:
    states = [_Port(i, port) for i, port in enumerate(ports)]
    tasks: list[asyncio.Task] = []
    try:
        for state in states:
            prefix = struct.pack("<H", state.port)
            await cws.send(2 * state.index, prefix)
            await cws.send(2 * state.index + 1, prefix)
        tasks = [asyncio.create_task(_channel_port(cws, state, connect, pod))
                 for state in states]
        inbound = asyncio.create_task(_channel_inbound(cws, states))

        async def every_port_done() -> None:
            for state in states:
                await state.done.wait()
        all_done = asyncio.create_task(every_port_done())
        tasks += [inbound, all_done]
        await asyncio.wait({inbound, all_done}, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        await cws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in states:
            if state.writer is not None:
                state.writer.close()


async def _channel_port(cws: ch.ChannelWebSocket, state: _Port, connect: Connect,
                        pod: str) -> None:
    try:
        try:
            reader, state.writer = await connect(state.port)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.ready.set()
            log.info("port-forward: %s", _failure(state.port, pod, exc).decode())
            with contextlib.suppress(ConnectionError, RuntimeError):
                await cws.send(2 * state.index + 1, _failure(state.port, pod, exc))
            return
        state.ready.set()
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(_CHUNK):
                await cws.send(2 * state.index, chunk)
    finally:
        state.ready.set()
        state.done.set()


async def _channel_inbound(cws: ch.ChannelWebSocket, states: list[_Port]) -> None:
    while True:
        msg = await cws.receive()
        if msg is None:
            return
        index, kind = divmod(msg.channel, 2)
        if kind or index >= len(states):
            continue  # error channels are server -> client only
        state = states[index]
        await state.ready.wait()
        writer = state.writer
        if writer is None or writer.is_closing():
            continue
        try:
            if msg.closed:
                if writer.can_write_eof():
                    writer.write_eof()
            elif msg.data:
                writer.write(msg.data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
