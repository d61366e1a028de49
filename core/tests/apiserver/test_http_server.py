"""The API server's own HTTP/1.1 front (``pilothouse.apiserver._http``) as a client on a raw
socket sees it: keep-alive, pipelining, request bodies, the hand-off of watches and upgrades
to aiohttp on the same connection, bad input and clients that go away; on asyncio's loop and
on uvloop."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from aiohttp.http_parser import HttpRequestParser
from yarl import URL

from pilothouse.apiserver import _http
from pilothouse.apiserver import request as rq
from pilothouse.testing.cluster import APIServerThread

CM = "/api/v1/namespaces/default/configmaps"


def _start(workdir, loop_kind: str) -> APIServerThread:
    server = APIServerThread(workdir=str(workdir))
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        server.loop.close()
        server.loop = uvloop.new_event_loop()
        server._thread = threading.Thread(target=server.loop.run_forever, daemon=True,
                                          name="pilothouse-apiserver-uvloop")
    return server.start()


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def api(request, tmp_path_factory):
    server = _start(tmp_path_factory.mktemp("http"), request.param)
    assert server.running._http is not None, "the fast path is not in use"
    yield server
    server.stop()


class Raw:
    """One client connection speaking HTTP/1.1 by hand."""

    def __init__(self, server, timeout: float = 10):
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, version: str = "1.1") -> None:
        lines = [f"{method} {path} HTTP/{version}", "Host: localhost"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))

    def response(self, head_only: bool = False, stream: bool = False):
        """(status, lower-cased headers, body); a chunked body is left unread if ``stream``."""
        line = self.file.readline()
        assert line, "connection closed before a response"
        version, status, *_ = line.decode().split(" ", 2)
        headers = {}
        while True:
            raw = self.file.readline()
            if raw in (b"\r\n", b""):
                break
            name, _, value = raw.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status)
        body = b""
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif "content-length" in headers:
            body = self.file.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked" and not stream:
            while True:
                size = int(self.file.readline().split(b";")[0], 16)
                chunk = self.file.read(size + 2)[:-2]
                if size == 0:
                    break
                body += chunk
        elif not stream:
            body = self.file.read()
        headers[":version"] = version
        return status, headers, body

    def chunk(self) -> bytes:
        size = int(self.file.readline().split(b";")[0], 16)
        return self.file.read(size + 2)[:-2]

    def closed(self) -> bool:
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _cm(name: str, **data) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": data or {"a": "b"}}).encode()


def _wait(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _served_by_aiohttp(api) -> int:
    return api.running._http.aiohttp_server.requests_count


# ------------------------------------------------------------------ plain requests


def test_keep_alive_serves_several_requests_on_one_connection(api):
    c = Raw(api)
    before = _served_by_aiohttp(api)
    c.request("GET", "/version")
    status, headers, body = c.response()
    assert status == 200 and json.loads(body)["major"]
    assert headers["content-type"] == "application/json"
    assert "date" in headers and "server" in headers and "connection" not in headers
    c.request("POST", CM, _cm("ka-1"), {"Content-Type": "application/json"})
    status, _, body = c.response()
    assert status == 201, body
    c.request("GET", CM + "/ka-1")
    status, _, body = c.response()
    assert status == 200 and json.loads(body)["data"] == {"a": "b"}
    c.request("GET", CM + "/missing")
    status, _, body = c.response()
    assert status == 404 and json.loads(body)["kind"] == "Status"
    assert _served_by_aiohttp(api) == before
    c.close()


def test_pipelined_requests_are_answered_in_order(api):
    c = Raw(api)
    names = [f"pipe-{i}" for i in range(5)]
    data = b"".join(
        f"POST {CM} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(_cm(n))}\r\n\r\n".encode()
        + _cm(n) for n in names)
    data += b"".join(f"GET {CM}/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in names)
    c.send(data)
    for n in names:
        status, _, body = c.response()
        assert status == 201 and json.loads(body)["metadata"]["name"] == n
    for n in names:
        status, _, body = c.response()
        assert status == 200 and json.loads(body)["metadata"]["name"] == n
    c.close()


def test_many_pipelined_requests_to_a_client_that_reads_late(api):
    c = Raw(api, timeout=30)
    c.request("POST", CM, _cm("late", big="x" * 100_000))
    assert c.response()[0] == 201
    n = 200  # ~20 MB of answers: the server stops reading while the client does not read
    c.send(f"GET {CM}/late HTTP/1.1\r\nHost: x\r\n\r\n".encode() * n)
    time.sleep(0.5)
    for _ in range(n):
        status, _, body = c.response()
        assert status == 200 and len(body) > 100_000
    c.close()


def test_chunked_request_body(api):
    c = Raw(api)
    body = _cm("chunky", v="y" * 3000)
    pieces = [body[:10], body[10:1000], body[1000:]]
    wire = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in pieces)
    wire += b"0\r\nX-Trailer: t\r\n\r\n"
    c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           f"Content-Type: application/json\r\n\r\n".encode())
    for i in range(0, len(wire), 7):  # the size lines arrive split too
        c.send(wire[i:i + 7])
    status, _, answer = c.response()
    assert status == 201, answer
    assert json.loads(answer)["data"]["v"] == "y" * 3000
    c.request("GET", CM + "/chunky")  # the connection is still in step
    assert c.response()[0] == 200
    c.close()


def test_expect_100_continue_then_keep_alive(api):
    c = Raw(api)
    body = _cm("expecting")
    c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
           f"Expect: 100-continue\r\n\r\n".encode())
    status, _, _ = c.response()
    assert status == 100
    c.send(body)
    status, _, answer = c.response()
    assert status == 201, answer
    c.request("GET", CM + "/expecting")
    assert c.response()[0] == 200
    c.close()


def test_unknown_expectation_is_417_and_the_connection_closes(api):
    c = Raw(api)
    c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
           f"Expect: something\r\n\r\n".encode())
    status, headers, body = c.response()
    assert status == 417 and b"Unknown Expect: something" in body
    assert headers.get("connection") == "close"
    assert c.closed()


def test_oversized_body_is_413_and_the_connection_stays_usable(api):
    c = Raw(api, timeout=30)
    body = b'{"metadata":{"name":"big"},"data":{"a":"' + b"x" * rq.MAX_BODY + b'"}}'
    c.request("POST", CM, body, {"Content-Type": "application/json"})
    status, _, answer = c.response()
    assert status == 413
    assert json.loads(answer)["reason"] == "RequestEntityTooLarge"
    c.request("GET", "/version")
    assert c.response()[0] == 200
    c.close()


def test_oversized_chunked_body_is_413(api):
    c = Raw(api, timeout=30)
    c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    piece = b"x" * 65536
    sent = 0
    while sent <= rq.MAX_BODY:
        c.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sent += len(piece)
    c.send(b"0\r\n\r\n")
    status, _, answer = c.response()
    assert status == 413 and json.loads(answer)["reason"] == "RequestEntityTooLarge"
    c.request("GET", "/version")
    assert c.response()[0] == 200
    c.close()


def test_a_body_the_handler_does_not_read_is_skipped(api):
    c = Raw(api)
    c.request("GET", "/version", b"ignored body")
    assert c.response()[0] == 200
    c.request("GET", "/version")
    assert c.response()[0] == 200
    c.close()


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"GET /version HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET /version HTTP/1.1\r\nNo-Colon\r\n\r\n",
    b"GET /version HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
    b"GET /version HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    b"GET /version HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    b"GET /ver sion HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
])
def test_malformed_requests_are_400_and_close(api, garbage):
    c = Raw(api)
    c.send(garbage)
    status, headers, _ = c.response()
    assert status == 400
    assert headers.get("connection") == "close"
    assert c.closed()


def test_malformed_chunk_size_closes(api):
    c = Raw(api)
    c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           f"zz\r\n".encode())
    assert c.closed()


def test_header_limits(api):
    c = Raw(api)
    c.send(b"GET /version HTTP/1.1\r\nX-Long: " + b"v" * 9000 + b"\r\n\r\n")
    assert c.response()[0] == 431
    assert c.closed()
    c = Raw(api)
    c.send(b"GET /version HTTP/1.1\r\n" + b"".join(f"X-{i}: v\r\n".encode()
                                                    for i in range(200)) + b"\r\n")
    assert c.response()[0] == 431
    assert c.closed()
    c = Raw(api)
    c.send(b"GET /" + b"a" * 9000)  # no end of line in sight
    assert c.response()[0] == 400
    assert c.closed()


def test_http_10(api):
    c = Raw(api)
    c.request("GET", "/version", version="1.0")
    status, headers, _ = c.response()
    assert status == 200 and headers[":version"] == "HTTP/1.0"
    assert c.closed()
    c = Raw(api)
    c.request("GET", "/version", headers={"Connection": "keep-alive"}, version="1.0")
    status, headers, _ = c.response()
    assert status == 200 and headers["connection"] == "keep-alive"
    c.request("GET", "/version", version="1.0")
    assert c.response()[0] == 200
    assert c.closed()


def test_connection_close(api):
    c = Raw(api)
    c.request("GET", "/version", headers={"Connection": "close"})
    status, headers, _ = c.response()
    assert status == 200 and headers["connection"] == "close"
    assert c.closed()


def test_head_has_the_length_but_no_body(api):
    c = Raw(api)
    c.request("POST", CM, _cm("headed"))
    assert c.response()[0] == 201
    c.request("HEAD", CM + "/headed")
    status, headers, body = c.response(head_only=True)
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""
    c.request("GET", CM + "/headed")  # nothing of a body was sent: the next answer parses
    status, headers, body = c.response()
    assert status == 200 and len(body) == int(headers["content-length"])
    c.close()


def test_query_repeated_keys_and_decoding(api):
    c = Raw(api)
    c.request("POST", CM + "?dryRun=All&dryRun=All&fieldManager=a%20b+c", _cm("dry"))
    status, _, body = c.response()
    assert status == 201, body
    assert json.loads(body)["metadata"]["managedFields"][0]["manager"] == "a b c"
    c.request("GET", CM + "/dry")
    assert c.response()[0] == 404  # dry run: nothing stored
    c.request("POST", CM + "?dryRun=All&dryRun=Some", _cm("dry"))
    assert c.response()[0] == 400
    c.close()


# ------------------------------------------------------------------ hand-off to aiohttp


def test_a_watch_after_plain_requests_goes_to_aiohttp_on_the_same_connection(api):
    c = Raw(api, timeout=20)
    c.request("POST", CM, _cm("watched"))
    status, _, body = c.response()
    assert status == 201
    rv = json.loads(body)["metadata"]["resourceVersion"]
    before = _served_by_aiohttp(api)
    # the watch follows a plain request in the same packet: both must be answered
    c.send(f"GET {CM}/watched HTTP/1.1\r\nHost: x\r\n\r\n"
           f"GET {CM}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3Dwatched "
           f"HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert c.response()[0] == 200
    status, headers, _ = c.response(stream=True)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert _served_by_aiohttp(api) == before + 1
    other = Raw(api)
    other.request("PUT", CM + "/watched", _cm("watched", a="c"))
    assert other.response()[0] == 200
    other.close()
    event = json.loads(c.chunk())
    assert event["type"] == "MODIFIED" and event["object"]["data"] == {"a": "c"}
    c.close()


@pytest.mark.parametrize("path", [CM + "/x/../watch/x", "/api/v1/watch/namespaces/default/"
                                  "configmaps", CM + "?watch=true", CM + "?wat%63h=1",
                                  "/api/v1/namespaces/default/pods/nope/log",
                                  "/api/v1/namespaces/default/pods/nope/exec",
                                  "/api/v1/namespaces/default/services/nope/proxy/x"])
def test_streaming_paths_go_to_aiohttp(api, path):
    before = _served_by_aiohttp(api)
    c = Raw(api)
    c.request("GET", CM)
    assert c.response()[0] == 200
    c.request("GET", path + ("&" if "?" in path else "?") + "timeoutSeconds=1")
    status, _, _ = c.response(stream=True)
    assert status in (200, 400, 404, 503)
    assert _served_by_aiohttp(api) == before + 1
    c.close()


def test_an_upgrade_request_goes_to_aiohttp(api):
    before = _served_by_aiohttp(api)
    c = Raw(api)
    c.request("GET", "/version")
    assert c.response()[0] == 200
    c.request("GET", "/api/v1/namespaces/default/pods/nope/exec?command=ls", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "v4.channel.k8s.io"})
    status, _, body = c.response()
    assert status == 404 and json.loads(body)["reason"] == "NotFound"
    assert _served_by_aiohttp(api) == before + 1
    c.close()


# ------------------------------------------------------------------ clients that go away


def test_a_client_leaving_mid_request_leaves_nothing_behind(api):
    http = api.running._http
    for head_only in (True, False):
        c = Raw(api)
        c.send(f"POST {CM} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n".encode()
               + (b"" if head_only else b'{"metadata":'))
        _wait(lambda: any(conn._req is not None for conn in http.connections),
              "the request to start")
        c.close()
    c = Raw(api)
    c.send(b"GET /version HTTP/1.1\r\nHost: x\r\n")  # half a head
    c.close()
    c = Raw(api)
    c.request("GET", CM + "?limit=500")  # and leave before the answer
    c.close()
    _wait(lambda: not http.connections, "every connection to be closed")
    c = Raw(api)
    c.request("GET", "/version")
    assert c.response()[0] == 200
    c.close()


def test_idle_connections_close_after_the_keepalive_timeout(api):
    http = api.running._http
    old = http.keepalive_timeout
    http.keepalive_timeout = 0.2
    try:
        c = Raw(api)
        c.request("GET", "/version")
        assert c.response()[0] == 200
        assert c.closed()
    finally:
        http.keepalive_timeout = old


def test_stop_closes_connections_and_lets_a_request_finish(tmp_path):
    server = _start(tmp_path, "asyncio")
    c = Raw(server)
    c.request("GET", "/version")
    assert c.response()[0] == 200
    idle = Raw(server)
    server.stop()
    assert c.closed() and idle.closed()


# ------------------------------------------------------------------ parsing as aiohttp does


def _aiohttp_url(target: str) -> URL:
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(object(), loop, 2 ** 16, max_line_size=8190,
                                   max_field_size=8190)
        messages, _, _ = parser.feed_data(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return messages[0][0].url
    finally:
        loop.close()


@pytest.mark.parametrize("target", [
    "/api/v1/pods", "/a%2Fb/c%20d+e", "/a%zz%C3%A9", "/a%FF", "/x?a=1&a=2&b=%2B+c&&d&e=",
    "/x?%zz=1;q=2", "/x?a=%FF", "/x?labelSelector=app%3Dweb%2Ctier+in+(a,b)", "/x?=v&k",
    "//double//slash/", "/x?a=b=c", "/x?a+b=c+d%20e"])
def test_path_and_query_are_parsed_as_aiohttp_does(target):
    url = _aiohttp_url(target)
    conn = _http._Connection.__new__(_http._Connection)
    conn._chunk_left, conn._body_left = -3, 0
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    req = conn._parse(head, len(head) - 4)
    assert req.path == url.path
    assert req.raw_path == target
    assert list(req.query.items()) == list(url.query.items())


# ------------------------------------------------------------------ a real upgrade, both loops


class _EchoAPI:
    """Stands in for APIServer (``app`` and ``handle`` are all HTTPServer uses): plain
    requests answer the client's port; ``/ws`` upgrades to a WebSocket that echoes, after
    sending the client's port."""

    def __init__(self):
        from aiohttp import web
        self.app = web.Application()

    async def handle(self, request):
        from aiohttp import web
        port = request.transport.get_extra_info("peername")[1]
        if request.path != "/ws":
            return web.Response(text=str(port))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(str(port))
        async for msg in ws:
            await ws.send_str("echo " + msg.data)
        return ws


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_websocket_upgrade_after_plain_requests_is_served_by_aiohttp(loop_kind):
    import aiohttp
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()

    async def go():
        server = _http.HTTPServer(_EchoAPI(), "127.0.0.1", 0, access_log=None)
        await server.start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                ports = set()
                for _ in range(3):
                    async with session.get(url + "/plain") as r:
                        ports.add(await r.text())
                assert server.aiohttp_server.requests_count == 0
                async with session.ws_connect(url + "/ws") as ws:
                    ports.add((await ws.receive()).data)
                    await ws.send_str("hi")
                    assert (await ws.receive()).data == "echo hi"
                assert len(ports) == 1, "the upgrade did not reuse the connection"
                assert server.aiohttp_server.requests_count == 1
        finally:
            await server.stop()

    with runner:
        runner.run(go())


