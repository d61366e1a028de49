"""The gRPC Store service (pilothouse.api.store_server / store_client) and the harness
(pilothouse.testing.store_grpc).

``TestMemoryStoreOverGrpc`` runs the whole store conformance suite through gRPC against the
in-memory reference store. The tests below it cover what the suite cannot see: the error
mapping and its payloads, watch streams ending on the server when the client closes,
abandons or loses them, messages above gRPC's default 4 MiB limit, server restarts, Unix
sockets, the ``remote`` entry point and the command line.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap

import grpc
import pytest

from pilothouse.api import store_pb2 as pb
from pilothouse.api import store_pb2_grpc
from pilothouse.api.store_client import RemoteStore
from pilothouse.api.store_server import ERROR_METADATA_KEY, error_status, serve_store
from pilothouse.config import ConfigError
from pilothouse.interfaces.store import (
    Compacted, EventType, KeyExists, KeyNotFound, KeyValue, RevisionConflict, Store,
    StoreError, StoreUnavailable,
)
from pilothouse.testing import build_driver
from pilothouse.testing.memory_store import MemoryStore
from pilothouse.testing.store_grpc import (
    GrpcLoopbackStore, GrpcStoreConformance, open_store_over_grpc, store_over_grpc,
)

TIMEOUT = 10.0


class TestMemoryStoreOverGrpc(GrpcStoreConformance):
    plugin = MemoryStore
    durable = False


def _installed_stores() -> set[str]:
    from pilothouse.plugins import discover
    return {p.name for p in discover(["store"], load=False)}


@pytest.mark.skipif("raft" not in _installed_stores(),
                    reason="the raft store plugin (plugins/store_raft) is not installed")
class TestRaftStoreOverGrpc(GrpcStoreConformance):
    """The built-in durable store through the channel, restarts included (tox env
    store-remote). By entry-point name: the core never imports a plugin."""

    plugin = "raft"

    def store_options(self, tmp_path):
        return {"data_dir": str(tmp_path / "raft")}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class CountingStore(MemoryStore):
    """A MemoryStore that counts the watches that are open on it."""

    def __init__(self, options=None):
        super().__init__(options)
        self.open_watches = 0
        self.watches_started = 0

    def watch(self, prefix, *, after_revision, progress_interval=None):
        inner = super().watch(prefix, after_revision=after_revision,
                              progress_interval=progress_interval)

        async def counted():
            self.open_watches += 1
            self.watches_started += 1
            try:
                async for event in inner:
                    yield event
            finally:
                self.open_watches -= 1
                await inner.aclose()

        return counted()


async def eventually(predicate, what: str, timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


class Raising(Store):
    """A store whose every method raises ``self.exc``."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.armed = False  # RemoteStore.open() reads the current revision

    async def open(self): pass
    async def close(self): pass

    async def current_revision(self):
        if not self.armed:
            return 0
        raise self.exc

    async def get(self, key, *, revision=0): raise self.exc
    async def list(self, prefix, *, revision=0, limit=0, start_after=None): raise self.exc
    async def create(self, key, value): raise self.exc
    async def update(self, key, value, *, expected_revision): raise self.exc
    async def delete(self, key, *, expected_revision=0): raise self.exc
    async def compact(self, revision): raise self.exc
    async def compacted_revision(self): raise self.exc

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def gen():
            raise self.exc
            yield  # pragma: no cover
        return gen()


KV = KeyValue("/k", b"v", 3, 7)


