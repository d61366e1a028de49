"""The API server's HTTP/1.1 front: plain requests are parsed and answered here, anything
else is handed to aiohttp.

Under load the API server's own work is small next to aiohttp's general-purpose server
machinery per request (StreamReader, BaseRequest and yarl URL construction, the payload
writer, access-log hooks, a task per request plus timers). :class:`HTTPServer` listens
instead of aiohttp's ``TCPSite`` and gives every connection a :class:`_Connection`, which:

* parses requests on a keep-alive connection itself, one at a time, in order (pipelined
  requests wait in the buffer; reading pauses when too much is buffered), and calls
  :meth:`APIServer.handle` with a :class:`_Request`: ``method``, ``path`` (percent-decoded
  as aiohttp's), ``raw_path``, ``query`` (a ``MultiDictProxy`` parsed as yarl does: repeated
  keys, ``+`` and percent decoding), ``headers`` (``CIMultiDictProxy``), ``version``,
  ``keep_alive``, ``content_length``, ``read()``, ``host``, ``remote``, ``transport`` and a
  ``writer`` good for the ``100 Continue`` interim response;
* reads bodies by ``Content-Length`` or ``Transfer-Encoding: chunked``. A body over
  ``rq.MAX_BODY`` is not kept: ``read()`` raises ``HTTPRequestEntityTooLarge`` (413 as a
  ``Status`` from the handler, as with aiohttp). A body the handler did not read is read and
  dropped after the response (up to ``lingering_time``, as aiohttp lingers), so the
  connection stays usable;
* writes the returned :class:`aiohttp.web.Response` with one ``transport.write``: status
  line, its headers, ``Content-Length``, ``Date``, ``Server`` and ``Connection`` as aiohttp
  sets them, the body (none for HEAD, 1xx, 204, 304). A raised ``HTTPException`` is the
  response, as in aiohttp. Anything else (a ``StreamResponse``, a prepared, chunked or
  compressed response, a non-bytes payload) is a bug here: logged, answered 500;
* answers a malformed request line or header 400 (431 for too many or too long header
  lines; aiohttp's limits: 8190 bytes a line, 128 fields), then closes; honours HTTP/1.0
  (``Connection: keep-alive`` to stay open), ``Connection: close``, HEAD; closes an idle
  connection after ``keepalive_timeout`` (aiohttp's default) with one timer per connection.
  A client that goes away does not cancel its handler (aiohttp's default,
  ``handler_cancellation=False``): a pending ``read()`` raises ``ConnectionResetError``.
  A client that half-closes after its request still gets the answer. A response the client
  does not read holds the next request back (one in flight per connection).

Everything that is not a plain request/response is decided from the request head, before
its body is read, and handed to aiohttp's ``RequestHandler`` (the protocol that
:class:`APIRunner`'s ``web.Server`` makes) together with every byte buffered from that
request's first byte on; the connection then stays with aiohttp for good. That is: an
``Upgrade`` header or ``Connection: upgrade`` (WebSocket and SPDY for exec, attach,
port-forward), a watch (``watch`` set to anything but false, or a ``/watch/`` path), the
``log``, ``exec``, ``attach``, ``portforward`` and ``proxy`` subresources (any path segment
so named), a request target that is not a path, a ``Transfer-Encoding`` other than
``chunked``, a ``Content-Encoding`` (aiohttp decompresses), CONNECT, and HTTP versions other
than 1.0 and 1.1. Those responses are streams, hijack the socket or need aiohttp's request.

Set ``PILOTHOUSE_APISERVER_HTTP=aiohttp`` to serve everything with aiohttp as before (see
:mod:`pilothouse.apiserver.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from yarl import URL

from pilothouse.apiserver import request as rq
from pilothouse.apiserver.server import APIRunner, APIServer

log = logging.getLogger("pilothouse.apiserver")

MAX_LINE = 8190  # aiohttp's max_line_size and max_field_size
MAX_HEADERS = 128  # aiohttp's max_headers
_MAX_HEAD = (MAX_HEADERS + 1) * (MAX_LINE + 2) + 2
_BUFFER_HIGH = 256 * 1024  # pipelined bytes buffered before reading pauses
_KEEPALIVE_TIMEOUT = 3630.0  # aiohttp's RequestHandler default
_LINGERING_TIME = 10.0  # aiohttp's: how long an unread request body is read and dropped

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE_RE = re.compile(_TOKEN + rb" [^\x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]")
_FIELDS_RE = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
# A client sends the same header fields request after request: what they say is parsed once
# (header blocks up to _CACHED_BLOCK bytes, at most _CACHE_SIZE of them, then started over).
_CACHED_BLOCK = 2048
_CACHE_SIZE = 512
_FIELDS: dict[bytes, tuple] = {}
_HEADER_BLOCKS: dict[tuple, tuple[str, int]] = {}
_HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_HANDED_SEGMENTS = frozenset(("watch", "log", "exec", "attach", "portforward", "proxy"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_EMPTY_QUERY: MultiDictProxy = MultiDictProxy(MultiDict())
_NO_MATCH = MappingProxyType({})
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")
_date = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if now != _date[0]:
        t = time.gmtime(now)
        _date[0], _date[1] = now, (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} "
                                   f"{t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
    return _date[1]


def parse_query(qs: str) -> MultiDictProxy:
    """A query string as yarl's ``URL.query`` parses it (``parse_qsl`` with blank values)."""
    if not qs:
        return _EMPTY_QUERY
    pairs = []
    if "%" not in qs:
        for part in qs.replace("+", " ").split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append((name, value))
    else:
        for part in qs.split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append((unquote_plus(name), unquote_plus(value)))
    return MultiDictProxy(MultiDict(pairs))


