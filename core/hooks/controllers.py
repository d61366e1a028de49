"""Controller observation hooks. Called by the controller host.

Controllers themselves are plugins of the ``pilothouse.controllers`` group
(:class:`pilothouse.interfaces.controllers.Controller`), enabled by name in the config.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_controller_started(name):
    """A controller acquired leadership (or runs without election) and started.

    :param name: the controller's configured name.

    Broadcast, on the controller host's event loop; must not block. Exceptions are logged.

    Since 0.1.
    """


@hookspec
def pilothouse_object_reconciled(controller, key, error):
    """A controller finished one reconcile of one object.

    :param controller: the controller's name. :param key: ``"namespace/name"`` (``"name"``
        for cluster-scoped objects). :param error: the exception if the reconcile failed and
        will be retried with back-off, else None.

    Broadcast after every reconcile; must be cheap. Exceptions are logged and ignored.

    Since 0.1.
    """
