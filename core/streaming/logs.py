"""Container logs over HTTP: the options of ``GET .../pods/{name}/log`` and a streaming
response helper.

The API server and the node endpoint use the same query parameters (Kubernetes'
``PodLogOptions``; the kubelet's ``/containerLogs`` takes them unchanged):

=================  ===========================================================
parameter          meaning
=================  ===========================================================
``container``      which container (API only: the node has it in the path)
``follow``         keep the response open and stream new output
``previous``       the previous (terminated) instance of the container
``sinceSeconds``   only output newer than this many seconds (≥ 1)
``sinceTime``      only output at or after this RFC 3339 time
``timestamps``     prefix every line with its RFC 3339 timestamp
``tailLines``      only the last N lines (≥ 0)
``limitBytes``     stop after this many bytes (≥ 1)
``stream``         ``All`` (default), ``Stdout`` or ``Stderr``
=================  ===========================================================

At most one of ``sinceSeconds`` and ``sinceTime`` may be given. The response is
``200 text/plain`` with a chunked body; with ``follow`` it stays open until the container
stops (or the client leaves), and each chunk is sent as soon as it is read.

Since 0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from pilothouse.streaming.channel import StreamingError
from pilothouse.streaming.remotecommand import parse_bool

__all__ = ["LogOptions", "OpenLogs", "client_gone", "parse_rfc3339", "serve_logs",
           "stream_response"]

log = logging.getLogger("pilothouse.streaming")

STREAMS = ("All", "Stdout", "Stderr")


def _parse_int(query, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise StreamingError(f"invalid value for {name}: {value!r} is not an integer",
                             400) from None


def parse_rfc3339(value: str) -> datetime.datetime:
    """Parse an RFC 3339 time (``2024-05-01T10:00:00Z``, fractional seconds and offsets
    allowed); raises ValueError."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:  # Python's parser takes at most 6 fractional digits (Go sends 9)
        head, _, rest = text.partition(".")
        digits = re.match(r"\d*", rest).group()
        text = head + "." + (digits[:6] or "0") + rest[len(digits):]
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is None or "T" not in value.upper():
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    return stamp


@dataclasses.dataclass(frozen=True)
class LogOptions:
    """The parsed ``PodLogOptions``; field names follow the query parameters."""

    container: str = ""
    follow: bool = False
    previous: bool = False
    since_seconds: int | None = None
    since_time: str | None = None
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    stream: str | None = None

    @classmethod
    def from_query(cls, query, *, container: str | None = None) -> "LogOptions":
        """Parse the query (raises :class:`StreamingError` 400 for unparsable values; call
        :meth:`problems` for the range checks)."""
        since_time = query.get("sinceTime") or None
        if since_time is not None:
            try:
                parse_rfc3339(since_time)
            except ValueError:
                raise StreamingError(f"invalid value for sinceTime: {since_time!r} is not "
                                     f"an RFC 3339 time", 400) from None
        return cls(
            container=container if container is not None else query.get("container", ""),
            follow=parse_bool(query.get("follow"), "follow"),
            previous=parse_bool(query.get("previous"), "previous"),
            since_seconds=_parse_int(query, "sinceSeconds"), since_time=since_time,
            timestamps=parse_bool(query.get("timestamps"), "timestamps"),
            tail_lines=_parse_int(query, "tailLines"),
            limit_bytes=_parse_int(query, "limitBytes"),
            stream=query.get("stream") or None)

    def problems(self) -> list[tuple[str, object, str]]:
        """Kubernetes' validation of the options: ``(field, value, message)`` triples,
        empty when valid (``field`` is "" for a rule about several fields)."""
        out: list[tuple[str, object, str]] = []
        if self.tail_lines is not None and self.tail_lines < 0:
            out.append(("tailLines", self.tail_lines, "must be greater than or equal to 0"))
        if self.limit_bytes is not None and self.limit_bytes < 1:
            out.append(("limitBytes", self.limit_bytes, "must be greater than 0"))
        if self.since_seconds is not None and self.since_time is not None:
            out.append(("", None,
                        "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        if self.since_seconds is not None and self.since_seconds < 1:
            out.append(("sinceSeconds", self.since_seconds, "must be greater than 0"))
        if self.stream is not None and self.stream not in STREAMS:
            out.append(("stream", self.stream, f"supported values: {', '.join(STREAMS)}"))
        return out

    def validate(self) -> None:
        """Raise :class:`StreamingError` (400) listing :meth:`problems`."""
        problems = self.problems()
        if problems:
            raise StreamingError("; ".join(f"{f + ': ' if f else ''}{m}"
                                           for f, _, m in problems), 400)

    @property
    def since(self) -> datetime.datetime | None:
        """The earliest time wanted (from ``sinceTime`` or ``sinceSeconds``), UTC."""
        if self.since_time is not None:
            return parse_rfc3339(self.since_time).astimezone(datetime.timezone.utc)
        if self.since_seconds is not None:
            return datetime.datetime.now(datetime.timezone.utc) - \
                datetime.timedelta(seconds=self.since_seconds)
        return None

    def to_query(self) -> list[tuple[str, str]]:
        """The query for the node endpoint (``container`` is in its path, so left out)."""
        out = []
        for name, on in (("follow", self.follow), ("previous", self.previous),
                         ("timestamps", self.timestamps)):
            if on:
                out.append((name, "true"))
        for name, value in (("sinceSeconds", self.since_seconds),
                            ("sinceTime", self.since_time), ("tailLines", self.tail_lines),
                            ("limitBytes", self.limit_bytes), ("stream", self.stream)):
            if value is not None:
                out.append((name, str(value)))
        return out


#: ``open_logs(options) -> AsyncIterator[bytes]``: awaited before the response starts (so
#: a :class:`StreamingError` it raises becomes the HTTP error), then iterated.
OpenLogs = Callable[[LogOptions], Awaitable[AsyncIterator[bytes]]]


def client_gone(request: web.BaseRequest) -> bool:
    """True once the client's connection is closed."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream_response(request: web.BaseRequest, chunks: AsyncIterator[bytes], *,
                          content_type: str = "text/plain", poll_interval: float = 1.0,
                          headers: dict | None = None) -> web.StreamResponse:
    """Send ``200`` and then every chunk of ``chunks`` as soon as it is produced (chunked
    transfer encoding). Stops when the iterator ends or the client disconnects (checked
    at least every ``poll_interval`` seconds, so an idle ``follow`` stream notices too);
    the iterator is closed either way."""
    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    done = object()

    async def produce() -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await queue.put(chunk)
        finally:
            await queue.put(done)

    producer = asyncio.create_task(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), poll_interval)
            except asyncio.TimeoutError:
                if client_gone(request):
                    break
                continue
            if item is done:
                break
            try:
                await response.write(item)
            except (ConnectionError, RuntimeError):
                break
        if not client_gone(request):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write_eof()
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return response


async def serve_logs(request: web.BaseRequest, open_logs: OpenLogs, *,
                     options: LogOptions | None = None) -> web.StreamResponse:
    """Serve a container's log: parse and validate the options (400 on error; the
    container comes from the route's ``{container}``), ``await open_logs(options)``
    (a :class:`StreamingError` becomes the response), then :func:`stream_response`."""
    try:
        if options is None:
            options = LogOptions.from_query(
                request.query, container=request.match_info.get("container", ""))
        options.validate()
        chunks = await open_logs(options)
    except StreamingError as exc:
        return exc.to_response()
    return await stream_response(request, chunks)
