"""One raft member: pysyncobj on its own thread, with the durable journal and snapshots.

:class:`RaftMember` owns a thread (the *tick thread*) that constructs the pysyncobj node
and runs its event loop; every pysyncobj call except :meth:`RaftMember.submit` (which only
enqueues) happens on that thread, and so does every mutation of the :class:`KVState`.

A member without peers runs pysyncobj only to recover (snapshot, journal, self-election);
then the same thread becomes a plain *writer*: it appends the submitted batches to the
journal itself, in pysyncobj's entry and snapshot formats, with one fdatasync per round
(see :meth:`RaftMember._serve_alone`). There is nobody to replicate to, so pysyncobj's
ticks, command queue and poller would only cost CPU and latency.

pysyncobj has no public way to pass a journal object. ``SyncObjConf.journalFile`` is only
ever handed to ``pysyncobj.syncobj.createJournal``; we wrap that function once so that a
:class:`DurableJournal` passed as ``journalFile`` is used as is. Any other value takes the
original path, so other users of pysyncobj in the same process are not affected.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable

import pysyncobj.syncobj as _syncobj
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.transport import TCPTransport

from pilothouse_store_raft._journal import DurableJournal, fsync_dir
from pilothouse_store_raft._state import KVState

log = logging.getLogger(__name__)

_original_create_journal = _syncobj.createJournal


def _create_journal(journal_file=None):
    if isinstance(journal_file, DurableJournal):
        return journal_file
    return _original_create_journal(journal_file)


_syncobj.createJournal = _create_journal

# Snapshot file: magic, crc32 of the rest, length of the raft metadata, raft metadata
# (pickled), state machine (KVState.dump).
_SNAP_MAGIC = b"PHRAFTS1"

# pysyncobj's _COMMAND_TYPE.REGULAR, the first byte of a command in its queue and log
_REGULAR_COMMAND = bytes([_syncobj._COMMAND_TYPE.REGULAR])


class _DurableTransport(TCPTransport):
    """TCP transport that makes the journal stable before a follower acknowledges, and
    keeps idle connections alive.

    Followers never talk to each other between elections, and pysyncobj checks its idle
    timeout (``connectionTimeout``) lazily, when it next sends: the first message on a
    connection idle for longer than that closes the connection and is dropped. That first
    message is the vote request after a leader crash, so elections took two or three
    rounds (about 1.5 s instead of 0.6 s). A small ping (a message type pysyncobj ignores)
    on every connection keeps them fresh.
    """

    _PING = {"type": "pilothouse_ping"}

    def __init__(self, syncObj, selfNode, otherNodes):
        super().__init__(syncObj, selfNode, otherNodes)
        self._ping_interval = syncObj.conf.connectionTimeout / 4
        self._next_ping = 0.0

    def send(self, node, message):
        if message.get("type") == "next_node_idx":
            self._syncObj._journal_sync()
        return super().send(node, message)

    def _onTick(self):
        super()._onTick()
        now = time.monotonic()
        if now >= self._next_ping:
            self._next_ping = now + self._ping_interval
            for node in list(self._nodes):
                super().send(node, self._PING)


class _WakeablePoller:
    """pysyncobj's poller, wrapped so that the node knows when its tick thread sleeps.

    Submitters wake the tick thread (one byte on the node's wake pipe) only while it is
    blocked in poll, instead of once per command as pysyncobj's own pipe notifier does.
    The handshake is lock-free under the GIL: a submitter queues its command, sets
    ``_submitted`` and then reads ``_idle``; the tick thread sets ``_idle`` and then reads
    ``_submitted``. Either the submitter sees the thread idle and writes the pipe, or the
    thread sees the command and does not block.
    """

    def __init__(self, inner, node: _Node):
        self._inner, self._node = inner, node
        self.subscribe = inner.subscribe
        self.unsubscribe = inner.unsubscribe

    def poll(self, timeout):
        node = self._node
        node._wake_sent = False
        node._idle = True
        if node._submitted or node._commit_pending:
            timeout = 0.0
        elif timeout and node._lone and node._isLeader():
            timeout = _LONE_IDLE_WAIT
        try:
            self._inner.poll(timeout)
        finally:
            node._idle = False


# A lone leader has no heartbeats to send and no one to hear from: between writes its tick
# thread only wakes for pysyncobj's timers (one-second timer, time-based log compaction).
_LONE_IDLE_WAIT = 0.1


class _Node(SyncObj):
    def __init__(self, member: RaftMember, self_address, others, conf):
        # Every attribute is set before SyncObj.__init__, which records the names present
        # then as "not replicated state"; anything set later would go into snapshots.
        self._member = member
        self._lone = not others
        self._snapshot_forced = False
        self._commands = None
        self._idle = False  # the tick thread is blocked in poll (or about to be)
        self._submitted = False  # a command was queued since the tick began
        self._commit_pending = False  # lone member: entries synced, to commit next tick
        self._wake_sent = False
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            super().__init__(self_address, others, conf, transportClass=_DurableTransport)
        except BaseException:
            self._close_wake_pipe()
            raise
        # The driver queues its commands directly (see submit); pysyncobj's pipe notifier
        # is then only reached from _applyCommand on the tick thread itself (commands
        # forwarded by followers), where a notification would only cause a spurious tick.
        self._commands = self._SyncObj__commandsQueue
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify = _no_notification
        self._poller.subscribe(self._wake_r, self._drain_wake_pipe, POLL_EVENT_TYPE.READ)
        self._poller = _WakeablePoller(self._poller, self)
        # Group commit on the leader: after the tick appended (and sent) its commands and
        # before it waits for acknowledgements, one fdatasync covers all of them.
        self.addOnTickCallback(self._journal_sync)

    # -- any thread -------------------------------------------------------------------

    def submit(self, command: bytes, callback) -> None:
        """Queue a regular command for the tick thread; wake it only if it sleeps."""
        try:
            self._commands.put_nowait((_REGULAR_COMMAND + command, callback))
        except queue.Full:
            callback(None, FAIL_REASON.QUEUE_FULL)
            return
        self._submitted = True
        if self._idle and not self._wake_sent:
            self.wake()

    def wake(self) -> None:
        """Make the tick thread's current or next poll return at once."""
        self._wake_sent = True
        with self._wake_lock:
            if self._wake_w is not None:
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:  # already full of wake-ups
                    pass

    # -- tick thread ------------------------------------------------------------------

    def _onTick(self, timeToWait=0.0):
        self._submitted = False  # before pysyncobj takes the queued commands
        self._commit_pending = False
        super()._onTick(timeToWait)

    def _drain_wake_pipe(self, _fd, _event):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _journal_sync(self):
        journal = self._member.journal
        journal.sync()
        # pysyncobj counts entries and time only; large entries need a size bound too.
        if journal.size > self._member.config.snapshot_bytes and not self._snapshot_forced:
            self._snapshot_forced = True
            self.forceLogCompaction()
        elif journal.size <= self._member.config.snapshot_bytes:
            self._snapshot_forced = False
        # pysyncobj advances the commit index at the start of a tick. A lone member gets
        # no acknowledgement that would end the tick's wait, so it does not wait while it
        # has appended entries that are not committed yet.
        if self._lone and self.raftCommitIndex < journal[-1][1] and self._isLeader():
            self._commit_pending = True
        self._member.tick_done()

    def _close_wake_pipe(self):
        with self._wake_lock:
            if self._wake_w is not None:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = None

    def _doDestroy(self):
        super()._doDestroy()
        if self._wake_r is not None:
            self._poller.unsubscribe(self._wake_r)
        self._close_wake_pipe()

    @replicated
    def apply_batch(self, batch_id, ops):
        return self._member.on_apply(batch_id, ops)


def _no_notification():
    pass


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of ``data`` at the file position, or at ``offset`` (then the position
    stays where it was)."""
    view = memoryview(data)
    while view:
        if offset is None:
            n = os.write(fd, view)
        else:
            n = os.pwrite(fd, view, offset)
            offset += n
        view = view[n:]


# Wakes a lone member's writer without a request (stop, force_snapshot).
_WAKE = object()


class MemberConfig:
    """Everything a member needs, resolved from the driver's options."""

    def __init__(self, *, data_dir: str, self_address: str, members: list[str],
                 bind_address: str | None, election_timeout: float,
                 heartbeat_interval: float, snapshot_entries: int,
                 snapshot_bytes: int = 256 << 20,
                 snapshot_interval: float, fsync: bool = True,
                 max_entry_bytes: int = 64 << 20):
        self.data_dir = data_dir
        self.self_address = self_address
        self.others = [m for m in members if m != self_address]
        self.bind_address = bind_address
        self.election_timeout = election_timeout
        self.heartbeat_interval = heartbeat_interval
        self.snapshot_entries = snapshot_entries
        self.snapshot_bytes = snapshot_bytes
        self.snapshot_interval = snapshot_interval
        self.fsync = fsync
        self.max_entry_bytes = max_entry_bytes

    def syncobj_conf(self, member: RaftMember) -> SyncObjConf:
        if self.others:
            heartbeat = self.heartbeat_interval
            emin, emax = self.election_timeout, 2 * self.election_timeout
        else:  # alone: no one to wait for, elect ourselves at once on start
            heartbeat, emin, emax = 0.005, 0.02, 0.03
        return SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,  # send at once; the driver batches writes itself
            appendEntriesPeriod=heartbeat,
            raftMinTimeout=emin,
            raftMaxTimeout=emax,
            leaderFallbackTimeout=emax,
            connectionTimeout=max(emax, 2.0),
            connectionRetryTime=0.2,
            # pysyncobj splits an entry at least this large into chunks, and its chunking
            # mislabels the last chunk for some sizes: keep every entry below the limit.
            # The limit also bounds one catch-up message to a lagging follower.
            appendEntriesBatchSizeBytes=2 * self.max_entry_bytes,
            sendBufferSize=1 << 21,
            recvBufferSize=1 << 21,
            commandsQueueSize=100000,
            commandsWaitLeader=True,
            journalFile=member.journal,
            fullDumpFile=os.path.join(self.data_dir, "snapshot"),
            serializer=member.write_snapshot,
            deserializer=member.read_snapshot,
            logCompactionMinEntries=max(2, self.snapshot_entries),
            logCompactionMinTime=self.snapshot_interval,
            useFork=False,
            dynamicMembershipChange=False,
            bindAddress=self.bind_address,
            bindRetryTime=0.1,
            maxBindRetries=30,
            onStateChanged=member.on_state_changed,
        )