@pytest.mark.parametrize("exc,code", [
    (KeyExists("/k", KV), grpc.StatusCode.ALREADY_EXISTS),
    (KeyExists("/k"), grpc.StatusCode.ALREADY_EXISTS),
    (KeyNotFound("/k"), grpc.StatusCode.NOT_FOUND),
    (RevisionConflict("/k", 5, KV), grpc.StatusCode.FAILED_PRECONDITION),
    (Compacted(4, 9), grpc.StatusCode.OUT_OF_RANGE),
    (StoreUnavailable("no quorum"), grpc.StatusCode.UNAVAILABLE),
    (StoreError("revision 9 is in the future"), grpc.StatusCode.INTERNAL),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name)
def test_every_error_crosses_the_wire_with_its_payload(exc, code):
    assert error_status(exc)[0] == code

    async def main():
        remote = await open_store_over_grpc(Raising(exc))
        remote.inner.armed = True
        try:
            calls = [lambda: remote.current_revision(), lambda: remote.get("/k"),
                     lambda: remote.list("/"), lambda: remote.create("/k", b""),
                     lambda: remote.update("/k", b"", expected_revision=1),
                     lambda: remote.delete("/k"), lambda: remote.compact(1),
                     lambda: remote.compacted_revision(),
                     lambda: anext(remote.watch("/", after_revision=0))]
            for call in calls:
                with pytest.raises(StoreError) as info:
                    await call()
                got = info.value
                assert type(got) is type(exc), f"{got!r} is not a {type(exc).__name__}"
                assert str(got) == str(exc)
                assert vars(got) == vars(exc)  # key, kv, expected, requested, ...
        finally:
            await remote.close()

    run(main())


def test_a_driver_bug_is_internal_and_the_server_survives():
    async def main():
        remote = await open_store_over_grpc(Raising(ZeroDivisionError("oops")))
        remote.inner.armed = True
        try:
            for _ in range(2):
                with pytest.raises(StoreError, match="driver bug: ZeroDivisionError: oops") as info:
                    await remote.get("/k")
                assert type(info.value) is StoreError
        finally:
            await remote.close()

    run(main())


def test_the_typed_detail_is_in_the_trailer_for_any_grpc_client():
    """A client in another language sees a plain status code plus the documented trailer."""

    async def main():
        inner = MemoryStore()
        await inner.open()
        server = await serve_store(inner, "127.0.0.1:0")
        try:
            kv = await inner.create("/k", b"v")
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = store_pb2_grpc.StoreStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Update(pb.UpdateRequest(key="/k", value=b"w",
                                                       expected_revision=99))
                err = info.value
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
                trailer = dict(err.trailing_metadata())[ERROR_METADATA_KEY]
                detail = pb.StoreErrorDetail.FromString(trailer)
                assert detail.WhichOneof("error") == "revision_conflict"
                assert detail.revision_conflict.expected == 99
                assert detail.revision_conflict.kv.mod_revision == kv.mod_revision
        finally:
            await server.stop()
            await inner.close()

    run(main())


def test_closing_or_abandoning_a_watch_ends_it_on_the_server():
    async def main():
        inner = CountingStore()
        remote = await open_store_over_grpc(inner)
        try:
            await remote.create("/w/a", b"1")
            for _ in range(3):
                watch = remote.watch("/w/", after_revision=0)
                assert (await anext(watch)).kv.key == "/w/a"
                assert inner.open_watches == 1
                await watch.aclose()
                await eventually(lambda: inner.open_watches == 0, "closed watch ends")
            watch = remote.watch("/w/", after_revision=0)
            await anext(watch)
            pending = asyncio.ensure_future(anext(watch))  # blocked waiting for an event
            await asyncio.sleep(0.05)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            del watch, pending
            gc.collect()
            await eventually(lambda: inner.open_watches == 0, "abandoned watch ends")
            never_started = remote.watch("/w/", after_revision=0)
            del never_started
            assert inner.watches_started == 4, "a watch that is never iterated sends no rpc"
        finally:
            await remote.close()

    run(main())


def test_a_watch_ends_on_the_server_when_the_client_process_dies(tmp_path):
    client = textwrap.dedent("""
        import asyncio, sys
        from pilothouse.api.store_client import RemoteStore
        async def main():
            store = RemoteStore(RemoteStore.Options(address=sys.argv[1]))
            await store.open()
            watch = store.watch("/", after_revision=0)
            await anext(watch)
            print("watching", flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """)

    async def main():
        inner = CountingStore()
        await inner.open()
        server = await serve_store(inner, "127.0.0.1:0")
        proc = None
        try:
            await inner.create("/a", b"1")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", client, server.address, stdout=subprocess.PIPE)
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.strip() == b"watching"
            assert inner.open_watches == 1
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await eventually(lambda: inner.open_watches == 0,
                             "the server ends the watch of a client that died")
        finally:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            await server.stop()
            await inner.close()

    run(main())


def test_batched_watch_delivers_a_burst_in_order_exactly_once_with_backpressure():
    async def main():
        remote = await open_store_over_grpc(CountingStore())
        try:
            n = 5000
            for start in range(0, n, 500):
                await asyncio.gather(*(remote.create(f"/b/{i:05d}", b"x" * 64)
                                       for i in range(start, start + 500)))
            # Through the raw stub: the burst arrives in fewer messages than events.
            async with grpc.aio.insecure_channel(remote.options.address) as channel:
                call = store_pb2_grpc.StoreStub(channel).Watch(
                    pb.WatchRequest(prefix="/b/", after_revision=0))
                messages, revisions = 0, []
                while len(revisions) < n:
                    resp = await call.read()
                    assert resp is not grpc.aio.EOF and resp.events
                    messages += 1
                    revisions += [e.revision for e in resp.events]
                    if messages % 3 == 0:
                        await asyncio.sleep(0.01)  # a slow reader: flow control holds back
                call.cancel()
            assert revisions == list(range(1, n + 1))
            assert messages < n
            # Through RemoteStore, with writes racing the replay.
            watch = remote.watch("/b/", after_revision=0)
            writer = asyncio.ensure_future(asyncio.gather(
                *(remote.create(f"/b/late{i}", b"") for i in range(200))))
            got = [await anext(watch) for _ in range(n + 200)]
            await writer
            assert [e.revision for e in got] == list(range(1, n + 201))
            await watch.aclose()
        finally:
            await remote.close()

    run(main())


def test_messages_larger_than_grpc_default_limit():
    async def main():
        remote = await open_store_over_grpc(MemoryStore())
        try:
            big = os.urandom(1_572_864)
            for i in range(4):  # 6 MiB in one List response, one watch batch
                await remote.create(f"/big/{i}", big)
            listed = await remote.list("/big/")
            assert [kv.value for kv in listed.items] == [big] * 4
            watch = remote.watch("/big/", after_revision=0)
            assert [(await anext(watch)).kv.value for _ in range(4)] == [big] * 4
            await watch.aclose()
        finally:
            await remote.close()

    run(main())


def test_server_stop_and_restart_on_the_same_address():
    """Stopping the server ends watches with StoreUnavailable and fails calls with it; the
    same RemoteStore works again once a server is back on the address."""

    async def main():
        inner = MemoryStore()
        await inner.open()
        server = await serve_store(inner, "127.0.0.1:0")
        remote = RemoteStore(RemoteStore.Options(address=server.address, timeout=5))
        await remote.open()
        try:
            await remote.create("/r/a", b"1")
            watch = remote.watch("/r/", after_revision=0)
            await anext(watch)
            pending = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.05)
            await server.stop(grace=1)
            with pytest.raises(StoreUnavailable):
                await pending
            with pytest.raises(StoreUnavailable):
                await remote.get("/r/a")
            server = await serve_store(inner, server.address)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TIMEOUT
            while True:
                try:
                    assert (await remote.get("/r/a")).value == b"1"
                    break
                except StoreUnavailable:
                    assert loop.time() < deadline, "the client did not reconnect"
                    await asyncio.sleep(0.05)
            watch = remote.watch("/r/", after_revision=0)
            assert (await anext(watch)).type is EventType.PUT
            await watch.aclose()
        finally:
            await remote.close()
            await server.stop()
            await inner.close()

    run(main())


