"""SPDY/3.1 framing, header compression and sessions, as Kubernetes streaming uses them.

Kubernetes still carries ``kubectl port-forward`` (and the exec/attach fallback of older
clients) over SPDY/3.1, through the Go library ``moby/spdystream``. This module implements
the parts of the SPDY/3.1 draft that those peers use, for both roles.

Frames
======

Every frame starts with 8 bytes. A *control* frame has the high bit set::

    +----------------------------------+
    |1| version (15) = 3 | type (16)   |
    +----------------------------------+
    | flags (8) |  length (24)         |   length = bytes after these 8
    +----------------------------------+

A *data* frame has it clear::

    +----------------------------------+
    |0|       stream id (31)           |
    +----------------------------------+
    | flags (8) |  length (24)         |   flag 0x01 FIN: the sender's last frame
    +----------------------------------+

Control frame payloads (all integers big-endian; ids are 31 bits, high bit reserved):

=============  ====  =====================================================================
frame          type  payload
=============  ====  =====================================================================
SYN_STREAM     1     stream id (4), associated-to stream id (4), priority (3 bits) + 5
                     unused bits (1), slot (1), compressed header block. Flags: FIN 0x01,
                     UNIDIRECTIONAL 0x02. Client streams have odd ids, server streams even;
                     ids of each side only increase.
SYN_REPLY      2     stream id (4), compressed header block. Flags: FIN.
RST_STREAM     3     stream id (4), status code (4) — :class:`RstStatus`.
SETTINGS       4     entry count (4), then per entry flags (1), id (3), value (4).
                     Flag 0x01 on the frame: clear persisted settings. Ids:
                     :class:`SettingId` (7 = INITIAL_WINDOW_SIZE matters here).
PING           6     ping id (4). The receiver echoes a ping whose id has the peer's parity
                     (odd from clients, even from servers) unchanged.
GOAWAY         7     last good stream id (4), status code (4) — :class:`GoAwayStatus`.
HEADERS        8     stream id (4), compressed header block. Flags: FIN.
WINDOW_UPDATE  9     stream id (4; 0 = the whole session in SPDY/3.1), delta (4, 31 bits).
=============  ====  =====================================================================

Unknown control frame types are ignored, as the draft requires (CREDENTIAL, type 10, is one).

Header blocks
=============

A header block is ``count (4)`` then, per header, ``name length (4), name, value length
(4), value``. Names are lowercase and unique; several values of one name are joined with
NUL bytes. The block is compressed with zlib (deflate) primed with the SPDY/3 dictionary
(:data:`HEADER_DICTIONARY`), with **one compression context per direction for the whole
connection** (each block ends with a zlib sync flush, so the stream of blocks is one zlib
stream). A header block can therefore only be decoded if every earlier block of the same
direction was, in order: :class:`FrameDecoder` and :class:`FrameEncoder` keep that state.

Flow control
============

SPDY/3.1 gives each stream, and the session as a whole (stream id 0), a send window
starting at 64 KiB (a SETTINGS ``INITIAL_WINDOW_SIZE`` changes the per-stream default).
Sending DATA uses it up; the receiver returns credit with WINDOW_UPDATE as it consumes.
:class:`SpdySession` always returns credit (after half a window is consumed, so a strict
peer never stalls). Honouring the *peer's* windows is optional (``enforce_send_window``)
because the Kubernetes peers (spdystream) neither send WINDOW_UPDATE nor expect it to be
honoured: a sender that waited for credit would stall after 64 KiB.

Since 0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Protocol, Union

__all__ = [
    "DEFAULT_WINDOW",
    "FLAG_FIN",
    "FLAG_UNIDIRECTIONAL",
    "HEADER_DICTIONARY",
    "ByteTransport",
    "DataFrame",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "GoAway",
    "GoAwayStatus",
    "HeaderCompressor",
    "HeaderDecompressor",
    "Headers",
    "HeadersFrame",
    "MAX_FRAME_LENGTH",
    "MAX_HEADER_BLOCK",
    "Ping",
    "RstStatus",
    "RstStream",
    "SettingId",
    "Settings",
    "SpdyProtocolError",
    "SpdySession",
    "SpdyStream",
    "StreamReset",
    "SynReply",
    "SynStream",
    "UnknownControlFrame",
    "WindowUpdate",
    "decode_header_block",
    "encode_header_block",
]

log = logging.getLogger("pilothouse.streaming.spdy")

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01
DEFAULT_WINDOW = 64 * 1024
MAX_FRAME_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed; a bound against zlib bombs
_ID_MASK = 0x7FFFFFFF

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9


class RstStatus(enum.IntEnum):
    """RST_STREAM status codes (SPDY/3 section 2.6.3)."""
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    """GOAWAY status codes."""
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SettingId(enum.IntEnum):
    """SETTINGS entry ids."""
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3.1 (the session ends with GOAWAY)."""


