"""Admission observation hook. Called by the API server.

Admission plugins are an ordered pipeline (``admission.plugins`` in the config; interface
:class:`pilothouse.interfaces.admission.AdmissionPlugin`): mutating phases run first, in
configured order, then validating phases in configured order. This hook observes each
decision.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_admission_decided(request, plugin_name, phase, allowed, message):
    """One admission plugin decided on one request.

    :param request: the :class:`~pilothouse.interfaces.admission.AdmissionRequest`.
    :param plugin_name: the configured name of the admission plugin.
    :param phase: ``"mutate"`` or ``"validate"``.
    :param allowed: its decision. :param message: its reason (empty when allowed).

    Broadcast, after each plugin's call, on the API server's event loop; must not block.
    Exceptions are logged and ignored.

    Since 0.1.
    """
