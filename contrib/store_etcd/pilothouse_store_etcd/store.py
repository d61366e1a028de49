"""EtcdStore: the Pilothouse store contract on a real etcd cluster, through etcd's v3 gRPC API.

Layout in etcd (``prefix`` is the ``prefix`` option, ``/pilothouse`` by default)::

    <prefix>/meta          written once, by the first open; its create_revision is the *base*
    <prefix>/data<key>     one etcd key per store key, value as is

Revisions: etcd's global revision minus the base. A fresh store is therefore at revision 0
and its first write gets 1, and because the base lives in etcd itself the mapping survives
restarts of the driver and of etcd. Every contract operation is one etcd request (a Range, a
single-write Txn, a Compact or a Watch), so each write moves etcd's revision by exactly one.
See README.md for the full mapping and for what sharing one etcd between clusters means.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import Literal

import grpc
from grpc import aio

from pilothouse.interfaces.store import (
    Compacted,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    Store,
    StoreError,
    StoreUnavailable,
    WatchEvent,
)
from pilothouse_store_etcd import etcd_rpc_pb2 as pb

__all__ = ["EtcdStore", "Options"]

log = logging.getLogger(__name__)

_VERSION = "0.1.0"
# Sent with every request: a member without a leader answers "no leader" at once instead of
# queueing the request (etcd's WithRequireLeader); watch streams on it are closed.
_METADATA = (("hasleader", "true"),)
_MAX_MESSAGE = 256 * 1024 * 1024
# etcd versions whose requested watch progress is ordered with the watch's events (the fix
# of etcd issue #15220 and its follow-up #17557); older ones may report a revision ahead of
# events not yet sent. Same thresholds Kubernetes uses for RequestWatchProgress.
_PROGRESS_FIXED = {(3, 4): 31, (3, 5): 13}


def _help(text: str) -> dict:
    return {"help": text}


@dataclasses.dataclass
class Options:
    """Options of the ``etcd`` store driver (config: ``store: {plugin: etcd, options: ...}``)."""

    endpoints: list[str] = dataclasses.field(
        default_factory=lambda: ["127.0.0.1:2379"],
        metadata=_help("etcd client endpoints, 'host:port' (an http:// or https:// scheme is "
                       "accepted); the driver fails over between them"))
    prefix: str = dataclasses.field(
        default="/pilothouse",
        metadata=_help("etcd key prefix of this cluster; clusters sharing one etcd need "
                       "prefixes that do not start with one another"))
    dial_timeout: float = dataclasses.field(
        default=5.0, metadata=_help("seconds open() waits for etcd to answer"))
    request_timeout: float = dataclasses.field(
        default=10.0,
        metadata=_help("seconds one operation may take, retries during a leader election "
                       "included, before it fails with StoreUnavailable"))
    ca_file: str | None = dataclasses.field(
        default=None, metadata=_help("PEM CA bundle; setting it (or https://) enables TLS"))
    cert_file: str | None = dataclasses.field(
        default=None, metadata=_help("PEM client certificate for mutual TLS"))
    key_file: str | None = dataclasses.field(
        default=None, metadata=_help("PEM private key of cert_file"))
    server_name: str | None = dataclasses.field(
        default=None, metadata=_help("TLS name to verify instead of the endpoint's host"))
    progress_requests: Literal["auto", "always", "never"] = dataclasses.field(
        default="auto",
        metadata=_help("ask etcd for watch progress on demand: 'auto' only on etcd versions "
                       "where that is safe (3.4.31+, 3.5.13+, 3.6+); otherwise progress comes "
                       "from etcd's --experimental-watch-progress-notify-interval"))

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("option 'endpoints' needs at least one 'host:port'")
        for endpoint in self.endpoints:
            _split_endpoint(endpoint)
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or len(self.prefix) < 2:
            raise ValueError(f"option 'prefix' must start with '/' and not end with '/', "
                             f"got {self.prefix!r}")
        if self.dial_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("options 'dial_timeout' and 'request_timeout' must be positive")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("options 'cert_file' and 'key_file' go together")


_ENDPOINT = re.compile(r"^(?:(?P<scheme>https?)://)?(?P<host>\[[^\]]+\]|[^:/\[\]]+):"
                       r"(?P<port>\d+)/?$")


def _split_endpoint(endpoint: str) -> tuple[str | None, str, int]:
    m = _ENDPOINT.match(endpoint.strip())
    if not m:
        raise ValueError(f"endpoint {endpoint!r} is not 'host:port'")
    return m["scheme"], m["host"].strip("[]"), int(m["port"])


def _prefix_end(key: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``key``."""
    stripped = key.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # etcd: every key >= key
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def _progress_requests_safe(version: str) -> bool:
    v = _version_tuple(version)
    if len(v) < 3:
        return False
    if v[:2] in _PROGRESS_FIXED:
        return v[2] >= _PROGRESS_FIXED[v[:2]]
    return v[:2] > (3, 5)


# --- error classification ----------------------------------------------------------------

# etcd errors for requests it refused before proposing them (so a write was not applied),
# plus "leader changed", which ReadIndex reads get during an election.
_SAFE_RETRY = ("no leader", "too many requests", "raft proposal dropped", "leader changed")
_UNKNOWN_OUTCOME = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED)


def _details(exc: aio.AioRpcError) -> str:
    return exc.details() or exc.code().name


def _is_compacted(exc: aio.AioRpcError) -> bool:
    return "required revision has been compacted" in _details(exc)


def _is_future(exc: aio.AioRpcError) -> bool:
    return "required revision is a future revision" in _details(exc)


def _retryable(exc: aio.AioRpcError, idempotent: bool) -> bool:
    """May the request be sent again? Always when etcd rejected it before proposing it;
    for reads and other idempotent requests on any transient failure too."""
    details = _details(exc)
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
                      grpc.StatusCode.RESOURCE_EXHAUSTED) and any(
            s in details for s in _SAFE_RETRY):
        # A write that got "leader changed" is not retried: its fate is not documented.
        return idempotent or "leader changed" not in details
    return idempotent and exc.code() in _UNKNOWN_OUTCOME


class _EOF:
    """Queue sentinel: the watch stream ended (or the store closed it)."""

    def __init__(self, error: BaseException | None = None, closed: bool = False):
        self.error, self.closed = error, closed


class _WatchStream:
    """One etcd Watch RPC carrying one watcher. A task reads it into a bounded queue so the
    consumer can wait with a timeout (cancelling a gRPC read would cancel the whole RPC)."""

    def __init__(self, method, request: pb.WatchRequest):
        self.call = method(metadata=_METADATA, wait_for_ready=True)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=64)
        self.created = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._pump(request))

    async def _pump(self, request: pb.WatchRequest) -> None:
        try:
            await self.call.write(request)
            while True:
                response = await self.call.read()
                if response is aio.EOF:
                    await self.queue.put(_EOF())
                    return
                if response.created:
                    self.created.set()
                await self.queue.put(response)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            await self.queue.put(_EOF(StoreUnavailable("etcd watch stream was cancelled")))
        except aio.AioRpcError as exc:
            await self.queue.put(_EOF(exc))
        except Exception as exc:  # surfaced to the consumer, which raises StoreError
            await self.queue.put(_EOF(exc))

    async def request_progress(self) -> None:
        if self.created.is_set() and not self.call.done():
            try:
                await self.call.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
            except (aio.AioRpcError, asyncio.InvalidStateError, grpc.RpcError):
                pass  # the pump sees the failure and the watch reconnects

    def close(self, store_closed: bool = False) -> None:
        self.task.cancel()
        self.call.cancel()
        if store_closed:
            while True:
                try:
                    self.queue.put_nowait(_EOF(closed=True))
                    break
                except asyncio.QueueFull:
                    self.queue.get_nowait()


class EtcdStore(Store):
    """A :class:`~pilothouse.interfaces.store.Store` on etcd v3 (3.4 or newer).

    Durability and replication are etcd's: a write returns once etcd has committed it to a
    quorum of members, each of which fsyncs its WAL. Reads are linearizable (etcd's default).
    """

    Options = Options

    def __init__(self, options: Options | None = None) -> None:
        self._opts = options if options is not None else Options()
        prefix = self._opts.prefix.encode()
        self._meta_key = prefix + b"/meta"
        self._data = prefix + b"/data"
        self._data_len = len(self._data)
        self._base = 0
        self._compacted_seen = 1  # highest etcd compaction revision seen (lower bound)
        self._channel: aio.Channel | None = None
        self._closed = False
        self._streams: set[_WatchStream] = set()
        self._server_version = ""
        self._manual_progress = False

    # -- lifecycle -------------------------------------------------------------------------

    def _target(self) -> tuple[str, str | None, bool]:
        """(gRPC target, TLS host name, tls?) for the configured endpoints."""
        parts = [_split_endpoint(e) for e in self._opts.endpoints]
        tls = bool(self._opts.ca_file) or any(scheme == "https" for scheme, _, _ in parts)
        v4, v6, names = [], [], []
        for _, host, port in parts:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                names.append(host)
                for family, _, _, _, sockaddr in socket.getaddrinfo(
                        host, port, type=socket.SOCK_STREAM):
                    (v4 if family == socket.AF_INET else v6).append(f"{sockaddr[0]}:{port}")
                continue
            (v4 if ip.version == 4 else v6).append(
                f"{host}:{port}" if ip.version == 4 else f"[{host}]:{port}")
        if v4 and v6:
            v6 = []  # one resolver scheme per channel; IPv4 wins when both are given
        addresses = list(dict.fromkeys(v4 or v6))
        scheme = "ipv4" if v4 else "ipv6"
        return f"{scheme}:{','.join(addresses)}", self._opts.server_name or (
            names[0] if names else None), tls

    def _credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_channel_credentials(read(self._opts.ca_file), read(self._opts.key_file),
                                            read(self._opts.cert_file))

    async def open(self) -> None:
        if self._channel is not None:
            return
        if self._closed:
            raise StoreUnavailable("this etcd store was closed; construct a new one")
        where = ", ".join(self._opts.endpoints)
        try:
            target, name, tls = await asyncio.get_running_loop().run_in_executor(
                None, self._target)
            credentials = self._credentials() if tls else None
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"etcd store: cannot use endpoints {where}: {exc}") from None
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ]
        if name and tls:
            options.append(("grpc.ssl_target_name_override", name))
        self._channel = (aio.secure_channel(target, credentials, options) if tls
                         else aio.insecure_channel(target, options))
        ch = self._channel
        self._rpc_range = ch.unary_unary("/etcdserverpb.KV/Range", pb.RangeRequest.SerializeToString,
                                         pb.RangeResponse.FromString)
        self._rpc_txn = ch.unary_unary("/etcdserverpb.KV/Txn", pb.TxnRequest.SerializeToString,
                                       pb.TxnResponse.FromString)
        self._rpc_compact = ch.unary_unary("/etcdserverpb.KV/Compact",
                                           pb.CompactionRequest.SerializeToString,
                                           pb.CompactionResponse.FromString)
        self._rpc_status = ch.unary_unary("/etcdserverpb.Maintenance/Status",
                                          pb.StatusRequest.SerializeToString,
                                          pb.StatusResponse.FromString)
        self._rpc_watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                                           pb.WatchRequest.SerializeToString,
                                           pb.WatchResponse.FromString)
        try:
            status = await self._call(self._rpc_status, pb.StatusRequest(), idempotent=True,
                                      timeout=self._opts.dial_timeout)
            self._server_version = status.version
            mode = self._opts.progress_requests
            self._manual_progress = mode == "always" or (
                mode == "auto" and _progress_requests_safe(status.version))
            self._base = await self._load_base()
            self._compacted_seen = self._base
            if not self._manual_progress:
                log.info("etcd %s at %s: watch progress (bookmarks) comes from etcd's "
                         "--experimental-watch-progress-notify-interval only; run etcd with "
                         "it at or below the API server's progress interval (e.g. 1s)",
                         status.version, where)
        except StoreError as exc:
            await self._channel.close()
            self._channel = None
            raise StoreUnavailable(
                f"etcd store: cannot use etcd at {where}: {exc}; check that etcd runs there "
                f"and that the TLS options match it") from None

    async def _load_base(self) -> int:
        """The etcd revision that is this store's revision 0: the create_revision of the
        meta key, which the first open of a prefix writes (exactly once, even when several
        API servers open the same prefix at the same time)."""
        found = await self._call(self._rpc_range, pb.RangeRequest(key=self._meta_key),
                                 idempotent=True, timeout=self._opts.dial_timeout)
        if found.kvs:
            return found.kvs[0].create_revision
        meta = json.dumps({"format": 1, "driver": f"pilothouse-store-etcd {_VERSION}",
                           "data": self._data.decode()}).encode()
        txn = pb.TxnRequest(
            compare=[pb.Compare(key=self._meta_key, target=pb.Compare.CREATE,
                                result=pb.Compare.EQUAL, create_revision=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=self._meta_key, value=meta))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=self._meta_key))])
        # Creating the meta key twice is harmless (the compare makes the second a read).
        resp = await self._call(self._rpc_txn, txn, idempotent=True,
                                timeout=self._opts.dial_timeout)
        if resp.succeeded:
            return resp.header.revision
        return resp.responses[0].response_range.kvs[0].create_revision

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream.close(store_closed=True)
        self._streams.clear()
        if self._channel is not None:
            await self._channel.close()
        await asyncio.sleep(0)

    @property
    def base_revision(self) -> int:
        """The etcd revision that is this store's revision 0 (after :meth:`open`)."""
        return self._base

    @property
    def server_version(self) -> str:
        """The etcd version the member answering :meth:`open` reported."""
        return self._server_version

    # -- plumbing --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the etcd store is closed")
        if self._channel is None:
            raise StoreUnavailable("the etcd store is not open; call open() first")

    async def _rpc(self, method, request, *, idempotent: bool, timeout: float | None = None):
        """One unary RPC, retried (see :func:`_retryable`) until ``timeout`` (default
        ``request_timeout``). The last gRPC failure leaves as ``AioRpcError``."""
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self._opts.request_timeout)
        delay = 0.01
        while True:
            try:
                return await method(request, timeout=max(deadline - loop.time(), 0.001),
                                    metadata=_METADATA, wait_for_ready=True)
            except aio.AioRpcError as exc:
                if self._closed:
                    raise StoreUnavailable("the etcd store is closed") from None
                if _retryable(exc, idempotent) and loop.time() + delay < deadline:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
                    continue
                raise
            except asyncio.CancelledError:
                if self._closed:  # close() cancels the channel's calls
                    raise StoreUnavailable("the etcd store is closed") from None
                raise

    async def _call(self, method, request, *, idempotent: bool, timeout: float | None = None):
        """:meth:`_rpc`, with every failure translated to a StoreError subclass."""
        try:
            return await self._rpc(method, request, idempotent=idempotent, timeout=timeout)
        except aio.AioRpcError as exc:
            raise self._error(exc) from None

    @staticmethod
    def _error(exc: aio.AioRpcError) -> StoreError:
        details = _details(exc)
        if exc.code() in _UNKNOWN_OUTCOME or any(s in details for s in _SAFE_RETRY):
            return StoreUnavailable(f"etcd: {details}")
        if "request is too large" in details or "larger than max" in details:
            return StoreError(f"etcd: {details} (raise etcd's --max-request-bytes)")
        return StoreError(f"etcd: {exc.code().name}: {details}")

    def _kv(self, kv: pb.KeyValue) -> KeyValue:
        return KeyValue(kv.key[self._data_len:].decode(), kv.value,
                        kv.create_revision - self._base, kv.mod_revision - self._base)

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str):
            raise StoreError(f"keys are str, got {type(key).__name__}")
        return self._data + key.encode()

    def _etcd_revision(self, revision: int) -> int:
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise StoreError(f"revision must be a non-negative integer, got {revision!r}")
        return revision + self._base if revision else 0

    async def _read(self, method, request, revision: int):
        """A read RPC at ``revision`` (ours), mapping etcd's compacted/future errors."""
        try:
            return await self._rpc(method, request, idempotent=True)
        except aio.AioRpcError as exc:
            if _is_compacted(exc):
                raise Compacted(revision, await self.compacted_revision()) from None
            if _is_future(exc):
                raise StoreError(f"revision {revision} is newer than the current revision "
                                 f"{await self.current_revision()}") from None
            raise self._error(exc) from None

    # -- reads -----------------------------------------------------------------------------

    async def current_revision(self) -> int:
        resp = await self._call(self._rpc_range,
                                pb.RangeRequest(key=self._meta_key, keys_only=True),
                                idempotent=True)
        return resp.header.revision - self._base

    async def compacted_revision(self) -> int:
        """etcd does not report its compaction revision directly, but a read at a revision
        fails exactly when that revision is below it. The driver remembers the highest
        compaction revision it has seen (compaction never goes back), checks it with one
        count-only read, and only when another client compacted further since, searches
        up to the current revision (binary search, ~log2(revisions) reads)."""
        known = self._compacted_seen  # at or below max(etcd's compaction, base)
        if await self._readable(known):
            return max(0, known - self._base)
        low = known  # unreadable
        high = (await self._rpc(self._rpc_range, pb.RangeRequest(
            key=self._meta_key, count_only=True), idempotent=True)).header.revision
        while high - low > 1:
            mid = (low + high) // 2
            if await self._readable(mid):
                high = mid
            else:
                low = mid
        self._compacted_seen = max(self._compacted_seen, high)
        return max(0, high - self._base)

    async def _readable(self, etcd_revision: int) -> bool:
        try:
            await self._rpc(self._rpc_range, pb.RangeRequest(
                key=self._meta_key, revision=etcd_revision, count_only=True), idempotent=True)
            return True
        except aio.AioRpcError as exc:
            if _is_compacted(exc):
                return False
            raise self._error(exc) from None

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        request = pb.RangeRequest(key=self._key(key), revision=self._etcd_revision(revision))
        resp = await self._read(self._rpc_range, request, revision)
        return self._kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> ListResult:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise StoreError(f"limit must be a non-negative integer, got {limit!r}")
        first = self._key(prefix)
        end = _prefix_end(first)
        at = self._etcd_revision(revision)
        start = self._key(start_after) + b"\x00" if start_after is not None else first
        if start >= end:  # start_after is past the prefix: nothing left, count them all
            resp = await self._read(self._rpc_range, pb.RangeRequest(
                key=first, range_end=end, revision=at, count_only=True), revision)
            page, count = pb.RangeResponse(), resp.count
        elif start <= first:
            resp = await self._read(self._rpc_range, pb.RangeRequest(
                key=first, range_end=end, revision=at, limit=limit), revision)
            page, count = resp, resp.count
        else:
            # One read-only transaction (one revision, one round trip): the page after
            # start_after, and how many keys of the prefix sort before it, for the count.
            txn = pb.TxnRequest(success=[
                pb.RequestOp(request_range=pb.RangeRequest(
                    key=start, range_end=end, revision=at, limit=limit)),
                pb.RequestOp(request_range=pb.RangeRequest(
                    key=first, range_end=start, revision=at, count_only=True))])
            resp = await self._read(self._rpc_txn, txn, revision)
            page = resp.responses[0].response_range
            count = page.count + resp.responses[1].response_range.count
        return ListResult(items=[self._kv(kv) for kv in page.kvs],
                          revision=revision or resp.header.revision - self._base,
                          more=page.more, count=count)

    # -- writes ----------------------------------------------------------------------------

    @staticmethod
    def _value(value: bytes) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise StoreError(f"values are bytes, got {type(value).__name__}")
        return bytes(value)

    def _guard(self, key: bytes, expected_revision: int) -> pb.Compare:
        if not isinstance(expected_revision, int) or expected_revision < 0:
            raise StoreError(
                f"expected_revision must be a non-negative integer, got {expected_revision!r}")
        if expected_revision == 0:  # unconditional, but the key must exist
            return pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.GREATER,
                              create_revision=0)
        return pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                          mod_revision=expected_revision + self._base)

    def _failed(self, key: str, expected: int, resp: pb.TxnResponse) -> StoreError:
        kvs = resp.responses[0].response_range.kvs
        if not kvs:
            return KeyNotFound(key)
        return RevisionConflict(key, expected, self._kv(kvs[0]))

    async def create(self, key: str, value: bytes) -> KeyValue:
        k, v = self._key(key), self._value(value)
        resp = await self._call(self._rpc_txn, pb.TxnRequest(
            compare=[pb.Compare(key=k, target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                                create_revision=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=v))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))]), idempotent=False)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            raise KeyExists(key, self._kv(kvs[0]) if kvs else None)
        revision = resp.header.revision - self._base
        return KeyValue(key, v, revision, revision)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        k, v = self._key(key), self._value(value)
        resp = await self._call(self._rpc_txn, pb.TxnRequest(
            compare=[self._guard(k, expected_revision)],
            # The keys-only read after the put gives the create_revision without echoing
            # the value back.
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=v)),
                     pb.RequestOp(request_range=pb.RangeRequest(key=k, keys_only=True))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))]), idempotent=False)
        if not resp.succeeded:
            raise self._failed(key, expected_revision, resp)
        kv = resp.responses[1].response_range.kvs[0]
        return KeyValue(key, v, kv.create_revision - self._base, kv.mod_revision - self._base)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        k = self._key(key)
        resp = await self._call(self._rpc_txn, pb.TxnRequest(
            compare=[self._guard(k, expected_revision)],
            success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k,
                                                                             prev_kv=True))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=k))]), idempotent=False)
        if not resp.succeeded:
            raise self._failed(key, expected_revision, resp)
        return self._kv(resp.responses[0].response_delete_range.prev_kvs[0])

    # -- compaction ------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        at = self._etcd_revision(revision)
        if at == 0:
            return
        try:
            # Idempotent, so retried like a read: compacting again to a revision is a no-op.
            await self._rpc(self._rpc_compact, pb.CompactionRequest(revision=at),
                            idempotent=True)
            self._compacted_seen = max(self._compacted_seen, at)
        except aio.AioRpcError as exc:
            if _is_compacted(exc):
                return
            if _is_future(exc):
                raise StoreError(f"cannot compact to {revision}: the current revision is "
                                 f"{await self.current_revision()}") from None
            raise self._error(exc) from None

    # -- watch -----------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int,
              progress_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        return self._watch(prefix, after_revision, progress_interval)

    def _event(self, ev: pb.Event, revision: int) -> WatchEvent | None:
        """Translate one etcd event; None when its previous state is needed but compacted."""
        prev = self._kv(ev.prev_kv) if ev.HasField("prev_kv") else None
        if ev.type == pb.Event.DELETE:
            if prev is None:
                return None
            return WatchEvent(EventType.DELETE, revision, None, prev)
        if prev is None and ev.kv.version != 1:
            return None  # an update whose old state etcd could no longer read
        return WatchEvent(EventType.PUT, revision, self._kv(ev.kv), prev)

    async def _watch(self, prefix: str, after_revision: int,
                     progress_interval: float | None) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return
        self._check_open()
        at = self._etcd_revision(after_revision) or self._base
        key = self._key(prefix)
        # A cheap read at after_revision checks it against compaction (Compacted from the
        # first __anext__) and the current revision, before any event is awaited.
        await self._read(self._rpc_range, pb.RangeRequest(
            key=self._meta_key, revision=at, count_only=True), after_revision)
        loop = asyncio.get_running_loop()
        interval = progress_interval if progress_interval and progress_interval > 0 else None
        seen = after_revision  # every matching write up to `seen` has been delivered
        last_yield = loop.time()
        failures_since = None  # loop time of the first failure since the last response
        delay = 0.05
        while not self._closed:
            # Start at `seen` itself, not seen + 1, and drop that revision: etcd then refuses
            # exactly when `seen` is older than the compaction, as the contract says.
            stream = _WatchStream(self._rpc_watch, pb.WatchRequest(
                create_request=pb.WatchCreateRequest(
                    key=key, range_end=_prefix_end(key), start_revision=seen + self._base,
                    progress_notify=interval is not None, prev_kv=True, fragment=True)))
            self._streams.add(stream)
            fragments: list[pb.Event] = []
            progress_asked = False
            try:
                while True:
                    timeout = None
                    # Timed PROGRESS only when nothing is waiting to be delivered.
                    if interval is not None and stream.queue.empty():
                        now = loop.time()
                        if (self._manual_progress and not progress_asked
                                and now >= last_yield + interval / 2):
                            progress_asked = True
                            await stream.request_progress()
                        if now >= last_yield + interval:
                            last_yield = now
                            progress_asked = False
                            yield WatchEvent(EventType.PROGRESS, seen)
                            continue
                        timeout = (last_yield + interval / 2 if self._manual_progress
                                   and not progress_asked else last_yield + interval) - now
                    try:
                        if timeout is None:
                            item = await stream.queue.get()
                        else:
                            item = await asyncio.wait_for(stream.queue.get(), timeout)
                    except TimeoutError:
                        continue
                    if isinstance(item, _EOF):
                        if item.closed or self._closed:
                            return
                        if item.error is None:
                            raise StoreUnavailable("etcd closed the watch stream")
                        if isinstance(item.error, (aio.AioRpcError, StoreUnavailable)):
                            raise item.error
                        raise StoreError(f"etcd watch failed: {item.error!r}")
                    failures_since, delay = None, 0.05
                    if item.created:
                        if item.canceled:
                            raise StoreError(f"etcd refused the watch: {item.cancel_reason}")
                        continue
                    if item.compact_revision:
                        self._compacted_seen = max(self._compacted_seen, item.compact_revision)
                        raise Compacted(seen, max(0, item.compact_revision - self._base))
                    if item.canceled:
                        raise StoreUnavailable(f"etcd cancelled the watch: "
                                               f"{item.cancel_reason or 'no reason given'}")
                    if item.fragment:
                        fragments.extend(item.events)
                        continue
                    events = fragments + list(item.events) if fragments else item.events
                    fragments = []
                    if not events:
                        # A progress notification: every matching write up to the header's
                        # revision has been sent on this stream before it.
                        revision = item.header.revision - self._base
                        if interval is not None and revision > seen:
                            seen = revision
                            last_yield = loop.time()
                            progress_asked = False
                            yield WatchEvent(EventType.PROGRESS, seen)
                        continue
                    for ev in events:
                        revision = ev.kv.mod_revision - self._base
                        if revision <= seen:
                            continue
                        event = self._event(ev, revision)
                        if event is None:
                            raise Compacted(seen, await self.compacted_revision())
                        seen = revision
                        last_yield = loop.time()
                        progress_asked = False
                        yield event
            except (aio.AioRpcError, StoreUnavailable) as exc:
                if self._closed:
                    return
                now = loop.time()
                failures_since = failures_since or now
                if isinstance(exc, aio.AioRpcError) and not _retryable(exc, True):
                    if _is_compacted(exc):
                        raise Compacted(seen, await self.compacted_revision()) from None
                    raise self._error(exc) from None
                if now - failures_since > self._opts.request_timeout:
                    raise StoreUnavailable(f"etcd watch lost and not re-established within "
                                           f"{self._opts.request_timeout}s: {exc}") from None
                log.debug("etcd watch on %r failed (%s); resuming after revision %d",
                          prefix, exc, seen)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                stream.close()
                self._streams.discard(stream)