class StreamReset(ConnectionError):
    """The stream was reset (RST_STREAM, by either side) or its session ended before the
    stream finished. ``status`` is the RST_STREAM status, None when the session ended."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ the SPDY/3 dictionary

# SPDY/3 draft, section 2.6.10.1: the zlib dictionary is a list of 4-byte-length-prefixed
# header names and common values, followed by a run of status codes, reason phrases, date
# fragments and media types. A peer checks it by its Adler-32 (zlib's DICTID).
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
    "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
    "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
    "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
    "504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY: bytes = b"".join(
    struct.pack(">I", len(w)) + w.encode("ascii") for w in _DICTIONARY_WORDS
) + _DICTIONARY_TAIL.encode("ascii")


# ------------------------------------------------------------------------------ frames

Headers = dict  # dict[str, list[str]]: lowercase name -> values (in order)


@dataclasses.dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclasses.dataclass
class SynStream:
    stream_id: int
    headers: Headers
    associated_to: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclasses.dataclass
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclasses.dataclass
class RstStream:
    stream_id: int
    status: int


@dataclasses.dataclass
class Settings:
    entries: list  # list[tuple[id, value, flags]]
    clear: bool = False


@dataclasses.dataclass
class Ping:
    ping_id: int


@dataclasses.dataclass
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclasses.dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclasses.dataclass
class WindowUpdate:
    stream_id: int
    delta: int


@dataclasses.dataclass
class UnknownControlFrame:
    type: int
    flags: int
    payload: bytes


Frame = Union[DataFrame, SynStream, SynReply, RstStream, Settings, Ping, GoAway, HeadersFrame,
              WindowUpdate, UnknownControlFrame]


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block. ``headers`` maps names to a value or a list of
    values; names are lowercased (SPDY requires it), several values are NUL-joined."""
    parts = [struct.pack(">I", len(headers))]
    seen = set()
    for name, values in headers.items():
        lname = name.lower()
        if not lname or lname in seen:
            raise ValueError(f"invalid or duplicate SPDY header name {name!r}")
        seen.add(lname)
        if isinstance(values, (str, bytes)):
            values = [values]
        value = b"\x00".join(v.encode("latin-1") if isinstance(v, str) else v for v in values)
        bname = lname.encode("latin-1")
        parts += [struct.pack(">I", len(bname)), bname, struct.pack(">I", len(value)), value]
    return b"".join(parts)


