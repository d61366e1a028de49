"""The Kubernetes WebSocket channel protocol (``v4.channel.k8s.io``, ``v5.channel.k8s.io``)
and the final ``Status`` of a remote command.

Clients ask for it in ``Sec-WebSocket-Protocol`` (kubectl ≥ 1.30 offers
``v5.channel.k8s.io``; the Python client offers ``v5.channel.k8s.io,v4.channel.k8s.io``)
and the server names the one it chose in its answer.

Messages
========

Every binary message is one *channel* byte followed by data::

    [channel][data ...]

=======  =========  =================================================================
channel  name       carries
=======  =========  =================================================================
0        stdin      client → server: the command's standard input
1        stdout     server → client
2        stderr     server → client (absent with a TTY: the terminal merges it)
3        error      server → client: once, at the end, a ``Status`` (JSON) — see below
4        resize     client → server: ``{"Width": 80, "Height": 24}`` (TTY only)
=======  =========  =================================================================

Port-forward reuses the framing with two channels per requested port ``i``: ``2i`` data
(both ways) and ``2i+1`` error (server → client). The server's first message on each of
them is the port number, two bytes little-endian, before any data.

**v5** adds one message: ``[255, channel]`` closes that channel in the sender's direction.
kubectl sends ``[255, 0]`` when its standard input ends; the server then closes the
command's stdin. With v4 the client cannot signal the end of stdin (the WebSocket close
ends everything).

``v4.base64.channel.k8s.io`` carries the same in *text* messages: the channel as an ASCII
digit (``"1"``) followed by the data in base64.

The final Status
================

On channel 3, once, when the command has ended, then the server closes the WebSocket
(clients read until the close)::

    {"metadata": {}, "status": "Success"}
    {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
     "message": "command terminated with non-zero exit code: exit status 3",
     "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}

kubectl turns the second into ``command terminated with exit code 3`` and exits 3; the
Python client's ``WSClient.returncode`` reads ``causes[0].message``. Any other failure
(``reason`` ``InternalError``, ``NotFound``, …) is shown as an error from the server.

Since 0.1.
"""

from __future__ import annotations

import base64
import dataclasses
import json

import aiohttp
from aiohttp import web

__all__ = [
    "CLOSE_SIGNAL",
    "ERROR",
    "PORT_FORWARD_PROTOCOLS",
    "REMOTE_COMMAND_PROTOCOLS",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDOUT",
    "V4",
    "V4_BASE64",
    "V5",
    "ChannelMessage",
    "ChannelWebSocket",
    "StreamingError",
    "choose_protocol",
    "decode_message",
    "encode_message",
    "error_status",
    "exit_status",
    "offered_protocols",
    "success_status",
]

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
#: Subprotocols served for exec/attach, in the server's order of preference.
REMOTE_COMMAND_PROTOCOLS = (V5, V4, V4_BASE64)
#: Channel subprotocols served for port-forward (v4 first: the Python client's port-forward
#: code does not understand v5's close signal, and a server never needs to send it there).
PORT_FORWARD_PROTOCOLS = (V4, V5, V4_BASE64)


class StreamingError(Exception):
    """A failure to report to a streaming client as a Kubernetes ``Status``: before an
    upgrade as the HTTP response (``code``), after it on the error channel or stream.

    Raise it from the callbacks given to :func:`~pilothouse.streaming.serve_exec`,
    :func:`~pilothouse.streaming.serve_port_forward` and
    :func:`~pilothouse.streaming.serve_logs` with the code and reason Kubernetes would use
    (``404 NotFound`` for an unknown container, ``400 BadRequest`` for a container that
    is not running, …)."""

    _REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 409: "Conflict", 422: "Invalid",
                429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                504: "Timeout"}

    def __init__(self, message: str, code: int = 500, reason: str | None = None):
        super().__init__(message)
        self.message, self.code = message, code
        self.reason = reason or self._REASONS.get(code, "InternalError")

    def to_status(self) -> dict:
        return error_status(self.message, self.reason, self.code)

    def to_response(self) -> web.Response:
        """The error as an HTTP response with a ``Status`` body."""
        body = {"kind": "Status", "apiVersion": "v1", **self.to_status()}
        return web.json_response(body, status=self.code)