def _parse_fields(block: bytes) -> tuple:
    """A request's header lines (each ending in CRLF) as (headers, hand to aiohttp?, the
    lower-cased Connection header or None, chunked?, Content-Length or None, Expect?)."""
    if block and _FIELDS_RE.fullmatch(block) is None:
        raise _BadRequest(400, "malformed header field")
    lines = block.decode("utf-8", "surrogateescape").split("\r\n")
    lines.pop()
    if len(lines) > MAX_HEADERS:
        raise _BadRequest(431, "too many header fields")
    pairs = []
    for line in lines:
        if len(line) > MAX_LINE:
            raise _BadRequest(431, "header field too long")
        name, _, value = line.partition(":")
        pairs.append((name, value.strip(" \t")))
    headers = CIMultiDictProxy(CIMultiDict(pairs))
    hand_off = "Upgrade" in headers or "Content-Encoding" in headers
    connection = headers.get("Connection")
    if connection is not None:
        connection = connection.lower()
        hand_off = hand_off or "upgrade" in connection
    te = headers.get("Transfer-Encoding")
    lengths = headers.getall("Content-Length", None)
    length = None
    if te is not None:
        if te.lower() != "chunked":
            hand_off = True
        elif lengths is not None:
            raise _BadRequest(400, "both Transfer-Encoding and Content-Length")
    elif lengths is not None:
        value = lengths[0]
        if not (value.isascii() and value.isdigit()) or any(v != value for v in lengths):
            raise _BadRequest(400, "invalid Content-Length")
        length = int(value)
    return (headers, hand_off, connection, te is not None and not hand_off, length,
            "Expect" in headers)


# Request lines parsed (the same ones come again: a node's Lease renewal, a list...): a line
# is remembered the second time it is seen (its hash noted the first time), so that lines
# seen once (a pod's binding, its status) do not push out the others. Up to _LINES_SIZE of
# them, each up to _CACHED_LINE bytes, then started over.
_CACHED_LINE = 512
_LINES_SIZE = 16384
_SEEN_SIZE = 65536
_LINES: dict[bytes, tuple] = {}
_SEEN: set[int] = set()
_HANDED = (None, None, None, None, None, None)  # a request line aiohttp serves


def _request_line(line: bytes) -> tuple:
    """A request line (without its CRLF) as (method, target, version, path, query string,
    query or None if not parsed yet); version None if aiohttp is to serve the request.
    Raises :class:`_BadRequest` if malformed. Remembers it (see ``_LINES``)."""
    if len(line) > MAX_LINE:
        raise _BadRequest(400, "request line too long")
    if _REQUEST_LINE_RE.fullmatch(line) is None:
        raise _BadRequest(400, "malformed request line")
    found = _parse_request_line(line)
    if len(line) <= _CACHED_LINE:
        key = hash(line)
        if key in _SEEN:
            if len(_LINES) >= _LINES_SIZE:
                _LINES.clear()
            _LINES[line] = found
        else:
            if len(_SEEN) >= _SEEN_SIZE:
                _SEEN.clear()
            _SEEN.add(key)
    return found


