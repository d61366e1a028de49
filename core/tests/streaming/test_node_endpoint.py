"""The node endpoint of pilothouse.streaming on its own (no API server): exec/attach over
the channel protocol (v4, v4.base64, v5) and SPDY, port-forward in its three forms, and
logs, driven by aiohttp clients and this package's own SPDY client."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pty
import struct
import termios

import aiohttp
import pytest
from aiohttp import web

from pilothouse.streaming import (NodeStreamingBackend, StreamingError, node_app, node_path,
                                  EXEC_PATH, PORT_FORWARD_PATH, CONTAINER_LOGS_PATH,
                                  ATTACH_PATH)
from pilothouse.streaming.spdy import SpdySession, StreamReset
from pilothouse.streaming.transport import WebSocketTransport, open_upgrade


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class _PtyReaderProtocol(asyncio.StreamReaderProtocol):
    """A pty master reads EIO once the terminal's last user has gone: that is its end of
    file (asyncio would otherwise drop the output still buffered in the reader)."""

    def connection_lost(self, exc):
        super().connection_lost(None if isinstance(exc, OSError) else exc)


class PtyProcess:
    """A subprocess on a pseudo-terminal, shaped as a streaming Process."""

    def __init__(self, proc, reader, writer, master):
        self.proc, self.stdout, self.stdin, self.master = proc, reader, writer, master
        self.stderr = None
        self.sizes = []

    @classmethod
    async def start(cls, command, size=None):
        master, slave = pty.openpty()
        if size:  # the terminal starts with the client's size
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        proc = await asyncio.create_subprocess_exec(*command, stdin=slave, stdout=slave,
                                                    stderr=slave, start_new_session=True)
        os.close(slave)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: _PtyReaderProtocol(reader),
                                     os.fdopen(master, "rb", buffering=0))
        wtransport, wprotocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", buffering=0))
        writer = asyncio.StreamWriter(wtransport, wprotocol, None, loop)
        return cls(proc, reader, writer, master)

    def resize(self, width, height):
        self.sizes.append((width, height))
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self):
        return await self.proc.wait()

    def kill(self):
        self.proc.kill()


class Backend(NodeStreamingBackend):
    def __init__(self):
        self.processes = []
        self.sizes_at_start = []
        self.ports = {}
        self.logs_closed = asyncio.Event()

    async def container_logs(self, namespace, pod, container, options):
        if container != "main":
            raise StreamingError(f"container {container} not found", 404)

        async def lines():
            try:
                yield b"one\n"
                yield b"two\n"
                while options.follow:
                    await asyncio.sleep(3600)
            finally:
                self.logs_closed.set()
        return lines()

    async def exec(self, namespace, pod, container, options):
        if container == "missing":
            raise StreamingError('container "missing" not found', 404)
        if container == "broken":
            raise RuntimeError("runtime exploded")
        if options.tty:
            self.sizes_at_start.append(options.terminal_size)
            proc = await PtyProcess.start(options.command, options.terminal_size)
        else:
            pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
            proc = await asyncio.create_subprocess_exec(
                *options.command, stdin=pipe if options.stdin else devnull,
                stdout=pipe if options.stdout else devnull,
                stderr=pipe if options.stderr else devnull)
        self.processes.append(proc)
        return proc

    async def attach(self, namespace, pod, container, options):
        return await self.exec(namespace, pod, container, type(options)(
            ("sh", "-c", "echo attached; cat"), container, options.stdin, options.stdout,
            options.stderr, options.tty))

    async def port_forward(self, namespace, pod, port):
        if port not in self.ports:
            raise ConnectionRefusedError(f"connect: connection refused (port {port})")
        return await asyncio.open_connection("127.0.0.1", self.ports[port])


async def echo_server():
    """A TCP server that answers each line with its upper-case copy and, at EOF, 'bye'."""
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.write(b"bye")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class Env:
    async def __aenter__(self):
        self.backend = Backend()
        self.runner = web.AppRunner(node_app(self.backend), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.echo, echo_port = await echo_server()
        self.backend.ports[7000] = echo_port
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.session.close()
        self.echo.close()
        await self.runner.cleanup()

    def ws(self, path, protocols, **query):
        return self.session.ws_connect(self.base + path, protocols=protocols, params=query)


def exec_path(container="main"):
    return node_path(EXEC_PATH, namespace="ns", pod="p", container=container)


async def collect(ws, protocol="v4.channel.k8s.io"):
    """Read channel messages until the server closes: {channel: bytes}."""
    out = {}
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
            out[msg.data[0]] = out.get(msg.data[0], b"") + msg.data[1:]
        elif msg.type == aiohttp.WSMsgType.TEXT and msg.data:
            ch = int(msg.data[0])
            out[ch] = out.get(ch, b"") + base64.b64decode(msg.data[1:])
    return out


# ----------------------------------------------------------------------------------- exec

def test_exec_v4_streams_and_exit_code():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v4.channel.k8s.io"], output="1", error="1",
                              command=["sh", "-c", "echo out; echo err >&2; exit 3"]) as ws:
                assert ws.protocol == "v4.channel.k8s.io"
                got = await collect(ws)
        assert got[1] == b"out\n" and got[2] == b"err\n"
        status = json.loads(got[3])
        assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
        assert "exit code 3" in status["message"]
    run(body())


def test_exec_base64_protocol_and_success_status():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v4.base64.channel.k8s.io"], output="1",
                              command=["printf", "\\001\\377"]) as ws:
                assert ws.protocol == "v4.base64.channel.k8s.io"
                got = await collect(ws)
        assert got[1] == b"\x01\xff"
        assert json.loads(got[3]) == {"metadata": {}, "status": "Success"}
    run(body())


def test_exec_v5_stdin_close_signal_ends_input():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v5.channel.k8s.io", "v4.channel.k8s.io"],
                              input="1", output="1", command=["sh", "-c", "cat; echo end"]) as ws:
                assert ws.protocol == "v5.channel.k8s.io"
                await ws.send_bytes(b"\x00abc\n")
                await ws.send_bytes(b"\x00def\n")
                await ws.send_bytes(b"\xff\x00")  # v5: stdin closed
                got = await collect(ws)
        assert got[1] == b"abc\ndef\nend\n"
        assert json.loads(got[3])["status"] == "Success"
    run(body())


def test_exec_start_failures_are_reported_on_the_error_channel():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path("missing"), ["v4.channel.k8s.io"], output="1",
                              command=["true"]) as ws:
                missing = json.loads((await collect(ws))[3])
            async with env.ws(exec_path("broken"), ["v4.channel.k8s.io"], output="1",
                              command=["true"]) as ws:
                broken = json.loads((await collect(ws))[3])
        assert (missing["reason"], missing["code"]) == ("NotFound", 404)
        assert missing["message"] == 'container "missing" not found'
        assert (broken["reason"], broken["code"]) == ("InternalError", 500)
        assert "runtime exploded" in broken["message"]
    run(body())


def test_exec_rejections_before_the_upgrade():
    async def body():
        async with Env() as env:
            s = env.session
            async with s.get(env.base + exec_path(), params={"output": "1"}) as r:
                assert r.status == 400
                assert (await r.json())["message"] == "you must specify at least 1 command"
            async with s.get(env.base + exec_path(), params={"command": "true"}) as r:
                assert r.status == 400
                assert "at least 1 of stdin, stdout, stderr" in (await r.json())["message"]
            async with s.get(env.base + exec_path(),
                             params={"command": "true", "output": "1"}) as r:
                assert r.status == 400
                assert (await r.json())["message"] == "Upgrade request required"
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await env.session.ws_connect(env.base + exec_path(), protocols=["chat"],
                                             params={"command": "true", "output": "1"})
            assert info.value.status == 400
    run(body())


def test_client_disconnect_kills_the_process():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v4.channel.k8s.io"], output="1",
                              command=["sh", "-c", "echo started; exec sleep 1000"]) as ws:
                msg = await ws.receive()
                assert msg.data == b"\x01started\n"
            proc = env.backend.processes[-1]
            return await asyncio.wait_for(proc.wait(), 30)
    assert run(body()) == -9


def test_exec_tty_resize_reaches_the_terminal():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v5.channel.k8s.io"], input="1", output="1",
                              tty="1", command=["sh", "-c", "read x; stty size"]) as ws:
                await ws.send_bytes(b"\x04" + json.dumps({"Width": 100,
                                                          "Height": 30}).encode())
                await ws.send_bytes(b"\x00go\n")
                got = await collect(ws)
        assert env.backend.processes[-1].sizes == [(100, 30)]
        assert got[1].replace(b"\r", b"").endswith(b"30 100\n")
        assert 2 not in got and json.loads(got[3])["status"] == "Success"
    run(body())


def test_exec_tty_starts_with_the_clients_first_size():
    async def body():
        async with Env() as env:
            async with env.ws(exec_path(), ["v5.channel.k8s.io"], input="1", output="1",
                              tty="1", command=["stty", "size"]) as ws:
                await ws.send_bytes(b"\x04" + json.dumps({"Width": 120,
                                                          "Height": 40}).encode())
                got = await collect(ws)
            assert got[1].replace(b"\r", b"") == b"40 120\n"
            # a client that sends no size: the session starts anyway (after a short wait)
            async with env.ws(exec_path(), ["v5.channel.k8s.io"], output="1", tty="1",
                              command=["echo", "sizeless"]) as ws:
                got = await collect(ws)
            assert got[1].replace(b"\r", b"") == b"sizeless\n"
        assert env.backend.sizes_at_start == [(120, 40), None]
        assert env.backend.processes[0].sizes == [(120, 40)]  # applied once, not twice
    run(body())


def test_attach_over_websocket():
    async def body():
        async with Env() as env:
            path = node_path(ATTACH_PATH, namespace="ns", pod="p", container="main")
            async with env.ws(path, ["v5.channel.k8s.io"], input="1", output="1") as ws:
                assert (await ws.receive()).data == b"\x01attached\n"
                await ws.send_bytes(b"\x00hi\n")
                assert (await ws.receive()).data == b"\x01hi\n"
                await ws.send_bytes(b"\xff\x00")
                got = await collect(ws)
        assert json.loads(got[3])["status"] == "Success"
    run(body())


async def spdy_upgrade(env, path, protocols, query=""):
    answer = await open_upgrade("127.0.0.1", env.port, "POST", path + query, [
        ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")] +
        [("X-Stream-Protocol-Version", p) for p in protocols])
    return answer


def test_exec_over_spdy():
    async def body():
        async with Env() as env:
            answer = await spdy_upgrade(env, exec_path(), ["v5.channel.k8s.io",
                                                           "v4.channel.k8s.io"],
                                        "?input=1&output=1&error=1&command=sh&command=-c"
                                        "&command=cat;echo+e+>%262;exit+4")
            assert answer.status == 101
            assert answer.headers["X-Stream-Protocol-Version"] == "v4.channel.k8s.io"
            client = SpdySession(answer.transport, server=False)
            served = asyncio.create_task(client.serve())
            streams = {}
            for kind in ("error", "stdin", "stdout", "stderr"):
                streams[kind] = await client.open_stream({"streamtype": kind})
            await streams["stdin"].write(b"via spdy\n")
            await streams["stdin"].close()
            out = await streams["stdout"].read_all()
            err = await streams["stderr"].read_all()
            status = json.loads(await streams["error"].read_all())
            await client.close()
            await served
        assert (out, err) == (b"via spdy\n", b"e\n")
        assert status["details"]["causes"][0]["message"] == "4"
    run(body())


def test_spdy_exec_needs_a_protocol_it_knows():
    async def body():
        async with Env() as env:
            answer = await spdy_upgrade(env, exec_path(), ["channel.k8s.io"],
                                        "?output=1&command=true")
        assert answer.status == 403
        assert b"unable to negotiate protocol" in answer.body
    run(body())


# ---------------------------------------------------------------------------- port-forward

PF_PATH = node_path(PORT_FORWARD_PATH, namespace="ns", pod="p")


def test_port_forward_channels_for_the_python_client():
    async def body():
        async with Env() as env:
            async with env.session.ws_connect(
                    env.base + PF_PATH + "?ports=7000,7001",
                    protocols=["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
                assert ws.protocol == "v4.channel.k8s.io"  # preferred for port-forward
                first = [(await ws.receive()).data for _ in range(4)]
                assert sorted(first) == sorted([b"\x00X\x1b", b"\x01X\x1b", b"\x02Y\x1b",
                                                b"\x03Y\x1b"])
                await ws.send_bytes(b"\x00hello\n")
                got = {}
                while got.get(0) != b"HELLO\n" or 3 not in got:
                    msg = await ws.receive()
                    got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
        assert got[3] == b"error forwarding port 7001 to pod ns/p: connect: connection " \
                         b"refused (port 7001)"
    run(body())


def test_port_forward_v5_close_signal_half_closes():
    async def body():
        async with Env() as env:
            async with env.session.ws_connect(env.base + PF_PATH + "?port=7000",
                                              protocols=["v5.channel.k8s.io"]) as ws:
                for _ in range(2):
                    await ws.receive()
                await ws.send_bytes(b"\x00abc\n")
                await ws.send_bytes(b"\xff\x00")
                got = await collect(ws)  # the server closes when the pod side ends
        assert got[0] == b"ABC\nbye"
    run(body())


def test_port_forward_channel_needs_ports():
    async def body():
        async with Env() as env:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await env.session.ws_connect(env.base + PF_PATH,
                                             protocols=["v4.channel.k8s.io"])
            assert info.value.status == 400
            async with env.session.get(env.base + PF_PATH, params={"ports": "0"}) as r:
                assert r.status == 400
    run(body())


async def forward_with_spdy(client, port, request_id, payload):
    headers = {"streamtype": "error", "port": str(port)}
    if request_id is not None:
        headers["requestid"] = str(request_id)
    error = await client.open_stream(headers)
    await error.close()
    data = await client.open_stream({**headers, "streamtype": "data"})
    await data.write(payload)
    await data.close()
    got = await data.read_all()
    message = await error.read_all()
    return got, message


@pytest.mark.parametrize("tunnel", ["upgrade", "websocket"])
def test_port_forward_over_spdy(tunnel):
    async def body():
        async with Env() as env:
            if tunnel == "upgrade":
                answer = await spdy_upgrade(env, PF_PATH, ["portforward.k8s.io"])
                assert answer.status == 101
                assert answer.headers["X-Stream-Protocol-Version"] == "portforward.k8s.io"
                transport = answer.transport
            else:
                ws = await env.session.ws_connect(
                    env.base + PF_PATH, protocols=["SPDY/3.1+portforward.k8s.io"])
                assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
                transport = WebSocketTransport(ws)
            client = SpdySession(transport, server=False)
            served = asyncio.create_task(client.serve())
            big = (b"z" * 999 + b"\n") * 200  # more than the 64 KiB window
            results = list(await asyncio.gather(
                forward_with_spdy(client, 7000, 0, b"one\ntwo\n"),
                forward_with_spdy(client, 7000, 1, big),
                forward_with_spdy(client, 7001, 3, b"refused\n")))
            # clients older than requestid open the two streams one after the other
            results.insert(2, await forward_with_spdy(client, 7000, None, b"no request id\n"))
            await client.ping(timeout=30)
            await client.close()
            await served
        assert results[0] == (b"ONE\nTWO\nbye", b"")
        assert results[1] == (big.upper() + b"bye", b"")
        assert results[2] == (b"NO REQUEST ID\nbye", b"")
        assert results[3] == (b"", b"error forwarding port 7001 to pod ns/p: connect: "
                                    b"connection refused (port 7001)")
    run(body())


def test_spdy_reset_ends_the_forwarded_connection():
    async def body():
        async with Env() as env:
            answer = await spdy_upgrade(env, PF_PATH, ["portforward.k8s.io"])
            client = SpdySession(answer.transport, server=False)
            served = asyncio.create_task(client.serve())
            error = await client.open_stream({"streamtype": "error", "port": "7000",
                                              "requestid": "9"})
            data = await client.open_stream({"streamtype": "data", "port": "7000",
                                              "requestid": "9"})
            await data.write(b"x\n")
            assert await data.read() == b"X\n"
            await data.reset()
            await error.reset()
            with pytest.raises(StreamReset):
                await data.read()
            await client.ping(timeout=30)  # the session is still fine
            await client.close()
            await served
    run(body())


def test_port_forward_needs_an_upgrade():
    async def body():
        async with Env() as env:
            async with env.session.post(env.base + PF_PATH) as r:
                assert r.status == 400
                assert (await r.json())["message"] == "Upgrade request required"
    run(body())


# ------------------------------------------------------------------------------------ logs

LOGS = node_path(CONTAINER_LOGS_PATH, namespace="ns", pod="p", container="main")


def test_logs_are_streamed_and_validated():
    async def body():
        async with Env() as env:
            s = env.session
            async with s.get(env.base + LOGS) as r:
                assert r.status == 200 and r.content_type == "text/plain"
                assert await r.read() == b"one\ntwo\n"
            async with s.get(env.base + LOGS.replace("main", "other")) as r:
                assert r.status == 404 and (await r.json())["reason"] == "NotFound"
            async with s.get(env.base + LOGS, params={"tailLines": "-1"}) as r:
                assert r.status == 400 and "tailLines" in (await r.json())["message"]
            async with s.get(env.base + LOGS, params={"sinceSeconds": "5",
                                                      "sinceTime": "2024-01-01T00:00:00Z"}) as r:
                assert r.status == 400
            async with s.get(env.base + LOGS, params={"sinceTime": "yesterday"}) as r:
                assert r.status == 400
            async with s.get(env.base + LOGS, params={"follow": "true"}) as r:
                assert await r.content.readexactly(8) == b"one\ntwo\n"
            # the client left an idle follow stream: the endpoint notices and closes the log
            await asyncio.wait_for(env.backend.logs_closed.wait(), 30)
    run(body())