def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int, command: list[str] | tuple[str, ...] | None = None) -> dict:
    """The final Status for a command that ended with exit code ``code`` (Success for 0).
    A command killed by signal N is reported as 128 + N, as a shell would."""
    if code == 0:
        return success_status()
    what = f"error executing command [{' '.join(command)}], exit code {code}" if command \
        else f"exit status {code}"
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: {what}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str, reason: str = "InternalError", code: int = 500) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "code": code}


# ------------------------------------------------------------------------- negotiation

def offered_protocols(headers) -> list[str]:
    """The subprotocols a WebSocket client offers (``Sec-WebSocket-Protocol``), in order."""
    out: list[str] = []
    for value in headers.getall("Sec-WebSocket-Protocol", []):
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def choose_protocol(offered: list[str], supported: tuple[str, ...] | list[str]) -> str | None:
    """The first of ``supported`` (the server's preference) that the client offered."""
    for proto in supported:
        if proto in offered:
            return proto
    return None


def encode_message(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One message of ``protocol``: bytes for the binary protocols, str for base64."""
    if protocol == V4_BASE64:
        return str(channel) + base64.b64encode(data).decode("ascii")
    return bytes((channel,)) + data


@dataclasses.dataclass
class ChannelMessage:
    """A received message: data on ``channel``, or (``closed``) v5's close signal for it."""
    channel: int
    data: bytes = b""
    closed: bool = False


def decode_message(protocol: str, data: bytes | str) -> ChannelMessage | None:
    """Parse one received message; None for an empty one (ignored, as Kubernetes does)."""
    if isinstance(data, str):
        if not data:
            return None
        if protocol == V4_BASE64 or not protocol.endswith("channel.k8s.io"):
            try:
                return ChannelMessage(int(data[0]), base64.b64decode(data[1:]))
            except ValueError:
                return None
        data = data.encode()
    if not data:
        return None
    if data[0] == CLOSE_SIGNAL and protocol == V5:
        if len(data) < 2:
            return None
        return ChannelMessage(data[1], b"", True)
    return ChannelMessage(data[0], bytes(data[1:]))


class ChannelWebSocket:
    """The server side of a channel-protocol WebSocket (an aiohttp ``WebSocketResponse``
    that negotiated ``protocol``)."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str):
        self.ws, self.protocol = ws, protocol

    @classmethod
    async def accept(cls, request: web.BaseRequest, supported=REMOTE_COMMAND_PROTOCOLS,
                     *, heartbeat: float | None = None) -> "ChannelWebSocket":
        """Complete the handshake with the best protocol both sides support. Raises
        :class:`StreamingError` (400) when there is none."""
        chosen = choose_protocol(offered_protocols(request.headers), supported)
        if chosen is None:
            raise StreamingError(
                f"no supported WebSocket subprotocol offered (Sec-WebSocket-Protocol: "
                f"{request.headers.get('Sec-WebSocket-Protocol', '')!r}); supported: "
                f"{', '.join(supported)}", 400)
        ws = web.WebSocketResponse(protocols=[chosen], autoping=True, heartbeat=heartbeat,
                                   max_msg_size=16 << 20, compress=False)
        await ws.prepare(request)
        return cls(ws, chosen)

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, channel: int, data: bytes) -> None:
        msg = encode_message(self.protocol, channel, data)
        if isinstance(msg, str):
            await self.ws.send_str(msg)
        else:
            await self.ws.send_bytes(msg)

    async def close_channel(self, channel: int) -> None:
        """Send v5's close signal for ``channel`` (nothing with other protocols)."""
        if self.protocol == V5:
            await self.ws.send_bytes(bytes((CLOSE_SIGNAL, channel)))

    async def send_status(self, status: dict) -> None:
        await self.send(ERROR, json.dumps(status).encode())

    async def receive(self, timeout: float | None = None) -> ChannelMessage | None:
        """The next channel message; None once the WebSocket is closing or closed. With a
        ``timeout``, raises :class:`asyncio.TimeoutError` (nothing is lost)."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                decoded = decode_message(self.protocol, msg.data)
                if decoded is not None:
                    return decoded
            elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            else:
                return None

    async def close(self, code: int = aiohttp.WSCloseCode.OK, message: bytes = b"") -> None:
        if not self.ws.closed:
            try:
                await self.ws.close(code=code, message=message)
            except (ConnectionError, RuntimeError):
                pass
