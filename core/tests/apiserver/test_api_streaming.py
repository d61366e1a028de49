"""Logs, exec and port-forward end to end: the real kubectl and the official Python client
against a real API server, which relays to a small node endpoint built from
``pilothouse.streaming`` (registered as a Node with its address and port; pods bound to it
through the API). Exec runs local subprocesses; port-forward reaches a local HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import subprocess
import threading
import urllib.request

import kubernetes
import pytest
from aiohttp import web
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward, stream

from pilothouse.streaming import NodeStreamingBackend, StreamingError, node_app
from pilothouse.testing.cluster import kubectl_path

NODE = "stream-node"
HTTP_BODY = b"hello from the pod\n"


class LogSource:
    """A container log the test appends to (from any thread) and can finish."""

    def __init__(self, loop, lines=()):
        self.loop, self.lines, self.finished = loop, list(lines), False
        self.changed = asyncio.Event()
        self.closed = threading.Event()  # set when a reader's iterator is closed

    def append(self, line: str) -> None:
        def do():
            self.lines.append(line)
            self.changed.set()
        self.loop.call_soon_threadsafe(do)

    def finish(self) -> None:
        def do():
            self.finished = True
            self.changed.set()
        self.loop.call_soon_threadsafe(do)

    async def iterate(self, options):
        try:
            async for chunk in self._iterate(options):
                yield chunk
        finally:
            self.closed.set()

    async def _iterate(self, options):
        lines = self.lines[-options.tail_lines:] if options.tail_lines else list(self.lines)
        if options.tail_lines == 0:
            lines = []
        sent = len(self.lines)
        budget = options.limit_bytes

        def render(line):
            text = (f"2024-05-01T10:00:00.000000000Z {line}\n" if options.timestamps
                    else f"{line}\n").encode()
            return text
        for line in lines:
            data = render(line)
            if budget is not None:
                data, budget = data[:budget], budget - len(data)
            yield data
            if budget is not None and budget <= 0:
                return
        while options.follow and not self.finished:
            self.changed.clear()
            if sent == len(self.lines):
                await self.changed.wait()
            for line in self.lines[sent:]:
                yield render(line)
            sent = len(self.lines)


class Backend(NodeStreamingBackend):
    def __init__(self, loop):
        self.loop = loop
        self.logs: dict[tuple, LogSource] = {}
        self.ports: dict[int, int] = {}
        self.seen: list = []
        self.processes: list = []
        self.requests: list = []  # (method, first path segment, Upgrade, subprotocols,
        #                           X-Stream-Protocol-Version) as the node received them

    async def container_logs(self, namespace, pod, container, options):
        self.seen.append(("logs", namespace, pod, container, options))
        source = self.logs.get((namespace, pod, container))
        if source is None:
            raise StreamingError(f'container "{container}" in pod "{pod}" is waiting to '
                                 f'start: ContainerCreating', 400)
        return source.iterate(options)

    async def exec(self, namespace, pod, container, options):
        self.seen.append(("exec", namespace, pod, container, options))
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        self.processes.append(await asyncio.create_subprocess_exec(
            *options.command, stdin=pipe if options.stdin else devnull,
            stdout=pipe if options.stdout else devnull,
            stderr=pipe if options.stderr else devnull))
        return self.processes[-1]

    async def attach(self, namespace, pod, container, options):
        """The test's stand-in for a main process: greets, then echoes stdin."""
        self.seen.append(("attach", namespace, pod, container, options))
        return await self.exec(namespace, pod, container, type(options)(
            ("sh", "-c", "echo attached; cat"), container, options.stdin, options.stdout,
            options.stderr, options.tty))

    async def port_forward(self, namespace, pod, port):
        self.seen.append(("portforward", namespace, pod, port))
        return await asyncio.open_connection("127.0.0.1", self.ports.get(port, 1))


async def start_endpoints(backend):
    async def hello(request):
        if request.method == "POST":  # echo the body upper-cased
            return web.Response(body=(await request.read()).upper(),
                                headers={"Connection": "close"})
        return web.Response(body=HTTP_BODY + request.path.encode() + b"\n",
                            headers={"Connection": "close"})

    @web.middleware
    async def record(request, handler):
        h = request.headers
        backend.requests.append((request.method, request.path.split("/")[1], h.get("Upgrade"),
                                 h.get("Sec-WebSocket-Protocol"),
                                 ",".join(h.getall("X-Stream-Protocol-Version", []))))
        return await handler(request)

    node = node_app(backend)
    node.middlewares.append(record)
    runners, ports = [], []
    for app in (node, _http_app(hello)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])
    return runners, ports


