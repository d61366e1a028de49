"""The store conformance suite catches classic store bugs.

Each broken store below is :class:`MemoryStore` (which passes the suite) with one classic
mistake. Each case runs the conformance test that owns the violated clause against it and
expects an :class:`AssertionError`: this proves the suite asserts the clause rather than
merely exercising it.
"""

import asyncio
import dataclasses

import pytest

from pilothouse.interfaces.store import (
    Compacted,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    RevisionConflict,
    WatchEvent,
)
from pilothouse.testing.memory_store import MemoryStore
from pilothouse.testing.store import StoreConformance


class BumpsRevisionOnFailedCas(MemoryStore):
    """A failed compare-and-swap still consumes a revision."""

    async def update(self, key, value, *, expected_revision):
        try:
            return await super().update(key, value, expected_revision=expected_revision)
        except RevisionConflict:
            self._revision += 1
            raise


class BumpsRevisionOnKeyExists(MemoryStore):
    """A create that finds the key present still consumes a revision."""

    async def create(self, key, value):
        try:
            return await super().create(key, value)
        except KeyExists:
            self._revision += 1
            raise


class KeyExistsWithoutKv(MemoryStore):
    """KeyExists does not carry the existing state."""

    async def create(self, key, value):
        try:
            return await super().create(key, value)
        except KeyExists:
            raise KeyExists(key) from None


class ConflictForMissingKey(MemoryStore):
    """An update of an absent key with a non-zero expected revision raises
    RevisionConflict instead of KeyNotFound."""

    async def update(self, key, value, *, expected_revision):
        if expected_revision and await self.get(key) is None:
            raise RevisionConflict(key, expected_revision, _placeholder(key))
        return await super().update(key, value, expected_revision=expected_revision)


def _placeholder(key):
    return KeyValue(key, b"", 0, 0)


class IgnoresExpectedRevisionOnDelete(MemoryStore):
    """delete ignores expected_revision."""

    async def delete(self, key, *, expected_revision=0):
        return await super().delete(key, expected_revision=0)


class CheckThenActCas(MemoryStore):
    """Compare-and-swap checks the revision, yields, then writes: not atomic."""

    async def update(self, key, value, *, expected_revision):
        current = await self.get(key)
        if current is None:
            raise KeyNotFound(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise RevisionConflict(key, expected_revision, current)
        await asyncio.sleep(0)
        return await super().update(key, value, expected_revision=0)


class CheckThenActCreate(MemoryStore):
    """create checks that the key is absent, yields, then writes blindly."""

    async def create(self, key, value):
        current = await self.get(key)
        if current is not None:
            raise KeyExists(key, current)
        await asyncio.sleep(0)
        revision = self._revision + 1
        kv = KeyValue(key, bytes(value), revision, revision)
        self._commit(key, kv, WatchEvent(EventType.PUT, revision, kv, None))
        return kv


class UpdateResetsCreateRevision(MemoryStore):
    """An update reports create_revision as the update's revision."""

    async def update(self, key, value, *, expected_revision):
        kv = await super().update(key, value, expected_revision=expected_revision)
        return dataclasses.replace(kv, create_revision=kv.mod_revision)


class DropsEventAtStartRevision(MemoryStore):
    """A watch skips the first event after ``after_revision`` (off by one)."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def stream():
            async for event in super(DropsEventAtStartRevision, self).watch(
                    prefix, after_revision=after_revision, progress_interval=progress_interval):
                if event.revision != after_revision + 1:
                    yield event
        return stream()


class DeleteEventsWithoutPrevKv(MemoryStore):
    """DELETE events do not carry prev_kv."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def stream():
            async for event in super(DeleteEventsWithoutPrevKv, self).watch(
                    prefix, after_revision=after_revision, progress_interval=progress_interval):
                if event.type is EventType.DELETE:
                    event = dataclasses.replace(event, prev_kv=None, kv=event.prev_kv)
                yield event
        return stream()


class DuplicatesLastCatchUpEvent(MemoryStore):
    """The switch from history to live events delivers the last historical event twice."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def stream():
            last = None
            async for event in super(DuplicatesLastCatchUpEvent, self).watch(
                    prefix, after_revision=after_revision, progress_interval=progress_interval):
                if last is not None and last.revision == self._revision - 1 and \
                        event.revision == self._revision:
                    yield last
                last = event
                yield event
        return stream()


class WatchIgnoresPrefix(MemoryStore):
    """A watch delivers every key, not just those under its prefix."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        return super().watch("", after_revision=after_revision,
                             progress_interval=progress_interval)


