"""pilothouse-controllers: Pilothouse's built-in controllers, each its own plugin of the
``pilothouse.controllers`` entry-point group, enabled by name in the config:

=================  ===============================================  ========================
entry point        class                                            module
=================  ===============================================  ========================
replicaset         ReplicaSetController                             :mod:`.replicaset`
deployment         DeploymentController                             :mod:`.deployment`
garbagecollector   GarbageCollector                                 :mod:`.garbagecollector`
namespace          NamespaceController                              :mod:`.namespace`
endpointslice      EndpointSliceController                          :mod:`.endpointslice`
serviceaccount     ServiceAccountController                         :mod:`.serviceaccount`
nodelifecycle      NodeLifecycleController                          :mod:`.nodelifecycle`
podgc              PodGCController                                  :mod:`.podgc`
=================  ===============================================  ========================

Every controller is a :class:`pilothouse.controllers.QueueController` and uses only
:mod:`pilothouse.client` through the controller host; none imports another plugin.
"""

__version__ = "0.1.0"
