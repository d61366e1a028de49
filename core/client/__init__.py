"""``pilothouse.client``: the API client every component uses (ARCHITECTURE.md rule 1).

* :class:`Client` — async REST client for the Kubernetes API served by Pilothouse (or any
  Kubernetes API server): ``client.resource("apps/v1", "Deployment")`` returns a
  :class:`Resource` with ``get``, ``list``, ``watch``, ``create``, ``update``,
  ``update_status``, ``patch``, ``apply``, ``delete`` and the ``scale``/``binding``
  subresources. API errors are raised as :mod:`pilothouse.model.errors` exceptions rebuilt
  from the server's ``Status``.
* :class:`Informer` / :class:`InformerFactory` — list+watch into a local cache with indexes,
  event handlers, periodic resync, and a relist when the watch answers 410 Expired.
* :class:`WorkQueue` — deduplicating queue of keys with per-item exponential back-off
  (``add_rate_limited``), delayed adds, and the processing/dirty semantics of client-go.
* :class:`LeaderElector` — leader election on ``coordination.k8s.io/v1`` Lease objects with
  compare-and-swap, so two hosts never both act.
"""

from pilothouse.client._rest import Client, Resource, WatchEvent
from pilothouse.client.informer import Informer, InformerFactory, object_key
from pilothouse.client.leaderelection import LeaderElector
from pilothouse.client.workqueue import WorkQueue

__all__ = ["Client", "Informer", "InformerFactory", "LeaderElector", "Resource", "WatchEvent",
           "WorkQueue", "object_key"]
