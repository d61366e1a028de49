"""pilothouse-store-etcd: the Pilothouse store driver on a real etcd v3 cluster.

Entry point ``etcd`` in group ``pilothouse.store``; select it in the config with::

    store: {plugin: etcd, options: {endpoints: ["10.0.0.1:2379", "10.0.0.2:2379"]}}

:class:`EtcdStore` speaks etcd's v3 gRPC API directly (messages in ``etcd_rpc.proto``).
:mod:`pilothouse_store_etcd.testing` starts throwaway etcd servers and clusters for tests
and benchmarks.
"""

from pilothouse_store_etcd.store import EtcdStore, Options

__all__ = ["EtcdStore", "Options"]
__version__ = "0.1.0"
