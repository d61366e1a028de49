"""Interfaces that plugins implement, one module per area.

*Drivers* (exactly one active per slot, chosen by name in the config):
:class:`~pilothouse.interfaces.store.Store`, :class:`~pilothouse.interfaces.runtime.Runtime`,
:class:`~pilothouse.interfaces.network.NetworkDriver`,
:class:`~pilothouse.interfaces.proxy.ProxyDriver`.

*Pipeline plugins* (ordered and weighted by the config): the scheduler's extension points
(:mod:`pilothouse.interfaces.scheduler`), admission
(:class:`~pilothouse.interfaces.admission.AdmissionPlugin`), authentication and authorization
(:mod:`pilothouse.interfaces.auth`).

*Controllers* (enabled by name): :class:`~pilothouse.interfaces.controllers.Controller`.

Every plugin class is constructed by :mod:`pilothouse.plugins` as ``cls(options)``, where
``options`` is an instance of the class attribute ``Options`` (a dataclass describing the
plugin's config options; a class without ``Options`` accepts none).
"""

__all__ = ["admission", "auth", "controllers", "network", "proxy", "runtime", "scheduler",
           "store"]
