"""The streaming subresources of pods — ``log``, ``exec``, ``attach``, ``portforward`` —
answered by relaying to the node agent of the pod's node.

For each request: look the pod up (404), check it is bound to a node (400 ``pod X does
not have a host assigned``), resolve the container for log/exec/attach (400 when the pod has
several and none is named, or the name is unknown), find the agent's address on the Node
object (``status.addresses`` — InternalIP first — and
``status.daemonEndpoints.kubeletEndpoint.Port``), then:

* ``log`` — ``GET /containerLogs/NS/POD/C`` on the agent with the log options passed
  through, and the body streamed back as it arrives (``text/plain``, chunked);
* ``exec``/``attach``/``portforward`` over WebSocket — the same handshake to the agent
  with the client's subprotocols, then every message relayed both ways unchanged (so the
  subprotocol the agent chose is the one the client gets);
* the same over a SPDY upgrade (``POST``, ``Upgrade: SPDY/3.1``) — the upgrade is repeated
  to the agent and, after its ``101``, bytes are relayed both ways.

Exec, attach and port-forward requests made with ``GET`` (every WebSocket) are authorized a
second time with the verb ``create``, as Kubernetes does since 1.30, so read-only access to
pods never opens a shell.

The node paths and protocols are documented in :mod:`pilothouse.streaming`. The agent is
reached over plain HTTP for now (``NodeProxy(scheme="https", ssl=...)`` is the hook for a
CA-verified connection). Errors before the relay starts are Kubernetes ``Status`` errors;
an agent's own error response is passed on with its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from pilothouse.model import errors
from pilothouse.streaming import channel as ch
from pilothouse.streaming import node as endpoint
from pilothouse.streaming.logs import LogOptions, stream_response
from pilothouse.streaming.portforward import parse_ports
from pilothouse.streaming.remotecommand import ExecOptions
from pilothouse.streaming.transport import (accept_upgrade, is_spdy_upgrade,
                                            is_websocket_upgrade, open_upgrade,
                                            requested_stream_protocols)

log = logging.getLogger("pilothouse.apiserver")

ADDRESS_TYPES = ("InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS", "Hostname")
_SENDABLE_CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011}


class NodeProxy:
    """``APIServer.node_proxy``: serves the streaming subresources for one API server.

    ``scheme`` is ``http`` (default) or ``https`` with ``ssl`` the context that verifies
    the agents; ``address_types`` is the preference order among a Node's addresses;
    ``connect_timeout`` bounds dialing an agent. Relays still open when the API server
    shuts down are closed.
    """

    def __init__(self, server=None, *, scheme: str = "http",
                 ssl: ssl_module.SSLContext | None = None, connect_timeout: float = 10.0,
                 address_types: tuple[str, ...] = ADDRESS_TYPES):
        self.scheme, self.ssl, self.connect_timeout = scheme, ssl, connect_timeout
        self.address_types = address_types
        self._session: aiohttp.ClientSession | None = None
        self._active: set[asyncio.Task] = set()
        if server is not None:
            server.app.on_shutdown.append(self._on_shutdown)
            server.app.on_cleanup.append(self._on_cleanup)

    # -- lifecycle -------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no connection limit: every open log follow or relay holds one connection
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                auto_decompress=False)
        return self._session

    async def _on_shutdown(self, app=None) -> None:
        for task in list(self._active):
            task.cancel()
        await asyncio.gather(*self._active, return_exceptions=True)

    async def _on_cleanup(self, app=None) -> None:
        await self._on_shutdown()
        if self._session is not None:
            await self._session.close()

    async def _supervise(self, coro) -> None:
        """Run a relay so that shutdown can cancel it while its handler returns normally."""
        task = asyncio.ensure_future(coro)
        self._active.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._active.discard(task)
            if not task.done():
                task.cancel()
        if not task.cancelled() and task.exception() is not None:
            log.warning("streaming relay failed: %r", task.exception())

    # -- entry -------------------------------------------------------------------------------
    async def __call__(self, ctx) -> web.StreamResponse:
        info, kind = ctx.info, ctx.kind
        sub = info.subresource
        method = ctx.request.method
        if kind.group != "" or kind.kind != "Pod" or sub not in ("log", "exec", "attach",
                                                                 "portforward"):
            raise errors.MethodNotAllowed(f"{info.resource}/{sub}", info.verb,
                                          group=kind.group)
        if (sub == "log" and method not in ("GET", "HEAD")) or \
                (sub != "log" and method not in ("GET", "POST")):
            raise errors.MethodNotAllowed(f"pods/{sub}", info.verb)
        if sub != "log" and info.verb != "create":
            # As Kubernetes does since 1.30: a WebSocket upgrade arrives as GET, but opening
            # a session is a write, so it also needs "create" on the subresource.
            await ctx.server.authorize(ctx.user, dataclasses.replace(info, verb="create"))
        pod = await ctx.storage.get(info.namespace, info.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.BadRequest(f"pod {info.name} does not have a host assigned")
        if sub == "log":
            return await self.logs(ctx, pod, node_name)
        if sub == "portforward":
            try:
                ports = parse_ports(ctx.query)
            except ch.StreamingError as exc:
                raise errors.BadRequest(exc.message) from None
            path = endpoint.node_path(endpoint.PORT_FORWARD_PATH, namespace=info.namespace,
                                      pod=info.name)
            return await self.relay_upgrade(ctx, node_name, path,
                                            [("port", str(p)) for p in ports])
        try:
            options = ExecOptions.from_query(ctx.query)
            options = ExecOptions(options.command, container_of(pod, options.container),
                                  options.stdin, options.stdout, options.stderr, options.tty)
            options.validate(exec_=sub == "exec")
        except ch.StreamingError as exc:
            raise errors.BadRequest(exc.message) from None
        template = endpoint.EXEC_PATH if sub == "exec" else endpoint.ATTACH_PATH
        path = endpoint.node_path(template, namespace=info.namespace, pod=info.name,
                                  container=options.container)
        return await self.relay_upgrade(ctx, node_name, path, options.to_node_query())

    # -- the node ------------------------------------------------------------------------------
    async def node_address(self, ctx, node_name: str) -> tuple[str, int]:
        """The (host, port) of the agent of ``node_name``."""
        node_kind = ctx.server.registry.get("", "v1", "Node")
        node = await ctx.server.storage(node_kind).get("", node_name)
        status = node.get("status") or {}
        addresses = {}
        for entry in status.get("addresses") or []:
            if isinstance(entry, dict) and entry.get("address"):
                addresses.setdefault(entry.get("type"), entry["address"])
        host = next((addresses[t] for t in self.address_types if t in addresses), None)
        if host is None:
            raise errors.ServiceUnavailable(
                f"node {node_name!r} has no address for its agent (status.addresses "
                f"has none of the types {', '.join(self.address_types)})")
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get(
            "Port") or endpoint.DEFAULT_NODE_PORT
        return host, int(port)

    def _url(self, host: str, port: int, path: str, websocket: bool = False) -> str:
        scheme = self.scheme if not websocket else ("wss" if self.scheme == "https" else "ws")
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"{scheme}://{authority}{path}"

    # -- logs ------------------------------------------------------------------------------------
    async def logs(self, ctx, pod: dict, node_name: str) -> web.StreamResponse:
        info = ctx.info
        try:
            options = LogOptions.from_query(ctx.query)
        except ch.StreamingError as exc:
            raise errors.BadRequest(exc.message) from None
        problems = options.problems()
        if problems:
            raise errors.Invalid("PodLogOptions", info.name, [
                errors.FieldError.invalid(field, value, message) if field else
                errors.FieldError.forbidden("", message) for field, value, message in problems])
        container = container_of(pod, options.container)
        host, port = await self.node_address(ctx, node_name)
        path = endpoint.node_path(endpoint.CONTAINER_LOGS_PATH, namespace=info.namespace,
                                  pod=info.name, container=container)
        url = self._url(host, port, path)
        try:
            upstream = await self._client().get(
                url, params=options.to_query(), ssl=self.ssl if self.ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout))
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise errors.InternalError(f"error dialing backend: {_reason(exc)}") from None
        if upstream.status != 200:
            try:
                body = await upstream.content.read(1 << 16)
            finally:
                upstream.release()
            raise node_error(upstream.status, body)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                return
            finally:
                upstream.close()

        if ctx.request.method == "HEAD":
            upstream.close()
            return web.Response(status=200, content_type="text/plain")
        response: list[web.StreamResponse] = []

        async def relay() -> None:
            response.append(await stream_response(ctx.request, chunks()))
        try:
            await self._supervise(relay())
        finally:
            upstream.close()
        if response:
            return response[0]
        # shut down before the first byte: the 200 was sent; close the connection
        with contextlib.suppress(Exception):
            ctx.request.transport.close()
        return web.Response(status=200)

    # -- upgrades -----------------------------------------------------------------------------
    async def relay_upgrade(self, ctx, node_name: str, path: str,
                            query: list[tuple[str, str]]) -> web.StreamResponse:
        request = ctx.request
        websocket, spdy = is_websocket_upgrade(request), is_spdy_upgrade(request)
        if not (websocket or spdy):
            raise errors.BadRequest("Upgrade request required")
        host, port = await self.node_address(ctx, node_name)
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        if websocket:
            return await self._relay_websocket(request, self._url(host, port, target, True))
        return await self._relay_spdy(request, host, port, target)

    async def _relay_websocket(self, request: web.BaseRequest, url: str) -> web.StreamResponse:
        offered = ch.offered_protocols(request.headers)
        try:
            upstream = await self._client().ws_connect(
                url, protocols=offered, autoping=True, autoclose=True, max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
                ssl=self.ssl if self.ssl is not None else True)
        except aiohttp.WSServerHandshakeError as exc:
            raise node_error(exc.status or 502, b"",
                             f"unable to upgrade connection: {exc.status} {exc.message}"
                             ) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise errors.InternalError(f"error dialing backend: {_reason(exc)}") from None
        try:
            client = web.WebSocketResponse(
                protocols=[upstream.protocol] if upstream.protocol else (), autoping=True,
                max_msg_size=0, compress=False)
            await client.prepare(request)
            await self._supervise(_relay_messages(client, upstream))
        finally:
            if not upstream.closed:
                with contextlib.suppress(Exception):
                    await upstream.close()
        return client

    async def _relay_spdy(self, request: web.BaseRequest, host: str, port: int,
                          target: str) -> web.StreamResponse:
        headers = [("Connection", "Upgrade"), ("Upgrade", request.headers["Upgrade"])]
        headers += [("X-Stream-Protocol-Version", p)
                    for p in requested_stream_protocols(request.headers)]
        try:
            answer = await open_upgrade(host, port, request.method, target, headers,
                                        ssl=self.ssl if self.scheme == "https" else None,
                                        connect_timeout=self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise errors.InternalError(f"error dialing backend: {_reason(exc)}") from None
        if answer.status != 101 or answer.transport is None:
            raise node_error(answer.status, answer.body)
        back = {"Connection": "Upgrade", "Upgrade": answer.headers.get("Upgrade", "SPDY/3.1")}
        if "X-Stream-Protocol-Version" in answer.headers:
            back["X-Stream-Protocol-Version"] = answer.headers["X-Stream-Protocol-Version"]
        try:
            conn = await accept_upgrade(request, back)
            await self._supervise(_relay_bytes(conn, answer.transport))
        finally:
            await answer.transport.close()
        await conn.close()
        return conn.response


def container_of(pod: dict, requested: str) -> str:
    """The container a log/exec/attach request means, Kubernetes' way: the named one (it
    must exist, init and ephemeral containers included), else the only container."""
    spec = pod.get("spec") or {}
    name = pod.get("metadata", {}).get("name", "")
    groups = [spec.get("initContainers") or [], spec.get("containers") or [],
              spec.get("ephemeralContainers") or []]
    names = [c.get("name") for group in groups for c in group if isinstance(c, dict)]
    if requested:
        if requested not in names:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    containers = spec.get("containers") or []
    if len(containers) == 1:
        return containers[0].get("name", "")
    if not containers:
        raise errors.BadRequest(f"a container name must be specified for pod {name}")
    raise errors.BadRequest(f"a container name must be specified for pod {name}, choose "
                            f"one of: [{' '.join(names)}]")


def node_error(status: int, body: bytes, fallback: str = "") -> errors.StatusError:
    """An agent's error answer as a StatusError: its Status body when it sent one,
    otherwise its text with the agent's HTTP code."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            doc.setdefault("code", status)
            return errors.StatusError.from_status(doc)
    message = text or fallback or f"the node agent answered {status}"
    err = errors.StatusError.from_status({"message": message, "code": status})
    if err.reason == "InternalError" and status != 500:
        err.reason = ch.StreamingError(message, status).reason
    return err


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _relay_messages(client: web.WebSocketResponse, upstream) -> None:
    """Copy WebSocket messages both ways until either side closes, then close the other
    with the same code."""

    async def pump(src, dst) -> None:
        async for msg in src:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await dst.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                break
        code = src.close_code if src.close_code in _SENDABLE_CLOSE_CODES else 1000
        if not dst.closed:
            await dst.close(code=code)

    up = asyncio.create_task(pump(client, upstream))
    down = asyncio.create_task(pump(upstream, client))
    try:
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=15)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        for ws in (client, upstream):
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()


async def _relay_bytes(a, b) -> None:
    """Copy bytes both ways between two ByteTransports until either ends."""

    async def pump(src, dst) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read():
                await dst.write(data)

    tasks = [asyncio.create_task(pump(a, b)), asyncio.create_task(pump(b, a))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
