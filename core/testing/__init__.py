"""Test kits for plugin authors: fixtures, constructors and conformance suites.

* :mod:`pilothouse.testing.plugin` is a pytest plugin (entry point ``pytest11``), active
  wherever pilothouse is installed. Its fixtures: ``pilothouse_config`` (build a validated
  config from a dict), ``pilothouse_plugins`` (load what a config activates),
  ``load_driver`` (construct one driver by slot and name, or straight from a class,
  bypassing entry points).
* :mod:`pilothouse.testing.store` holds :class:`~pilothouse.testing.store.StoreConformance`,
  the suite every store driver passes; :mod:`pilothouse.testing.store_grpc` runs any store
  through the gRPC Store service.
* :mod:`pilothouse.testing.runtime` holds the runtime conformance suite;
  :mod:`pilothouse.testing.network` and :mod:`pilothouse.testing.proxy` the skeletons of the
  network and proxy suites (level-triggered sync, idempotence), until built-in drivers for
  those slots land.
* :mod:`pilothouse.testing.cluster` runs a real API server in a thread for tests with
  kubectl and the official Python client.
"""

__all__ = ["build_driver"]

from pilothouse.testing._drivers import build_driver
