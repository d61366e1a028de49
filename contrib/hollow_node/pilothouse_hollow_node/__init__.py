"""Hollow nodes: many simulated nodes in one process, for scale tests of the scheduler, the
controllers and the API server.

* :class:`HollowNodes` — ``await HollowNodes(client, count=5000, zones=3).start()``
  registers the Nodes (capacity, labels, taints), keeps their Leases fresh, and reports the
  pods bound to them as Running and Ready (deleting them when they are deleted, as a kubelet
  with instant containers would).
* :class:`Options` — what the nodes look like and how hard they work.
* ``python -m pilothouse_hollow_node`` / ``pilothouse hollow-nodes`` — the same from the
  command line.

No container runs: it is a driver-less node agent, talking only to the API server.
"""

from pilothouse_hollow_node._nodes import HollowNodes, Options, parse_taint

__all__ = ["HollowNodes", "Options", "parse_taint"]
__version__ = "0.1.0"
