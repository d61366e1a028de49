"""pilothouse-store-raft: the embedded default store of Pilothouse.

A revisioned key-value store with compare-and-swap and watch (the
:class:`pilothouse.interfaces.store.Store` interface), replicated by Raft (pysyncobj) with
its own fsynced write-ahead log. Entry point: group ``pilothouse.store``, name ``raft``.
See README.md for options and the durability design.
"""

from pilothouse_store_raft.store import Options, RaftStore, default_data_dir

__all__ = ["Options", "RaftStore", "default_data_dir"]
__version__ = "0.1.0"