def decode_header_block(raw: bytes) -> Headers:
    """Parse an uncompressed name/value block into ``{name: [values]}``."""
    if len(raw) < 4:
        raise SpdyProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", raw, 0)
    pos, out = 4, {}
    for _ in range(count):
        if pos + 4 > len(raw):
            raise SpdyProtocolError("truncated header block")
        (n,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        name = raw[pos:pos + n]
        pos += n
        if len(name) != n or pos + 4 > len(raw):
            raise SpdyProtocolError("truncated header block")
        (v,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        value = raw[pos:pos + v]
        pos += v
        if len(value) != v:
            raise SpdyProtocolError("truncated header block")
        sname = name.decode("latin-1")
        if not sname or sname != sname.lower():
            raise SpdyProtocolError(f"invalid header name {sname!r}")
        if sname in out:
            raise SpdyProtocolError(f"duplicate header name {sname!r}")
        out[sname] = value.decode("latin-1").split("\x00")
    if pos != len(raw):
        raise SpdyProtocolError("trailing bytes after header block")
    return out


class HeaderCompressor:
    """The compression context of one direction of a connection."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = encode_header_block(headers)
        return self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The decompression context of one direction of a connection."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            raw = self._z.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header block does not decompress: {exc}") from None
        if self._z.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return decode_header_block(raw)


class FrameEncoder:
    """Serialises frames for one direction of a connection (owns its compressor, so frames
    must be encoded in the order they are sent)."""

    def __init__(self) -> None:
        self.compressor = HeaderCompressor()

    @staticmethod
    def _control(ftype: int, flags: int, payload: bytes) -> bytes:
        if len(payload) > MAX_FRAME_LENGTH:
            raise ValueError("SPDY frame too large")
        return struct.pack(">HHI", 0x8000 | VERSION, ftype,
                           (flags << 24) | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_FRAME_LENGTH:
                raise ValueError("SPDY data frame too large")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack(">II", frame.stream_id & _ID_MASK,
                               (flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | \
                (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            block = self.compressor.compress(frame.headers)
            return self._control(SYN_STREAM, flags, struct.pack(
                ">IIBB", frame.stream_id & _ID_MASK, frame.associated_to & _ID_MASK,
                (frame.priority & 0x7) << 5, frame.slot & 0xFF) + block)
        if isinstance(frame, SynReply):
            block = self.compressor.compress(frame.headers)
            return self._control(SYN_REPLY, FLAG_FIN if frame.fin else 0,
                                 struct.pack(">I", frame.stream_id & _ID_MASK) + block)
        if isinstance(frame, HeadersFrame):
            block = self.compressor.compress(frame.headers)
            return self._control(HEADERS, FLAG_FIN if frame.fin else 0,
                                 struct.pack(">I", frame.stream_id & _ID_MASK) + block)
        if isinstance(frame, RstStream):
            return self._control(RST_STREAM, 0, struct.pack(
                ">II", frame.stream_id & _ID_MASK, int(frame.status)))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">I", ((flags & 0xFF) << 24) | (sid & 0xFFFFFF)) +
                struct.pack(">I", value & 0xFFFFFFFF)
                for sid, value, flags in frame.entries)
            return self._control(SETTINGS, FLAG_SETTINGS_CLEAR if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return self._control(PING, 0, struct.pack(">I", frame.ping_id & 0xFFFFFFFF))
        if isinstance(frame, GoAway):
            return self._control(GOAWAY, 0, struct.pack(
                ">II", frame.last_good_stream_id & _ID_MASK, int(frame.status)))
        if isinstance(frame, WindowUpdate):
            return self._control(WINDOW_UPDATE, 0, struct.pack(
                ">II", frame.stream_id & _ID_MASK, frame.delta & _ID_MASK))
        if isinstance(frame, UnknownControlFrame):
            return self._control(frame.type, frame.flags, frame.payload)
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Incremental parser for one direction of a connection: :meth:`feed` bytes as they
    arrive (any split), get back the complete frames. Owns the decompressor, so every
    byte of the direction must go through one decoder."""

    def __init__(self, max_frame_length: int = MAX_FRAME_LENGTH) -> None:
        self.decompressor = HeaderDecompressor()
        self.max_frame_length = max_frame_length
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buf, 0)
            length = flags_len & 0xFFFFFF
            if length > self.max_frame_length:
                raise SpdyProtocolError(f"frame of {length} bytes exceeds the limit")
            if len(self._buf) < 8 + length:
                break
            flags = flags_len >> 24
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if word & 0x80000000:
                frames.append(self._control(word, flags, payload))
            else:
                frames.append(DataFrame(word & _ID_MASK, payload, bool(flags & FLAG_FIN)))
        return frames

    def _control(self, word: int, flags: int, payload: bytes) -> Frame:
        version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)

        def need(n: int) -> None:
            if len(payload) < n:
                raise SpdyProtocolError(f"control frame type {ftype} too short")

        if ftype == SYN_STREAM:
            need(10)
            sid, assoc, pri, slot = struct.unpack_from(">IIBB", payload, 0)
            return SynStream(sid & _ID_MASK, self.decompressor.decompress(payload[10:]),
                             assoc & _ID_MASK, pri >> 5, slot, fin,
                             bool(flags & FLAG_UNIDIRECTIONAL))
        if ftype in (SYN_REPLY, HEADERS):
            need(4)
            (sid,) = struct.unpack_from(">I", payload, 0)
            headers = self.decompressor.decompress(payload[4:])
            cls = SynReply if ftype == SYN_REPLY else HeadersFrame
            return cls(sid & _ID_MASK, headers, fin)
        if ftype == RST_STREAM:
            need(8)
            sid, status = struct.unpack_from(">II", payload, 0)
            return RstStream(sid & _ID_MASK, status)
        if ftype == SETTINGS:
            need(4)
            (count,) = struct.unpack_from(">I", payload, 0)
            if len(payload) != 4 + 8 * count:
                raise SpdyProtocolError("SETTINGS length does not match its entry count")
            entries = []
            for i in range(count):
                head, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                entries.append((head & 0xFFFFFF, value, head >> 24))
            return Settings(entries, bool(flags & FLAG_SETTINGS_CLEAR))
        if ftype == PING:
            need(4)
            return Ping(struct.unpack_from(">I", payload, 0)[0])
        if ftype == GOAWAY:
            need(4)
            (last,) = struct.unpack_from(">I", payload, 0)
            status = struct.unpack_from(">I", payload, 4)[0] if len(payload) >= 8 else 0
            return GoAway(last & _ID_MASK, status)
        if ftype == WINDOW_UPDATE:
            need(8)
            sid, delta = struct.unpack_from(">II", payload, 0)
            return WindowUpdate(sid & _ID_MASK, delta & _ID_MASK)
        return UnknownControlFrame(ftype, flags, payload)


