"""The replicated state machine: an in-memory MVCC key-value map with retained history.

Every member applies the same committed batches in the same order, so everything here must
be deterministic: no clocks, no randomness, no iteration over unordered containers whose
order could differ between members.

Only the raft tick thread mutates a :class:`KVState` (inside :meth:`apply_batch` and
:meth:`load`); readers on the event loop thread take :attr:`lock` for the duration of a read.
Internally a key's state is the tuple ``(key, value, create_revision, mod_revision)``; the
driver turns it into :class:`~pilothouse.interfaces.store.KeyValue` at the boundary.
"""

from __future__ import annotations

import bisect
import collections
import io
import operator
import pickle
import threading

# Operation kinds inside a batch (one raft log entry). An op is a tuple whose first item is
# the kind; see apply_batch for the layout of each.
OP_CREATE = "c"
OP_UPDATE = "u"
OP_DELETE = "d"
OP_COMPACT = "k"
OP_BARRIER = "b"

# Result codes. A result is a tuple whose first item is one of these.
OK = 0  # (OK, create_revision, mod_revision) for create/update; (OK, prev_kv) for delete
ERR_EXISTS = 1  # (ERR_EXISTS, current_kv)
ERR_NOT_FOUND = 2  # (ERR_NOT_FOUND,)
ERR_CONFLICT = 3  # (ERR_CONFLICT, expected, current_kv)
ERR_BAD_COMPACT = 4  # (ERR_BAD_COMPACT, current_revision)

EV_PUT = 0
EV_DELETE = 1

#: How many recent batch ids the state machine remembers, with their results, so that a
#: batch resubmitted after a leader change (outcome unknown) is applied at most once; and
#: the most results it keeps in all (big batches under load would otherwise hold many).
DEDUPE_BATCHES = 16384
DEDUPE_RESULTS = 131072

#: Format of :meth:`KVState.dump`. 1: one pickle of the whole state (still loaded). 2: a
#: header, then pieces of at most about SNAPSHOT_PIECE_BYTES of values each, written one
#: at a time, so that the GIL is free between pieces; history events are not stored but
#: rebuilt from the versions on load.
SNAPSHOT_FORMAT = 2
SNAPSHOT_PIECE_BYTES = 256 << 10
SNAPSHOT_PIECE_KEYS = 1024  # also bounds a piece of many small keys
SNAPSHOT_PIECE_RESULTS = 4096  # results of remembered batches per piece


