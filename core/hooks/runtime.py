"""Runtime observation hooks. Called by the node agent around runtime driver calls.

The runtime is a driver (:class:`pilothouse.interfaces.runtime.Runtime`); these hooks observe
container lifecycle transitions the agent drives through it.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_container_started(pod, container_name, container_id):
    """A container of ``pod`` was started by the runtime driver.

    :param pod: the pod object (dict). :param container_name: the spec name.
    :param container_id: the runtime's container ID.

    Broadcast, on the agent's event loop; must not block. Exceptions are logged.

    Since 0.1.
    """


@hookspec
def pilothouse_container_exited(pod, container_name, container_id, exit_code, reason):
    """The node agent observed a container of ``pod`` exit.

    :param pod: the pod object (dict). :param container_name: the spec name.
    :param container_id: the runtime's container ID.
    :param exit_code: the exit code. :param reason: the runtime's reason (``"Completed"``,
        ``"Error"``, ``"OOMKilled"``, ...).

    Broadcast; must not block. Exceptions are logged.

    Since 0.1.
    """
