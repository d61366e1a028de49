"""``pilothouse.streaming``: the wire protocols of ``kubectl logs``, ``exec``, ``attach``
and ``port-forward``, shared by the API server (which relays them) and the node agent
(which serves them).

How a streaming request travels::

    kubectl ──► API server  GET|POST /api/v1/namespaces/NS/pods/P/SUBRESOURCE
                  │  looks up the pod, its node, and the node agent's address
                  ▼
               node agent   /containerLogs/NS/P/C   /exec/NS/P/C   /attach/NS/P/C
                            /portForward/NS/P       (the kubelet's paths; see node)

Logs are a plain streamed HTTP response. Exec, attach and port-forward are connection
upgrades; the API server relays them frame for frame (WebSocket) or byte for byte (SPDY)
without looking inside, so the node agent speaks the client's protocol:

========================  ======================================  =========================
operation                 client offers                           module
========================  ======================================  =========================
exec / attach             WebSocket ``v5.channel.k8s.io`` (kubectl :mod:`.remotecommand`,
                          ≥1.30), ``v5,v4.channel.k8s.io``         :mod:`.channel`
                          (Python client); old clients: ``POST``
                          + ``Upgrade: SPDY/3.1``
                          (``v4.channel.k8s.io`` streams)
port-forward              WebSocket ``SPDY/3.1+portforward.k8s.io`` :mod:`.portforward`,
                          (kubectl, SPDY frames inside), then the  :mod:`.spdy`
                          ``POST`` SPDY upgrade; the Python
                          client: WebSocket ``v4.channel.k8s.io``
                          with ``?ports=``
========================  ======================================  =========================

What a node agent calls
=======================

The simplest way is a :class:`NodeStreamingBackend` subclass served by :func:`node_app`
(or :func:`add_node_routes` on the agent's own app)::

    class Backend(NodeStreamingBackend):
        async def container_logs(self, namespace, pod, container, options): ...
        async def exec(self, namespace, pod, container, options): ...      # -> Process
        async def attach(self, namespace, pod, container, options): ...    # -> Process
        async def port_forward(self, namespace, pod, port): ...            # -> (reader, writer)

The building blocks, for an agent with its own routes:

* :func:`serve_logs` / :func:`stream_response` — a streamed ``text/plain`` log response;
  :class:`LogOptions` parses and validates the query.
* :func:`serve_exec` / :func:`serve_attach` — one exec/attach session over either
  protocol, given ``start(ExecOptions) -> Process`` (an
  :class:`asyncio.subprocess.Process` is a valid :class:`Process`).
* :func:`serve_port_forward` — one port-forward session in any of its three forms, given
  ``connect(port) -> (asyncio.StreamReader, asyncio.StreamWriter)``.
* :class:`StreamingError` — raise it from a callback to send a Kubernetes ``Status``
  (code and reason) to the client.
* :mod:`.spdy` (:class:`SpdySession`, frame codec), :mod:`.channel` (channel protocol and
  final Status) and :mod:`.transport` (non-WebSocket HTTP upgrades on aiohttp) for anything
  else.

Since 0.1.
"""

from pilothouse.streaming.channel import (ChannelWebSocket, StreamingError, error_status,
                                          exit_status, success_status)
from pilothouse.streaming.logs import LogOptions, serve_logs, stream_response
from pilothouse.streaming.node import (ATTACH_PATH, CONTAINER_LOGS_PATH, DEFAULT_NODE_PORT,
                                       EXEC_PATH, PORT_FORWARD_PATH, NodeStreamingBackend,
                                       add_node_routes, node_app, node_path)
from pilothouse.streaming.portforward import Connect, parse_ports, serve_port_forward
from pilothouse.streaming.remotecommand import (ExecOptions, Process, StartProcess,
                                                serve_attach, serve_exec)
from pilothouse.streaming.spdy import SpdySession, SpdyStream, StreamReset

__all__ = [
    "ATTACH_PATH",
    "CONTAINER_LOGS_PATH",
    "DEFAULT_NODE_PORT",
    "EXEC_PATH",
    "PORT_FORWARD_PATH",
    "ChannelWebSocket",
    "Connect",
    "ExecOptions",
    "LogOptions",
    "NodeStreamingBackend",
    "Process",
    "SpdySession",
    "SpdyStream",
    "StartProcess",
    "StreamReset",
    "StreamingError",
    "add_node_routes",
    "error_status",
    "exit_status",
    "node_app",
    "node_path",
    "parse_ports",
    "serve_attach",
    "serve_exec",
    "serve_logs",
    "serve_port_forward",
    "stream_response",
    "success_status",
]