# ------------------------------------------------------------------ writing responses


def _request(method: str = "GET", version=(1, 1)):
    from aiohttp.http import HttpVersion
    from multidict import CIMultiDict, CIMultiDictProxy
    return _http._Request(None, method, "/x", "/x", "", CIMultiDictProxy(CIMultiDict()),
                          HttpVersion(*version), True, None)


def _split(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return lines[0], dict(line.split(": ", 1) for line in lines[1:]), body


def test_responses_are_written_as_aiohttp_writes_them():
    from aiohttp import web
    data, keep = _http.encode_response(_request(), web.json_response({"a": 1}), True)
    status, headers, body = _split(data)
    assert status == "HTTP/1.1 200 OK" and keep
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Content-Length"] == str(len(body)) and json.loads(body) == {"a": 1}
    assert "Date" in headers and "Server" in headers and "Connection" not in headers
    data, _ = _http.encode_response(_request("HEAD"), web.Response(text="abc"), True)
    status, headers, body = _split(data)
    assert headers["Content-Length"] == "3" and body == b""
    data, _ = _http.encode_response(_request(), web.Response(status=204), True)
    status, headers, body = _split(data)
    assert status == "HTTP/1.1 204 No Content" and "Content-Length" not in headers
    data, _ = _http.encode_response(_request(), web.Response(body=b"xy"), True)
    assert _split(data)[1]["Content-Type"] == "application/octet-stream"
    data, keep = _http.encode_response(_request(version=(1, 0)), web.Response(), True)
    status, headers, _ = _split(data)
    assert status.startswith("HTTP/1.0 200") and headers["Connection"] == "keep-alive"
    data, keep = _http.encode_response(_request(), web.Response(), False)
    assert _split(data)[1]["Connection"] == "close" and not keep
    forced = web.Response()
    forced.force_close()
    assert not _http.encode_response(_request(), forced, True)[1]


@pytest.mark.parametrize("make", [
    lambda web: web.StreamResponse(),
    lambda web: _chunked(web),
    lambda web: web.Response(body=_io_payload()),
    lambda web: web.Response(headers={"X-Bad": "a\r\nInjected: yes"}),
    lambda web: None,
])
def test_what_the_fast_path_cannot_write_is_a_logged_500(make, caplog):
    from aiohttp import web
    data, keep = _http.encode_response(_request(), make(web), True)
    assert data.startswith(b"HTTP/1.1 500 ") and not keep
    assert b"Injected" not in data
    assert any("bug" in r.getMessage() for r in caplog.records)


def _chunked(web):
    resp = web.Response(text="x")
    resp.enable_chunked_encoding()
    return resp


def _io_payload():
    import io
    return io.BytesIO(b"payload")


# ------------------------------------------------------------------ fast paths against the general ones


def _no_date(data: bytes) -> bytes:
    import re
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", data)


def _responses(web):
    """Responses of many kinds, made afresh on each call."""
    yield web.json_response({"a": 1})
    yield web.Response(body=b'{"kind":"Lease"}', content_type="application/json")
    yield web.Response(body=b'{"kind":"Status"}', status=201, content_type="application/json")
    yield web.Response(body=b"{}", status=404, content_type="application/json",
                       headers={"Retry-After": "1", "Warning": '299 - "w"'})
    yield web.Response(body=b"x", status=299, reason="Custom Reason",
                       content_type="text/plain")
    yield web.Response(body=b"", content_type="application/json")
    yield web.Response(body=bytearray(b"ba"), content_type="application/json")
    yield web.Response(body=b"y", content_type="application/json", headers={"Server": "me"})
    yield web.Response(body=b"y", content_type="application/json",
                       headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT"})
    yield web.Response(body=b"y", content_type="application/json",
                       headers={"Connection": "close"})
    yield web.Response(body=b"y", headers={"Content-Length": "1",
                                           "Content-Type": "application/json"})
    yield web.Response(body=b"no type")
    yield web.Response(text="text")
    yield web.Response(status=204)
    yield web.Response(status=304, content_type="application/json")
    forced = web.json_response({"b": 2})
    forced.force_close()
    yield forced
    yield web.HTTPNotFound()


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD"])
@pytest.mark.parametrize("version", [(1, 1), (1, 0)])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_the_response_memo_writes_what_the_general_path_writes(method, version, keep_alive):
    from aiohttp import web
    _http._HEADS.clear()
    for first, again, reference in zip(_responses(web), _responses(web), _responses(web)):
        expect = _http._encode_general(_request(method, version), reference, keep_alive)
        for resp in (first, again):  # the first fills the memo, the second may take it
            data, keep = _http.encode_response(_request(method, version), resp, keep_alive)
            assert (_no_date(data), keep) == (_no_date(expect[0]), expect[1]), reference
    assert bool(_http._HEADS) == (method != "HEAD")  # a HEAD answer is never memoised


def test_the_response_memo_is_bounded_and_keyed_by_the_headers(monkeypatch):
    from aiohttp import web
    monkeypatch.setattr(_http, "_CACHE_SIZE", 4)
    _http._HEADS.clear()
    for i in range(10):
        resp = web.Response(body=b"z", content_type="application/json",
                            headers={"X-N": str(i)})
        data, _ = _http.encode_response(_request(), resp, True)
        assert f"\r\nX-N: {i}\r\n".encode() in data
        assert len(_http._HEADS) <= 4
    resp = web.Response(body=b"z", content_type="application/json", headers={"X-N": "9"})
    assert b"\r\nX-N: 9\r\n" in _http.encode_response(_request(), resp, True)[0]


class _Recorder:
    """An APIServer stand-in that records the bodies it reads and answers with them."""

    def __init__(self):
        self.bodies = []

    async def handle(self, request):
        from aiohttp import web
        try:
            body = await request.read()
        except web.HTTPException as exc:
            self.bodies.append(exc.status)
            return web.Response(body=str(exc.status).encode(), status=413,
                                content_type="text/plain")
        self.bodies.append(body)
        return web.Response(body=body, content_type="application/octet-stream")


class _Transport:
    def __init__(self):
        self.out = b""

    def write(self, data):
        self.out += data

    def get_extra_info(self, name, default=None):
        return default

    def can_write_eof(self):
        return False

    def close(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def _feed(pieces) -> tuple[list, bytes]:
    """Serve the byte strings ``pieces`` (arriving one by one) on one connection; what the
    handler read and what was written."""
    class Server:
        keepalive_timeout, lingering_time = 3630.0, 10.0

    async def go():
        server = Server()
        server.loop, server.api, server.connections = asyncio.get_running_loop(), \
            _Recorder(), set()
        conn = _http._Connection(server)
        transport = _Transport()
        conn.connection_made(transport)
        for piece in pieces:
            conn.data_received(piece)
            for _ in range(5):
                await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        conn.connection_lost(None)
        return server.api.bodies, transport.out
    return asyncio.run(go())


@pytest.mark.parametrize("split", ["whole", "bytes", "head-body", "pairs"])
def test_content_length_bodies_whole_or_in_pieces(split, monkeypatch):
    monkeypatch.setattr(rq, "MAX_BODY", 64)
    bodies = [b'{"a":1}', b"", b"x" * 64, b"y" * 65, b"z" * 3, b"\r\n\r\nGET / HTTP/1.1"]
    reqs = []
    for i, body in enumerate(bodies):
        head = f"PUT /x/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        reqs.append((head.encode(), body))
    data = b"".join(h + b for h, b in reqs)
    if split == "whole":
        pieces = [data]
    elif split == "bytes":
        pieces = [data[i:i + 1] for i in range(len(data))]
    elif split == "head-body":
        pieces = [p for h, b in reqs for p in (h, b) if p]
    else:
        pieces = [data[i:i + 2 * len(data) // 7 + 1]
                  for i in range(0, len(data), 2 * len(data) // 7 + 1)]
    seen, out = _feed(pieces)
    assert seen == [b'{"a":1}', b"", b"x" * 64, 413, b"z" * 3, b"\r\n\r\nGET / HTTP/1.1"]
    assert _no_date(out) == _no_date(_feed([data[i:i + 1] for i in range(len(data))])[1])
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 5 and out.count(b"HTTP/1.1 413 ") == 1


def _parsed(head: bytes):
    conn = _http._Connection.__new__(_http._Connection)
    conn._chunk_left, conn._body_left = -3, 0
    req = conn._parse(head, len(head) - 4)
    if req is None:
        return None
    return (req.method, req.raw_path, req.path, req.query_string, list(req.query.items()),
            req.version, req.keep_alive, req.content_length, dict(req.headers))


@pytest.mark.parametrize("line", [
    "GET /api/v1/pods HTTP/1.1", "PUT /apis/coordination.k8s.io/v1/namespaces/n/leases/l "
    "HTTP/1.1", "GET /a%2Fb/c%20d+e?x=%2B HTTP/1.1", "GET /x?a=1&a=2&b=+c#frag HTTP/1.1",
    "GET /api/v1/pods?watch=1 HTTP/1.1", "GET /api/v1/pods?watch=false HTTP/1.1",
    "GET /api/v1/pods?watch=%74rue HTTP/1.1", "GET /api/v1/watch/pods HTTP/1.1",
    "GET /api/v1/namespaces/d/pods/p/log HTTP/1.1", "GET /api/v1/namespaces/d/pods/logs "
    "HTTP/1.1", "GET /version HTTP/1.0", "GET /version HTTP/2.0", "CONNECT /x HTTP/1.1",
    "OPTIONS * HTTP/1.1", "GET http://h/x HTTP/1.1", "GET /" + "a" * 600 + " HTTP/1.1"])
@pytest.mark.parametrize("fields", ["", "Connection: close\r\n", "Connection: keep-alive\r\n",
                                    "Content-Length: 2\r\n", "Upgrade: x\r\n"])
def test_request_lines_read_from_the_memo_are_what_parsing_them_gives(line, fields):
    head = f"{line}\r\nHost: x\r\n{fields}\r\n".encode()
    _http._LINES.clear()
    _http._SEEN.clear()
    first = _parsed(head)
    again = [_parsed(head) for _ in range(3)]  # seen once, then remembered, then from it
    assert again == [first] * 3
    assert (line.encode() in _http._LINES) == (len(line) <= _http._CACHED_LINE)
    # another request with the same line but other header fields: its own keep-alive
    for other in ("", "Connection: close\r\n", "Connection: keep-alive\r\n"):
        head2 = f"{line}\r\nHost: y\r\n{other}\r\n".encode()
        _http._LINES.pop(line.encode(), None)
        fresh = _parsed(head2)
        _http._LINES.clear()
        _http._SEEN.clear()
        _parsed(head)
        _parsed(head)
        assert _parsed(head2) == fresh


@pytest.mark.parametrize("line", [b"GET  /x HTTP/1.1", b"GET /x HTTP/1.1 ", b"G(T /x HTTP/1.1",
                                  b"GET /x\x01 HTTP/1.1", b"GET /" + b"a" * 8200 + b" HTTP/1.1"])
def test_malformed_request_lines_are_never_remembered(line):
    _http._LINES.clear()
    _http._SEEN.clear()
    for _ in range(3):
        with pytest.raises(_http._BadRequest) as exc:
            _parsed(line + b"\r\nHost: x\r\n\r\n")
        assert exc.value.status == 400
    assert not _http._LINES


def test_the_request_line_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(_http, "_LINES_SIZE", 8)
    monkeypatch.setattr(_http, "_SEEN_SIZE", 16)
    _http._LINES.clear()
    _http._SEEN.clear()
    for rnd in range(3):
        for i in range(40):
            head = f"GET /api/v1/namespaces/d/pods/p-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            assert _parsed(head)[2] == f"/api/v1/namespaces/d/pods/p-{i}"
            assert len(_http._LINES) <= 8 and len(_http._SEEN) <= 16