class KVState:
    """Current state plus history back to ``compact_rev``.

    * ``versions[key]`` lists ``(revision, kv_or_None)`` in revision order; None marks a
      deletion. The first entry may be older than ``compact_rev``: it is the version visible
      at ``compact_rev``.
    * ``keys`` is every key of ``versions``, sorted (for prefix ranges and pagination).
    * ``events[i]`` is the write of revision ``compact_rev + 1 + i``:
      ``(revision, EV_PUT|EV_DELETE, kv_or_None, prev_kv_or_None)``.
    * ``dead`` holds the keys whose latest version is a deletion (they still have history).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rev = 0
        self.compact_rev = 0
        self.versions: dict[str, list] = {}
        self.keys: list[str] = []
        self.events: list[tuple] = []
        self.dead: set[str] = set()
        self.multi: set[str] = set()  # keys with more than one version or a tombstone
        self.dedupe: collections.OrderedDict = collections.OrderedDict()
        self.dedupe_results = 0
        self.applied_batches = 0

    # ------------------------------------------------------------------ writes

    def apply_batch(self, batch_id: int, ops: tuple) -> list:
        """Apply one committed batch and return one result per op (None for barriers)."""
        with self.lock:
            self.applied_batches += 1
            if batch_id in self.dedupe:
                return self.dedupe[batch_id]
            results = [self._apply_op(op) for op in ops]
            if any(op[0] != OP_BARRIER for op in ops):
                self.dedupe[batch_id] = results
                self.dedupe_results += len(results)
                while (len(self.dedupe) > DEDUPE_BATCHES
                       or self.dedupe_results > DEDUPE_RESULTS) and len(self.dedupe) > 1:
                    self.dedupe_results -= len(self.dedupe.popitem(last=False)[1])
            return results

    def _current(self, key: str):
        vers = self.versions.get(key)
        return vers[-1][1] if vers else None

    def _record(self, key: str, kv, prev) -> None:
        self.rev += 1
        rev = self.rev
        vers = self.versions.get(key)
        if vers is None:
            self.versions[key] = [(rev, kv)]
            bisect.insort(self.keys, key)
        else:
            vers.append((rev, kv))
            self.multi.add(key)
        if kv is None:
            self.dead.add(key)
            self.multi.add(key)
            self.events.append((rev, EV_DELETE, None, prev))
        else:
            self.dead.discard(key)
            self.events.append((rev, EV_PUT, kv, prev))

    def _apply_op(self, op: tuple):
        kind = op[0]
        if kind == OP_BARRIER:
            return None
        if kind == OP_CREATE:
            _, key, value = op
            cur = self._current(key)
            if cur is not None:
                return (ERR_EXISTS, cur)
            rev = self.rev + 1
            self._record(key, (key, value, rev, rev), None)
            return (OK, rev, rev)
        if kind == OP_UPDATE:
            _, key, value, expected = op
            cur = self._current(key)
            if cur is None:
                return (ERR_NOT_FOUND,)
            if expected and cur[3] != expected:
                return (ERR_CONFLICT, expected, cur)
            rev = self.rev + 1
            self._record(key, (key, value, cur[2], rev), cur)
            return (OK, cur[2], rev)
        if kind == OP_DELETE:
            _, key, expected = op
            cur = self._current(key)
            if cur is None:
                return (ERR_NOT_FOUND,)
            if expected and cur[3] != expected:
                return (ERR_CONFLICT, expected, cur)
            self._record(key, None, cur)
            return (OK, cur)
        if kind == OP_COMPACT:
            _, revision = op
            if revision > self.rev:
                return (ERR_BAD_COMPACT, self.rev)
            if revision > self.compact_rev:
                self._compact(revision)
            return (OK, self.compact_rev)
        raise ValueError(f"unknown op kind {kind!r}")

    def _compact(self, revision: int) -> None:
        removed = False
        for key in sorted(self.multi):
            vers = self.versions[key]
            # index of the last version with revision <= `revision`: visible at `revision`
            i = bisect.bisect_right(vers, revision, key=lambda v: v[0]) - 1
            if i > 0:
                del vers[:i]
            if vers and vers[0][1] is None and vers[0][0] <= revision:
                del vers[0]
            if not vers:
                del self.versions[key]
                self.dead.discard(key)
                self.multi.discard(key)
                removed = True
            elif len(vers) == 1 and vers[0][1] is not None:
                self.multi.discard(key)
        if removed:
            self.keys = [k for k in self.keys if k in self.versions]
        del self.events[:revision - self.compact_rev]
        self.compact_rev = revision

    # ------------------------------------------------------------------ reads
    # Callers hold self.lock and have checked the revision (see check_revision).

    def check_revision(self, revision: int) -> str | None:
        """None when ``revision`` (> 0) is readable, else "compacted" or "future"."""
        if revision < self.compact_rev:
            return "compacted"
        if revision > self.rev:
            return "future"
        return None

    def get(self, key: str, revision: int = 0):
        vers = self.versions.get(key)
        if not vers:
            return None
        if revision <= 0 or revision >= self.rev:
            return vers[-1][1]
        i = bisect.bisect_right(vers, revision, key=lambda v: v[0]) - 1
        return vers[i][1] if i >= 0 else None

    def list(self, prefix: str, revision: int, limit: int,
             start_after: str | None) -> tuple[list, bool, int]:
        """Return (items, more, count) for keys starting with ``prefix`` at ``revision``."""
        keys = self.keys
        lo = bisect.bisect_left(keys, prefix)
        hi = _prefix_end(keys, prefix, lo)
        start = lo
        if start_after is not None and start_after >= prefix:
            start = max(lo, bisect.bisect_right(keys, start_after, lo, hi))
        current = revision <= 0 or revision >= self.rev
        items: list = []
        more = False
        get = self.get
        if current:
            versions = self.versions
            for i in range(start, hi):
                kv = versions[keys[i]][-1][1]
                if kv is None:
                    continue
                if limit and len(items) >= limit:
                    more = True
                    break
                items.append(kv)
            dead = sum(1 for k in self.dead if k.startswith(prefix)) if self.dead else 0
            count = (hi - lo) - dead
        else:
            count = 0
            for i in range(lo, hi):
                kv = get(keys[i], revision)
                if kv is None:
                    continue
                count += 1
                if i < start:
                    continue
                if limit and len(items) >= limit:
                    more = True
                    continue
                items.append(kv)
        return items, more, count

    def events_after(self, after: int, max_events: int = 1000) -> list:
        """Events with revision > ``after`` (which must be >= compact_rev), oldest first."""
        i = after - self.compact_rev
        return self.events[i:i + max_events]

    # ------------------------------------------------------------------ snapshots

    def dump_pieces(self):
        """Serialize the whole state as a sequence of pickles, one piece at a time (a
        generator; format 2). Called on the tick thread, the only writer, which must not
        apply anything until the last piece was taken: the state does not change meanwhile.
        Each piece is one short ``pickle.dumps`` (values are bytes: a copy), so a caller
        writing each piece to a file hands the GIL to the event loop between pieces
        instead of holding it for the whole state."""
        yield pickle.dumps((SNAPSHOT_FORMAT, self.rev, self.compact_rev,
                            self.applied_batches), protocol=5)
        piece: list = []
        size = 0
        for item in self.versions.items():
            piece.append(item)
            for _rev, kv in item[1]:
                size += 64 if kv is None else 64 + len(kv[1])
            if size >= SNAPSHOT_PIECE_BYTES or len(piece) >= SNAPSHOT_PIECE_KEYS:
                yield pickle.dumps(("v", piece), protocol=5)
                piece, size = [], 0
        if piece:
            yield pickle.dumps(("v", piece), protocol=5)
            piece, size = [], 0
        for item in self.dedupe.items():
            piece.append(item)
            size += len(item[1])
            if size >= SNAPSHOT_PIECE_RESULTS:
                yield pickle.dumps(("d", piece), protocol=5)
                piece, size = [], 0
        if piece:
            yield pickle.dumps(("d", piece), protocol=5)
        yield pickle.dumps(("end",), protocol=5)

    def dump(self) -> bytes:
        """Serialize the whole state (format 2: :meth:`dump_pieces` joined)."""
        return b"".join(self.dump_pieces())

    def load(self, blob: bytes) -> None:
        """Replace the state with one serialized by :meth:`dump` (format 2) or by the
        single-pickle format 1 of earlier versions."""
        stream = io.BytesIO(blob)
        head = pickle.load(stream)
        fmt = head[0]
        if fmt == 1:
            fmt, rev, compact_rev, versions, events, dedupe, applied = head
        elif fmt == 2:
            _fmt, rev, compact_rev, applied = head
            versions, dedupe = {}, []
            while True:
                piece = pickle.load(stream)
                if piece[0] == "v":
                    versions.update(piece[1])
                elif piece[0] == "d":
                    dedupe.extend(piece[1])
                elif piece[0] == "end":
                    break
                else:
                    raise ValueError(f"snapshot: unknown piece {piece[0]!r}")
            events = _events_of(versions, compact_rev)
            if len(events) != rev - compact_rev:
                raise ValueError(f"snapshot: {len(events)} events in history, expected "
                                 f"{rev - compact_rev}")
        else:
            raise ValueError(f"unsupported snapshot format {fmt}")
        with self.lock:
            self.rev, self.compact_rev = rev, compact_rev
            self.versions, self.events = versions, events
            self.keys = sorted(versions)
            self.dead = {k for k, v in versions.items() if v[-1][1] is None}
            self.multi = {k for k, v in versions.items() if len(v) > 1} | self.dead
            self.dedupe = collections.OrderedDict(dedupe)
            self.dedupe_results = sum(len(r) for r in self.dedupe.values())
            self.applied_batches = applied


def _events_of(versions: dict, compact_rev: int) -> list:
    """The history events (see :class:`KVState`) of ``versions``, oldest first.

    Every write after ``compact_rev`` is a version of its key; its previous version is the
    one before it in the key's list (compaction keeps the version visible at
    ``compact_rev``, and a first version after it is a creation: it had no live previous
    version, or a tombstone, which is None too)."""
    events = []
    append = events.append
    for vers in versions.values():
        prev = None
        for rev, kv in vers:
            if rev > compact_rev:
                if kv is None:
                    append((rev, EV_DELETE, None, prev))
                else:
                    append((rev, EV_PUT, kv, prev))
            prev = kv
    events.sort(key=operator.itemgetter(0))
    return events


def _prefix_end(keys: list[str], prefix: str, lo: int) -> int:
    """Index one past the last key in ``keys[lo:]`` starting with ``prefix``."""
    if not prefix:
        return len(keys)
    last = prefix[-1]
    if ord(last) < 0x10FFFF:
        return bisect.bisect_left(keys, prefix[:-1] + chr(ord(last) + 1), lo)
    hi = lo
    while hi < len(keys) and keys[hi].startswith(prefix):
        hi += 1
    return hi