def test_unix_socket(tmp_path):
    async def main():
        remote = await open_store_over_grpc(MemoryStore(),
                                            address=f"unix:{tmp_path / 'store.sock'}")
        try:
            assert remote.options.address == f"unix:{tmp_path / 'store.sock'}"
            assert remote.server.port == 0
            kv = await remote.create("/u", b"1")
            assert await remote.get("/u") == kv
        finally:
            await remote.close()

    run(main())


def test_open_fails_clearly():
    async def main():
        dead = RemoteStore(RemoteStore.Options(address="127.0.0.1:1", connect_timeout=0.5))
        with pytest.raises(StoreUnavailable, match=r"cannot connect to 127\.0\.0\.1:1"):
            await dead.open()
        other = grpc.aio.server()  # a gRPC server without the Store service
        port = other.add_insecure_port("127.0.0.1:0")
        await other.start()
        try:
            wrong = RemoteStore(RemoteStore.Options(address=f"127.0.0.1:{port}"))
            with pytest.raises(StoreUnavailable, match="does not serve pilothouse.store.v1"):
                await wrong.open()
        finally:
            await other.stop(None)
        unopened = RemoteStore(RemoteStore.Options(address="127.0.0.1:1"))
        with pytest.raises(StoreUnavailable, match="not open"):
            await unopened.get("/x")

    run(main())


