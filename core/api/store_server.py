"""Serve any :class:`~pilothouse.interfaces.store.Store` over the gRPC ``Store`` service.

:func:`serve_store` exposes an opened store on an address and returns a
:class:`StoreServer`; :func:`add_store_service` adds the service to a ``grpc.aio`` server you
already run. ``python -m pilothouse.api.store_server`` (:func:`main`) runs any installed
store plugin as its own process. The protocol (messages, ordering, error codes and the typed
error trailer) is specified in ``core/api/store.proto``; the client side is
:class:`pilothouse.api.store_client.RemoteStore`.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator

import grpc

from pilothouse.api import store_pb2 as pb
from pilothouse.api import store_pb2_grpc
from pilothouse.interfaces.store import (
    Compacted, EventType, KeyExists, KeyNotFound, KeyValue, RevisionConflict, Store,
    StoreError, StoreUnavailable, WatchEvent,
)

__all__ = ["ERROR_METADATA_KEY", "GRPC_OPTIONS", "StoreServer", "StoreServicer",
           "add_store_service", "error_status", "main", "serve_store"]

log = logging.getLogger(__name__)

#: The trailing-metadata key that carries a serialized ``StoreErrorDetail``.
ERROR_METADATA_KEY = "pilothouse-store-error-bin"

#: Channel arguments both ends use: no message size limit (values reach 1.5 MiB and a List
#: holds many of them), and HTTP/2 keepalive so a watch whose peer vanished without closing
#: the connection (host died, network partition) ends within about 40 s.
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
# Servers must tolerate the clients' keepalive pings (the default bans pings more often
# than every 5 minutes with GOAWAY "too_many_pings").
_SERVER_OPTIONS = GRPC_OPTIONS + (
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
)

# A watch batches the events that are ready together into one message, up to these bounds,
# and reads at most _WATCH_BUFFER events ahead of what gRPC has accepted (flow control
# then holds the store's iterator back).
_WATCH_BATCH_EVENTS = 512
_WATCH_BATCH_BYTES = 1 << 20
_WATCH_BUFFER = 1024

_EVENT_TYPES = {EventType.PUT: pb.EVENT_TYPE_PUT, EventType.DELETE: pb.EVENT_TYPE_DELETE,
                EventType.PROGRESS: pb.EVENT_TYPE_PROGRESS}


def _kv(kv: KeyValue) -> pb.KeyValue:
    return pb.KeyValue(key=kv.key, value=kv.value, create_revision=kv.create_revision,
                       mod_revision=kv.mod_revision)


def _event(ev: WatchEvent) -> pb.Event:
    out = pb.Event(type=_EVENT_TYPES[ev.type], revision=ev.revision)
    if ev.kv is not None:
        out.kv.CopyFrom(_kv(ev.kv))
    if ev.prev_kv is not None:
        out.prev_kv.CopyFrom(_kv(ev.prev_kv))
    return out


def error_status(exc: BaseException) -> tuple[grpc.StatusCode, str, pb.StoreErrorDetail]:
    """Map an exception raised by a store to ``(status code, message, typed detail)`` as
    ``store.proto`` specifies. Anything that is not a :class:`StoreError` is a driver bug and
    maps to INTERNAL."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, KeyExists):
        detail = pb.StoreErrorDetail(key_exists=pb.KeyExistsError(
            key=exc.key, kv=_kv(exc.kv) if exc.kv is not None else None))
        return grpc.StatusCode.ALREADY_EXISTS, message, detail
    if isinstance(exc, KeyNotFound):
        return (grpc.StatusCode.NOT_FOUND, message,
                pb.StoreErrorDetail(key_not_found=pb.KeyNotFoundError(key=exc.key)))
    if isinstance(exc, RevisionConflict):
        detail = pb.StoreErrorDetail(revision_conflict=pb.RevisionConflictError(
            key=exc.key, expected=exc.expected, kv=_kv(exc.kv)))
        return grpc.StatusCode.FAILED_PRECONDITION, message, detail
    if isinstance(exc, Compacted):
        detail = pb.StoreErrorDetail(compacted=pb.CompactedError(
            requested=exc.requested, compact_revision=exc.compact_revision))
        return grpc.StatusCode.OUT_OF_RANGE, message, detail
    if isinstance(exc, StoreUnavailable):
        return (grpc.StatusCode.UNAVAILABLE, message,
                pb.StoreErrorDetail(unavailable=pb.UnavailableError()))
    if not isinstance(exc, StoreError):
        message = f"store driver bug: {type(exc).__name__}: {exc}"
    return grpc.StatusCode.INTERNAL, message, pb.StoreErrorDetail(internal=pb.InternalError())


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    if not isinstance(exc, StoreError):
        log.error("store raised a non-StoreError (a driver bug)", exc_info=exc)
    code, message, detail = error_status(exc)
    try:
        metadata = ((ERROR_METADATA_KEY, detail.SerializeToString()),)
    except Exception:  # a payload that cannot be encoded (e.g. a non-UTF-8 key) is dropped
        code, metadata = grpc.StatusCode.INTERNAL, ()
    await context.abort(code, message, metadata)