# ----------------------------------------------------------------------------- sessions


class ByteTransport(Protocol):
    """A reliable, ordered byte pipe a session runs over: an upgraded TCP connection, or
    a WebSocket whose binary messages carry the bytes (message boundaries mean nothing).
    See :mod:`pilothouse.streaming.transport` for the implementations."""

    async def read(self) -> bytes:
        """The next bytes; ``b""`` once the peer has finished."""

    async def write(self, data: bytes) -> None:
        """Send bytes (waits while the transport's buffer is full)."""

    async def close(self) -> None:
        """Close the transport (idempotent)."""


class SpdyStream:
    """One stream of a :class:`SpdySession`.

    ``headers`` are the SYN_STREAM headers (``{name: [values]}``); :meth:`header` returns
    one value. The stream is *half-closed* from each side independently: :meth:`close`
    sends FIN (no more writes), and :meth:`read` returns ``b""`` after the peer's FIN.
    :meth:`reset` aborts both directions. Reading or writing a reset stream, or one whose
    session ended first, raises :class:`StreamReset`.
    """

    def __init__(self, session: "SpdySession", stream_id: int, headers: Headers,
                 *, remote_fin: bool = False, replied: bool = False):
        self.session, self.id, self.headers = session, stream_id, headers
        self.reply_headers: Headers | None = None
        self.remote_closed = remote_fin
        self.local_closed = False
        self.reset_status: int | None = None
        self._buf = bytearray()
        self._readable = asyncio.Event()
        self._replied = asyncio.Event()
        if replied:
            self._replied.set()
        self._send_window = session._peer_initial_window
        self._window_open = asyncio.Event()
        self._window_open.set()
        self._unacked = 0  # bytes consumed since the last WINDOW_UPDATE we sent
        if remote_fin:
            self._readable.set()

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def broken(self) -> bool:
        return self.reset_status is not None

    def _check(self) -> None:
        if self.reset_status is not None:
            raise StreamReset(f"SPDY stream {self.id} was reset"
                              + (f" (status {self.reset_status})" if self.reset_status > 0
                                 else " (session closed)"),
                              self.reset_status if self.reset_status > 0 else None)

    async def reply(self, headers: Headers | None = None, *, fin: bool = False) -> None:
        """Send SYN_REPLY for a stream the peer opened (Kubernetes peers wait for it before
        they send or accept data on the stream)."""
        self._check()
        await self.session._send(SynReply(self.id, headers or {}, fin))
        self._replied.set()
        if fin:
            self._local_fin()

    async def wait_reply(self, timeout: float | None = None) -> Headers:
        """Wait for the peer's SYN_REPLY to a stream we opened; returns its headers."""
        await asyncio.wait_for(self._replied.wait(), timeout)
        self._check()
        return self.reply_headers or {}

    async def read(self) -> bytes:
        """Data received so far (at least one byte), waiting for it; ``b""`` after FIN."""
        while True:
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                await self.session._consumed(self, len(data))
                return data
            self._check()
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()

    async def read_all(self, limit: int = 1 << 20) -> bytes:
        """Everything until the peer's FIN (at most ``limit`` bytes are kept)."""
        out = bytearray()
        while chunk := await self.read():
            if len(out) < limit:
                out += chunk[:limit - len(out)]
        return bytes(out)

    async def write(self, data: bytes) -> None:
        """Send data (split into frames; waits for send window when the session enforces
        flow control)."""
        view = memoryview(data)
        while view:
            self._check()
            if self.local_closed:
                raise StreamReset(f"SPDY stream {self.id} is closed for writing")
            size = min(len(view), self.session.max_data_frame)
            if self.session.enforce_send_window:
                size = await self.session._reserve_window(self, size)
            await self.session._send(DataFrame(self.id, bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close: send an empty DATA frame with FIN. Idempotent; a no-op on a reset
        stream."""
        if self.local_closed or self.reset_status is not None:
            return
        self.local_closed = True
        try:
            await self.session._send(DataFrame(self.id, b"", fin=True))
        except ConnectionError:
            pass
        self.session._maybe_forget(self)

    async def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream in both directions with RST_STREAM. Idempotent."""
        if self.reset_status is not None:
            return
        self._mark_reset(int(status))
        try:
            await self.session._send(RstStream(self.id, int(status)))
        except ConnectionError:
            pass

    # -- called by the session --
    def _local_fin(self) -> None:
        self.local_closed = True
        self.session._maybe_forget(self)

    def _mark_reset(self, status: int) -> None:
        if self.reset_status is None:
            self.reset_status = status
        self._readable.set()
        self._replied.set()
        self._window_open.set()
        self.session._streams.pop(self.id, None)
        self.session._update_space()


class SpdySession:
    """A SPDY/3.1 connection over a :class:`ByteTransport`, for either role.

    ``server=True`` accepts odd (client) stream ids and opens even ones. Each stream the
    peer opens is passed to ``on_stream(stream)`` (run as its own task, so it may block);
    without a callback remote streams are refused with RST_STREAM REFUSED_STREAM.
    :meth:`serve` reads frames until the transport ends, the peer's GOAWAY has been
    received and its streams are done, or :meth:`close` is called; then every open stream
    raises :class:`StreamReset` and the stream tasks are cancelled.

    The session answers PINGs, applies SETTINGS ``INITIAL_WINDOW_SIZE``, returns flow
    control credit with WINDOW_UPDATE as streams are read, and back-pressures the
    transport when a stream's unread data exceeds ``max_buffered`` bytes (a peer that
    ignores flow control, as Kubernetes' does, is then slowed by TCP).
    """

    def __init__(self, transport: ByteTransport, *, server: bool,
                 on_stream: Callable[["SpdyStream"], Awaitable[None]] | None = None,
                 enforce_send_window: bool = False, initial_window: int = DEFAULT_WINDOW,
                 max_data_frame: int = 16 * 1024, max_buffered: int = 1 << 20):
        self.transport, self.server, self.on_stream = transport, server, on_stream
        self.enforce_send_window = enforce_send_window
        self.initial_window = initial_window  # our receive window per stream
        self.max_data_frame, self.max_buffered = max_data_frame, max_buffered
        self._peer_initial_window = DEFAULT_WINDOW
        self._session_send_window = DEFAULT_WINDOW
        self._session_window_open = asyncio.Event()
        self._session_window_open.set()
        self._session_unacked = 0
        self._encoder, self._decoder = FrameEncoder(), FrameDecoder()
        self._write_lock = asyncio.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._next_id = 2 if server else 1
        self._last_remote_id = 0
        self._next_ping = 2 if server else 1
        self._pings: dict[int, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._goaway_received = False
        self._goaway_sent = False
        self._closed = False
        self._space = asyncio.Event()  # set when no stream buffer is over the limit
        self._space.set()
        self.on_unknown_frame: Callable[[Frame], None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing --
    async def _send(self, frame: Frame) -> None:
        if self._closed:
            raise ConnectionResetError("SPDY session is closed")
        async with self._write_lock:
            data = self._encoder.encode(frame)
            await self.transport.write(data)

    async def open_stream(self, headers: Headers, *, fin: bool = False,
                          wait_reply: bool = True, timeout: float | None = 30) -> SpdyStream:
        """Open a stream (SYN_STREAM) and, by default, wait for the peer's SYN_REPLY."""
        if self._goaway_received or self._goaway_sent:
            raise ConnectionResetError("SPDY session is going away")
        sid = self._next_id
        self._next_id += 2
        stream = SpdyStream(self, sid, {k.lower(): v if isinstance(v, list) else [v]
                                        for k, v in headers.items()})
        self._streams[sid] = stream
        await self._send(SynStream(sid, headers, fin=fin))
        if fin:
            stream.local_closed = True
        if wait_reply:
            await stream.wait_reply(timeout)
        return stream

    async def ping(self, timeout: float | None = 30) -> None:
        """Send a PING and wait for its echo."""
        pid = self._next_ping
        self._next_ping += 2
        fut = asyncio.get_running_loop().create_future()
        self._pings[pid] = fut
        try:
            await self._send(Ping(pid))
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(pid, None)

    async def goaway(self, status: int = GoAwayStatus.OK) -> None:
        """Tell the peer no new streams will be accepted (idempotent)."""
        if self._goaway_sent or self._closed:
            return
        self._goaway_sent = True
        try:
            await self._send(GoAway(self._last_remote_id, status))
        except ConnectionError:
            pass

    async def close(self, status: int = GoAwayStatus.OK) -> None:
        """Send GOAWAY, close the transport and end :meth:`serve`."""
        await self.goaway(status)
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams.values()):
            stream._mark_reset(-1)
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("SPDY session closed"))
        self._space.set()
        self._session_window_open.set()
        await self.transport.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    # -- flow control --
    async def _reserve_window(self, stream: SpdyStream, want: int) -> int:
        while True:
            stream._check()
            if self._closed:
                raise ConnectionResetError("SPDY session is closed")
            avail = min(stream._send_window, self._session_send_window)
            if avail > 0:
                size = min(want, avail)
                stream._send_window -= size
                self._session_send_window -= size
                return size
            if stream._send_window <= 0:
                stream._window_open.clear()
                await stream._window_open.wait()
            else:
                self._session_window_open.clear()
                await self._session_window_open.wait()

    async def _consumed(self, stream: SpdyStream, n: int) -> None:
        stream._unacked += n
        self._session_unacked += n
        self._update_space()
        self._maybe_forget(stream)
        try:
            if stream._unacked >= self.initial_window // 2 and not stream.remote_closed \
                    and stream.reset_status is None:
                delta, stream._unacked = stream._unacked, 0
                await self._send(WindowUpdate(stream.id, delta))
            if self._session_unacked >= DEFAULT_WINDOW // 2:
                delta, self._session_unacked = self._session_unacked, 0
                await self._send(WindowUpdate(0, delta))
        except ConnectionError:
            pass

    def _update_space(self) -> None:
        if all(len(s._buf) <= self.max_buffered for s in self._streams.values()):
            self._space.set()
        else:
            self._space.clear()

    # -- reading --
    async def serve(self) -> None:
        """Read and dispatch frames until the session ends (see the class docstring)."""
        try:
            while not self._closed:
                await self._space.wait()
                data = await self.transport.read()
                if not data:
                    break
                for frame in self._decoder.feed(data):
                    await self._dispatch(frame)
                if self._goaway_received and not self._streams:
                    break
        except SpdyProtocolError as exc:
            log.warning("SPDY protocol error from peer: %s", exc)
            await self.goaway(GoAwayStatus.PROTOCOL_ERROR)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await self._shutdown()

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            await self._on_data(frame)
        elif isinstance(frame, SynStream):
            await self._on_syn_stream(frame)
        elif isinstance(frame, SynReply):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream.reply_headers = frame.headers
                stream._replied.set()
                if frame.fin:
                    self._remote_fin(stream)
        elif isinstance(frame, HeadersFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                for k, v in frame.headers.items():
                    stream.headers.setdefault(k, []).extend(v)
                if frame.fin:
                    self._remote_fin(stream)
        elif isinstance(frame, RstStream):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream._mark_reset(frame.status)
                self._update_space()
        elif isinstance(frame, Ping):
            if (frame.ping_id % 2 == 1) == self.server:  # the peer's ping: echo it
                await self._send(frame)
            else:
                fut = self._pings.get(frame.ping_id)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        elif isinstance(frame, Settings):
            for sid, value, _flags in frame.entries:
                if sid == SettingId.INITIAL_WINDOW_SIZE:
                    diff = value - self._peer_initial_window
                    self._peer_initial_window = value
                    for stream in self._streams.values():
                        stream._send_window += diff
                        if stream._send_window > 0:
                            stream._window_open.set()
        elif isinstance(frame, WindowUpdate):
            if frame.stream_id == 0:
                self._session_send_window += frame.delta
                self._session_window_open.set()
            else:
                stream = self._streams.get(frame.stream_id)
                if stream is not None:
                    stream._send_window += frame.delta
                    stream._window_open.set()
        elif isinstance(frame, GoAway):
            self._goaway_received = True
        elif self.on_unknown_frame is not None:
            self.on_unknown_frame(frame)

    async def _on_syn_stream(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 != (1 if self.server else 0) or sid <= self._last_remote_id:
            await self._send(RstStream(sid, RstStatus.PROTOCOL_ERROR))
            return
        self._last_remote_id = sid
        if self._goaway_sent or self.on_stream is None:
            await self._send(RstStream(sid, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, sid, frame.headers, remote_fin=frame.fin, replied=True)
        stream.local_closed = frame.unidirectional
        self._streams[sid] = stream
        task = asyncio.create_task(self._run_handler(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, stream: SpdyStream) -> None:
        try:
            await self.on_stream(stream)  # type: ignore[misc]
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("SPDY stream handler failed for stream %s", stream.id)
            await stream.reset(RstStatus.INTERNAL_ERROR)

    async def _on_data(self, frame: DataFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            # data for a stream that ended (or was never opened): count it against the
            # session window so the peer's credit stays right, and drop it
            self._session_unacked += len(frame.data)
            if frame.stream_id > self._last_remote_id and frame.stream_id % 2 == (
                    1 if self.server else 0):
                await self._send(RstStream(frame.stream_id, RstStatus.INVALID_STREAM))
            return
        if stream.remote_closed:
            await stream.reset(RstStatus.STREAM_ALREADY_CLOSED)
            return
        if frame.data:
            stream._buf += frame.data
            stream._readable.set()
            if len(stream._buf) > self.max_buffered:
                self._space.clear()
        if frame.fin:
            self._remote_fin(stream)

    def _remote_fin(self, stream: SpdyStream) -> None:
        stream.remote_closed = True
        stream._readable.set()
        self._maybe_forget(stream)

    def _maybe_forget(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed and not stream._buf:
            self._streams.pop(stream.id, None)