class PaginationReadsCurrentState(MemoryStore):
    """Later pages ignore the requested revision and read the current state."""

    async def list(self, prefix, *, revision=0, limit=0, start_after=None):
        result = await super().list(prefix, limit=limit, start_after=start_after)
        if start_after is not None:
            result = ListResult(result.items, revision, result.more, result.count)
        return result


class MoreWhenPageIsFull(MemoryStore):
    """``more`` is true whenever the page is full, even when nothing follows."""

    async def list(self, prefix, *, revision=0, limit=0, start_after=None):
        result = await super().list(prefix, revision=revision, limit=limit,
                                    start_after=start_after)
        if limit and len(result.items) == limit:
            result = dataclasses.replace(result, more=True)
        return result


class ListIgnoresFutureRevision(MemoryStore):
    """A list at a revision newer than the current one answers the current state."""

    async def list(self, prefix, *, revision=0, limit=0, start_after=None):
        if revision > self._revision:
            revision = 0
        return await super().list(prefix, revision=revision, limit=limit,
                                  start_after=start_after)


class CompactionDropsOldKeys(MemoryStore):
    """Compaction discards keys last written before the compaction revision."""

    async def compact(self, revision):
        await super().compact(revision)
        for key, versions in list(self._versions.items()):
            if versions[-1][0] < revision:
                del self._versions[key]
                self._keys_dirty = True


class CompactionIsAWrite(MemoryStore):
    """Compaction bumps the global revision."""

    async def compact(self, revision):
        await super().compact(revision)
        self._revision += 1
        self._events.append(WatchEvent(EventType.PROGRESS, self._revision))


class WatchBelowCompactionStartsAtCompaction(MemoryStore):
    """A watch from a compacted revision silently starts at the compacted revision."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        return super().watch(prefix, after_revision=max(after_revision, self._compacted),
                             progress_interval=progress_interval)


class CompactionEndsEveryWatch(MemoryStore):
    """Any compaction ends every open watch with Compacted, even caught-up ones."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def stream():
            started = self._compacted
            async for event in super(CompactionEndsEveryWatch, self).watch(
                    prefix, after_revision=after_revision, progress_interval=progress_interval):
                if self._compacted != started:
                    raise Compacted(event.revision - 1, self._compacted)
                yield event
        return stream()


class GetBelowCompactionReturnsNone(MemoryStore):
    """A read below the compacted revision answers None instead of raising Compacted."""

    async def get(self, key, *, revision=0):
        try:
            return await super().get(key, revision=revision)
        except Compacted:
            return None