class _WatchPump:
    """Reads one store watch ahead of the gRPC stream into a bounded buffer, so the sender
    can batch whatever is ready into one message."""

    __slots__ = ("buffer", "ready", "room", "end", "task")

    def __init__(self) -> None:
        self.buffer: collections.deque[WatchEvent] = collections.deque()
        self.ready = asyncio.Event()  # buffer not empty, or the watch ended
        self.room = asyncio.Event()  # buffer below _WATCH_BUFFER
        self.room.set()
        self.end: BaseException | bool = False  # True: ended normally; else the exception
        self.task: asyncio.Task | None = None

    async def run(self, events: AsyncIterator[WatchEvent]) -> None:
        try:
            async for ev in events:
                self.buffer.append(ev)
                self.ready.set()
                if len(self.buffer) >= _WATCH_BUFFER:
                    self.room.clear()
                    await self.room.wait()
            self.end = True
        except asyncio.CancelledError:
            self.end = StoreUnavailable("the store server is shutting down")
            raise
        except Exception as exc:
            self.end = exc
        finally:
            self.ready.set()
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing a store watch failed")


class StoreServicer(store_pb2_grpc.StoreServicer):
    """The ``pilothouse.store.v1.Store`` service backed by ``store``, an opened
    :class:`Store`. The servicer never opens or closes the store."""

    def __init__(self, store: Store):
        self._store = store
        self._pumps: set[_WatchPump] = set()
        self._stopping = False

    async def end_watches(self) -> None:
        """End every open watch stream with UNAVAILABLE and refuse new ones (server
        shutdown)."""
        self._stopping = True
        tasks = [p.task for p in self._pumps if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def CurrentRevision(self, request, context):
        try:
            revision = await self._store.current_revision()
        except Exception as exc:
            await _abort(context, exc)
        return pb.CurrentRevisionResponse(revision=revision)

    async def Get(self, request, context):
        try:
            kv = await self._store.get(request.key, revision=request.revision)
        except Exception as exc:
            await _abort(context, exc)
        return pb.GetResponse(kv=_kv(kv)) if kv is not None else pb.GetResponse()

    async def List(self, request, context):
        try:
            result = await self._store.list(
                request.prefix, revision=request.revision, limit=request.limit,
                start_after=request.start_after if request.HasField("start_after") else None)
        except Exception as exc:
            await _abort(context, exc)
        return pb.ListResponse(items=[_kv(kv) for kv in result.items], revision=result.revision,
                               more=result.more, count=result.count)

    async def Create(self, request, context):
        try:
            kv = await self._store.create(request.key, request.value)
        except Exception as exc:
            await _abort(context, exc)
        return pb.CreateResponse(kv=_kv(kv))

    async def Update(self, request, context):
        try:
            kv = await self._store.update(request.key, request.value,
                                          expected_revision=request.expected_revision)
        except Exception as exc:
            await _abort(context, exc)
        return pb.UpdateResponse(kv=_kv(kv))

    async def Delete(self, request, context):
        try:
            kv = await self._store.delete(request.key,
                                          expected_revision=request.expected_revision)
        except Exception as exc:
            await _abort(context, exc)
        return pb.DeleteResponse(kv=_kv(kv))

    async def Compact(self, request, context):
        try:
            await self._store.compact(request.revision)
        except Exception as exc:
            await _abort(context, exc)
        return pb.CompactResponse()

    async def CompactedRevision(self, request, context):
        try:
            revision = await self._store.compacted_revision()
        except Exception as exc:
            await _abort(context, exc)
        return pb.CompactedRevisionResponse(revision=revision)

    async def Watch(self, request, context):
        if self._stopping:
            await _abort(context, StoreUnavailable("the store server is shutting down"))
        try:
            events = self._store.watch(
                request.prefix, after_revision=request.after_revision,
                progress_interval=request.progress_interval
                if request.progress_interval > 0 else None)
        except Exception as exc:
            await _abort(context, exc)
        pump = _WatchPump()
        pump.task = asyncio.get_running_loop().create_task(pump.run(events))
        self._pumps.add(pump)
        buffer = pump.buffer
        try:
            while True:
                await pump.ready.wait()
                if buffer:
                    batch, size = [], 0
                    while buffer and len(batch) < _WATCH_BATCH_EVENTS and size < _WATCH_BATCH_BYTES:
                        ev = buffer.popleft()
                        batch.append(_event(ev))
                        if ev.kv is not None:
                            size += len(ev.kv.value)
                        if ev.prev_kv is not None:
                            size += len(ev.prev_kv.value)
                    if not buffer and pump.end is False:
                        pump.ready.clear()
                    if len(buffer) < _WATCH_BUFFER:
                        pump.room.set()
                    yield pb.WatchResponse(events=batch)
                    continue
                if pump.end is True:
                    return
                if isinstance(pump.end, BaseException):
                    await _abort(context, pump.end)
        finally:
            # Reached when the stream ends for any reason, including the client cancelling
            # or going away (the handler is cancelled): stop the store's watch now.
            self._pumps.discard(pump)
            if not pump.task.done():
                pump.task.cancel()
                await asyncio.gather(pump.task, return_exceptions=True)


def add_store_service(store: Store, server: grpc.aio.Server) -> StoreServicer:
    """Add the ``Store`` service backed by ``store`` (opened) to a ``grpc.aio`` server that
    the caller starts and stops. Create that server with :data:`GRPC_OPTIONS` (at least the
    unlimited message sizes), or large lists fail. Returns the servicer; call its
    :meth:`~StoreServicer.end_watches` before stopping the server so that open watches end
    at once instead of holding the shutdown grace period."""
    servicer = StoreServicer(store)
    store_pb2_grpc.add_StoreServicer_to_server(servicer, server)
    return servicer


class StoreServer:
    """A running ``grpc.aio`` server that exposes one store (made by :func:`serve_store`).

    ``address`` is what a client dials (``host:port`` with the bound port when ``:0`` was
    asked for, or ``unix:/path``); ``port`` the bound TCP port (0 for Unix sockets);
    ``grpc_server`` the underlying ``grpc.aio.Server``; ``store`` the served store.
    """

    def __init__(self, grpc_server: grpc.aio.Server, servicer: StoreServicer, store: Store,
                 address: str, port: int):
        self.grpc_server, self.store, self.address, self.port = grpc_server, store, address, port
        self._servicer = servicer

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving: refuse new rpcs, end open watches with UNAVAILABLE, give unary rpcs
        in flight ``grace`` seconds to finish, then cancel them. Does not close the store.
        Idempotent."""
        await self._servicer.end_watches()
        await self.grpc_server.stop(grace)

    async def wait_for_termination(self) -> None:
        """Return when the server has stopped."""
        await self.grpc_server.wait_for_termination()


async def serve_store(store: Store, address: str = "127.0.0.1:0") -> StoreServer:
    """Serve ``store`` (already opened; the caller closes it after stopping the server) on
    ``address`` and return the started :class:`StoreServer`.

    ``address`` is ``host:port`` (port 0 picks a free port; see ``StoreServer.address``) or
    ``unix:/path`` for a Unix socket. The server is plaintext: bind it to loopback or a
    Unix socket, or put it behind an authenticating proxy. Raises :class:`OSError` when the
    address cannot be bound. Runs on the calling event loop, which must be the store's.
    """
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    servicer = add_store_service(store, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address!r}: {exc}") from None
    if not port:
        raise OSError(f"cannot listen on {address!r}")
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        dial, port = address, 0
    else:
        host = address.rpartition(":")[0]
        dial = f"{host}:{port}"
    await server.start()
    return StoreServer(server, servicer, store, dial, port)


def _load_store(args: argparse.Namespace) -> Store:
    from pilothouse.config import parse_config, load_config
    from pilothouse.plugins import load_plugins

    if args.config is not None:
        ref = load_config(args.config).driver("store")
        if ref is None:
            raise SystemExit(f"error: {args.config}: no store plugin configured")
        name, options = ref.name, ref.options
    else:
        name = args.plugin
        try:
            options = json.loads(args.options) if args.options else {}
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: --options is not valid JSON: {exc}") from None
    doc = {"base": "none", "store": {"plugin": name, "options": options}}
    return load_plugins(parse_config(doc, f"<store_server {name}>")).driver("store")


async def _serve_until_signalled(store: Store, address: str, grace: float) -> None:
    await store.open()
    try:
        server = await serve_store(store, address)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("serving store %s on %s", type(store).__name__, server.address)
        print(f"pilothouse store server: serving {type(store).__name__} on {server.address}",
              flush=True)
        await stop.wait()
        await server.stop(grace)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: serve one store plugin over gRPC until SIGTERM/SIGINT.

    ``--listen ADDRESS`` (``host:port`` or ``unix:/path``) and either ``--plugin NAME
    [--options JSON]`` or ``--config FILE`` (serve the store its ``store:`` section names).
    Exit codes: 0 after a clean stop, 1 when the plugin cannot be loaded or opened, 2 usage.
    """
    from pilothouse.config import ConfigError

    parser = argparse.ArgumentParser(
        prog="python -m pilothouse.api.store_server",
        description="Serve a Pilothouse store plugin over the gRPC Store service.")
    parser.add_argument("--listen", default="127.0.0.1:2390",
                        help="host:port or unix:/path (default: %(default)s)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--plugin", help="store plugin (entry-point name), e.g. raft")
    which.add_argument("--config", help="serve the store of this config file's store: section")
    parser.add_argument("--options", help="the plugin's options as a JSON object")
    parser.add_argument("--grace", type=float, default=5.0,
                        help="seconds in-flight rpcs get at shutdown (default: %(default)s)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.config is not None and args.options:
        parser.error("--options goes with --plugin; a config file has its own options")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        store = _load_store(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve_until_signalled(store, args.listen, args.grace))
    except (StoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
