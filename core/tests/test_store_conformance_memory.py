"""The store conformance suite run against the in-memory reference store."""

from pilothouse.testing.memory_store import MemoryStore
from pilothouse.testing.store import StoreConformance


class TestMemoryStore(StoreConformance):
    plugin = MemoryStore
    durable = False
