"""Node agent hooks. Called by the node agent."""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_node_labels(node_name):
    """Contribute labels for this node's Node object.

    :param node_name: the node's name.
    :returns: a ``dict`` of labels to add, or None. Later keys win in pluggy's call order;
        the agent's own ``kubernetes.io/*`` labels cannot be overridden.

    Broadcast; called when the agent registers its Node and on every status update. Must be
    cheap. An exception aborts registration with the plugin's name (contributing hook).

    Since 0.1.
    """


@hookspec
def pilothouse_pod_synced(pod, status):
    """The node agent wrote a new status for a pod it runs.

    :param pod: the pod object (dict). :param status: the new ``status`` dict.

    Broadcast, after the status write succeeded; must not block. Exceptions are logged.

    Since 0.1.
    """
