"""A durable raft journal for pysyncobj: the store's write-ahead log.

pysyncobj's own ``FileJournal`` writes into a memory map that is synced only at shutdown,
and stores the current term and vote without fsync. This journal replaces it:

* ``add`` only buffers the record. :meth:`DurableJournal.sync` writes every buffered record
  with one ``pwrite`` and makes it stable with one ``fdatasync`` (group commit). The node
  calls ``sync`` before a follower acknowledges entries to the leader, once per tick on the
  leader (after appending the tick's commands, before waiting for acknowledgements), and
  before a new commit index is recorded, so an entry is counted towards a majority only
  once it is on stable storage on that member.
* The term and vote are written with fsync (file and directory) before ``setCurrentTerm``
  returns, i.e. before pysyncobj sends the vote.
* Records carry a CRC32; on open, a torn or corrupt tail (a crash in the middle of a
  ``pwrite``) is cut off. Only records that were never synced can be torn.

File layout: an 8-byte magic, then records ``<length:u32><crc32:u32><idx:u64><term:u64>
<command>`` where ``length`` counts the 16 bytes of idx and term plus the command and the
CRC covers the same bytes.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import zlib

from pysyncobj.journal import Journal

log = logging.getLogger(__name__)

MAGIC = b"PHRAFTJ1"
_HEAD = struct.Struct("<II")
_IDXTERM = struct.Struct("<QQ")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (tmp, fsync, rename, fsync dir)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def _encode(command: bytes, idx: int, term: int) -> bytes:
    idxterm = _IDXTERM.pack(idx, term)
    crc = zlib.crc32(command, zlib.crc32(idxterm))  # the CRC of idxterm + command
    return b"".join((_HEAD.pack(_IDXTERM.size + len(command), crc), idxterm, command))


class DurableJournal(Journal):
    """pysyncobj ``Journal`` with group-committed fdatasync. Used only on the tick thread."""

    def __init__(self, path: str, meta_path: str, fsync: bool = True):
        self._path, self._meta_path, self._fsync = path, meta_path, fsync
        self._dir = os.path.dirname(path) or "."
        self._entries: list[tuple] = []
        self._offsets: list[int] = []
        self._pending: list[bytes] = []
        self._dirty = False
        self.syncs = 0  # number of fdatasync calls, for tests and metrics
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._load()
        self._meta = {"term": 0, "voted_for": None, "commit": 1}
        try:
            with open(meta_path, "rb") as f:
                self._meta.update(pickle.loads(f.read()))
        except FileNotFoundError:
            pass
        self._meta_saved = dict(self._meta)
        self._ticks = 0

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        if len(data) < len(MAGIC) and MAGIC.startswith(data):  # new, or died creating it
            os.pwrite(self._fd, MAGIC, 0)
            os.fsync(self._fd)
            fsync_dir(self._dir)
            self._end = len(MAGIC)
            return
        if data[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{self._path}: not a pilothouse raft journal")
        pos, n = len(MAGIC), len(data)
        while pos + _HEAD.size <= n:
            length, crc = _HEAD.unpack_from(data, pos)
            body = data[pos + _HEAD.size:pos + _HEAD.size + length]
            if length < _IDXTERM.size or len(body) != length or zlib.crc32(body) != crc:
                break
            idx, term = _IDXTERM.unpack_from(body)
            if self._entries and (idx != self._entries[-1][1] + 1
                                  or term < self._entries[-1][2]):
                break
            self._entries.append((bytes(body[_IDXTERM.size:]), idx, term))
            self._offsets.append(pos)
            pos += _HEAD.size + length
        self._end = pos
        if pos != n:
            log.warning("%s: cutting %d bytes of torn or corrupt tail after entry %s",
                        self._path, n - pos, self._entries[-1][1] if self._entries else None)
            os.ftruncate(self._fd, pos)
        # A previous incarnation may have been killed before its page cache reached the
        # disk: make everything we are about to rely on stable now.
        os.fsync(self._fd)

    # -- durability -----------------------------------------------------------------

    def sync(self) -> None:
        """Write buffered records and fdatasync (no-op when nothing changed)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            start = self._end - len(data)
            view = memoryview(data)
            while view:
                view = view[os.pwrite(self._fd, view, start):]
                start = self._end - len(view)
        if self._dirty:
            if self._fsync:
                os.fdatasync(self._fd)
            self.syncs += 1
            self._dirty = False

    def _save_meta(self) -> None:
        if self._meta != self._meta_saved:
            write_file_durably(self._meta_path, pickle.dumps(self._meta))
            self._meta_saved = dict(self._meta)

    # -- pysyncobj Journal interface --------------------------------------------------

    def add(self, command, idx, term):
        command = bytes(command)
        rec = _encode(command, idx, term)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._end += len(rec)
        self._pending.append(rec)
        self._dirty = True

    def clear(self):
        self._entries.clear()
        self._offsets.clear()
        self._pending.clear()
        self._end = len(MAGIC)
        os.ftruncate(self._fd, self._end)
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom):
        if entryFrom >= len(self._entries):
            return
        self.sync()  # simpler than splitting the buffer; truncation is rare
        self._end = self._offsets[entryFrom]
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        os.ftruncate(self._fd, self._end)
        self._dirty = True

    def deleteEntriesTo(self, entryTo):
        """Drop the log prefix a snapshot now covers, by rewriting the journal file."""
        # The snapshot that covers these entries was renamed into place without a
        # directory fsync: make that rename durable before the entries disappear.
        fsync_dir(self._dir)
        keep = self._entries[entryTo:]
        tmp = self._path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        offsets, parts, pos = [], [MAGIC], len(MAGIC)
        for command, idx, term in keep:
            rec = _encode(command, idx, term)
            offsets.append(pos)
            parts.append(rec)
            pos += len(rec)
        data = b"".join(parts)
        view = memoryview(data)
        start = 0
        while view:
            n = os.pwrite(fd, view, start)
            view, start = view[n:], start + n
        os.fsync(fd)
        os.replace(tmp, self._path)
        fsync_dir(self._dir)
        os.close(self._fd)
        self._fd = fd
        self._entries, self._offsets, self._end = list(keep), offsets, pos
        self._pending.clear()
        self._dirty = False
        self.syncs += 1

    def drop_before(self, idx: int, term: int) -> bool:
        """If the journal holds entry ``idx`` with ``term``, drop every entry before it.

        Used on recovery when a crash fell between writing a snapshot and compacting the
        journal: pysyncobj would otherwise discard the whole journal, including entries
        after the snapshot that may already have been acknowledged.
        """
        for i, (_, eidx, eterm) in enumerate(self._entries):
            if eidx == idx:
                if eterm != term:
                    return False
                if i:
                    self.deleteEntriesTo(i)
                return True
        return False

    @property
    def size(self) -> int:
        """Bytes of the journal file, buffered records included."""
        return self._end

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self):
        return len(self._entries)

    def _destroy(self):
        if self._fd >= 0:
            self.sync()
            self._save_meta()
            os.close(self._fd)
            self._fd = -1

    def setRaftCommitIndex(self, raftCommitIndex):
        # An entry is applied (and its write acknowledged) only after the commit index
        # passes it: make sure the local copy is stable first. On followers this is a
        # no-op (entries were synced before they were acknowledged); on the leader it
        # covers entries appended since the last per-tick sync.
        self.sync()
        self._meta["commit"] = raftCommitIndex

    def getRaftCommitIndex(self):
        return self._meta["commit"]

    def setCurrentTerm(self, term, votedForNodeId):
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._save_meta()

    def getCurrentTerm(self):
        return self._meta["term"]

    def getVotedForNodeId(self):
        return self._meta["voted_for"]

    def onOneSecondTimer(self):
        # The commit index only lets a restarted member apply what it already knows to be
        # committed before it hears from a leader; saving it every ten seconds is plenty.
        # (Term and vote are saved at once, in setCurrentTerm.)
        self._ticks += 1
        if self._ticks % 10 == 0:
            self._save_meta()
