"""A lean HTTP/1.1 keep-alive client: the transport under :class:`pilothouse.client.Client`.

The client talks to one API server with small JSON requests, thousands a second in the
scheduler and the hollow nodes. aiohttp's general-purpose request path (cookies, redirects,
tracing, per-request tasks, timers and payload objects) cost ~115 µs of CPU per request
there against ~15 µs for the HTTP/1.1 exchange itself, so the client keeps its own:

* one request at a time per connection; idle connections are reused (last in, first out)
  and at most ``limit`` are open, streams included (the rest wait for one);
* a response is read by ``Content-Length``, ``Transfer-Encoding: chunked`` or up to the
  close; ``Connection: close`` and HTTP/1.0 answers close the connection afterwards; a
  ``gzip``/``deflate`` ``Content-Encoding`` is decoded (the client never asks for one);
* a request that is cancelled, times out or fails leaves its connection closed, never
  half-read in the pool. Nothing is retried: a failure reaches the caller as ``OSError``
  (or :class:`TimeoutError` for the deadline), as it would with any HTTP client.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
import zlib
from urllib.parse import urlsplit

_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)
_PAUSE_AT = 4 << 20  # buffered stream bytes before reading from the socket pauses
_CLOCK_SLACK = 0.001  # uvloop's clock and timers count whole milliseconds


class Disconnected(ConnectionError):
    """The server closed the connection before the response was complete."""


class Response:
    """Status, lower-cased headers and (once read) the decoded body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str]):
        self.status, self.headers, self.body = status, headers, b""

    def text(self) -> str:
        ctype = self.headers.get("content-type", "")
        charset = ctype.partition("charset=")[2].split(";")[0].strip().strip('"') or "utf-8"
        try:
            return self.body.decode(charset, "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    """One connection; parses one response at a time and hands it to ``waiter`` (the whole
    body) or, for a stream, delivers the body piece by piece to ``pieces``."""

    def __init__(self, pool: "Pool"):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle = False
        self.reusable = False
        self.waiter: asyncio.Future | None = None
        self.streaming = False
        self.pieces: collections.deque[bytes] = collections.deque()
        self.wakeup: asyncio.Future | None = None
        self.buffered = 0
        self.paused = False
        self.head_only = False
        self.deadline: float | None = None  # loop time by which the response must be in
        self._state = _DONE
        self._buf = b""
        self._body: list[bytes] = []
        self._left = 0
        self._response: Response | None = None
        self._inflate = None
        self._error: BaseException | None = None

    # -- called by the pool

    def send(self, data: bytes, *, streaming: bool = False, head_only: bool = False
             ) -> asyncio.Future:
        self.waiter = self.pool.loop.create_future()
        self.streaming, self.head_only = streaming, head_only
        self.pieces.clear()
        self.buffered, self._error = 0, None
        self.reusable = False
        self._state, self._buf, self._body, self._response = _HEAD, b"", [], None
        self.transport.write(data)
        return self.waiter

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

    # -- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self._state == _UNTIL_CLOSE:
            self._finish()
        elif self._state != _DONE:
            self._fail(Disconnected("server disconnected" + (f": {exc}" if exc else "")))
        if self.idle:
            self.pool._forget_idle(self)

    def eof_received(self):
        return False  # close our side too

    def data_received(self, data: bytes) -> None:
        try:
            if self._state == _HEAD:
                data = self._head(data)
            if self._state == _LENGTH:
                if len(data) >= self._left:
                    data, extra = data[:self._left], data[self._left:]
                    self._piece(data)
                    self._left = 0
                    self._finish(extra)
                elif data:
                    self._piece(data)
                    self._left -= len(data)
            elif self._state == _CHUNKED:
                self._chunked(data)
            elif self._state == _UNTIL_CLOSE:
                self._piece(data)
            elif data and self._state == _DONE:
                self.abort()  # bytes nobody asked for: the connection cannot be trusted
        except (ValueError, IndexError, zlib.error) as exc:
            self._fail(Disconnected(f"malformed HTTP response: {exc}"))
            self.abort()

    # -- parsing

    def _head(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 1 << 20:
                    raise ValueError("response head too large")
                self._buf = buf
                return b""
            lines = buf[:end].decode("latin-1").split("\r\n")
            buf = buf[end + 4:]
            version, _, rest = lines[0].partition(" ")
            status = int(rest[:3])
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real answer follows
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            break
        self._buf = b""
        self._response = Response(status, headers)
        conn = headers.get("connection", "").lower()
        self.reusable = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        encoding = headers.get("content-encoding", "").lower()
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None
        if self.head_only or status in (204, 304):
            self._finish(buf)
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state, self._left = _CHUNKED, 0
        elif "content-length" in headers:
            self._state, self._left = _LENGTH, int(headers["content-length"])
            if self._left == 0:
                self._finish(buf)
                return b""
        else:
            self._state, self.reusable = _UNTIL_CLOSE, False
        if self.streaming and not self.waiter.done():  # done: the caller gave up (cancelled)
            self.waiter.set_result(self._response)  # the caller reads the body as it comes
        return buf

    def _chunked(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        while pos < n:
            left = self._left
            if left > 0:  # chunk data
                end = min(n, pos + left)
                self._piece(buf[pos:end])
                self._left = left - (end - pos) or -1
                pos = end
            elif left == -1:  # the CRLF after chunk data
                if n - pos < 2:
                    break
                pos += 2
                self._left = 0
            else:  # a size line (0), or a trailer line after the last chunk (-2)
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if left == -2:
                    if eol == pos:
                        self._buf = b""
                        self._finish(buf[eol + 2:])
                        return
                else:
                    size = int(buf[pos:eol].split(b";", 1)[0], 16)
                    self._left = size or -2
                pos = eol + 2
        self._buf = buf[pos:]

    def _piece(self, data: bytes) -> None:
        if self._inflate is not None:
            data = self._inflate.decompress(data)
        if not data:
            return
        if self.streaming:
            self.pieces.append(data)
            self.buffered += len(data)
            if self.buffered > _PAUSE_AT and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            self._wake()
        else:
            self._body.append(data)

    def _finish(self, extra: bytes = b"") -> None:
        self._state = _DONE
        if self._inflate is not None:
            rest, self._inflate = self._inflate.flush(), None
            self._piece(rest)
        if extra:
            self.reusable = False
        if self.streaming:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self._response)  # a stream with an empty body
            self._wake()
        else:
            response, self._response = self._response, None
            response.body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
            self._body = []
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(response)
        if extra:
            self.abort()

    def _fail(self, exc: BaseException) -> None:
        self._state = _DONE
        self.reusable = False
        self._error = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def iter_body(self):
        """A stream's body, piece by piece as it arrives; raises ``Disconnected`` when the
        connection breaks before the end."""
        while True:
            while self.pieces:
                data = self.pieces.popleft()
                self.buffered -= len(data)
                if self.paused and self.buffered < _PAUSE_AT // 2:
                    self.paused = False
                    self.transport.resume_reading()
                yield data
            if self._state == _DONE:
                if self._error is not None:
                    raise self._error
                return
            self.wakeup = self.pool.loop.create_future()
            await self.wakeup
            self.wakeup = None

    async def read_rest(self) -> bytes:
        return b"".join([piece async for piece in self.iter_body()])


class Pool:
    """Keep-alive connections to the server of ``url`` (http or https)."""

    def __init__(self, url: str, ssl: _ssl.SSLContext | bool | None, limit: int = 256):
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.base_path = parts.path.rstrip("/")
        if parts.scheme == "https":
            if ssl is False or ssl is None:
                ctx = _ssl.create_default_context()
                if ssl is False:
                    ctx.check_hostname, ctx.verify_mode = False, _ssl.CERT_NONE
                ssl = ctx
        else:
            ssl = None
        self.ssl = ssl
        self.limit = limit
        self.loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []
        self._open = 0  # connections counted against the limit (open or opening)
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._all: set[_Connection] = set()
        self._timer: asyncio.TimerHandle | None = None  # the deadline timer (see request)
        self._timer_at = 0.0

    async def acquire(self, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # first use, or the client outlived its event loop
            if self.loop is not None:
                for conn in self._all:
                    conn.closed = True
                self._idle, self._all, self._waiters = [], set(), collections.deque()
                self._open = 0
                self._timer = None  # the old loop's
            self.loop = loop
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.idle = False
                return conn
        if self._open >= self.limit:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                    if waiter.result() is None:
                        self._give_back()
                    else:
                        self.release(waiter.result())
                raise
            if conn is not None:
                return conn
        else:
            self._open += 1
        try:
            connect = loop.create_connection(
                lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None)
            _, conn = await (asyncio.wait_for(connect, timeout) if timeout else connect)
        except BaseException:
            self._give_back()
            raise
        self._all.add(conn)
        return conn

    def release(self, conn: _Connection) -> None:
        """Return a connection after its response: pooled when it can carry another request,
        closed otherwise."""
        if conn.reusable and not conn.closed and conn._state == _DONE and not conn.pieces:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            conn.idle = True
            self._idle.append(conn)
            return
        conn.abort()
        self._all.discard(conn)
        self._give_back()

    def _give_back(self) -> None:
        """One slot fewer in use: let the first waiter open a connection of its own."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the waiter now owns the slot
                return
        self._open -= 1

    def _forget_idle(self, conn: _Connection) -> None:
        conn.idle = False
        try:
            self._idle.remove(conn)
        except ValueError:
            return
        self._all.discard(conn)
        self._give_back()

    async def request(self, data: bytes, timeout: float | None, *,
                      head_only: bool = False) -> Response:
        """Send ``data`` (a whole request) and return the whole response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        conn = None
        if loop is self.loop:  # an idle connection: no coroutine for acquire()
            idle = self._idle
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.idle = False
                    break
                conn = None
        if conn is None:
            conn = await self.acquire(timeout)
        done = False
        try:
            waiter = conn.send(data, head_only=head_only)
            if deadline is not None:
                conn.deadline = deadline
                if self._timer is None or deadline < self._timer_at:
                    self._arm(deadline)
            response = await waiter
            done = True
            return response
        finally:
            conn.deadline = None
            if not done:
                conn.abort()
            self.release(conn)

    def _arm(self, when: float) -> None:
        """(Re)start the one timer that enforces every request's deadline, for ``when``."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._expire_due)

    def _expire_due(self) -> None:
        """The deadline timer: fail the requests whose deadline has come (``TimeoutError``,
        connection closed) and start the timer again for the earliest one still waiting.
        One timer for the pool instead of one per request: a request only sets and clears
        its connection's ``deadline``."""
        self._timer = None
        # loop.time() can trail a timer set for it by less than the clock's resolution
        now = self.loop.time() + _CLOCK_SLACK
        earliest = None
        for conn in list(self._all):
            deadline = conn.deadline
            if deadline is None:
                continue
            if deadline <= now:
                conn.deadline = None
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_exception(TimeoutError())
                    conn.abort()
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(earliest)

    async def open_stream(self, data: bytes, connect_timeout: float | None
                          ) -> tuple[_Connection, Response]:
        """Send ``data`` and return once the response head is in; read the body with
        ``conn.iter_body()`` and give the connection back with :meth:`release`."""
        conn = await self.acquire(connect_timeout)
        try:
            return conn, await conn.send(data, streaming=True)
        except BaseException:
            conn.abort()
            self.release(conn)
            raise

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost

