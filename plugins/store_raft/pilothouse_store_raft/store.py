"""The ``raft`` store driver: :class:`RaftStore` and its :class:`Options`.

Request path: a coroutine turns its call into an *op*, appends it to the pending list and
awaits a future. Pending ops are packed into *batches*; each batch is one raft log entry,
so concurrent writers share one replication round and one fdatasync per member (group
commit). At most ``max_inflight_batches`` batches are in flight; while they are, new ops
accumulate, so batches grow with load. A batch is resolved when this member applies it,
which happens only after raft committed it, i.e. after it is fsynced on a majority.

Reads are linearizable by going through the log: a read adds a *barrier* op to the next
batch and reads the local state once that batch is applied here. Every write acknowledged
before the read began was committed before the barrier, so it has been applied.

Batches carry an id; the state machine remembers the results of recent batch ids, so a
batch whose outcome is unknown after a leader change is simply submitted again: it takes
effect at most once and the caller gets the original result.

Request timeouts and stalled batches are found by one watchdog timer, armed at the earliest
moment either can be due, rather than by a timer per request.

Watches read the applied history until they are caught up, then attach to their prefix:
each time the tick thread hands applied entries to the loop, the new events are made into
:class:`WatchEvent` objects once and pushed to the attached watches whose prefix matches
(see :class:`~pilothouse.interfaces.store.WatchHub`); the others are not woken.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator

from pysyncobj import FAIL_REASON

from pilothouse.interfaces.store import (
    Compacted, EventType, KeyExists, KeyNotFound, KeyValue, ListResult, RevisionConflict,
    Store, StoreError, StoreUnavailable, WatchBuffer, WatchEvent, WatchHub)
from pilothouse_store_raft import _state as S
from pilothouse_store_raft._journal import write_file_durably
from pilothouse_store_raft._node import MemberConfig, RaftMember

__all__ = ["Options", "RaftStore", "default_data_dir"]

log = logging.getLogger(__name__)


def default_data_dir() -> str:
    """``$XDG_DATA_HOME/pilothouse/store``, or ``~/.local/share/pilothouse/store``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pilothouse", "store")


def _check_address(addr: str, what: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{what} {addr!r} must look like host:port")


@dataclasses.dataclass
class Options:
    """Options of the ``raft`` store (config: ``store: {plugin: raft, options: {...}}``)."""

    data_dir: str | None = dataclasses.field(default=None, metadata={"help": (
        "Directory holding this member's journal, snapshot and raft metadata. Default: "
        "$XDG_DATA_HOME/pilothouse/store, i.e. ~/.local/share/pilothouse/store. Each member "
        "needs its own directory.")})
    members: list[str] = dataclasses.field(default_factory=list, metadata={"help": (
        "host:port raft addresses of all members, this one included, identical on every "
        "member. Empty (default): a single member. Use 3 or 5 for high availability.")})
    self_address: str | None = dataclasses.field(default=None, metadata={"help": (
        "This member's raft address, one of 'members'. Required with more than one member; "
        "a single member defaults to 127.0.0.1 on a free port.")})
    bind_address: str | None = dataclasses.field(default=None, metadata={"help": (
        "host:port to listen on when it differs from self_address (NAT, 0.0.0.0).")})
    election_timeout: float = dataclasses.field(default=0.5, metadata={"help": (
        "Seconds without a heartbeat before a follower starts an election (randomized "
        "between this and twice this). Bounds how fast a new leader takes over.")})
    heartbeat_interval: float = dataclasses.field(default=0.05, metadata={"help": (
        "Seconds between leader heartbeats; must be under a third of election_timeout.")})
    request_timeout: float = dataclasses.field(default=10.0, metadata={"help": (
        "Seconds a request waits for a quorum before it fails with StoreUnavailable "
        "(a write's outcome is then unknown).")})
    snapshot_entries: int = dataclasses.field(default=10000, metadata={"help": (
        "Snapshot the state and truncate the raft log once it holds this many entries.")})
    snapshot_bytes: int = dataclasses.field(default=256 << 20, metadata={"help": (
        "Also snapshot once the raft log file grows beyond this many bytes.")})
    snapshot_interval: float = dataclasses.field(default=300.0, metadata={"help": (
        "Also snapshot when this many seconds passed since the last snapshot.")})
    max_batch_ops: int = dataclasses.field(default=1024, metadata={"help": (
        "Most requests packed into one raft entry.")})
    max_batch_bytes: int = dataclasses.field(default=8 << 20, metadata={"help": (
        "Most value bytes packed into one raft entry (a larger single value goes alone).")})
    max_value_bytes: int = dataclasses.field(default=16 << 20, metadata={"help": (
        "Largest value accepted; a larger one raises StoreError (the contract requires at "
        "least 1.5 MiB).")})
    max_inflight_batches: int = dataclasses.field(default=2, metadata={"help": (
        "Raft entries this member has in flight at once; further requests wait and are "
        "batched together.")})
    unsafe_no_fsync: bool = dataclasses.field(default=False, metadata={"help": (
        "Skip fdatasync (an acknowledged write can then be lost on power failure). For "
        "throwaway test clusters only.")})

    def __post_init__(self):
        for m in self.members:
            _check_address(m, "member")
        if len(set(self.members)) != len(self.members):
            raise ValueError("members lists an address twice")
        if self.self_address is not None:
            _check_address(self.self_address, "self_address")
        if self.bind_address is not None:
            _check_address(self.bind_address, "bind_address")
        if len(self.members) > 1:
            if self.self_address is None:
                raise ValueError("self_address is required when members lists more than "
                                 "one member")
            if self.self_address not in self.members:
                raise ValueError(f"self_address {self.self_address!r} is not one of members")
        elif len(self.members) == 1:
            if self.self_address not in (None, self.members[0]):
                raise ValueError(f"self_address {self.self_address!r} is not one of members")
        if self.election_timeout <= 0 or self.heartbeat_interval <= 0:
            raise ValueError("election_timeout and heartbeat_interval must be positive")
        if self.heartbeat_interval * 3 >= self.election_timeout:
            raise ValueError("heartbeat_interval must be under a third of election_timeout")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if self.max_value_bytes < 1_572_864:
            raise ValueError("max_value_bytes must be at least 1572864 (1.5 MiB)")
        if self.max_batch_ops < 1 or self.max_inflight_batches < 1 or self.max_batch_bytes < 1:
            raise ValueError("max_batch_ops, max_batch_bytes and max_inflight_batches must "
                             "be at least 1")
        if self.snapshot_entries < 2 or self.snapshot_interval <= 0 or self.snapshot_bytes < 1:
            raise ValueError("snapshot_entries must be at least 2 and snapshot_interval "
                             "positive")


MAX_KEY_BYTES = 3072


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise StoreError(f"keys are non-empty strings, got {key!r}")
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise StoreError(f"key of {len(key.encode())} bytes is longer than the "
                         f"{MAX_KEY_BYTES} allowed")


def _check_revision(name: str, revision: int) -> None:
    if revision < 0:
        raise StoreError(f"{name} must not be negative, got {revision}")


# KeyValue and WatchEvent are frozen dataclasses, whose __init__ sets every field through
# object.__setattr__. Results and events are made by the thousand per second on the event
# loop, so they are made here by setting the slots directly: the same objects (same class,
# fields, equality and hash) at about half the cost. Should either class ever change its
# fields or gain a __post_init__, its own constructor is used instead.
def _slot_setters(cls, names: tuple[str, ...]):
    if tuple(f.name for f in dataclasses.fields(cls)) != names or \
            hasattr(cls, "__post_init__"):
        return None
    return tuple(cls.__dict__[name].__set__ for name in names)


_KV_SET = _slot_setters(KeyValue, ("key", "value", "create_revision", "mod_revision"))
_EV_SET = _slot_setters(WatchEvent, ("type", "revision", "kv", "prev_kv"))

if _KV_SET is not None:
    def _make_kv(key, value, create_revision, mod_revision, _new=object.__new__,
                 _cls=KeyValue, _s=_KV_SET) -> KeyValue:
        kv = _new(_cls)
        _s[0](kv, key)
        _s[1](kv, value)
        _s[2](kv, create_revision)
        _s[3](kv, mod_revision)
        return kv
else:  # pragma: no cover - only if KeyValue changes
    _make_kv = KeyValue

if _EV_SET is not None:
    def _make_event(type_, revision, kv, prev_kv, _new=object.__new__, _cls=WatchEvent,
                    _s=_EV_SET) -> WatchEvent:
        ev = _new(_cls)
        _s[0](ev, type_)
        _s[1](ev, revision)
        _s[2](ev, kv)
        _s[3](ev, prev_kv)
        return ev
else:  # pragma: no cover - only if WatchEvent changes
    _make_event = WatchEvent


def _kv(t) -> KeyValue:
    return _make_kv(t[0], t[1], t[2], t[3])


_PUT, _DELETE = EventType.PUT, EventType.DELETE


def _event(rev: int, typ: int, kv, prev) -> WatchEvent:
    if typ == S.EV_PUT:
        return _make_event(_PUT, rev, _make_kv(*kv),
                           _make_kv(*prev) if prev is not None else None)
    return _make_event(_DELETE, rev, None, _make_kv(*prev))


#: Most events an attached watch holds for a consumer that does not take them; beyond that
#: it drops them and reads the history again when the consumer comes back.
MAX_PENDING_EVENTS = 4096


class _Batch:
    __slots__ = ("id", "ops", "futures", "deadlines", "attempt", "timer", "stall_at", "done")

    def __init__(self, ops: list, futures: list, deadlines: list):
        self.id = random.getrandbits(63)
        self.ops, self.futures, self.deadlines = tuple(ops), futures, deadlines
        self.attempt = 0
        self.timer: asyncio.TimerHandle | None = None  # a delayed retry
        self.stall_at = math.inf  # loop time by which an answer is overdue
        self.done = False


class RaftStore(Store):
    """The embedded store: a revisioned KV with CAS and watch, replicated by raft."""

    Options = Options

    def __init__(self, options: Options | None = None):
        self.options = options or Options()
        self._member: RaftMember | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_fd: int | None = None
        # (op, future, size, deadline) not yet in a batch, oldest first
        self._pending: list[tuple[tuple, asyncio.Future, int, float]] = []
        self._inflight = 0
        self._batches: dict[_Batch, None] = {}  # submitted, not finished, oldest first
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_at = math.inf
        # caught-up watches by prefix; events up to _dispatched were pushed to them
        self._watchers = WatchHub(MAX_PENDING_EVENTS)
        self._dispatched = 0
        # (batch, attempt, result, fail_reason) from the tick thread, drained by _wake
        self._results: collections.deque = collections.deque()
        self._wake_pending = False
        self._closed = True
        self._opened = False
        self._alone = False  # a lone member serves linearizable reads locally
        self._stall_timeout = 4 * self.options.election_timeout + 1.0

    # ------------------------------------------------------------------ lifecycle

    @property
    def data_dir(self) -> str:
        return os.path.abspath(os.path.expanduser(self.options.data_dir or default_data_dir()))

    @property
    def member(self) -> RaftMember | None:
        """The raft member (for tests, benchmarks and status pages)."""
        return self._member

    async def open(self) -> None:
        if self._opened:
            raise StoreError("store already opened")
        self._opened = True
        self._loop = asyncio.get_running_loop()
        opts = self.options
        data_dir = self.data_dir
        members = list(opts.members)
        self_address = opts.self_address or (members[0] if members else "127.0.0.1:0")
        if not members:
            members = [self_address]
        try:
            os.makedirs(data_dir, exist_ok=True)
            self._lock_fd = os.open(os.path.join(data_dir, "LOCK"), os.O_RDWR | os.O_CREAT,
                                    0o600)
        except OSError as exc:
            raise StoreUnavailable(f"raft store: cannot use data_dir {data_dir!r}: "
                                   f"{exc.strerror}; set store.options.data_dir to a "
                                   f"writable directory") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreUnavailable(f"raft store: data_dir {data_dir!r} is in use by "
                                       f"another running store") from None
            raise StoreUnavailable(f"raft store: cannot lock {data_dir!r}: "
                                   f"{exc.strerror}") from None
        try:
            await self._loop.run_in_executor(None, self._check_cluster_file, data_dir,
                                             members, self_address)
            cfg = MemberConfig(
                data_dir=data_dir, self_address=self_address, members=members,
                bind_address=opts.bind_address, election_timeout=opts.election_timeout,
                heartbeat_interval=opts.heartbeat_interval,
                snapshot_entries=opts.snapshot_entries, snapshot_bytes=opts.snapshot_bytes,
                snapshot_interval=opts.snapshot_interval, fsync=not opts.unsafe_no_fsync,
                max_entry_bytes=max(opts.max_value_bytes, opts.max_batch_bytes)
                + opts.max_batch_ops * (MAX_KEY_BYTES + 256))
            member = RaftMember(cfg, self._applied_threadsafe)
            await self._loop.run_in_executor(None, member.start)
        except StoreUnavailable:
            self._release_lock()
            raise
        except Exception as exc:
            self._release_lock()
            raise StoreUnavailable(f"raft store: cannot start member {self_address} with "
                                   f"data_dir {data_dir!r}: {type(exc).__name__}: {exc}"
                                   ) from None
        with member.state.lock:
            self._dispatched = member.state.rev
        self._member = member
        self._closed = False
        if len(members) == 1 and not member.alone:  # elects itself within ~30 ms
            deadline = time.monotonic() + 5.0
            while not member.is_leader() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            # Once this barrier is applied, everything recovered from the journal is too;
            # from then on every acknowledged write has been applied here before it was
            # acknowledged, and no other member can ever lead: reads need no barrier.
            await self._barrier()
        # A lone member on the fast path applied everything it recovered before start()
        # returned.
        self._alone = len(members) == 1

    def _check_cluster_file(self, data_dir: str, members: list[str], self_address: str):
        """Refuse to open a data dir written by a member of a different cluster layout."""
        path = os.path.join(data_dir, "cluster.json")
        want = {"members": sorted(members), "self_address": self_address}
        try:
            with open(path) as f:
                have = json.load(f)
        except FileNotFoundError:
            write_file_durably(path, json.dumps(want, indent=1).encode())
            return
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"raft store: cannot read {path}: {exc}") from None
        if have != want and len(members) == 1 and len(have.get("members", ())) == 1:
            # A lone member may change its address: nothing else refers to it.
            write_file_durably(path, json.dumps(want, indent=1).encode())
        elif have != want:
            raise StoreUnavailable(
                f"raft store: {data_dir!r} belongs to member {have.get('self_address')} of "
                f"cluster {have.get('members')}, but the options say member {self_address} "
                f"of {sorted(members)}; membership changes are not supported: use a new "
                f"data_dir (and a new cluster) or restore the old options")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    async def close(self) -> None:
        if self._closed:
            if self._lock_fd is not None and self._member is None:
                self._release_lock()
            return
        self._closed = True
        self._fail_waiting(StoreUnavailable("raft store closed"))
        self._wake()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog, self._watchdog_at = None, math.inf
        self._watchers.wake_all()
        member, self._member = self._member, None
        if member is not None:
            await self._loop.run_in_executor(None, member.stop)
        self._release_lock()

    def _fail_waiting(self, exc: StoreError) -> None:
        for _op, fut, _size, _deadline in self._pending:
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for batch in list(self._batches):
            self._finish(batch, None, exc)

    # ------------------------------------------------------------------ notifications

    def _applied_threadsafe(self) -> None:
        """Called by the member (at most once a tick) after it applied entries or queued
        results: hand them to the loop. One call_soon_threadsafe covers everything that
        arrives until the loop runs _wake (each costs a write to the loop's self-pipe)."""
        if self._wake_pending or self._loop is None:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # loop closed
            pass

    def _wake(self) -> None:
        self._wake_pending = False  # first: a result queued from now on schedules again
        results = self._results
        while results:
            self._on_result(*results.popleft())
        member = self._member
        if member is None:
            return
        if member.fatal is not None and not self._closed:
            self._fail_waiting(StoreUnavailable(f"raft store member stopped: {member.fatal}"))
        self._dispatch(member)

    # ------------------------------------------------------------------ watch fan-out

    def _dispatch(self, member: RaftMember) -> None:
        """Push the events applied since the last call to the attached watches (loop
        thread; also called by a watch that starts ahead of the last hand-over)."""
        state = member.state
        with state.lock:
            rev = state.rev
            if rev == self._dispatched:
                return
            start = self._dispatched - state.compact_rev
            self._dispatched = rev
            if not self._watchers:
                return
            new = state.events[start:] if start >= 0 else None
        if new is None:  # a snapshot from the leader replaced history not yet handed over
            self._watchers.drop_all()
            return
        push = self._watchers.push
        for rev, typ, kv, prev in new:
            # the event is made only if a watch's prefix matches, once for all of them
            push(kv[0] if kv is not None else prev[0], _event, rev, typ, kv, prev)

    # ------------------------------------------------------------------ batching

    def _check_open(self) -> RaftMember:
        member = self._member
        if self._closed or member is None:
            raise StoreUnavailable("raft store is not open")
        if member.fatal is not None:
            raise StoreUnavailable(f"raft store member stopped: {member.fatal}")
        return member

    async def _run(self, op: tuple, size: int = 0):
        self._check_open()
        loop = self._loop
        fut = loop.create_future()
        now = loop.time()
        self._pending.append((op, fut, size, now + self.options.request_timeout))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._watchdog is None:
            # a stall is due first (its timeout is shorter), so this need not be re-armed
            # when the op's batch is submitted
            self._arm_watchdog(now + min(self.options.request_timeout, self._stall_timeout))
        # The watchdog fails fut when its deadline passes; a cancelled caller cancels it.
        # Either way the batch machinery then skips it.
        return await fut

    def _arm_watchdog(self, when: float) -> None:
        if when >= self._watchdog_at:
            return
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog_at = when
        self._watchdog = self._loop.call_at(when, self._on_watchdog)

    def _on_watchdog(self) -> None:
        """Fail requests past their deadline, resubmit stalled batches, re-arm."""
        self._watchdog, self._watchdog_at = None, math.inf
        if self._closed:
            return
        now = self._loop.time()
        due = math.inf
        for batch in list(self._batches):
            for fut, deadline in zip(batch.futures, batch.deadlines):
                if fut.done():
                    continue
                if deadline > now:  # later ops of the batch are younger
                    due = min(due, deadline)
                    break
                fut.set_exception(self._timeout_error())
            if batch.done:
                continue
            if batch.stall_at <= now:
                # No answer at all (e.g. the entry was forwarded to a leader that died after
                # appending it): submit again; the batch id makes that safe.
                self._retry(batch)
            if not batch.done:
                due = min(due, batch.stall_at)
        for _op, fut, _size, deadline in self._pending:
            if fut.done():
                continue
            if deadline > now:
                due = min(due, deadline)
                break
            fut.set_exception(self._timeout_error())
        if due < math.inf:
            self._arm_watchdog(due)

    def _timeout_error(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"raft store: no quorum within {self.options.request_timeout} s (leader "
            f"{self._leader_name()}); the outcome of a write is unknown")

    def _leader_name(self) -> str:
        st = self._member.status() if self._member else {}
        return st.get("leader") or "unknown"

    def _flush(self) -> None:
        self._flush_scheduled = False
        opts = self.options
        while self._pending and self._inflight < opts.max_inflight_batches and not self._closed:
            ops, futs, deadlines, size, n = [], [], [], 0, 0
            for op, fut, sz, deadline in self._pending:
                if n and (n >= opts.max_batch_ops or size + sz > opts.max_batch_bytes):
                    break
                n += 1
                size += sz
                if fut.done():  # caller gave up (timeout, cancellation)
                    continue
                ops.append(op)
                futs.append(fut)
                deadlines.append(deadline)
            del self._pending[:n]
            if ops:
                self._inflight += 1
                batch = _Batch(ops, futs, deadlines)
                self._batches[batch] = None
                self._submit(batch)

    def _submit(self, batch: _Batch) -> None:
        member = self._member
        if member is None or self._closed:
            self._finish(batch, None)
            return
        batch.attempt += 1
        attempt = batch.attempt
        results = self._results

        def done(result, error):  # tick thread, or here when the command was not queued
            results.append((batch, attempt, result, error))
            member.changed()

        batch.timer = None
        batch.stall_at = stall_at = self._loop.time() + self._stall_timeout
        self._arm_watchdog(stall_at)
        # pickled by the member: on a lone member's writer thread, off the event loop
        member.submit(None, done, (batch.id, batch.ops))

    def _on_result(self, batch: _Batch, attempt: int, result, error) -> None:
        if batch.done or batch.attempt != attempt:
            return
        batch.stall_at = math.inf
        if error == FAIL_REASON.SUCCESS:
            self._finish(batch, result)
            return
        # MISSING_LEADER, QUEUE_FULL: never appended. DISCARDED, NOT_LEADER: not applied.
        # LEADER_CHANGED, UNKNOWN_OUTCOME: maybe applied. All are safe to resubmit.
        delay = 0.0 if error in (FAIL_REASON.DISCARDED, FAIL_REASON.LEADER_CHANGED) else 0.02
        batch.timer = self._loop.call_later(delay, self._retry, batch)

    def _retry(self, batch: _Batch) -> None:
        if batch.done:
            return
        if self._closed or all(f.done() for f in batch.futures):
            self._finish(batch, None)
            return
        self._submit(batch)

    def _finish(self, batch: _Batch, results, exc: StoreError | None = None) -> None:
        if batch.done:
            return
        batch.done = True
        self._batches.pop(batch, None)
        if batch.timer is not None:
            batch.timer.cancel()
        self._inflight -= 1
        for i, fut in enumerate(batch.futures):
            if fut.done():
                continue
            if results is None:
                fut.set_exception(exc or StoreUnavailable("raft store closed"))
            else:
                fut.set_result(results[i])
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def _barrier(self) -> None:
        if self._alone:
            self._check_open()
            return
        await self._run((S.OP_BARRIER,))

    # ------------------------------------------------------------------ reads

    async def current_revision(self) -> int:
        await self._barrier()
        return self._state().rev

    def _state(self) -> S.KVState:
        return self._check_open().state

    async def _at(self, revision: int) -> S.KVState:
        """Make the local state current for a read (at any ``revision``: a read at a past
        revision must also see a compaction that completed before it began)."""
        _check_revision("revision", revision)
        await self._barrier()
        return self._state()

    def _check_rev(self, state: S.KVState, revision: int) -> None:
        problem = state.check_revision(revision)
        if problem == "compacted":
            raise Compacted(revision, state.compact_rev)
        if problem == "future":
            raise StoreError(f"revision {revision} is newer than the current revision "
                             f"{state.rev}")

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        _check_key(key)
        state = await self._at(revision)
        with state.lock:
            if revision:
                self._check_rev(state, revision)
            kv = state.get(key, revision)
        return _kv(kv) if kv is not None else None

    async def list(self, prefix: str, *, revision: int = 0, limit: int = 0,
                   start_after: str | None = None) -> ListResult:
        if limit < 0:
            raise StoreError(f"limit must not be negative, got {limit}")
        state = await self._at(revision)
        with state.lock:
            if revision:
                self._check_rev(state, revision)
            at = revision or state.rev
            items, more, count = state.list(prefix, revision, limit, start_after)
        return ListResult([_kv(t) for t in items], at, more, count)

    async def compacted_revision(self) -> int:
        await self._barrier()
        return self._state().compact_rev

    # ------------------------------------------------------------------ writes

    def _check_value(self, value) -> bytes:
        value = bytes(value)
        if len(value) > self.options.max_value_bytes:
            raise StoreError(f"value of {len(value)} bytes is larger than the "
                             f"{self.options.max_value_bytes} this store accepts "
                             f"(option max_value_bytes)")
        return value

    async def create(self, key: str, value: bytes) -> KeyValue:
        _check_key(key)
        value = self._check_value(value)
        res = await self._run((S.OP_CREATE, key, value), len(value))
        if res[0] == S.OK:
            return _make_kv(key, value, res[1], res[2])
        raise KeyExists(key, _kv(res[1]))

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        _check_key(key)
        _check_revision("expected_revision", expected_revision)
        value = self._check_value(value)
        res = await self._run((S.OP_UPDATE, key, value, expected_revision), len(value))
        if res[0] == S.OK:
            return _make_kv(key, value, res[1], res[2])
        raise self._error(key, res)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        _check_key(key)
        _check_revision("expected_revision", expected_revision)
        res = await self._run((S.OP_DELETE, key, expected_revision))
        if res[0] == S.OK:
            return _kv(res[1])
        raise self._error(key, res)

    @staticmethod
    def _error(key: str, res) -> StoreError:
        if res[0] == S.ERR_NOT_FOUND:
            return KeyNotFound(key)
        if res[0] == S.ERR_CONFLICT:
            return RevisionConflict(key, res[1], _kv(res[2]))
        return StoreError(f"unexpected result {res!r}")

    async def compact(self, revision: int) -> None:
        _check_revision("revision", revision)
        res = await self._run((S.OP_COMPACT, revision))
        if res[0] == S.ERR_BAD_COMPACT:
            raise StoreError(f"cannot compact to revision {revision}: newer than the "
                             f"current revision {res[1]}")

    # ------------------------------------------------------------------ watch

    def watch(self, prefix: str, *, after_revision: int,
              progress_interval: float | None = None) -> AsyncIterator[WatchEvent]:
        return self._watch(prefix, after_revision, progress_interval)

    async def _watch(self, prefix: str, after_revision: int,
                     progress_interval: float | None) -> AsyncIterator[WatchEvent]:
        state = self._state()
        _check_revision("after_revision", after_revision)
        if after_revision > state.rev:
            await self._barrier()
        with state.lock:
            if after_revision < state.compact_rev:
                raise Compacted(after_revision, state.compact_rev)
            if after_revision > state.rev:
                raise StoreError(f"after_revision {after_revision} is newer than the current "
                                 f"revision {state.rev}")
        watcher = WatchBuffer(self._loop, prefix, progress_interval)
        seen = after_revision  # every matching event up to here has been delivered
        try:
            while not self._closed:
                pending = watcher.pending
                if pending:
                    event = pending.popleft()
                    seen = event.revision
                    watcher.delivered = True
                    yield event
                    continue
                if not watcher.live:
                    member = self._member
                    if member is None:
                        return
                    if seen > self._dispatched:  # applied, not yet handed to the loop
                        self._dispatch(member)
                    # a snapshot install replaces the content, not the object
                    state = member.state
                    with state.lock:
                        if seen < state.compact_rev:
                            raise Compacted(seen, state.compact_rev)
                        batch = state.events_after(seen, min(1000, self._dispatched - seen))
                    if batch:
                        for rev, typ, kv, prev in batch:
                            seen = rev
                            key = kv[0] if kv is not None else prev[0]
                            if key.startswith(prefix):
                                watcher.delivered = True
                                yield _event(rev, typ, kv, prev)
                        continue
                    self._watchers.attach(watcher)  # seen == _dispatched: the rest is pushed to it
                elif seen < self._dispatched:
                    seen = self._dispatched  # later writes elsewhere: nothing for this watch
                progress = await watcher.idle(seen)
                if progress is not None:
                    yield progress
        finally:
            watcher.stop()
            self._watchers.detach(watcher)
