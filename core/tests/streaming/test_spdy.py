"""SPDY/3.1 framing, header compression and sessions (pilothouse.streaming.spdy)."""

import asyncio
import struct
import zlib

import pytest

from pilothouse.streaming import spdy
from pilothouse.streaming.spdy import (DataFrame, FrameDecoder, FrameEncoder, GoAway,
                                       HeadersFrame, Ping, RstStream, Settings, SpdySession,
                                       StreamReset, SynReply, SynStream, UnknownControlFrame,
                                       WindowUpdate)


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ------------------------------------------------------------------------- dictionary


def test_dictionary_shape():
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post")
    assert b"\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url" in d
    assert d.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    # the zlib DICTID kubectl's spdystream checks (observed in test_api_streaming)
    assert zlib.adler32(d) == 0xE3C6A7C2


def test_compressed_block_names_the_dictionary():
    block = spdy.HeaderCompressor().compress({"streamtype": ["data"]})
    cmf, flg = block[0], block[1]
    assert cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0  # deflate, valid check bits
    assert flg & 0x20  # FDICT
    assert struct.unpack(">I", block[2:6])[0] == zlib.adler32(spdy.HEADER_DICTIONARY)


# ----------------------------------------------------------------------- header blocks


def test_header_block_round_trip():
    headers = {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"],
               "x-multi": ["a", "b", ""], "empty": [""]}
    raw = spdy.encode_header_block(headers)
    assert raw[:4] == struct.pack(">I", 5)
    assert spdy.decode_header_block(raw) == headers
    assert spdy.decode_header_block(spdy.encode_header_block({})) == {}


def test_header_block_lowercases_and_accepts_plain_values():
    raw = spdy.encode_header_block({"StreamType": "data"})
    assert spdy.decode_header_block(raw) == {"streamtype": ["data"]}
    with pytest.raises(ValueError):
        spdy.encode_header_block({"a": "1", "A": "2"})


@pytest.mark.parametrize("raw", [
    b"\x00\x00",                                            # no count
    struct.pack(">I", 1) + struct.pack(">I", 10) + b"abc",  # name cut short
    struct.pack(">II", 1, 1) + b"A" + struct.pack(">I", 0),  # uppercase name
    struct.pack(">II", 2, 1) + b"a" + struct.pack(">I", 0) + struct.pack(">I", 1) + b"a"
    + struct.pack(">I", 0),                                 # duplicate name
    struct.pack(">I", 0) + b"x",                            # trailing bytes
], ids=["no-count", "short-name", "uppercase", "duplicate", "trailing"])
def test_bad_header_blocks_are_protocol_errors(raw):
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.decode_header_block(raw)


def test_compression_context_spans_the_connection():
    comp, decomp = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    blocks = [{"streamtype": ["error"], "port": ["80"], "requestid": [str(i)]}
              for i in range(20)]
    compressed = [comp.compress(b) for b in blocks]
    assert [decomp.decompress(c) for c in compressed] == blocks
    # later blocks refer back to earlier ones: they only decode in the same context
    assert len(compressed[5]) < len(compressed[0])
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.HeaderDecompressor().decompress(compressed[5])
    # the stream is plain zlib with the dictionary: any zlib inflater can read it
    raw = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY).decompress(b"".join(compressed))
    assert raw.startswith(spdy.encode_header_block(blocks[0]))


def test_oversized_header_block_is_rejected():
    comp = spdy.HeaderCompressor()
    bomb = comp.compress({"x": ["a" * (spdy.MAX_HEADER_BLOCK + 10)]})
    with pytest.raises(spdy.SpdyProtocolError, match="too large"):
        spdy.HeaderDecompressor().decompress(bomb)


# ------------------------------------------------------------------------------ frames

FRAMES = [
    DataFrame(1, b"hello"),
    DataFrame(3, b"", fin=True),
    DataFrame(0x7FFFFFFF, b"x" * 70000),
    SynStream(1, {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}),
    SynStream(3, {"a": ["b"]}, associated_to=1, priority=7, slot=2, fin=True,
              unidirectional=True),
    SynReply(1, {}),
    SynReply(5, {"status": ["200"]}, fin=True),
    RstStream(7, spdy.RstStatus.CANCEL),
    Settings([(spdy.SettingId.INITIAL_WINDOW_SIZE, 1 << 20, 0),
              (spdy.SettingId.MAX_CONCURRENT_STREAMS, 100, 1)], clear=True),
    Ping(1),
    Ping(0xFFFFFFFE),
    GoAway(9, spdy.GoAwayStatus.PROTOCOL_ERROR),
    HeadersFrame(3, {"x": ["1", "2"]}, fin=True),
    WindowUpdate(0, 32768),
    WindowUpdate(5, 1),
    UnknownControlFrame(10, 0, b"\x00\x01"),
]