def _parse_request_line(line: bytes) -> tuple:
    method, target, version = line.decode("utf-8", "surrogateescape").split(" ")
    if version == "HTTP/1.1":
        version = HttpVersion11
    elif version == "HTTP/1.0":
        version = HttpVersion10
    else:
        return _HANDED
    if target[0] != "/" or method == "CONNECT":
        return _HANDED
    raw_path, _, query_string = target.partition("?")
    if "#" in target:
        query_string = query_string.partition("#")[0]
        raw_path = raw_path.partition("#")[0]
    path = URL.build(path=raw_path, encoded=True).path if "%" in raw_path else raw_path
    if not _HANDED_SEGMENTS.isdisjoint(path.split("/")):
        return _HANDED
    query = None
    if "%" in query_string or "watch" in query_string:
        query = parse_query(query_string)
        watch = query.get("watch")
        if watch and watch not in _FALSE:
            return _HANDED
    return method, target, version, path, query_string, query


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Writer:
    """What ``request.writer`` must do for the ``100 Continue`` interim response."""

    __slots__ = ("_conn", "output_size", "sent")

    def __init__(self, conn: "_Connection"):
        self._conn, self.output_size, self.sent = conn, 0, False

    async def write(self, data: bytes) -> None:
        if self._conn.transport is not None and not self._conn.closed:
            self._conn.transport.write(data)
            self.output_size += len(data)
            self.sent = True

    async def drain(self) -> None:
        await self._conn.drain()


class _Request:
    """The request :meth:`APIServer.handle` gets on the fast path (see the module)."""

    __slots__ = ("method", "raw_path", "path", "query_string", "_query", "headers", "version",
                 "keep_alive", "content_length", "_conn", "_body", "_pieces", "_size",
                 "_error", "_waiter", "_too_large", "_discard", "_expect", "_writer")

    match_info = _NO_MATCH

    def __init__(self, conn, method, raw_path, path, query_string, headers, version,
                 keep_alive, content_length):
        self._conn = conn
        self.method, self.raw_path, self.path = method, raw_path, path
        self.query_string, self._query = query_string, None
        self.headers, self.version, self.keep_alive = headers, version, keep_alive
        self.content_length = content_length
        self._body: bytes | None = None
        self._pieces: list[bytes] = []
        self._size = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._too_large = self._discard = self._expect = False
        self._writer: _Writer | None = None

    @property
    def query(self) -> MultiDictProxy:
        q = self._query
        if q is None:
            q = self._query = parse_query(self.query_string)
        return q

    @property
    def rel_url(self) -> URL:
        return URL.build(path=self.path, query_string=self.query_string)

    @property
    def path_qs(self) -> str:
        return self.raw_path

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    @property
    def transport(self):
        return self._conn.transport

    @property
    def protocol(self):
        return self._conn

    @property
    def writer(self) -> _Writer:
        if self._writer is None:
            self._writer = _Writer(self._conn)
        return self._writer

    @property
    def remote(self) -> str | None:
        transport = self._conn.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        return peer[0] if isinstance(peer, (tuple, list)) else peer

    @property
    def body_exists(self) -> bool:
        return bool(self.content_length) or self._conn.chunked_body(self)

    can_read_body = body_exists

    async def read(self) -> bytes:
        if self._body is None and self._error is None:
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
        return self._body

    async def text(self) -> str:
        return (await self.read()).decode("utf-8")

    async def json(self) -> Any:
        from pilothouse.apiserver import _json
        return _json.loads(await self.read())

    def __repr__(self) -> str:
        return f"<_Request {self.method} {self.raw_path}>"


