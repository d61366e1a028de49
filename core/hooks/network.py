"""Network observation hooks. Called by the node agent around network driver calls."""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_pod_network_attached(pod, ips):
    """A pod's sandbox got its network.

    :param pod: the pod object (dict). :param ips: list of the pod's IP address strings.

    Broadcast, after the sandbox is ready; must not block. Exceptions are logged.

    Since 0.1.
    """


@hookspec
def pilothouse_pod_network_detached(pod):
    """A pod's network was torn down with its sandbox.

    :param pod: the pod object (dict).

    Broadcast; must not block. Exceptions are logged.

    Since 0.1.
    """
