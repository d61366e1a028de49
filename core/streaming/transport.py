"""Byte transports and HTTP/1.1 connection upgrades (other than WebSocket) for aiohttp.

Kubernetes' SPDY streaming starts as a plain HTTP/1.1 request::

    POST /portForward/default/web HTTP/1.1
    Connection: Upgrade
    Upgrade: SPDY/3.1
    X-Stream-Protocol-Version: portforward.k8s.io

answered by ``101 Switching Protocols`` with the same ``Upgrade`` header and the chosen
``X-Stream-Protocol-Version``, after which the TCP connection carries SPDY frames. aiohttp
only switches protocols for WebSocket, so :func:`accept_upgrade` takes the connection over
from aiohttp's HTTP parser (server side) and :func:`open_upgrade` speaks the request on a
raw connection (client side, used by the API server to reach a node).

The transports here implement :class:`pilothouse.streaming.spdy.ByteTransport`
(``read() -> bytes``, ``b""`` at end; ``write(bytes)``; ``close()``):

* :class:`UpgradedConnection` — a server-side connection after :func:`accept_upgrade`;
* :class:`StreamTransport` — an ``asyncio`` reader/writer pair (client side);
* :class:`WebSocketTransport` — bytes carried in binary WebSocket messages
  (``SPDY/3.1+portforward.k8s.io``: kubectl's port-forward tunnel).

Since 0.1.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "StreamTransport",
    "UpgradeResponse",
    "UpgradedConnection",
    "WebSocketTransport",
    "accept_upgrade",
    "is_spdy_upgrade",
    "is_websocket_upgrade",
    "open_upgrade",
    "requested_stream_protocols",
]

_READ_LIMIT = 1 << 16


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """True for a WebSocket handshake request."""
    return request.headers.get("Upgrade", "").strip().lower() == "websocket" and \
        "upgrade" in request.headers.get("Connection", "").lower()


def is_spdy_upgrade(request: web.BaseRequest) -> bool:
    """True for a Kubernetes SPDY upgrade request (``Upgrade: SPDY/3.1``)."""
    return request.headers.get("Upgrade", "").strip().lower().startswith("spdy/") and \
        "upgrade" in request.headers.get("Connection", "").lower()


def requested_stream_protocols(headers) -> list[str]:
    """The ``X-Stream-Protocol-Version`` values, in order (repeated headers and
    comma-separated lists both count)."""
    out: list[str] = []
    for value in headers.getall("X-Stream-Protocol-Version", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


class _Feed:
    """Stands in for aiohttp's payload parser: after the upgrade every byte the client
    sends goes to a StreamReader instead of the HTTP parser."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader

    def feed_data(self, data: bytes, size: int = 0):
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()

    def set_exception(self, exc, *args) -> None:
        self.reader.set_exception(exc)


class UpgradedConnection:
    """The client's connection after :func:`accept_upgrade` (a ``ByteTransport``)."""

    def __init__(self, request: web.BaseRequest, response: web.StreamResponse,
                 reader: asyncio.StreamReader):
        self.request, self.response, self._reader = request, response, reader
        self._closed = False

    async def read(self) -> bytes:
        try:
            return await self._reader.read(_READ_LIMIT)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("connection closed")
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionResetError(str(exc)) from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self.request.transport
        if transport is not None:
            transport.close()


async def accept_upgrade(request: web.BaseRequest, headers: dict) -> UpgradedConnection:
    """Answer ``101 Switching Protocols`` with ``headers`` (which should include
    ``Connection: Upgrade`` and ``Upgrade``) and take over the connection. The handler
    must return :attr:`UpgradedConnection.response` when it is done; aiohttp then closes
    the connection."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost before the upgrade")
    reader = asyncio.StreamReader(limit=_READ_LIMIT)
    reader.set_transport(transport)
    # Install the raw feed before the 101 goes out: the client sends its first frames as
    # soon as it reads the 101, and they must not reach the HTTP parser.
    request.protocol.set_parser(_Feed(reader))
    response = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
    response.force_close()
    await response.prepare(request)
    return UpgradedConnection(request, response, reader)


class StreamTransport:
    """An ``asyncio`` reader/writer pair as a ``ByteTransport``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(_READ_LIMIT)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError("connection closed")
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl_module.SSLError):
            pass


class WebSocketTransport:
    """Bytes carried in binary WebSocket messages (server or client side of aiohttp)."""

    def __init__(self, ws):
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if msg.data:
                    return msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data:
                    return msg.data.encode()
            elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return b""

    async def write(self, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("WebSocket closed")
        try:
            await self.ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionResetError(str(exc)) from None

    async def close(self) -> None:
        if not self.ws.closed:
            try:
                await self.ws.close()
            except (ConnectionError, RuntimeError, asyncio.TimeoutError):
                pass


class UpgradeResponse:
    """What :func:`open_upgrade` got back: ``status``, ``reason``, ``headers`` and, when
    the status is not 101, the ``body`` (at most 64 KiB). After a 101, ``transport`` is
    the connection (a :class:`StreamTransport`)."""

    def __init__(self, status: int, reason: str, headers: CIMultiDictProxy, body: bytes,
                 transport: StreamTransport | None):
        self.status, self.reason, self.headers = status, reason, headers
        self.body, self.transport = body, transport


async def open_upgrade(host: str, port: int, method: str, target: str,
                       headers: list[tuple[str, str]], *,
                       ssl: ssl_module.SSLContext | None = None,
                       connect_timeout: float = 10, response_timeout: float = 30,
                       ) -> UpgradeResponse:
    """Send an upgrade request (``target`` is the path and query) on a new connection and
    read the response head. ``headers`` must include ``Connection``/``Upgrade``. Raises
    ``OSError``/``asyncio.TimeoutError`` when the peer cannot be reached."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl, limit=_READ_LIMIT), connect_timeout)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not any(k.lower() == "content-length" for k, _ in headers):
            lines.append("Content-Length: 0")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), response_timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectionResetError(f"not an HTTP response: {status_line!r}")
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        got = CIMultiDict()
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                got.add(k.strip(), v.strip())
        if status == 101:
            return UpgradeResponse(status, reason, CIMultiDictProxy(got), b"",
                                   StreamTransport(reader, writer))
        body = b""
        try:
            if "Content-Length" in got:
                body = await asyncio.wait_for(
                    reader.readexactly(min(int(got["Content-Length"]), 1 << 16)),
                    response_timeout)
            elif got.get("Transfer-Encoding", "").lower() != "chunked":
                body = await asyncio.wait_for(reader.read(1 << 16), response_timeout)
            else:
                body = await asyncio.wait_for(_read_chunked(reader), response_timeout)
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            pass
        writer.close()
        return UpgradeResponse(status, reason, CIMultiDictProxy(got), body, None)
    except BaseException:
        writer.close()
        raise


async def _read_chunked(reader: asyncio.StreamReader, limit: int = 1 << 16) -> bytes:
    out = bytearray()
    while len(out) < limit:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            break
        out += await reader.readexactly(size)
        await reader.readexactly(2)
    return bytes(out)
