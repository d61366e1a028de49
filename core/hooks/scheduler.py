"""Scheduler observation hooks. Called by the scheduler host.

Scheduling decisions are made by the ordered, weighted plugins of a profile
(:mod:`pilothouse.interfaces.scheduler`); these hooks observe outcomes.
"""

from pilothouse.hooks._markers import hookspec


@hookspec
def pilothouse_pod_scheduled(pod, node_name, profile):
    """A pod was bound to a node (the pods/binding call succeeded).

    :param pod: the pod object (dict) as it was when scheduled.
    :param node_name: the node it was bound to. :param profile: the profile's schedulerName.

    Broadcast, after the bind and the post-bind plugins, on the scheduler's event loop; must
    not block. Exceptions are logged and ignored.

    Since 0.1.
    """


@hookspec
def pilothouse_pod_unschedulable(pod, message, profile):
    """A scheduling attempt found no node for a pod.

    :param pod: the pod object (dict). :param message: the summary the pod's PodScheduled
        condition gets, e.g. ``"0/3 nodes are available: 3 Insufficient cpu."``.
    :param profile: the profile's schedulerName.

    Broadcast, after post-filter (preemption) ran and failed; must not block. Exceptions are
    logged and ignored.

    Since 0.1.
    """