class RaftMember:
    """A raft member hosting one :class:`KVState`. Thread-safe: start, stop, submit,
    status; everything else runs on the tick thread."""

    #: A member without peers writes its journal directly once it has recovered (the
    #: single-member fast path). Tests turn it off to write data directories the way a
    #: lone member without the fast path does.
    single_member_fast_path = True

    def __init__(self, config: MemberConfig, on_applied: Callable[[], None]):
        self.config = config
        self.state = KVState()
        self.journal: DurableJournal | None = None
        self._on_applied = on_applied
        self._node: _Node | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.batch_func_id: int | None = None
        self.snapshots_written = 0
        self.snapshots_loaded = 0  # at start-up or received from the leader
        self.fatal: BaseException | None = None  # set when the member had to stop
        self._tick_ident: int | None = None
        self._changed = False  # applied or answered something since the last notification
        # single-member fast path (see _serve_alone)
        self.alone = False  # set (for good) before start() returns
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._term = 0
        self._last_index = 0  # last entry in the journal, all of it applied
        self._cluster = None  # pysyncobj's node set, as its snapshots record it
        self._snapshot_requested = False
        self._snapshot_time = 0.0  # monotonic time of the last snapshot (or attempt)
        self._snapshot_entry: int | None = None  # "prev" index of the last snapshot
        self._snapshot_retry_at = 0.0

    # -- lifecycle (any thread) ------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Recover from disk, bind, and run the first tick (which applies everything the
        journal says is committed). Blocks; call it off the event loop."""
        d = self.config.data_dir
        self.journal = DurableJournal(os.path.join(d, "raft.journal"),
                                      os.path.join(d, "raft.meta"), fsync=self.config.fsync)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"raft-{self.config.self_address}")
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise RuntimeError("raft member did not start in time")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def stop(self) -> None:
        self._stop.set()
        self._requests.put(_WAKE)
        node = self._node
        if node is not None:
            node.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def submit(self, blob: bytes | None, callback: Callable,
               batch: tuple | None = None) -> None:
        """Hand a pickled ``apply_batch`` command to raft (forwarded to the leader when
        this member is a follower). ``callback(result, fail_reason)`` runs on the tick
        thread once the entry is applied here, or with a failure (on the calling thread
        if the command could not be queued); it should only record the outcome and call
        :meth:`changed`. ``batch``, the unpickled ``(batch_id, ops)``, saves a lone
        member from unpickling ``blob`` again; with ``batch``, ``blob`` may be None: it is
        pickled here, or by a lone member's writer thread, off the caller's thread."""
        if self.alone:
            if self.fatal is not None or self._stop.is_set():
                callback(None, FAIL_REASON.MISSING_LEADER)
                return
            self._requests.put((blob, batch, callback))
            return
        if blob is None:
            blob = self.command(batch)
        node = self._node
        if node is None:
            callback(None, FAIL_REASON.MISSING_LEADER)
            return
        node.submit(blob, callback)

    def command(self, batch: tuple) -> bytes:
        """The pickled ``apply_batch`` command of ``batch`` (``(batch_id, ops)``): the
        payload of its raft log entry."""
        return pickle.dumps((self.batch_func_id, batch), protocol=5)

    def changed(self) -> None:
        """Something the driver waits for happened (an entry applied, a submit callback
        ran). On the tick thread, ``on_applied`` is called once at the end of the tick, so
        a tick that applies many entries hands them to the event loop with one wake-up."""
        if threading.get_ident() == self._tick_ident:
            self._changed = True
        else:
            self._on_applied()

    def tick_done(self) -> None:
        """Tick thread, before it waits: report what the tick applied."""
        if self._changed:
            self._changed = False
            self._on_applied()

    def status(self) -> dict:
        node = self._node
        if node is None:
            return {"state": "stopped"}
        if self.alone:
            return {"self": self.config.self_address, "leader": self.config.self_address,
                    "is_leader": True, "term": self._term,
                    "commit_index": self._last_index, "last_applied": self._last_index,
                    "log_len": len(self.journal), "revision": self.state.rev,
                    "syncs": self.journal.syncs,
                    "snapshots_written": self.snapshots_written,
                    "snapshots_loaded": self.snapshots_loaded, "fast_path": True}
        # Only single attribute reads: pysyncobj's getStatus() iterates dicts the tick
        # thread may be changing.
        leader = node._getLeader()
        return {"self": self.config.self_address,
                "leader": getattr(leader, "address", None),
                "is_leader": node._isLeader(), "term": node.raftCurrentTerm,
                "commit_index": node.raftCommitIndex, "last_applied": node.raftLastApplied,
                "log_len": len(self.journal), "revision": self.state.rev,
                "syncs": self.journal.syncs if self.journal else 0,
                "snapshots_written": self.snapshots_written,
                "snapshots_loaded": self.snapshots_loaded, "fast_path": False}

    def is_leader(self) -> bool:
        node = self._node
        return node is not None and (self.alone or node._isLeader())

    def force_snapshot(self) -> None:
        if self.alone:
            self._snapshot_requested = True
            self._requests.put(_WAKE)
            return
        node = self._node
        if node is not None:
            node.forceLogCompaction()
            node.wake()

    # -- tick thread -----------------------------------------------------------------

    def _run(self) -> None:
        cfg = self.config
        self._tick_ident = threading.get_ident()
        try:
            node = _Node(self, cfg.self_address, cfg.others, cfg.syncobj_conf(self))
            self.batch_func_id = node._methodToID[node._getFuncName("apply_batch")]
            node.doTick(0.0)  # loads the snapshot, applies committed journal entries
            if self.fatal is not None:
                node._doDestroy()
                raise self.fatal
            self.journal.sync()
            self.tick_done()
            self._node = node
            if not cfg.others and self.single_member_fast_path:
                self._recover_alone(node)
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            if self.journal is not None and self.journal._fd >= 0:
                self.journal._destroy()
            self._started.set()
            return
        self._started.set()
        # Longest wait for an event: followers check their election deadline and the
        # leader sends heartbeats once a tick; acknowledgements and submitted commands wake
        # the thread at once. A lone member waits longer once it leads (_WakeablePoller).
        wait = min(0.01, cfg.heartbeat_interval / 5) if not cfg.others else \
            cfg.heartbeat_interval / 2
        try:
            if self.alone:
                self._serve_alone()
            while not self._stop.is_set() and self.fatal is None:
                node.doTick(wait)
                if self._changed:  # a tick that ended early (transport not ready)
                    self.tick_done()
        except Exception as exc:
            log.exception("raft member %s: tick thread failed", cfg.self_address)
            self.fatal = exc
        finally:
            self._node = None
            try:
                node._doDestroy()
            except Exception:
                log.exception("raft member %s: error while stopping", cfg.self_address)
            if self.fatal is not None:
                self._on_applied()  # lets the driver fail what is waiting at once

    # -- single-member fast path (tick thread) ----------------------------------------

    def _recover_alone(self, node: _Node, timeout: float = 10.0) -> None:
        """Tick pysyncobj until this lone member leads and has applied its whole journal
        (which the no-op of its new term commits), with no snapshot half done; then take
        over the journal from pysyncobj for good. Runs before start() returns, so nothing
        was submitted to pysyncobj's queue."""
        journal = self.journal
        serializer = node._SyncObj__serializer
        deadline = time.monotonic() + timeout
        while not (node._isLeader() and node.raftLastApplied == node.raftCommitIndex
                   == journal[-1][1] and serializer._Serializer__pid == 0):
            if self.fatal is not None:
                raise self.fatal
            if time.monotonic() > deadline:
                raise RuntimeError("single member did not elect itself and recover in time")
            node.doTick(0.005)
            self.tick_done()
        self._term = node.raftCurrentTerm
        self._last_index = journal[-1][1]
        self._cluster = node._SyncObj__otherNodes | {node._SyncObj__selfNode}
        self._snapshot_time = node._SyncObj__lastSerializedTime
        self._snapshot_entry = node._SyncObj__lastSerializedEntry
        self.alone = True

    def _serve_alone(self) -> None:
        """The writer loop of a lone member. Each round takes every batch submitted so far
        (those that arrived during the previous round's fdatasync included: group commit),
        appends one journal entry per batch in pysyncobj's format (term of the election at
        open, consecutive indexes), writes and fdatasyncs them at once, applies them in
        order, runs their callbacks and wakes the event loop once. A batch is applied, and
        so acknowledged, only after its entry is stable; an entry is one CRC-checked
        record, so recovery never sees part of a batch."""
        requests = self._requests
        journal = self.journal
        state = self.state
        term = self._term
        while not self._stop.is_set():
            due = max(self._snapshot_time + self.config.snapshot_interval,
                      self._snapshot_retry_at)
            try:
                got = [requests.get(timeout=max(due - time.monotonic(), 0.001))]
            except queue.Empty:
                self._snapshot_if_due()
                continue
            try:
                while True:
                    got.append(requests.get_nowait())
            except queue.Empty:
                pass
            todo = [r for r in got if r is not _WAKE]
            if todo:
                idx = self._last_index
                for blob, batch, _callback in todo:
                    idx += 1
                    if blob is None:
                        blob = self.command(batch)
                    journal.add(_REGULAR_COMMAND + blob, idx, term)
                journal.sync()
                journal.setRaftCommitIndex(idx)  # saved with the metadata, as pysyncobj does
                for blob, batch, callback in todo:
                    if batch is None:
                        batch = pickle.loads(blob)[1]
                    result = state.apply_batch(*batch)
                    self._last_index += 1
                    callback(result, FAIL_REASON.SUCCESS)
                self._changed = True
                self.tick_done()
            self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        """pysyncobj's log compaction, same thresholds and files: snapshot the state with
        the raft metadata pysyncobj records (last applied entry, the one before it, the
        node set), rename it into place, then drop the journal up to the entry before
        the last (the journal fsyncs the directory first)."""
        journal, cfg = self.journal, self.config
        now = time.monotonic()
        if not (self._snapshot_requested or len(journal) > max(2, cfg.snapshot_entries)
                or (journal.size > cfg.snapshot_bytes and len(journal) > 2)
                or now - self._snapshot_time > cfg.snapshot_interval):
            return
        if now < self._snapshot_retry_at:
            return
        self._snapshot_requested = False
        if len(journal) < 2 or journal[-2][1] == self._snapshot_entry:
            self._snapshot_time = now  # nothing new since the last snapshot
            return
        prev, last = journal[-2], journal[-1]
        path = os.path.join(cfg.data_dir, "snapshot")
        try:
            self.write_snapshot(path + ".tmp", (last, prev, self._cluster))
            os.replace(path + ".tmp", path)
        except Exception:
            # as pysyncobj: keep the journal, try again later (not on every write)
            log.warning("raft member %s: cannot write snapshot", cfg.self_address,
                        exc_info=True)
            self._snapshot_retry_at = now + 1.0
            return
        self._snapshot_time = now
        self._snapshot_entry = prev[1]
        journal.deleteEntriesTo(len(journal) - 2)

    _STATES = ("follower", "candidate", "leader")

    def on_state_changed(self, old: int, new: int) -> None:
        node = self._node
        log.info("raft member %s: %s -> %s (term %s)", self.config.self_address,
                 self._STATES[old], self._STATES[new],
                 node.raftCurrentTerm if node is not None else "?")

    def on_apply(self, batch_id, ops):
        results = self.state.apply_batch(batch_id, ops)
        self._changed = True
        return results

    def write_snapshot(self, path: str, raft_data) -> None:
        """pysyncobj serializer: write state + raft metadata to ``path``, fsynced. pysyncobj
        renames it over the snapshot file; the journal fsyncs the directory before it
        drops the entries the snapshot covers.

        The state is written piece by piece (:meth:`KVState.dump_pieces`): the GIL is
        released by every write and CRC of a piece, so the event loop is held up for one
        piece at most, not for the whole state. The checksum, known at the end, is written
        into its place before the fsync."""
        raft_blob = pickle.dumps(raft_data, protocol=5)
        head = struct.pack("<Q", len(raft_blob)) + raft_blob
        crc = zlib.crc32(head)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, _SNAP_MAGIC + b"\0\0\0\0" + head)
            for piece in self.state.dump_pieces():
                crc = zlib.crc32(piece, crc)
                _write_all(fd, piece)
            _write_all(fd, struct.pack("<I", crc), len(_SNAP_MAGIC))
            if self.config.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.snapshots_written += 1

    def read_snapshot(self, path: str):
        """pysyncobj deserializer: load the state machine, return the raft metadata.

        pysyncobj logs and ignores a failing deserializer, which would leave this member
        applying later entries to the wrong state; a failure here stops the member."""
        try:
            return self._read_snapshot(path)
        except BaseException as exc:
            log.error("raft member %s: cannot load snapshot %s: %s",
                      self.config.self_address, path, exc)
            self.fatal = exc
            raise

    def _read_snapshot(self, path: str):
        with open(path, "rb") as f:
            data = f.read()
            # a snapshot received from the leader was written without fsync
            if self.config.fsync:
                os.fsync(f.fileno())
        fsync_dir(os.path.dirname(path))
        if data[:len(_SNAP_MAGIC)] != _SNAP_MAGIC:
            raise ValueError(f"{path}: not a pilothouse raft snapshot")
        (crc,) = struct.unpack_from("<I", data, len(_SNAP_MAGIC))
        body = memoryview(data)[len(_SNAP_MAGIC) + 4:]
        if zlib.crc32(body) != crc:
            raise ValueError(f"{path}: snapshot checksum mismatch")
        (rlen,) = struct.unpack_from("<Q", body)
        raft_data = pickle.loads(body[8:8 + rlen])
        self.state.load(bytes(body[8 + rlen:]))
        last, _prev, _cluster = raft_data
        # A crash between writing this snapshot and compacting the journal leaves entries
        # the snapshot covers at the journal's head; drop them so that pysyncobj keeps the
        # entries after the snapshot instead of clearing the whole journal.
        self.journal.drop_before(_prev[1], _prev[2])
        self.snapshots_loaded += 1
        self.changed()
        return raft_data
