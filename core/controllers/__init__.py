"""``pilothouse.controllers``: the controller host, and a base class for controller plugins.

The host (``pilothouse controller-manager --server URL``) builds every controller the config
enables (``controllers.enabled``; entry-point group ``pilothouse.controllers``; each plugin's
``Options`` from ``controllers.options.<name>``), shares one informer factory between them,
and runs each under its own leader-election Lease (``kube-system/pilothouse-controller-
<name>``, identity ``<host name>_<pid>``) so two hosts never both act. A controller that
raises is restarted with back-off; stopping the host returns within a second. Host settings
are ``components.controller-manager`` (:class:`Settings`).

Public API:

* :class:`QueueController` — base for plugin authors: informers → keys → work queue →
  ``async reconcile(key)`` with rate-limited retries. Most controllers are one.
* :func:`run_controller_host` — ``await run_controller_host(config, server_url)``: the
  command's coroutine. :class:`ControllerHost` — the host itself (``from_config``, or
  constructed controllers for tests; ``start``/``stop``/``crash``; ``state`` per
  controller). :class:`Settings`, :func:`settings`.
* :mod:`pilothouse.controllers.testing` — run a host in a thread next to
  :class:`pilothouse.testing.cluster.APIServerThread`.
* ``python -m pilothouse.controllers --server URL [--config PATH] [--identity ID]`` runs the
  host as a process (what the CLI command does).

The controller interface itself is :class:`pilothouse.interfaces.controllers.Controller`; the
hooks the host calls are in :mod:`pilothouse.hooks.controllers`.

Since 0.1.
"""

from pilothouse.controllers._host import (ControllerHost, ControllerState, HostContext,
                                          default_identity, run_controller_host)
from pilothouse.controllers._queue import QueueController
from pilothouse.controllers._settings import Settings, settings

__all__ = ["ControllerHost", "ControllerState", "HostContext", "QueueController", "Settings",
           "default_identity", "run_controller_host", "settings"]
