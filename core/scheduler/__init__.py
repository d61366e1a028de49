"""``pilothouse.scheduler``: the scheduler host.

It watches pods without a node whose ``spec.schedulerName`` names one of its profiles, runs
each through the profile's plugins (:mod:`pilothouse.interfaces.scheduler`, ordered and
weighted by the config's ``scheduler.profiles``) and binds it through the pods/binding
subresource. See ``_host.py`` for the flow, ``_queue.py`` for when pods are retried,
``_cache.py`` for assumed pods and snapshots, ``_framework.py`` for the plugin runner.

Public API:

* :func:`run_scheduler` — ``await run_scheduler(config, client)``: the ``pilothouse
  scheduler`` command's coroutine.
* :class:`Scheduler` — the host; ``Scheduler(client, {name: [ProfilePlugin, ...]},
  Settings(...))`` takes constructed plugins (tests, benchmarks), ``Scheduler.from_config``
  loads them by entry point. ``start()``/``stop()`` run it as a background task;
  ``stats`` counts attempts, bindings, failures and preemptions; ``queue.counts()`` shows
  where pending pods wait.
* :class:`ProfilePlugin`, :class:`Settings` (``components.scheduler``),
  :func:`fit_error_message` (Kubernetes' "0/N nodes are available: ..." summary).
* :mod:`pilothouse.scheduler.testing` — run a scheduler in a thread next to
  :class:`pilothouse.testing.cluster.APIServerThread`, and Node/Pod builders.

Since 0.1.
"""

from pilothouse.scheduler._framework import Framework, ProfilePlugin, fit_error_message
from pilothouse.scheduler._host import Scheduler, node_update_events, run_scheduler
from pilothouse.scheduler._settings import Settings, settings

__all__ = ["Framework", "ProfilePlugin", "Scheduler", "Settings", "fit_error_message",
           "node_update_events", "run_scheduler", "settings"]
