"""Proxy observation hooks. Called by the proxy host after its driver applied rules."""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_proxy_synced(services, endpoints, duration):
    """The proxy driver applied the rules for the current Services and endpoints.

    :param services: number of Services programmed. :param endpoints: number of endpoints.
    :param duration: seconds the driver's sync took.

    Broadcast, after every successful sync; must not block. Exceptions are logged.

    Since 0.1.
    """