@pytest.mark.parametrize("split", [None, 1, 7])
def test_frames_round_trip_in_any_split(split):
    encoder = FrameEncoder()
    wire = b"".join(encoder.encode(f) for f in FRAMES)
    decoder, got = FrameDecoder(), []
    if split is None:
        got = decoder.feed(wire)
    else:
        for i in range(0, len(wire), split):
            got += decoder.feed(wire[i:i + split])
    assert got == FRAMES


def test_wire_layout_of_control_and_data_frames():
    enc = FrameEncoder()
    assert enc.encode(Ping(1)) == bytes.fromhex("8003 0006 00000004 00000001")
    assert enc.encode(DataFrame(3, b"ab", fin=True)) == bytes.fromhex("00000003 01000002") + b"ab"
    assert enc.encode(RstStream(1, 5)) == bytes.fromhex("8003 0003 00000008 00000001 00000005")
    assert enc.encode(WindowUpdate(1, 100)) == bytes.fromhex("8003 0009 00000008 00000001 00000064")
    assert enc.encode(GoAway(3, 0)) == bytes.fromhex("8003 0007 00000008 00000003 00000000")
    syn = enc.encode(SynStream(1, {}, priority=3, slot=0))
    assert syn[:4] == bytes.fromhex("80030001") and syn[8:18] == bytes.fromhex(
        "00000001 00000000 6000")
    assert struct.unpack(">I", syn[4:8])[0] == len(syn) - 8


def test_decoder_rejects_other_versions_and_huge_frames():
    with pytest.raises(spdy.SpdyProtocolError, match="version"):
        FrameDecoder().feed(bytes.fromhex("8002 0006 00000004 00000001"))
    with pytest.raises(spdy.SpdyProtocolError, match="exceeds"):
        FrameDecoder(max_frame_length=100).feed(bytes.fromhex("00000001 000000ff"))


# ----------------------------------------------------------------------------- sessions


class Pipe:
    """One end of an in-memory byte pipe (a ByteTransport)."""

    def __init__(self, inbox, outbox):
        self.inbox, self.outbox, self.closed = inbox, outbox, False
        self.written = []

    async def read(self):
        data = await self.inbox.get()
        if not data:
            self.inbox.put_nowait(b"")
        return data

    async def write(self, data):
        if self.closed:
            raise ConnectionResetError("closed")
        self.written.append(data)
        self.outbox.put_nowait(data)

    async def close(self):
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(b"")
            self.inbox.put_nowait(b"")


def pipe_pair():
    a, b = asyncio.Queue(), asyncio.Queue()
    return Pipe(a, b), Pipe(b, a)


async def echo_handler(stream):
    await stream.reply()
    while data := await stream.read():
        await stream.write(data.upper())
    await stream.close()


async def start_pair(on_stream=echo_handler, **kw):
    client_end, server_end = pipe_pair()
    server = SpdySession(server_end, server=True, on_stream=on_stream, **kw)
    client = SpdySession(client_end, server=False, **kw)
    tasks = [asyncio.create_task(server.serve()), asyncio.create_task(client.serve())]
    return client, server, tasks


async def stop(client, server, tasks):
    await client.close()
    await server.close()
    await asyncio.gather(*tasks)


def test_streams_carry_data_both_ways_and_half_close():
    async def body():
        client, server, tasks = await start_pair()
        stream = await client.open_stream({"streamtype": "data", "port": "80"})
        assert stream.id == 1 and stream.reply_headers == {}
        await stream.write(b"hello ")
        await stream.write(b"world")
        await stream.close()
        assert await stream.read_all() == b"HELLO WORLD"
        second = await client.open_stream({"streamtype": "data"})
        assert second.id == 3
        await second.close()
        assert await second.read_all() == b""
        await stop(client, server, tasks)
    run(body())


