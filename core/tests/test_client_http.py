"""The client's HTTP/1.1 transport against a scripted server: response framings delivered in
arbitrary pieces, connection reuse and closing, the connection limit, timeouts, broken
connections and watch streams, and the request line and body it sends."""

import asyncio
import gzip
import json

import pytest

from pilothouse.client import Client
from pilothouse.model import errors


class Script:
    """A server that records each request (method, target, headers, body) and answers with
    ``respond(request)``: a list of byte strings written with a pause between them (a
    ``None`` in it closes the connection there), or ``None`` to close the connection without
    an answer."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.connections = 0
        self.open = 0
        self.max_open = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = (method, target, headers, body)
                self.requests.append(request)
                pieces = await self.respond(request) if asyncio.iscoroutinefunction(
                    self.respond) else self.respond(request)
                if pieces is None:
                    return
                for piece in pieces:
                    if piece is None:
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                if any(b"Connection: close" in p for p in pieces):
                    return
        finally:
            self.open -= 1
            writer.close()


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def chunked(*chunks: bytes, status: str = "200 OK") -> bytes:
    out = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode()
    for c in chunks:
        out += b"%x\r\n%s\r\n" % (len(c), c)
    return out + b"0\r\n\r\n"


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def run(coro):
    return asyncio.run(coro)


def test_framings_in_any_pieces_and_reuse():
    doc = {"kind": "ConfigMap", "data": {"k": "välue " * 50}}
    raw = json.dumps(doc).encode()
    answers = [
        [ok(raw)],                                              # Content-Length, one write
        bytewise(ok(raw)),                                      # ... byte by byte
        bytewise(chunked(raw[:7], raw[7:300], raw[300:])),      # chunked, byte by byte
        [b"HTTP/1.1 100 Continue\r\n\r\n", ok(raw)],            # an interim answer first
        [ok(gzip.compress(raw), "Content-Encoding: gzip")],     # compressed anyway
        [chunked(raw)[:-5] + b"0;x=y\r\nT: 1\r\n\r\n"],           # extension, trailer
    ]

    async def body():
        async with Script(lambda req: answers[len(script.requests) - 1]) as script:
            async with Client(script.url) as c:
                for _ in answers:
                    assert await c.request("GET", "/api/v1/x") == doc
            assert script.connections == 1  # every framing left the connection reusable
    run(body())


def test_close_and_until_close_answers_open_a_new_connection():
    async def body():
        def respond(req):
            if req[1] == "/close":
                return [ok(b'{"a": 1}', "Connection: close")]
            if req[1] == "/eof":
                return [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b'{"b":', b" 2}"]
            return [ok(b"{}")]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                assert await c.request("GET", "/close") == {"a": 1}
                assert await c.request("GET", "/eof") == {"b": 2}
                assert await c.request("GET", "/x") == {}
                assert await c.request("GET", "/x") == {}
            assert script.connections == 3
    run(body())


def test_request_line_headers_and_body():
    async def body():
        async with Script(lambda req: [ok(b"")]) as script:
            async with Client(script.url + "/prefix/", token="t0k") as c:
                assert await c.request("POST", "/api/v1/namespaces/a b/pods", body={
                    "n": 2 ** 70, "s": "é"}, params={"labelSelector": "app in (x,y)",
                                                    "watch": True, "limit": None}) is None
                await c.request("PUT", "/x")
                pods = c.resource("v1", "Pod")
                await pods.patch("p", {"status": {}}, "ns", subresource="status")
        (method, target, headers, sent), (m2, _, h2, _), (m3, t3, h3, b3) = script.requests
        assert (method, target) == ("POST", "/prefix/api/v1/namespaces/a%20b/pods"
                                    "?labelSelector=app%20in%20%28x,y%29&watch=true")
        assert headers["authorization"] == "Bearer t0k"
        assert headers["content-type"] == "application/json"
        assert headers["host"] == script.url.removeprefix("http://")
        assert json.loads(sent) == {"n": 2 ** 70, "s": "é"}  # beyond orjson: json encodes it
        assert (m2, h2["content-length"]) == ("PUT", "0")
        assert (m3, t3) == ("PATCH", "/prefix/api/v1/namespaces/ns/pods/p/status")
        assert h3["content-type"] == "application/merge-patch+json"
        assert json.loads(b3) == {"status": {}}
    run(body())


def test_errors_and_invalid_json():
    async def body():
        def respond(req):
            if req[1] == "/status":
                status = json.dumps({"kind": "Status", "reason": "NotFound", "code": 404,
                                     "message": 'pods "x" not found'}).encode()
                return [ok(status).replace(b"200 OK", b"404 Not Found")]
            if req[1] == "/text":
                return [ok(b"  gateway down ").replace(b"200 OK", b"502 Bad Gateway")]
            return [ok(b"{not json")]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                with pytest.raises(errors.NotFound, match='pods "x" not found'):
                    await c.request("GET", "/status")
                with pytest.raises(errors.StatusError, match="gateway down") as info:
                    await c.request("GET", "/text")
                assert info.value.code == 502
                with pytest.raises(json.JSONDecodeError) as info:
                    await c.request("GET", "/bad")
                with pytest.raises(json.JSONDecodeError) as expected:
                    json.loads("{not json")
                assert str(info.value) == str(expected.value)
                assert await c.request("GET", "/bad", raw=True) == "{not json"
    run(body())


def test_timeout_broken_connection_and_recovery():
    async def body():
        async def respond(req):
            if req[1] == "/slow":
                await asyncio.sleep(5)
            if req[1] == "/drop":
                return None
            if req[1] == "/half":
                return [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"]
            return [ok(b"{}")]
        async with Script(respond) as script:
            async with Client(script.url, timeout=0.3) as c:
                with pytest.raises(errors.Timeout):
                    await c.request("GET", "/slow")
                with pytest.raises(errors.ServiceUnavailable, match="disconnected"):
                    await c.request("GET", "/drop")
                assert await c.request("GET", "/x") == {}
            async with Client(script.url, timeout=0.3) as c:
                with pytest.raises(errors.Timeout):
                    await c.request("GET", "/half")  # the rest of the body never comes
                assert await c.request("GET", "/x") == {}
    run(body())


def test_cancelled_request_does_not_poison_the_pool():
    async def body():
        async def respond(req):
            if req[1] == "/slow":
                await asyncio.sleep(0.3)
            return [ok(json.dumps({"path": req[1]}).encode())]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                task = asyncio.create_task(c.request("GET", "/slow"))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.sleep(0.4)  # the late answer must not reach the next request
                assert await c.request("GET", "/next") == {"path": "/next"}
    run(body())


def test_connection_limit():
    async def body():
        async def respond(req):
            await asyncio.sleep(0.02)
            return [ok(b"{}")]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                c._pool.limit = 3
                results = await asyncio.gather(*(c.request("GET", f"/{i}") for i in range(20)))
            assert results == [{}] * 20
            assert script.max_open <= 3 and script.connections == 3
    run(body())


def test_watch_stream_lines_in_any_pieces():
    events = [{"type": "ADDED", "object": {"metadata": {"name": f"p{i}",
                                                        "resourceVersion": str(i)}}}
              for i in range(30)]
    lines = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    async def body():
        def respond(req):
            if "watch=true" not in req[1]:
                return [ok(b"{}")]
            if "resourceVersion=old" in req[1]:
                gone = json.dumps({"kind": "Status", "code": 410, "reason": "Expired",
                                   "message": "too old"}).encode()
                return [chunked(gone, status="410 Gone")]
            pieces = [lines[i:i + 37] for i in range(0, len(lines), 37)] + [b"\n\n"]
            return bytewise(chunked(*pieces)[:300]) + [chunked(*pieces)[300:]]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                cms = c.resource("v1", "ConfigMap")
                got = [(ev.type, ev.object) async for ev in cms.watch("default")]
                assert got == [(e["type"], e["object"]) for e in events]
                with pytest.raises(errors.Gone, match="too old"):
                    async for _ in cms.watch("default", resource_version="old"):
                        pass
                assert await c.request("GET", "/x") == {}  # streams gave their connection back
                assert script.connections == 1
    run(body())


def test_watch_broken_mid_stream():
    async def body():
        async def respond(req):
            if "watch=true" in req[1]:
                return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"14\r\n{\"type\": \"ADDED\", ", None]
            return [ok(b"{}")]
        async with Script(respond) as script:
            async with Client(script.url) as c:
                with pytest.raises(errors.ServiceUnavailable, match="broke"):
                    async for _ in c.resource("v1", "Pod").watch("default"):
                        pass
                assert await c.request("GET", "/x") == {}
    run(body())


def test_unreachable_server():
    async def body():
        async with Client("http://127.0.0.1:1") as c:
            with pytest.raises(errors.ServiceUnavailable, match="cannot reach"):
                await c.request("GET", "/api")
            with pytest.raises(errors.ServiceUnavailable, match="broke"):
                async for _ in c.resource("v1", "Pod").watch("default"):
                    pass
    run(body())


def test_stream_head_arriving_after_the_caller_gave_up():
    """A watch cancelled while its request is in flight: the response head that still
    arrives must not complete the abandoned future (no InvalidStateError in the loop)."""
    from pilothouse.client._http import Pool, _Connection

    class Transport:
        def write(self, data):
            pass

        def abort(self):
            pass

    async def body():
        pool = Pool("http://127.0.0.1:1", None)
        pool.loop = asyncio.get_running_loop()
        conn = _Connection(pool)
        conn.connection_made(Transport())
        waiter = conn.send(b"GET /watch HTTP/1.1\r\n\r\n", streaming=True)
        waiter.cancel()
        conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\n{}\n\r\n")
        assert waiter.cancelled()
        assert list(conn.pieces) == [b"{}\n"]
    run(body())


def test_deadlines_of_concurrent_and_later_requests():
    """One pool timer enforces every request's deadline: a slow request among fast ones
    times out on time and alone; after the timer went idle a new request is still timed;
    a request with a shorter timeout started after a longer one times out first."""
    async def body():
        async def respond(req):
            if req[1].startswith("/slow"):
                await asyncio.sleep(2)
            return [ok(b"{}")]
        async with Script(respond) as script:
            async with Client(script.url, timeout=0.3) as c:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                slow = asyncio.create_task(c.request("GET", "/slow"))
                fast = [await c.request("GET", f"/{i}") for i in range(5)]
                with pytest.raises(errors.Timeout):
                    await slow
                assert fast == [{}] * 5
                assert 0.25 <= loop.time() - t0 < 1.0
                await asyncio.sleep(0.4)  # nothing in flight: the timer is not running
                assert c._pool._timer is None
                t0 = loop.time()
                with pytest.raises(errors.Timeout):
                    await c.request("GET", "/slow-again")
                assert 0.25 <= loop.time() - t0 < 1.0
                assert await c.request("GET", "/after") == {}
                # a shorter deadline behind a longer one (the pool's timer moves earlier)
                pool = c._pool
                data = b"GET /slow-long HTTP/1.1\r\nHost: x\r\n\r\n"
                long = asyncio.create_task(pool.request(data, 1.5))
                await asyncio.sleep(0.05)
                t0 = loop.time()
                with pytest.raises(TimeoutError):
                    await pool.request(b"GET /slow-short HTTP/1.1\r\nHost: x\r\n\r\n", 0.2)
                assert 0.15 <= loop.time() - t0 < 0.6
                assert not long.done()
                with pytest.raises(TimeoutError):
                    await long
                assert pool._timer is None
                assert all(conn.deadline is None for conn in pool._all)
    run(body())


def test_no_timer_per_request():
    """Requests on a kept-alive connection arm the pool's deadline timer once, not once
    each (a timer costs the event loop a heap insertion and a removal)."""
    async def body():
        async with Script(lambda req: [ok(b"{}")]) as script:
            async with Client(script.url) as c:
                loop = asyncio.get_running_loop()
                armed = []
                call_at = loop.call_at

                def counting_call_at(when, callback, *args, **kw):
                    if getattr(callback, "__module__", "") == "pilothouse.client._http":
                        armed.append(callback)
                    return call_at(when, callback, *args, **kw)
                loop.call_at = counting_call_at
                try:
                    for i in range(20):
                        assert await c.request("GET", f"/{i}") == {}
                finally:
                    del loop.call_at
                assert len(armed) == 1
    run(body())