class _Connection(asyncio.Protocol):
    """One client connection on the fast path (until it is handed to aiohttp)."""

    def __init__(self, server: "HTTPServer"):
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = b""
        self._scanned = 0  # how far the buffer is known to hold no complete head
        self._req: _Request | None = None  # the request being served or whose body is read
        self._task: asyncio.Task | None = None
        self._answered = False  # the current request's response is written
        self._body_left = 0  # Content-Length bytes still to come
        self._chunk_left = -3  # chunked state; -3: not a chunked body (see _chunked)
        self._chunk_line = b""  # a chunk-size or trailer line not complete yet
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._closing = False  # close once the current request is answered
        self._draining = False  # answered with an error: drop input until closed
        self._eof = False
        self._last = self.loop.time()
        self._linger_until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.server.connections.add(self)
        self._timer = self.loop.call_at(self._last + self.server.keepalive_timeout,
                                        self._on_timer)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        req = self._req
        if req is not None and req._body is None and req._error is None:
            self._fail_body(req, ConnectionResetError("Connection lost"))
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("Connection lost"))
        self.transport = None

    def eof_received(self):
        self._eof = True
        req = self._req
        if req is None or self._draining or self._answered:
            return False
        if self._body_left or self._chunk_left != -3:  # the body will never be complete
            self._fail_body(req, ConnectionResetError("Connection lost"))
            return False
        return True  # half-closed: the request being served is still answered

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._req is None and not self.closed:
            self._next()

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("Connection lost")
        if self._writing_paused:
            if self._drain_waiter is None:
                self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def data_received(self, data: bytes) -> None:
        if self._draining or self.closed:
            return
        if self._req is not None and (self._body_left or self._chunk_left != -3):
            data = self._feed_body(data)
            if not data or self.closed or self._draining:
                return
        if self._closing:
            return  # nothing more is served on this connection
        self._buf = self._buf + data if self._buf else data
        if self._req is None and not self._writing_paused:
            self._next()
        if len(self._buf) > _BUFFER_HIGH and not self._reading_paused and not self.closed \
                and (self._req is not None or self._writing_paused):
            self._pause_reading()

    # -- requests

    def _next(self) -> None:
        """Start serving the next complete request in the buffer, if any."""
        buf = self._buf
        if buf[:2] == b"\r\n":  # empty lines before a request line are ignored (RFC 9112)
            buf = self._buf = buf.lstrip(b"\r\n")
            self._scanned = 0
        end = buf.find(b"\r\n\r\n", self._scanned)
        if end < 0:
            self._scanned = max(0, len(buf) - 3)
            if len(buf) > _MAX_HEAD or (b"\r\n" not in buf and len(buf) > MAX_LINE):
                self._bad(431 if b"\r\n" in buf else 400, "request head too large")
            elif self._eof:
                self._close()
            elif self._reading_paused:
                self._resume_reading()
            return
        self._scanned = 0
        try:
            req = self._parse(buf, end)
        except _BadRequest as exc:
            self._bad(exc.status, str(exc))
            return
        if req is None:
            self._hand_off()
            return
        self._req, self._answered = req, False
        left = self._body_left
        if left and len(buf) - end - 4 >= left and req._error is None:
            # the whole Content-Length body is here (what _feed_body would do, in short)
            start = end + 4
            req._body = buf[start:start + left]
            req._size, self._body_left = left, 0
            self._buf = rest = buf[start + left:]
            if self._reading_paused and len(rest) <= _BUFFER_HIGH:
                self._resume_reading()
            self._task = self.loop.create_task(self._serve(req))
            return
        rest = buf[end + 4:]
        self._buf = b""
        if self._body_left or self._chunk_left != -3:
            if rest:
                rest = self._feed_body(rest)
                if self.closed or self._draining:
                    return
        elif req._error is None:
            req._body = b""
        self._buf = rest
        if self._reading_paused and len(rest) <= _BUFFER_HIGH:
            self._resume_reading()
        self._task = self.loop.create_task(self._serve(req))

    def _parse(self, buf: bytes, end: int) -> _Request | None:
        """The request whose head ends at ``end``; None: aiohttp's to serve."""
        eol = buf.find(b"\r\n", 0, end + 2)
        line = buf[:eol]
        info = _LINES.get(line)
        if info is None:
            info = _request_line(line)
        block = buf[eol + 2:end + 2]
        fields = _FIELDS.get(block)
        if fields is None:
            fields = _parse_fields(block)
            if len(block) <= _CACHED_BLOCK:
                if len(_FIELDS) >= _CACHE_SIZE:
                    _FIELDS.clear()
                _FIELDS[block] = fields
        headers, hand_off, connection, chunked, length, expect = fields
        if hand_off:
            return None
        method, target, version, path, query_string, query = info
        if version is HttpVersion11:
            keep_alive = connection is None or "close" not in connection
        elif version is HttpVersion10:
            keep_alive = connection is not None and "keep-alive" in connection
        else:
            return None  # aiohttp's: another version, a target that is not a path, a watch...
        if chunked:
            self._chunk_left = 0
        elif length is not None:
            self._body_left = length
        req = _Request(self, method, target, path, query_string, headers, version,
                       keep_alive, length)
        req._query = query
        if length is not None and length > rq.MAX_BODY:
            req._too_large = True
            req._error = web.HTTPRequestEntityTooLarge(rq.MAX_BODY, length)
        req._expect = expect
        return req

    def chunked_body(self, req: _Request) -> bool:
        return req is self._req and self._chunk_left != -3

    # -- request bodies

    def _feed_body(self, data: bytes) -> bytes:
        """Take the current request's body bytes from ``data``; return what follows it."""
        req = self._req
        if self._chunk_left != -3:
            return self._chunked(req, data)
        left = self._body_left
        if len(data) >= left:
            piece, data = (data[:left], data[left:]) if len(data) > left else (data, b"")
            self._body_left = 0
            self._piece(req, piece)
            self._body_done(req)
            return data
        self._body_left = left - len(data)
        self._piece(req, data)
        return b""

    def _piece(self, req: _Request, piece: bytes) -> None:
        if req._too_large or req._discard or not piece:
            return
        req._size += len(piece)
        if req._size > rq.MAX_BODY:
            req._too_large = True
            req._pieces = []
            self._fail_body(req, web.HTTPRequestEntityTooLarge(rq.MAX_BODY, req._size))
            return
        req._pieces.append(piece)

    def _chunked(self, req: _Request, data: bytes) -> bytes:
        """Chunked body states in ``_chunk_left``: > 0 bytes of chunk data to come; -1 the
        CRLF after chunk data; 0 a size line; -2 trailer lines after the last chunk."""
        buf = self._chunk_line + data if self._chunk_line else data
        self._chunk_line = b""
        pos, n = 0, len(buf)
        while pos < n:
            left = self._chunk_left
            if left > 0:
                stop = min(n, pos + left)
                self._piece(req, buf[pos:stop])
                self._chunk_left = left - (stop - pos) or -1
                pos = stop
                continue
            if left == -1:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    return self._body_error(req)
                pos += 2
                self._chunk_left = 0
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > MAX_LINE:
                    return self._body_error(req)
                break
            line = buf[pos:eol]
            pos = eol + 2
            if left == -2:
                if not line:  # the end of the trailers: the body is complete
                    self._chunk_left = -3
                    self._body_done(req)
                    return buf[pos:]
                continue
            size = line.split(b";", 1)[0].strip(b" \t")
            if _HEX_RE.fullmatch(size) is None:
                return self._body_error(req)
            size = int(size, 16)
            self._chunk_left = size if size else -2
        self._chunk_line = buf[pos:]
        if len(self._chunk_line) > MAX_LINE + 2:
            return self._body_error(req)
        return b""

    def _body_done(self, req: _Request) -> None:
        if req._error is None and not req._too_large:
            pieces = req._pieces
            req._body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            req._pieces = []
            waiter = req._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif req._too_large and req._error is None:
            self._fail_body(req, web.HTTPRequestEntityTooLarge(rq.MAX_BODY, req._size))
        if self._answered:
            self._request_done()

    def _fail_body(self, req: _Request, exc: BaseException) -> None:
        req._error = exc
        waiter = req._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _body_error(self, req: _Request) -> bytes:
        self._fail_body(req, ConnectionResetError("malformed chunked request body"))
        self._chunk_left = -3
        if self._answered:
            self._bad(400, "malformed chunked request body")
        else:
            self._closing = True  # after the handler's answer, if it has one
        return b""

    # -- responses

    async def _serve(self, req: _Request) -> None:
        try:
            try:
                resp = await self.server.api.handle(req)
            except web.HTTPException as exc:
                resp = exc
            body_done = self._body_left == 0 and self._chunk_left == -3
            if not body_done and req._expect and (req._writer is None or not req._writer.sent):
                self._closing = True  # the client waits for a 100 Continue that never came
            data, keep_alive = encode_response(req, resp, req.keep_alive and not self._closing)
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception as exc:
            if self.closed or isinstance(exc, ConnectionResetError):
                self._abort()
                return
            log.exception("error serving %s %s", req.method, req.raw_path)
            data, keep_alive = _plain(req, 500, "500 Internal Server Error\n\n"
                                      "Server got itself in trouble")
        finally:
            self._task = None
        if self.closed or self._draining:
            return
        self.transport.write(data)
        self._last = self.loop.time()
        if not keep_alive:
            self._closing = True
        self._answered = True
        if self._body_left == 0 and self._chunk_left == -3:
            self._request_done()
        elif self._closing:
            self._close()
        else:  # the rest of the body is read and dropped, for up to lingering_time
            req._discard = True
            req._pieces = []
            self._linger_until = self._last + self.server.lingering_time
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(self._linger_until, self._on_timer)

    def _request_done(self) -> None:
        self._req = None
        self._answered = False
        if self._closing or self.closed:
            self._close()
        elif self._buf:
            if not self._writing_paused:
                self._next()
        elif self._eof:
            self._close()
        elif self._reading_paused:
            self._resume_reading()

    def _hand_off(self) -> None:
        """Give the connection, and every byte buffered from this request on, to aiohttp."""
        transport, data = self.transport, self._buf
        self._buf = b""
        self.closed = True
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reading_paused:
            self._resume_reading()
        handler = self.server.aiohttp_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        self.transport = None
        handler.data_received(data)
        if self._eof:
            handler.eof_received()

    # -- errors, time-outs, closing

    def _bad(self, status: int, message: str) -> None:
        """Answer an unparseable request and close, reading (and dropping) what the client
        still sends for a moment, so that the answer is not lost to a reset."""
        if self.closed:
            return
        self.transport.write(_plain(None, status, message)[0])
        self._draining = True
        self._buf = b""
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_until = self.loop.time() + min(self.server.lingering_time, 2.0)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(self._linger_until, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.loop.time()
        if self._draining or (self._answered and self._req is not None):
            if now >= self._linger_until:
                self._close()
                return
            when = self._linger_until
        elif self._req is not None:
            when = now + self.server.keepalive_timeout
        else:
            when = self._last + self.server.keepalive_timeout
            if now >= when:
                self._close()
                return
        self._timer = self.loop.call_at(when, self._on_timer)

    def _pause_reading(self) -> None:
        self._reading_paused = True
        with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):
            self.transport.resume_reading()

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _abort(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def shutdown(self) -> None:
        """The server stops: close now if idle, else once the current request is answered."""
        self._closing = True
        if self._req is None or self._answered:
            self._close()


def _plain(req: _Request | None, status: int, text: str) -> tuple[bytes, bool]:
    """A text/plain answer after which the connection closes."""
    if req is None:
        req = _Request(None, "GET", "/", "/", "", CIMultiDictProxy(CIMultiDict()),
                       HttpVersion11, False, None)
    return encode_response(req, web.Response(status=status, text=text), keep_alive=False)


def encode_response(req: _Request, resp: Any, keep_alive: bool) -> tuple[bytes, bool]:
    """``resp`` as aiohttp would write it for ``req``, in one piece (see the module), and
    whether the connection stays open after it.

    What a plain ``web.Response`` with a bytes body and a Content-Type of its own (and no
    Content-Length, Date or Connection) answers to a request other than HEAD is memoised:
    the head up to Content-Length's value and what follows it, by status, reason, HTTP
    minor version, whether the connection stays open and the response's own headers.
    Anything else, and the first response of a kind, takes :func:`_encode_general`, which
    fills the memo."""
    if type(resp) is web.Response and resp._payload_writer is None and not resp._eof_sent \
            and not resp._chunked and not resp._compression:
        body = resp._body
        if type(body) is bytes and req.method != "HEAD":
            key = (resp._status, resp._reason, req.version.minor,
                   keep_alive and resp._keep_alive is not False, *resp._headers.items())
            found = _HEADS.get(key)
            if found is not None:
                date = _date_line[1] if int(time.time()) == _date_line[0] else _new_date_line()
                return b"%s%d\r\n%s%s%s" % (found[0], len(body), date, found[1], body), key[3]
    return _encode_general(req, resp, keep_alive)


# The memo of encode_response: key (status, reason, minor, keep-alive, *header items) ->
# (the head up to the Content-Length value, the Connection line if any and the blank line)
_HEADS: dict[tuple, tuple[bytes, bytes]] = {}
_date_line: list = [0, b""]  # the second and its Date line, as bytes


def _new_date_line() -> bytes:
    text = _http_date()
    _date_line[0], _date_line[1] = _date[0], f"Date: {text}\r\n".encode("ascii")
    return _date_line[1]


def _remember_head(block: str, minor: int, status: int, reason: str, keep_alive: bool,
                   headers) -> None:
    """Memoise for :func:`encode_response` the head :func:`_encode_general` just wrote for
    a response of this kind (see there which ones): the same bytes, Date and the length
    aside."""
    if status < 200 or status == 204 or status == 304:
        return
    if keep_alive:
        connection = "Connection: keep-alive\r\n" if minor == 0 else ""
    else:
        connection = "Connection: close\r\n" if minor == 1 else ""
    if len(_HEADS) >= _CACHE_SIZE:
        _HEADS.clear()
    _HEADS[(status, reason, minor, keep_alive, *headers.items())] = (
        f"HTTP/1.{minor} {status} {reason}\r\n{block}Content-Length: ".encode("utf-8"),
        f"{connection}\r\n".encode("utf-8"))


def _encode_general(req: _Request, resp: Any, keep_alive: bool) -> tuple[bytes, bool]:
    """:func:`encode_response` for any response (its memo aside)."""
    if not isinstance(resp, web.Response) or resp.prepared or resp.chunked \
            or resp.compression:
        log.error("bug: the HTTP fast path cannot write %r for %s %s (only a plain "
                  "web.Response with a bytes body); answered 500", resp, req.method,
                  req.raw_path)
        return _plain(req, 500, "500 Internal Server Error")
    body = resp.body
    if body is None:
        body = b""
    elif not isinstance(body, (bytes, bytearray)):
        log.error("bug: the HTTP fast path cannot write a %s body for %s %s; answered 500",
                  type(body).__name__, req.method, req.raw_path)
        return _plain(req, 500, "500 Internal Server Error")
    status = resp.status
    headers = resp.headers
    minor = req.version.minor
    if resp.keep_alive is False:
        keep_alive = False
    if status < 200 or status == 204 or status == 304 or req.method == "HEAD":
        return _encode_bodiless(req, resp, body, keep_alive)
    found = _header_block(headers)
    if found is None:
        return _plain(req, 500, "500 Internal Server Error")
    own, flags = found
    block = own
    if not flags & _HAS_LENGTH:
        block += f"Content-Length: {len(body)}\r\n"
        if body and not flags & _HAS_TYPE:
            block += "Content-Type: application/octet-stream\r\n"
    elif not flags & _HAS_TYPE and headers["Content-Length"] != "0":
        block += "Content-Type: application/octet-stream\r\n"
    head, keep_alive = _finish_head(block, flags, minor, status, resp.reason, keep_alive)
    if flags & _PLAIN_MASK == _HAS_TYPE and type(resp) is web.Response:
        _remember_head(own, minor, status, resp.reason, keep_alive, headers)
    return (head + body if body else head), keep_alive


def _finish_head(block: str, flags: int, minor: int, status: int, reason: str,
                 keep_alive: bool) -> tuple[bytes, bool]:
    """The status line and header block with ``Date`` and ``Connection`` as aiohttp adds
    them, and whether the connection stays open."""
    if not flags & _HAS_DATE:
        block += f"Date: {_http_date()}\r\n"
    if flags & _HAS_CONNECTION:
        if flags & _CONNECTION_CLOSE:
            keep_alive = False
    elif keep_alive:
        if minor == 0:
            block += "Connection: keep-alive\r\n"
    elif minor == 1:
        block += "Connection: close\r\n"
    return f"HTTP/1.{minor} {status} {reason}\r\n{block}\r\n".encode("utf-8"), keep_alive


_HAS_LENGTH, _HAS_TYPE, _HAS_DATE, _HAS_CONNECTION, _CONNECTION_CLOSE = 1, 2, 4, 8, 16
_PLAIN_MASK = _HAS_LENGTH | _HAS_TYPE | _HAS_DATE | _HAS_CONNECTION


def _header_block(headers) -> tuple[str, int] | None:
    """A response's own header lines (and Server unless it has one), with flags saying which
    of the headers written around them it has; None if a value holds a line break (logged).
    Memoised: responses of a kind have the same headers."""
    key = tuple(headers.items())
    found = _HEADER_BLOCKS.get(key)
    if found is None:
        text = "".join([f"{k}: {v}\r\n" for k, v in key])
        if text.count("\n") != len(key) or text.count("\r") != len(key):
            log.error("bug: a response header holds a line break: %r; answered 500", key)
            return None
        flags = 0
        if "Content-Length" in headers:
            flags |= _HAS_LENGTH
        if "Content-Type" in headers:
            flags |= _HAS_TYPE
        if "Date" in headers:
            flags |= _HAS_DATE
        if "Server" not in headers:
            text += f"Server: {SERVER_SOFTWARE}\r\n"
        connection = headers.get("Connection")
        if connection is not None:
            flags |= _HAS_CONNECTION | (_CONNECTION_CLOSE if "close" in connection.lower()
                                        else 0)
        found = (text, flags)
        if len(_HEADER_BLOCKS) >= _CACHE_SIZE:
            _HEADER_BLOCKS.clear()
        _HEADER_BLOCKS[key] = found
    return found


def _encode_bodiless(req: _Request, resp: web.Response, body: bytes, keep_alive: bool
                     ) -> tuple[bytes, bool]:
    """A response to HEAD, or a 1xx, 204 or 304: no body, and the framing headers as aiohttp
    writes them (Content-Length of the body HEAD would have had; none for 1xx, 204, 304)."""
    status, headers = resp.status, resp.headers
    no_body_status = status < 200 or status == 204 or status == 304
    if "Transfer-Encoding" in headers or (no_body_status and "Content-Length" in headers):
        headers = headers.copy()
        headers.popall("Transfer-Encoding", None)
        if no_body_status:
            headers.popall("Content-Length", None)
    found = _header_block(headers)
    if found is None:
        return _plain(req, 500, "500 Internal Server Error")
    block, flags = found
    if body and not no_body_status and not flags & _HAS_LENGTH:
        block += f"Content-Length: {len(body)}\r\n"
    return _finish_head(block, flags, req.version.minor, status, resp.reason, keep_alive)


class HTTPServer:
    """Listens on ``address``:``port`` for :class:`APIServer` ``api`` (``port`` 0 picks a
    free one; :attr:`port` is the bound one after :meth:`start`). aiohttp's side is an
    :class:`APIRunner` (``aiohttp_kwargs`` go to its ``web.Server``): :meth:`start` sends
    the app's start-up signal through it, :meth:`stop` its shutdown and clean-up signals."""

    def __init__(self, api: APIServer, address: str = "127.0.0.1", port: int = 0, *,
                 keepalive_timeout: float = _KEEPALIVE_TIMEOUT,
                 lingering_time: float = _LINGERING_TIME, shutdown_timeout: float = 60.0,
                 backlog: int = 128, **aiohttp_kwargs: Any):
        self.api, self.address, self.port = api, address, port
        self.keepalive_timeout, self.lingering_time = keepalive_timeout, lingering_time
        self.shutdown_timeout, self.backlog = shutdown_timeout, backlog
        self.connections: set[_Connection] = set()
        self.runner = APIRunner(api, shutdown_timeout=shutdown_timeout, **aiohttp_kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.aiohttp_server: web.Server | None = None
        self._listener: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.runner.setup()
        self.aiohttp_server = self.runner.server
        self._listener = await self.loop.create_server(
            lambda: _Connection(self), self.address, self.port, reuse_address=True,
            backlog=self.backlog)
        if self.port == 0:
            self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening; close idle connections, let requests being served finish (up to
        ``shutdown_timeout``, then cancel them), then stop aiohttp's side."""
        if self._listener is not None:
            self._listener.close()
        await asyncio.sleep(0)
        for conn in list(self.connections):
            conn.shutdown()
        tasks = [c._task for c in self.connections if c._task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            for task in pending:
                task.cancel()
        for conn in list(self.connections):
            conn._abort()
        await self.runner.cleanup()
        self._listener = None