class NoProgressEvents(MemoryStore):
    """progress_interval is ignored."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        return super().watch(prefix, after_revision=after_revision)


class ProgressRunsAhead(MemoryStore):
    """PROGRESS events claim the revision of a write not yet delivered."""

    def watch(self, prefix, *, after_revision, progress_interval=None):
        async def stream():
            async for event in super(ProgressRunsAhead, self).watch(
                    prefix, after_revision=after_revision, progress_interval=progress_interval):
                if event.type is EventType.PROGRESS:
                    event = WatchEvent(EventType.PROGRESS, event.revision + 1)
                yield event
        return stream()


class CloseLeavesWatchesOpen(MemoryStore):
    """close() does not end blocked watches."""

    async def close(self):
        self._closed = True  # but no wake-up: blocked watchers sleep on


@dataclasses.dataclass
class _Named:
    name: str


class _HandOver(MemoryStore):
    """A MemoryStore whose state survives ``close`` for the next instance of its name."""

    Options = _Named
    _saved: dict = {}
    _fields = ("_revision", "_compacted", "_versions", "_keys", "_keys_dirty", "_events")

    def __init__(self, options):
        super().__init__()
        self._name = options.name

    async def open(self):
        for field, value in self._saved.pop(self._name, {}).items():
            setattr(self, field, value)
        await super().open()

    async def close(self):
        if not self._closed:
            self._saved[self._name] = {f: getattr(self, f) for f in self._fields}
        await super().close()


class RecoversRevisionFromLiveKeys(_HandOver):
    """After a restart the revision is recomputed from the keys still present, so revisions
    taken by trailing deletes are reused."""

    async def open(self):
        await super().open()
        live = [v[-1][1].mod_revision for v in self._versions.values() if v[-1][1]]
        self._revision = max(live, default=0)
        del self._events[self._revision - self._compacted:]


class LosesLastWriteOnRestart(_HandOver):
    """The last acknowledged write is not on stable storage when the call returns."""

    async def close(self):
        if not self._closed and self._events:
            last = self._events.pop()
            key = (last.kv or last.prev_kv).key
            self._versions[key].pop()
            if not self._versions[key]:
                del self._versions[key]
                self._keys_dirty = True
            self._revision -= 1
        await super().close()


CASES = [
    (BumpsRevisionOnFailedCas, "test_update_compare_and_swap"),
    (BumpsRevisionOnFailedCas, "test_revision_increases_by_exactly_one_per_write_and_never_on_failures"),
    (BumpsRevisionOnKeyExists, "test_create_existing_key_raises_key_exists_with_kv"),
    (KeyExistsWithoutKv, "test_create_existing_key_raises_key_exists_with_kv"),
    (ConflictForMissingKey, "test_update_missing_key_raises_key_not_found"),
    (IgnoresExpectedRevisionOnDelete, "test_delete_compare_and_swap"),
    (CheckThenActCas, "test_concurrent_updates_expecting_one_revision_have_exactly_one_winner"),
    (CheckThenActCas, "test_concurrent_compare_and_swap_counter"),
    (CheckThenActCreate, "test_concurrent_creates_of_one_key_have_exactly_one_winner"),
    (UpdateResetsCreateRevision, "test_update_compare_and_swap"),
    (DropsEventAtStartRevision, "test_watch_from_every_revision"),
    (DropsEventAtStartRevision, "test_watch_at_current_revision_sees_only_new_changes"),
    (DeleteEventsWithoutPrevKv, "test_watch_delete_and_put_events_carry_prev_kv"),
    (DeleteEventsWithoutPrevKv, "test_watch_from_every_revision"),
    (DuplicatesLastCatchUpEvent, "test_watch_from_every_revision"),
    (WatchIgnoresPrefix, "test_watch_prefix_filtering"),
    (PaginationReadsCurrentState, "test_list_pagination_is_stable_under_concurrent_writes"),
    (MoreWhenPageIsFull, "test_list_limit_start_after_and_more"),
    (ListIgnoresFutureRevision, "test_get_and_list_at_future_revision_raise_store_error"),
    (CompactionDropsOldKeys, "test_compaction"),
    (CompactionIsAWrite, "test_compaction"),
    (WatchBelowCompactionStartsAtCompaction, "test_watch_below_compaction_raises_compacted"),
    (GetBelowCompactionReturnsNone, "test_compaction"),
    (CompactionEndsEveryWatch, "test_compaction_keeps_caught_up_watches_running"),
    (NoProgressEvents, "test_watch_progress_events"),
    (ProgressRunsAhead, "test_watch_progress_events"),
    (CloseLeavesWatchesOpen, "test_closing_the_store_ends_watches"),
    (RecoversRevisionFromLiveKeys, "test_restart_never_reuses_a_revision"),
    (LosesLastWriteOnRestart, "test_restart_keeps_acknowledged_writes"),
]


@pytest.mark.parametrize(("broken", "test_name"), CASES,
                         ids=[f"{cls.__name__}-{name}" for cls, name in CASES])
def test_suite_fails_a_broken_store(broken, test_name, tmp_path):
    """Running ``test_name`` against ``broken`` raises AssertionError."""
    durable = issubclass(broken, _HandOver)

    class Suite(StoreConformance):
        plugin = broken
        event_timeout = 1.0  # a bug that loses an event shows as a wait that runs out

        def store_options(self, tmp_path):
            return {"name": str(tmp_path)} if durable else {}

    Suite.durable = durable
    with pytest.raises(AssertionError):
        getattr(Suite(), test_name)(tmp_path)


def test_every_case_passes_on_the_correct_store(tmp_path):
    """The same tests pass against the correct store (durable ones via hand-over), so each
    failure above is the bug's doing."""

    class Suite(StoreConformance):
        plugin = _HandOver

        def store_options(self, tmp_path):
            return {"name": str(tmp_path)}

    for i, name in enumerate(sorted({name for _, name in CASES})):
        path = tmp_path / str(i)
        path.mkdir()
        getattr(Suite(), name)(path)
