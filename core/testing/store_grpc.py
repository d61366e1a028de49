"""Run any store through the gRPC ``Store`` service, in-process, for tests.

Two tools:

:func:`store_over_grpc`
    Wrap a store (an instance, an entry-point name or a class, with options) in a
    :class:`GrpcLoopbackStore`: a :class:`~pilothouse.api.store_client.RemoteStore` whose
    ``open()`` opens the store, serves it on a loopback port with
    :func:`~pilothouse.api.store_server.serve_store` and connects to it, and whose ``close()``
    disconnects, stops the server and closes the store. Everything the test does then goes
    through protobuf, HTTP/2 and back::

        store = store_over_grpc("raft", {"data_dir": str(tmp_path)})
        await store.open()
        ...
        await store.close()

    :func:`open_store_over_grpc` does the same and returns it opened.

:class:`GrpcStoreConformance`
    The store conformance suite run through gRPC. A driver author who already has a
    conformance class adds one line::

        from pilothouse.testing.store_grpc import GrpcStoreConformance

        class TestRaftStoreOverGrpc(GrpcStoreConformance, TestRaftStore):
            pass

    (``GrpcStoreConformance`` first), or sets ``plugin`` and ``store_options`` directly as
    for :class:`~pilothouse.testing.store.StoreConformance`. Every test then talks to the
    driver through a :class:`GrpcLoopbackStore`; the driver's own ``store_options``,
    ``durable`` flag and ``restart`` override are used as they are (a restart restarts the
    driver behind a fresh server and a fresh connection).

This checks the driver and the gRPC service together: a driver that passes the suite
directly and over gRPC behaves the same for an API server that reaches it in or out of
process. To check a Store *server* written in another language, point a plain
:class:`~pilothouse.testing.store.StoreConformance` subclass at it with ``plugin = "remote"``
and ``store_options`` returning ``{"address": ...}``.
"""

from __future__ import annotations

import dataclasses

import pytest

from pilothouse.api.store_client import RemoteStore
from pilothouse.api.store_server import StoreServer, serve_store
from pilothouse.interfaces.store import Store
from pilothouse.testing._drivers import build_driver
from pilothouse.testing.store import StoreConformance

__all__ = ["GrpcLoopbackStore", "GrpcStoreConformance", "open_store_over_grpc",
           "store_over_grpc"]


class GrpcLoopbackStore(RemoteStore):
    """A :class:`RemoteStore` connected to ``inner`` served in-process on ``address``.

    ``open()`` opens ``inner`` (unless ``open_inner`` is false: it is open already), serves
    it on ``address`` (default: a free loopback TCP port; ``unix:/path`` works too) and
    connects. ``close()`` disconnects (ending this store's watches), stops the server and
    closes ``inner`` (unless ``close_inner`` is false). ``inner`` and ``server`` stay
    available as attributes for tests that want to poke at either end.
    """

    def __init__(self, inner: Store, *, address: str = "127.0.0.1:0", open_inner: bool = True,
                 close_inner: bool = True, timeout: float = 30.0,
                 connect_timeout: float = 10.0):
        super().__init__(RemoteStore.Options(address=address, timeout=timeout,
                                             connect_timeout=connect_timeout))
        self.inner = inner
        self.server: StoreServer | None = None
        self._listen = address
        self._open_inner, self._close_inner = open_inner, close_inner

    def __repr__(self) -> str:
        return f"GrpcLoopbackStore({self.inner!r} at {self.options.address})"

    async def open(self) -> None:
        if self.server is not None:
            return
        if self._open_inner:
            await self.inner.open()
            self._open_inner = False
        self.server = await serve_store(self.inner, self._listen)
        self.options = dataclasses.replace(self.options, address=self.server.address)
        await super().open()

    async def detach(self) -> Store:
        """Disconnect and stop the server, leave ``inner`` open, and return it."""
        await super().close()
        server, self.server = self.server, None
        if server is not None:
            await server.stop(grace=1.0)
        self._close_inner = False
        return self.inner

    async def close(self) -> None:
        await super().close()
        server, self.server = self.server, None
        if server is not None:
            await server.stop(grace=1.0)
        if self._close_inner:
            self._close_inner = False
            await self.inner.close()


def store_over_grpc(store: Store | str | type[Store], options: dict | None = None, *,
                    address: str = "127.0.0.1:0") -> GrpcLoopbackStore:
    """Wrap ``store`` for access through gRPC; see :class:`GrpcLoopbackStore`.

    ``store`` is an unopened store instance (``options`` must then be None), an entry-point
    name of group ``pilothouse.store``, or a Store class; names and classes are built with
    :func:`pilothouse.testing.build_driver` from ``options``. The result is not open yet.
    """
    if isinstance(store, Store):
        if options:
            raise TypeError("options go with a plugin name or class, not with an instance")
        inner = store
    else:
        inner = build_driver("store", store, options)
    return GrpcLoopbackStore(inner, address=address)


async def open_store_over_grpc(store: Store | str | type[Store], options: dict | None = None,
                               *, address: str = "127.0.0.1:0") -> GrpcLoopbackStore:
    """:func:`store_over_grpc`, opened: the store is served and the client connected."""
    remote = store_over_grpc(store, options, address=address)
    await remote.open()
    return remote


class GrpcStoreConformance(StoreConformance):
    """:class:`~pilothouse.testing.store.StoreConformance` with every store reached through
    the gRPC Store service (see the module docstring for use). ``grpc_address`` is where the
    in-process server listens (default: a free loopback port)."""

    grpc_address: str = "127.0.0.1:0"
    _grpc_unwrapped: bool = False

    @pytest.mark.slow
    @pytest.mark.timeout(1200)
    def test_100k_keys(self, tmp_path):
        """The suite's 100,000-key test, with a longer time limit: through gRPC in one
        process every create costs a client and a server round of grpc.aio on one thread
        (about 0.5 ms on a 2-vCPU machine, several times that when it is busy)."""
        super().test_100k_keys(tmp_path)

    def make_store(self, tmp_path) -> Store:
        inner = super().make_store(tmp_path)
        if self._grpc_unwrapped or isinstance(inner, RemoteStore):
            return inner
        return GrpcLoopbackStore(inner, address=self.grpc_address)

    async def restart(self, store: Store, tmp_path) -> Store:
        if not isinstance(store, GrpcLoopbackStore):
            return await super().restart(store, tmp_path)
        inner = await store.detach()
        # The driver's restart (its own override or the default) sees the driver itself and
        # builds bare instances; the result is served again behind a new connection.
        self._grpc_unwrapped = True
        try:
            inner = await super().restart(inner, tmp_path)
        finally:
            self._grpc_unwrapped = False
        remote = GrpcLoopbackStore(inner, address=self.grpc_address, open_inner=False)
        await remote.open()
        return remote
