"""Store hooks: observation of the active store driver. Called by the API server.

The store itself is a driver (:class:`pilothouse.interfaces.store.Store`), not a hook; these
hooks let plugins watch what happens to it (metrics, backups, audit).
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_store_opened(store, plugin_name):
    """The API server opened its store driver.

    :param store: the opened :class:`pilothouse.interfaces.store.Store` instance. Plugins must
        not write through it (rule 1: only the API server writes); reading for backups is
        allowed.
    :param plugin_name: the entry-point name of the driver (e.g. ``"raft"``).

    Broadcast, called once per API server start after ``Store.open`` returned. Exceptions are
    logged and ignored.

    Since 0.1.
    """


@hookspec
def pilothouse_store_compacted(revision):
    """The API server compacted the store's history up to ``revision`` (exclusive).

    :param revision: the new oldest readable revision.

    Broadcast, after ``Store.compact`` returned. Exceptions are logged and ignored.

    Since 0.1.
    """