def test_closed_store_finishes_new_watches_and_refuses_calls():
    async def main():
        remote = await open_store_over_grpc(MemoryStore())
        await remote.close()
        await remote.close()
        assert [e async for e in remote.watch("/", after_revision=0)] == []
        with pytest.raises(StoreUnavailable, match="closed"):
            await remote.create("/x", b"")

    run(main())


def test_arguments_that_cannot_be_encoded_raise_store_error():
    async def main():
        remote = await open_store_over_grpc(MemoryStore())
        try:
            with pytest.raises(StoreError):
                await remote.create("/bad\udcff", b"")
            with pytest.raises(StoreError):
                await remote.get("/k", revision=2 ** 64)
            assert await remote.current_revision() == 0
        finally:
            await remote.close()

    run(main())


def test_remote_entry_point_and_options():
    remote = build_driver("store", "remote", {"address": "unix:/run/x.sock", "timeout": 2})
    assert isinstance(remote, RemoteStore)
    assert remote.options == RemoteStore.Options(address="unix:/run/x.sock", timeout=2.0)
    with pytest.raises(ConfigError, match="address"):
        build_driver("store", "remote", {})
    with pytest.raises(ConfigError, match="timeouts"):
        build_driver("store", "remote", {"address": "x:1", "timeout": -1})


def test_store_over_grpc_builds_drivers_from_names_and_classes():
    async def main():
        for spec in (MemoryStore, MemoryStore()):
            remote = store_over_grpc(spec)
            assert isinstance(remote, GrpcLoopbackStore) and remote.server is None
            await remote.open()
            try:
                await remote.create("/x", b"1")
                assert (await remote.inner.get("/x")).value == b"1"
            finally:
                await remote.close()
        with pytest.raises(TypeError):
            store_over_grpc(MemoryStore(), {"x": 1})

    run(main())


def test_command_line_serves_a_store_plugin_until_sigterm(tmp_path, fake_dist):
    site = fake_dist("memory-store-for-test", {"pilothouse.store": {
        "memory-cli-test": "pilothouse.testing.memory_store:MemoryStore"}}, {})
    sock = tmp_path / "s.sock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), os.environ.get("PYTHONPATH", "")])}

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pilothouse.api.store_server", "--listen", f"unix:{sock}",
            "--plugin", "memory-cli-test", "--options", "{}", "--log-level", "WARNING",
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"serving MemoryStore on unix:" in line, (
                line + await proc.stderr.read()).decode()
            remote = RemoteStore(RemoteStore.Options(address=f"unix:{sock}"))
            await remote.open()
            await remote.create("/cli", b"1")
            assert (await remote.get("/cli")).value == b"1"
            watch = remote.watch("/", after_revision=1)
            pending = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            with pytest.raises((StoreUnavailable, StopAsyncIteration)):
                await pending
            await remote.close()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    run(main())
    bad = subprocess.run([sys.executable, "-m", "pilothouse.api.store_server", "--plugin",
                          "no-such-store"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "no-such-store" in bad.stderr