def _http_app(handler):
    app = web.Application(client_max_size=1 << 24)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def pod_manifest(name, containers):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": c, "image": "busybox"} for c in containers]}}


@pytest.fixture(scope="module")
def cluster(apiserver):
    loop = apiserver.loop
    backend = Backend(loop)
    runners, (node_port, http_port) = apiserver.run(start_endpoints(backend))
    backend.ports[80] = http_port
    client = apiserver.k8s_client()
    core = kubernetes.client.CoreV1Api(client)
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    core.patch_node_status(NODE, {"status": {
        "addresses": [{"type": "Hostname", "address": "stream-node.invalid"},
                      {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": node_port}}}})
    for name, containers in (("web", ["main"]), ("multi", ["a", "b"]),
                             ("pending", ["main"])):
        core.create_namespaced_pod("default", pod_manifest(name, containers))
        if name == "pending":
            continue
        core.create_namespaced_pod_binding(name, "default", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}},
            _preload_content=False)
        core.patch_namespaced_pod_status(name, "default", {"status": {"phase": "Running"}})
    backend.logs[("default", "web", "main")] = LogSource(loop, ["line one", "line two",
                                                                "line three"])
    backend.logs[("default", "multi", "a")] = LogSource(loop, ["from a"])
    backend.logs[("default", "multi", "b")] = LogSource(loop, ["from b"])
    backend.core = core
    yield backend

    async def stop():
        for runner in runners:
            await runner.cleanup()
    apiserver.run(stop())


def kubectl_env(apiserver, **extra):
    return {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig),
            "HOME": str(apiserver.workdir), **extra}


def kubectl(apiserver, *args, input=None, timeout=60, **env):
    return subprocess.run([kubectl_path(), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, env=kubectl_env(apiserver, **env))


def last(backend, kind):
    return [s for s in backend.seen if s[0] == kind][-1]


# ------------------------------------------------------------------------------------ logs


def test_kubectl_logs(apiserver, cluster):
    out = kubectl(apiserver, "logs", "web")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "line one\nline two\nline three\n"
    out = kubectl(apiserver, "logs", "web", "--tail=1", "--timestamps", "--limit-bytes=100",
                  "--since=5m")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "2024-05-01T10:00:00.000000000Z line three\n"
    options = last(cluster, "logs")[4]
    assert (options.tail_lines, options.timestamps, options.limit_bytes,
            options.since_seconds, options.follow) == (1, True, 100, 300, False)
    out = kubectl(apiserver, "logs", "web", "--since-time=2024-05-01T10:00:00.5Z", "-p")
    assert out.returncode == 0, out.stderr
    options = last(cluster, "logs")[4]
    assert (options.since_time, options.previous) == ("2024-05-01T10:00:00Z", True)


def test_kubectl_logs_picks_the_container(apiserver, cluster):
    out = kubectl(apiserver, "logs", "multi", "-c", "b")
    assert (out.returncode, out.stdout) == (0, "from b\n"), out.stderr
    out = kubectl(apiserver, "logs", "multi")  # kubectl defaults to the first container
    assert out.stdout == "from a\n"


def test_logs_errors_like_kubernetes(apiserver, cluster):
    core = cluster.core
    assert core.read_namespaced_pod_log("web", "default") == "line one\nline two\nline three\n"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("multi", "default")
    status = json.loads(info.value.body)
    assert info.value.status == 400 and status["reason"] == "BadRequest"
    assert status["message"] == \
        "a container name must be specified for pod multi, choose one of: [a b]"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("multi", "default", container="c")
    assert json.loads(info.value.body)["message"] == "container c is not valid for pod multi"
    out = kubectl(apiserver, "logs", "pending")
    assert out.returncode != 0
    assert "pod pending does not have a host assigned" in out.stderr
    out = kubectl(apiserver, "logs", "nosuchpod")
    assert 'pods "nosuchpod" not found' in out.stderr
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("web", "default", tail_lines=-1)
    assert info.value.status == 422
    assert "tailLines" in json.loads(info.value.body)["message"]


def test_node_errors_reach_the_client(apiserver, cluster):
    apiserver_core = cluster.core
    apiserver_core.create_namespaced_pod("default", pod_manifest("starting", ["main"]))
    apiserver_core.create_namespaced_pod_binding("starting", "default", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "starting"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}},
        _preload_content=False)
    out = kubectl(apiserver, "logs", "starting")
    assert out.returncode != 0
    assert 'Error from server (BadRequest): container "main" in pod "starting" is waiting ' \
           'to start: ContainerCreating' in out.stderr


def test_kubectl_logs_follow_streams_as_lines_arrive(apiserver, cluster):
    source = LogSource(apiserver.loop, ["first"])
    cluster.logs[("default", "web", "main")], saved = source, \
        cluster.logs[("default", "web", "main")]
    proc = subprocess.Popen([kubectl_path(), "logs", "-f", "web"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kubectl_env(apiserver))
    lines = _line_reader(proc.stdout)
    try:
        assert lines.get(timeout=60) == "first\n"
        source.append("second")
        assert lines.get(timeout=60) == "second\n"  # arrives while the stream is open
        assert proc.poll() is None
        source.append("third")
        assert lines.get(timeout=60) == "third\n"
        source.finish()
        assert proc.wait(timeout=60) == 0
        assert last(cluster, "logs")[4].follow
    finally:
        cluster.logs[("default", "web", "main")] = saved
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_leaving_kubectl_logs_follow_closes_the_node_stream(apiserver, cluster):
    source = LogSource(apiserver.loop, ["only line"])
    cluster.logs[("default", "web", "main")], saved = source, \
        cluster.logs[("default", "web", "main")]
    proc = subprocess.Popen([kubectl_path(), "logs", "-f", "web"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kubectl_env(apiserver))
    try:
        assert _line_reader(proc.stdout).get(timeout=60) == "only line\n"
        proc.kill()
        proc.wait(timeout=30)
        # the API server notices, drops its node connection, the node closes the log
        assert source.closed.wait(timeout=60)
    finally:
        cluster.logs[("default", "web", "main")] = saved
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_python_client_follows_logs(apiserver, cluster):
    source = LogSource(apiserver.loop, ["alpha"])
    cluster.logs[("default", "multi", "b")], saved = source, \
        cluster.logs[("default", "multi", "b")]
    try:
        resp = cluster.core.read_namespaced_pod_log("multi", "default", container="b",
                                                    follow=True, _preload_content=False)
        chunks = resp.stream(amt=1024, decode_content=False)
        assert next(chunks) == b"alpha\n"
        source.append("beta")
        assert next(chunks) == b"beta\n"
        source.finish()
        assert b"".join(chunks) == b""
    finally:
        cluster.logs[("default", "multi", "b")] = saved


def _line_reader(stream):
    lines: queue.Queue = queue.Queue()

    def run():
        for line in stream:
            lines.put(line)
    threading.Thread(target=run, daemon=True).start()
    return lines


# ------------------------------------------------------------------------------------ exec

@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_kubectl_exec_streams_and_exit_codes(apiserver, cluster, transport):
    env = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"} if transport == "spdy" else {}
    out = kubectl(apiserver, "exec", "web", "--", "sh", "-c", "echo to-out; echo to-err >&2",
                  **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "to-out\n" and out.stderr == "to-err\n"
    method, _, upgrade, subprotocols, versions = cluster.requests[-1]
    if transport == "spdy":
        assert (method, upgrade) == ("POST", "SPDY/3.1") and "v4.channel.k8s.io" in versions
    else:
        assert (method, upgrade, subprotocols) == ("GET", "websocket", "v5.channel.k8s.io")
    exec_ = last(cluster, "exec")
    assert exec_[1:4] == ("default", "web", "main")
    assert exec_[4].command == ("sh", "-c", "echo to-out; echo to-err >&2")
    out = kubectl(apiserver, "exec", "web", "--", "sh", "-c", "echo partial; exit 3", **env)
    assert out.returncode == 3
    assert out.stdout == "partial\n"
    assert "command terminated with exit code 3" in out.stderr


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_kubectl_exec_with_stdin(apiserver, cluster, transport):
    env = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"} if transport == "spdy" else {}
    data = "".join(f"line {i}\n" for i in range(2000))  # > 64 KiB: several frames
    out = kubectl(apiserver, "exec", "-i", "web", "--", "sh", "-c", "cat; echo done",
                  input=data, **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data + "done\n"
    assert last(cluster, "exec")[4].stdin


def test_kubectl_attach(apiserver, cluster):
    out = kubectl(apiserver, "attach", "-i", "web", "-c", "main", input="hi there\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("attached\nhi there\n")
    assert last(cluster, "attach")[1:4] == ("default", "web", "main")


def test_leaving_kubectl_exec_ends_the_command(apiserver, cluster):
    proc = subprocess.Popen([kubectl_path(), "exec", "web", "--", "sh", "-c",
                             "echo started; exec sleep 1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kubectl_env(apiserver))
    try:
        assert _line_reader(proc.stdout).get(timeout=60) == "started\n"
        command = cluster.processes[-1]
        proc.kill()
        proc.wait(timeout=30)
        # the API server's relay closes the node connection, the node kills the command
        assert asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(command.wait(), 30), apiserver.loop).result(60) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_kubectl_exec_errors(apiserver, cluster):
    out = kubectl(apiserver, "exec", "multi", "-c", "nope", "--", "true")
    assert out.returncode != 0 and "container nope is not valid for pod multi" in out.stderr
    out = kubectl(apiserver, "exec", "web", "--", "/no/such/binary")
    assert out.returncode != 0
    assert "/no/such/binary" in out.stderr


def test_python_client_exec(apiserver, cluster):
    core = cluster.core
    text = stream(core.connect_get_namespaced_pod_exec, "web", "default",
                  command=["sh", "-c", "echo from-python"], stderr=True, stdin=False,
                  stdout=True, tty=False)
    assert text == "from-python\n"
    ws = stream(core.connect_get_namespaced_pod_exec, "multi", "default", container="b",
                command=["sh", "-c", "echo out; echo err >&2; exit 5"], stderr=True,
                stdin=False, stdout=True, tty=False, _preload_content=False)
    ws.run_forever(timeout=60)
    assert ws.returncode == 5
    assert ws.read_stdout() == "out\n" and ws.read_stderr() == "err\n"
    assert last(cluster, "exec")[3] == "b"


def test_python_client_exec_with_stdin(apiserver, cluster):
    ws = stream(cluster.core.connect_get_namespaced_pod_exec, "web", "default",
                command=["cat"], stderr=True, stdin=True, stdout=True, tty=False,
                _preload_content=False)
    ws.write_stdin("ping\n")
    assert ws.readline_stdout(timeout=60) == "ping"
    ws.close_channel(0)  # v5: end of stdin, so cat exits
    ws.run_forever(timeout=60)
    assert ws.returncode == 0


# ---------------------------------------------------------------------------- port-forward

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("transport", ["websocket", "spdy"])
def test_kubectl_port_forward(apiserver, cluster, transport):
    env = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"} if transport == "spdy" else {}
    local = _free_port()
    proc = subprocess.Popen([kubectl_path(), "port-forward", "pod/web", f"{local}:80"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kubectl_env(apiserver, **env))
    lines = _line_reader(proc.stdout)
    try:
        assert lines.get(timeout=60).startswith(f"Forwarding from 127.0.0.1:{local} -> 80")
        for path in ("/first", "/second"):  # one SPDY stream pair per connection
            with urllib.request.urlopen(f"http://127.0.0.1:{local}{path}", timeout=60) as r:
                assert r.read() == HTTP_BODY + path.encode() + b"\n"
        assert last(cluster, "portforward")[1:] == ("default", "web", 80)
        method, path, upgrade, subprotocols, versions = cluster.requests[-1]
        assert path == "portForward"
        if transport == "spdy":
            assert (method, upgrade, versions) == ("POST", "SPDY/3.1", "portforward.k8s.io")
        else:
            assert (upgrade, subprotocols) == ("websocket", "SPDY/3.1+portforward.k8s.io")
        big = bytes(range(97, 123)) * 20_000  # 520 KB, more than a SPDY window, both ways
        request = urllib.request.Request(f"http://127.0.0.1:{local}/echo", data=big)
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.read() == big.upper()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_kubectl_port_forward_to_a_closed_port(apiserver, cluster):
    local = _free_port()
    proc = subprocess.Popen([kubectl_path(), "port-forward", "pod/web", f"{local}:81"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kubectl_env(apiserver))
    lines = _line_reader(proc.stdout)
    try:
        assert lines.get(timeout=60).startswith("Forwarding from")
        with socket.create_connection(("127.0.0.1", local), timeout=60) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert sock.recv(100) == b""  # nothing listens on 81: the connection ends
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "error forwarding port 81 to pod default/web" in err


def test_python_client_port_forward(apiserver, cluster):
    pf = portforward(cluster.core.connect_get_namespaced_pod_portforward, "web", "default",
                     ports="80")
    sock = pf.socket(80)
    sock.settimeout(60)
    sock.sendall(b"GET /py HTTP/1.0\r\nHost: pod\r\n\r\n")
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    assert got.startswith(b"HTTP/1.1 200") or got.startswith(b"HTTP/1.0 200")
    assert got.endswith(HTTP_BODY + b"/py\n")
    assert pf.error(80) is None
    assert cluster.requests[-1][1:4] == ("portForward", "websocket",
                                         "v5.channel.k8s.io,v4.channel.k8s.io")
    sock.close()
    pf.close()


# ------------------------------------------------------------------------ node trouble

def test_unreachable_and_addressless_nodes(apiserver, cluster):
    core = cluster.core
    for node, status in (("dead-node", {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": _free_port()}}}),
            ("bare-node", {})):
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        if status:
            core.patch_node_status(node, {"status": status})
        pod = node.split("-")[0]
        core.create_namespaced_pod("default", pod_manifest(pod, ["main"]))
        core.create_namespaced_pod_binding(pod, "default", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
            _preload_content=False)
    out = kubectl(apiserver, "logs", "dead")
    assert out.returncode != 0 and "error dialing backend" in out.stderr
    out = kubectl(apiserver, "exec", "dead", "--", "true")
    assert out.returncode != 0 and "error dialing backend" in out.stderr
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("bare", "default")
    assert info.value.status == 503
    assert "has no address for its agent" in json.loads(info.value.body)["message"]


def test_websocket_sessions_also_need_create_permission():
    """White-box: a GET upgrade to pods/exec is authorized again with the verb create."""
    from types import SimpleNamespace

    from pilothouse.apiserver.proxy import NodeProxy
    from pilothouse.apiserver.request import parse_path
    from pilothouse.model import errors
    from pilothouse.model.kinds import builtin_registry

    asked = []

    async def authorize(user, info):
        asked.append((info.verb, info.resource, info.subresource))
        raise errors.Forbidden("pods/exec", "web", "no create")

    info = parse_path("GET", "/api/v1/namespaces/default/pods/web/exec", {})
    ctx = SimpleNamespace(info=info, kind=builtin_registry().get("", "v1", "Pod"),
                          request=SimpleNamespace(method="GET"), user="someone",
                          server=SimpleNamespace(authorize=authorize))
    with pytest.raises(errors.Forbidden):
        asyncio.run(NodeProxy()(ctx))
    assert asked == [("create", "pods", "exec")]


def test_container_choice_and_node_errors_white_box():
    from pilothouse.apiserver.proxy import container_of, node_error
    from pilothouse.model import errors

    pod = {"metadata": {"name": "p"},
           "spec": {"initContainers": [{"name": "init"}],
                    "containers": [{"name": "a"}, {"name": "b"}],
                    "ephemeralContainers": [{"name": "debug"}]}}
    assert container_of(pod, "init") == "init" and container_of(pod, "debug") == "debug"
    with pytest.raises(errors.BadRequest) as info:
        container_of(pod, "")
    assert str(info.value) == ("a container name must be specified for pod p, choose one "
                               "of: [init a b debug]")
    single = {"metadata": {"name": "s"}, "spec": {"containers": [{"name": "only"}]}}
    assert container_of(single, "") == "only"
    err = node_error(404, b"container not found\n")
    assert (err.code, err.reason, err.message) == (404, "NotFound", "container not found")
    err = node_error(400, json.dumps({"kind": "Status", "status": "Failure", "code": 400,
                                      "reason": "BadRequest", "message": "no"}).encode())
    assert (err.code, err.reason, err.message) == (400, "BadRequest", "no")
    err = node_error(502, b"")
    assert (err.code, err.reason) == (502, "InternalError")
