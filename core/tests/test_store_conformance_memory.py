"""The store conformance suite run against the in-memory reference store.

``TestMemoryStore`` is the real run (``durable = False``: the durability tests skip).
``TestMemoryStoreWithSimulatedRestart`` exists to exercise the suite's durability tests
themselves: its store hands its state over to the next instance with the same ``name`` when
it is closed, which is what a restart looks like from the outside.
"""

import dataclasses

from pilothouse.testing.memory_store import MemoryStore
from pilothouse.testing.store import StoreConformance

_STATE_FIELDS = ("_revision", "_compacted", "_versions", "_keys", "_keys_dirty", "_events")


class TestMemoryStore(StoreConformance):
    plugin = MemoryStore
    durable = False


class HandOverMemoryStore(MemoryStore):
    """A MemoryStore whose state survives ``close`` for the next instance of the same name."""

    @dataclasses.dataclass
    class Options:
        name: str

    _saved: dict = {}

    def __init__(self, options: "HandOverMemoryStore.Options"):
        super().__init__()
        self._name = options.name

    async def open(self) -> None:
        for field, value in self._saved.pop(self._name, {}).items():
            setattr(self, field, value)
        await super().open()

    async def close(self) -> None:
        if not self._closed:
            self._saved[self._name] = {f: getattr(self, f) for f in _STATE_FIELDS}
        await super().close()


class TestMemoryStoreWithSimulatedRestart(StoreConformance):
    plugin = HandOverMemoryStore

    def store_options(self, tmp_path):
        return {"name": str(tmp_path)}