def test_server_sees_headers_and_reset_reaches_the_other_side():
    seen = []

    async def handler(stream):
        await stream.reply()
        seen.append(stream.headers)
        try:
            await stream.read()
        except StreamReset as exc:
            seen.append(exc.status)

    async def body():
        client, server, tasks = await start_pair(handler)
        stream = await client.open_stream({"port": "8080", "requestid": "7"})
        await stream.reset()
        with pytest.raises(StreamReset):
            await stream.write(b"x")
        for _ in range(50):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        await stop(client, server, tasks)
        return seen
    assert run(body()) == [{"port": ["8080"], "requestid": ["7"]}, spdy.RstStatus.CANCEL]


def test_ping_is_echoed_and_goaway_ends_the_session():
    async def body():
        client, server, tasks = await start_pair()
        await client.ping(timeout=10)
        await server.ping(timeout=10)
        await client.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert server.closed and client.closed
    run(body())


def test_session_end_resets_open_streams():
    async def handler(stream):
        await stream.reply()
        await asyncio.sleep(3600)

    async def body():
        client, server, tasks = await start_pair(handler)
        stream = await client.open_stream({"a": "b"})
        reader = asyncio.create_task(stream.read())
        await server.close()
        with pytest.raises(StreamReset):
            await asyncio.wait_for(reader, 10)
        await asyncio.gather(*tasks)
    run(body())


def test_streams_are_refused_without_a_handler_and_bad_ids_rejected():
    async def body():
        client_end, server_end = pipe_pair()
        server = SpdySession(server_end, server=True)
        task = asyncio.create_task(server.serve())
        enc, dec = FrameEncoder(), FrameDecoder()
        await client_end.write(enc.encode(SynStream(1, {"x": ["1"]})))
        await client_end.write(enc.encode(SynStream(2, {"x": ["1"]})))  # even: server's
        frames = []
        while len(frames) < 2:
            frames += dec.feed(await client_end.read())
        await client_end.close()
        await task
        return frames
    assert run(body()) == [RstStream(1, spdy.RstStatus.REFUSED_STREAM),
                           RstStream(2, spdy.RstStatus.PROTOCOL_ERROR)]


def test_receiver_returns_flow_control_credit():
    async def body():
        client, server, tasks = await start_pair(enforce_send_window=True)
        stream = await client.open_stream({"streamtype": "data"})
        payload = bytes(range(256)) * 1024  # 256 KiB: four times the initial window
        writer = asyncio.create_task(stream.write(payload))
        got = bytearray()
        while len(got) < len(payload):
            got += await stream.read()
        await writer
        assert bytes(got) == payload.upper()
        await stop(client, server, tasks)
    run(body())


def test_enforced_send_window_blocks_until_credit_arrives():
    async def handler(stream):
        await stream.reply()
        await asyncio.sleep(3600)  # never reads: never returns credit

    async def body():
        client, server, tasks = await start_pair(handler, enforce_send_window=True)
        stream = await client.open_stream({"streamtype": "data"})
        writer = asyncio.create_task(stream.write(b"x" * (spdy.DEFAULT_WINDOW + 10)))
        for _ in range(100):
            await asyncio.sleep(0)
            if stream._send_window == 0:
                break
        assert stream._send_window == 0 and not writer.done()
        await client._dispatch(WindowUpdate(stream.id, 10))  # the peer's credit arrives
        await client._dispatch(WindowUpdate(0, 10))
        await asyncio.wait_for(writer, 10)
        await stop(client, server, tasks)
    run(body())


def test_settings_initial_window_changes_existing_streams():
    async def body():
        client, server, tasks = await start_pair()
        stream = await client.open_stream({"a": "b"})
        await client._dispatch(Settings([(spdy.SettingId.INITIAL_WINDOW_SIZE, 1000, 0)]))
        assert stream._send_window == 1000
        await stop(client, server, tasks)
    run(body())


def test_unknown_control_frames_are_ignored():
    async def body():
        client_end, server_end = pipe_pair()
        server = SpdySession(server_end, server=True, on_stream=echo_handler)
        task = asyncio.create_task(server.serve())
        enc, dec = FrameEncoder(), FrameDecoder()
        await client_end.write(enc.encode(UnknownControlFrame(10, 0, b"abcd")))
        await client_end.write(enc.encode(Ping(1)))
        frames = []
        while not frames:
            frames += dec.feed(await client_end.read())
        await client_end.close()
        await task
        return frames
    assert run(body()) == [Ping(1)]
