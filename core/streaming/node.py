"""The node agent's streaming endpoint: its paths, and an aiohttp app built on a backend.

The API server answers ``pods/log``, ``pods/exec``, ``pods/attach`` and
``pods/portforward`` by proxying to the agent of the pod's node, found from the Node object:
the address is the ``InternalIP`` entry of ``status.addresses`` and the port is
``status.daemonEndpoints.kubeletEndpoint.Port`` (10250 when unset). The agent serves the
kubelet's paths (plain HTTP for now; HTTPS with the cluster CA later):

==============================================  ============================================
path                                            serves
==============================================  ============================================
``GET /containerLogs/{namespace}/{pod}/{c}``    the log of container ``c``; query: the
                                                :class:`~pilothouse.streaming.LogOptions`
                                                parameters (``follow``, ``tailLines``, …)
``GET|POST /exec/{namespace}/{pod}/{c}``        exec in ``c``; query: ``command``
                                                (repeated), ``input``, ``output``,
                                                ``error``, ``tty`` (``1`` = on)
``GET|POST /attach/{namespace}/{pod}/{c}``      attach to ``c``'s main process; query as
                                                exec, without ``command``
``GET|POST /portForward/{namespace}/{pod}``     port-forward; query: ``port`` (repeated)
                                                for the channel protocol, none for SPDY
==============================================  ============================================

Exec, attach and port-forward are upgrades: a WebSocket (channel protocol, or kubectl's
SPDY tunnel for port-forward) or ``POST`` + ``Upgrade: SPDY/3.1``; the API server relays
them unchanged. Errors before the upgrade are ``Status`` JSON bodies with the HTTP code;
after it they travel on the error channel/stream.

:func:`node_app` (or :func:`add_node_routes`) serves those paths from a
:class:`NodeStreamingBackend`, whose four methods the agent implements.

Since 0.1.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator

from aiohttp import web

from pilothouse.streaming.channel import StreamingError
from pilothouse.streaming.logs import LogOptions, serve_logs
from pilothouse.streaming.portforward import serve_port_forward
from pilothouse.streaming.remotecommand import (ExecOptions, Process, serve_attach,
                                                serve_exec)

__all__ = [
    "ATTACH_PATH",
    "CONTAINER_LOGS_PATH",
    "DEFAULT_NODE_PORT",
    "EXEC_PATH",
    "PORT_FORWARD_PATH",
    "NodeStreamingBackend",
    "add_node_routes",
    "node_app",
    "node_path",
]

CONTAINER_LOGS_PATH = "/containerLogs/{namespace}/{pod}/{container}"
EXEC_PATH = "/exec/{namespace}/{pod}/{container}"
ATTACH_PATH = "/attach/{namespace}/{pod}/{container}"
PORT_FORWARD_PATH = "/portForward/{namespace}/{pod}"
#: The port used when a Node has no ``status.daemonEndpoints.kubeletEndpoint.Port``.
DEFAULT_NODE_PORT = 10250


def node_path(template: str, **names: str) -> str:
    """Fill one of the ``*_PATH`` templates, quoting each name."""
    return template.format(**{k: urllib.parse.quote(v, safe="") for k, v in names.items()})


class NodeStreamingBackend:
    """What a node's streaming endpoint does; subclass it and override what the node
    supports (the defaults answer ``404 NotFound``). Each method is called by the route
    handlers of :func:`add_node_routes`, on the agent's event loop, once per request.

    Raise :class:`~pilothouse.streaming.StreamingError` with the Kubernetes code and
    reason for a failure the client should see (unknown pod or container: 404; container
    not running: 400); any other exception is reported as an internal error.
    """

    async def container_logs(self, namespace: str, pod: str, container: str,
                             options: LogOptions) -> AsyncIterator[bytes]:
        """Open the log of ``container`` and return an async iterator of its bytes, in
        the text form users see (``timestamps``, ``tailLines``, ``sinceTime``,
        ``limitBytes``, ``previous`` applied). With ``options.follow`` the iterator keeps
        yielding new output until the container stops. Awaiting the method must not wait
        for output: errors raised here become the HTTP response; the iterator is closed
        (``aclose``) when the client leaves."""
        raise StreamingError(f"container {container!r} in pod {namespace}/{pod} has no "
                             f"logs on this node", 404)

    async def exec(self, namespace: str, pod: str, container: str,
                   options: ExecOptions) -> Process:
        """Start ``options.command`` in the container and return the process (see
        :class:`~pilothouse.streaming.Process`): pipes for the streams the options ask
        for, a terminal when ``options.tty``. Called after the client's upgrade."""
        raise StreamingError(f"container {container!r} not found in pod {namespace}/{pod}",
                             404)

    async def attach(self, namespace: str, pod: str, container: str,
                     options: ExecOptions) -> Process:
        """Connect to the container's main process (its stdin if ``options.stdin``, its
        output from now on) and return it as a :class:`~pilothouse.streaming.Process`
        whose ``wait()`` ends when the container does."""
        raise StreamingError(f"container {container!r} not found in pod {namespace}/{pod}",
                             404)

    async def port_forward(self, namespace: str, pod: str,
                           port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP connection to ``port`` in the pod's network namespace. Called once
        per forwarded connection."""
        raise StreamingError(f"pod {namespace}/{pod} not found on this node", 404)


def add_node_routes(app: web.Application, backend: NodeStreamingBackend, *,
                    kill_exec_on_disconnect: bool = True) -> None:
    """Add the four streaming routes of the module docstring to ``app``."""

    async def logs(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod",
                                                               "container"))
        return await serve_logs(request, lambda options: backend.container_logs(
            ns, pod, container, options))

    async def exec_(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod",
                                                               "container"))
        return await serve_exec(request, lambda options: backend.exec(
            ns, pod, container, options), kill_on_disconnect=kill_exec_on_disconnect)

    async def attach(request: web.Request) -> web.StreamResponse:
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod",
                                                               "container"))
        return await serve_attach(request, lambda options: backend.attach(
            ns, pod, container, options))

    async def port_forward(request: web.Request) -> web.StreamResponse:
        ns, pod = request.match_info["namespace"], request.match_info["pod"]
        return await serve_port_forward(
            request, lambda port: backend.port_forward(ns, pod, port), pod=f"{ns}/{pod}")

    app.router.add_get(CONTAINER_LOGS_PATH, logs)
    for method in ("GET", "POST"):
        app.router.add_route(method, EXEC_PATH, exec_)
        app.router.add_route(method, ATTACH_PATH, attach)
        app.router.add_route(method, PORT_FORWARD_PATH, port_forward)


def node_app(backend: NodeStreamingBackend, **kwargs) -> web.Application:
    """A new aiohttp application serving :func:`add_node_routes` for ``backend``."""
    app = web.Application()
    add_node_routes(app, backend, **kwargs)
    return app
