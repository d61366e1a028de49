"""The ``remote`` store driver: a :class:`~pilothouse.interfaces.store.Store` that talks to a
store in another process over the gRPC ``Store`` service (``core/api/store.proto``).

Select it in the config file::

    store:
      plugin: remote
      options: {address: "127.0.0.1:2390"}     # or "unix:/run/pilothouse/store.sock"

The other end is any server of ``pilothouse.store.v1.Store``: a Python store served by
:func:`pilothouse.api.store_server.serve_store` (``python -m pilothouse.api.store_server``),
or a store written in another language. Errors come back as the same exceptions the store
raised (see the status-code table in ``store.proto``); a transport failure or a deadline is
:class:`~pilothouse.interfaces.store.StoreUnavailable` (for a write: outcome unknown).

Version history: appeared in 0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc

from pilothouse.api import store_pb2 as pb
from pilothouse.api import store_pb2_grpc
from pilothouse.api.store_server import ERROR_METADATA_KEY, GRPC_OPTIONS
from pilothouse.interfaces.store import (
    Compacted, EventType, KeyExists, KeyNotFound, KeyValue, ListResult, RevisionConflict,
    Store, StoreError, StoreUnavailable, WatchEvent,
)

__all__ = ["RemoteStore"]

_EVENT_TYPES = {pb.EVENT_TYPE_PUT: EventType.PUT, pb.EVENT_TYPE_DELETE: EventType.DELETE,
                pb.EVENT_TYPE_PROGRESS: EventType.PROGRESS}
_UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                      grpc.StatusCode.CANCELLED)


def _kv(m: pb.KeyValue) -> KeyValue:
    return KeyValue(m.key, m.value, m.create_revision, m.mod_revision)


def _event(m: pb.Event) -> WatchEvent:
    try:
        kind = _EVENT_TYPES[m.type]
    except KeyError:
        raise StoreError(f"remote store sent a watch event of unknown type {m.type}") from None
    return WatchEvent(kind, m.revision, _kv(m.kv) if m.HasField("kv") else None,
                      _kv(m.prev_kv) if m.HasField("prev_kv") else None)


def _detail(err: grpc.aio.AioRpcError) -> pb.StoreErrorDetail | None:
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY and isinstance(value, bytes):
            try:
                return pb.StoreErrorDetail.FromString(value)
            except Exception:
                return None
    return None


def _store_error(err: grpc.aio.AioRpcError, address: str) -> StoreError:
    """The interface exception for a failed rpc (table in store.proto)."""
    code, message = err.code(), err.details() or ""
    detail = _detail(err)
    which = detail.WhichOneof("error") if detail is not None else None
    if code == grpc.StatusCode.ALREADY_EXISTS and which == "key_exists":
        d = detail.key_exists
        return KeyExists(d.key, _kv(d.kv) if d.HasField("kv") else None)
    if code == grpc.StatusCode.NOT_FOUND:
        if which == "key_not_found":
            return KeyNotFound(detail.key_not_found.key)
        return StoreError(f"remote store at {address}: NOT_FOUND without a key: {message}")
    if (code == grpc.StatusCode.FAILED_PRECONDITION and which == "revision_conflict"
            and detail.revision_conflict.HasField("kv")):
        d = detail.revision_conflict
        return RevisionConflict(d.key, d.expected, _kv(d.kv))
    if code == grpc.StatusCode.OUT_OF_RANGE and which == "compacted":
        return Compacted(detail.compacted.requested, detail.compacted.compact_revision)
    if code == grpc.StatusCode.UNAVAILABLE and which == "unavailable":
        return StoreUnavailable(message)  # the store's own words (no quorum, ...)
    if code in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"remote store at {address}: {code.name}: {message}")
    if code == grpc.StatusCode.INTERNAL:
        return StoreError(message)
    return StoreError(f"remote store at {address}: {code.name}: {message}")


class RemoteStore(Store):
    """A store served by another process over gRPC (entry point ``remote``)."""

    @dataclasses.dataclass
    class Options:
        """Options of the ``remote`` store driver."""

        address: str = dataclasses.field(metadata={
            "help": "where the Store service listens: host:port, or unix:/path for a Unix "
                    "socket (any gRPC target string works)"})
        timeout: float = dataclasses.field(default=30.0, metadata={
            "help": "seconds each unary call may take before it fails with "
                    "StoreUnavailable (0: no deadline); watches have none"})
        connect_timeout: float = dataclasses.field(default=10.0, metadata={
            "help": "seconds open() waits for the server before it fails"})

        def __post_init__(self) -> None:
            if not self.address:
                raise ValueError("option 'address' must not be empty")
            if self.timeout < 0 or self.connect_timeout < 0:
                raise ValueError("timeouts must be >= 0")

    def __init__(self, options: RemoteStore.Options):
        self.options = options
        self._timeout = options.timeout or None
        self._channel: grpc.aio.Channel | None = None
        self._stub: store_pb2_grpc.StoreStub | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteStore({self.options.address!r})"

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to the server and check that it serves the Store service. Raises
        :class:`StoreUnavailable` naming the address when it cannot be reached within
        ``connect_timeout`` or is not a Store server."""
        if self._closed:
            raise StoreUnavailable(f"{self!r} is closed")
        if self._channel is not None:
            return
        address = self.options.address
        channel = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        stub = store_pb2_grpc.StoreStub(channel)
        try:
            await asyncio.wait_for(channel.channel_ready(),
                                   self.options.connect_timeout or None)
            await stub.CurrentRevision(pb.CurrentRevisionRequest(), timeout=self._timeout)
        except asyncio.TimeoutError:
            await channel.close()
            raise StoreUnavailable(
                f"remote store: cannot connect to {address} within "
                f"{self.options.connect_timeout} s; is the store server running there?") from None
        except grpc.aio.AioRpcError as err:
            await channel.close()
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise StoreUnavailable(f"remote store: {address} does not serve "
                                       f"pilothouse.store.v1.Store: {err.details()}") from None
            raise _store_error(err, address) from None
        except BaseException:
            await channel.close()
            raise
        self._channel, self._stub = channel, stub

    async def close(self) -> None:
        """Close the connection. Open watches finish (their iterators end); calls in flight
        fail with StoreUnavailable. Idempotent."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _live_stub(self) -> store_pb2_grpc.StoreStub:
        stub = self._stub
        if stub is None:
            raise StoreUnavailable(f"{self!r} is {'closed' if self._closed else 'not open'}")
        return stub

    # -- reads and writes ----------------------------------------------------------------

    async def _unary(self, rpc: str, request_type, **fields):
        """Build ``request_type(**fields)`` and send it as the unary ``rpc``; bad arguments
        and transport or store failures become the Store interface's exceptions."""
        stub = self._live_stub()
        try:
            request = request_type(**fields)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"bad argument: {exc}") from None
        try:
            return await getattr(stub, rpc)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as err:
            raise _store_error(err, self.options.address) from None
        except ValueError as exc:  # serialization (e.g. a key that is not valid UTF-8)
            raise StoreError(f"bad argument: {exc}") from None

    async def current_revision(self) -> int:
        """See :meth:`Store.current_revision`; one ``CurrentRevision`` rpc."""
        return (await self._unary("CurrentRevision", pb.CurrentRevisionRequest)).revision

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        """See :meth:`Store.get`; one ``Get`` rpc."""
        resp = await self._unary("Get", pb.GetRequest, key=key, revision=revision)
        return _kv(resp.kv) if resp.HasField("kv") else None

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> ListResult:
        """See :meth:`Store.list`; one ``List`` rpc per call (one page)."""
        resp = await self._unary("List", pb.ListRequest, prefix=prefix, revision=revision,
                                 limit=limit, start_after=start_after)
        return ListResult([KeyValue(m.key, m.value, m.create_revision, m.mod_revision)
                           for m in resp.items], resp.revision, resp.more,
                          resp.count if resp.HasField("count") else None)

    async def create(self, key: str, value: bytes) -> KeyValue:
        """See :meth:`Store.create`; one ``Create`` rpc."""
        return _kv((await self._unary("Create", pb.CreateRequest, key=key, value=value)).kv)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """See :meth:`Store.update`; one ``Update`` rpc."""
        resp = await self._unary("Update", pb.UpdateRequest, key=key, value=value,
                                 expected_revision=expected_revision)
        return _kv(resp.kv)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """See :meth:`Store.delete`; one ``Delete`` rpc."""
        resp = await self._unary("Delete", pb.DeleteRequest, key=key,
                                 expected_revision=expected_revision)
        return _kv(resp.kv)

    async def compact(self, revision: int) -> None:
        """See :meth:`Store.compact`; one ``Compact`` rpc."""
        await self._unary("Compact", pb.CompactRequest, revision=revision)

    async def compacted_revision(self) -> int:
        """See :meth:`Store.compacted_revision`; one ``CompactedRevision`` rpc."""
        return (await self._unary("CompactedRevision", pb.CompactedRevisionRequest)).revision

    # -- watch ---------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int,
              progress_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        """See :meth:`Store.watch`. One ``Watch`` rpc, started by the first ``__anext__``
        (so a Compacted error surfaces there) and cancelled when the iterator is closed or
        garbage-collected; the server then stops the store's watch. The iterator finishes
        when the server's store closes or this store is closed, and raises
        :class:`StoreUnavailable` when the connection or the server goes away."""
        return self._watch(prefix, after_revision, progress_interval)

    async def _watch(self, prefix: str, after_revision: int,
                     progress_interval: float | None) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return  # a watch on a closed store finishes, like the watches close() ended
        stub = self._live_stub()
        try:
            request = pb.WatchRequest(prefix=prefix, after_revision=after_revision,
                                      progress_interval=progress_interval or 0.0)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"bad argument: {exc}") from None
        call = stub.Watch(request)
        try:
            while True:
                try:
                    resp = await call.read()
                except grpc.aio.AioRpcError as err:
                    if self._closed:
                        return
                    raise _store_error(err, self.options.address) from None
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if self._closed and not (task and task.cancelling()):
                        return  # close() closed the channel under this watch: it ends
                    raise
                if resp is grpc.aio.EOF:
                    return
                for m in resp.events:
                    if self._closed:
                        return  # close() ends the watch: drop what the batch still holds
                    yield _event(m)
        finally:
            call.cancel()
