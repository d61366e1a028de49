"""``pilothouse.node``: the node agent, which does the kubelet's job through a runtime
driver.

It registers its Node (capacity and allocatable from the machine, addresses, the
``kubernetes.io/hostname|os|arch`` labels plus those of the ``pilothouse_node_labels`` hook,
the Ready condition) and renews its Lease in ``kube-node-lease``. It watches the pods bound
to it (``spec.nodeName``) and runs one worker per pod that drives it through the
:class:`~pilothouse.interfaces.runtime.Runtime` driver: sandbox, init containers in order,
containers, restarts per ``restartPolicy`` with Kubernetes' back-off (10 s doubling to
5 min, reset after 10 min of running), liveness/readiness/startup probes, graceful
termination (preStop, grace period, SIGTERM then SIGKILL), image pull policies, volumes
(emptyDir, configMap, secret, hostPath, downwardAPI, projected with a placeholder
service-account token), environment (values, field/resource/ConfigMap/Secret references,
envFrom) and cgroup limits from requests and limits. It writes each pod's status through
``pods/status`` as the kubelet does (phase, conditions, container states, restart counts,
IPs, QoS class), only when it changed. Containers carry the pod UID, their name and their
restart attempt as labels, so a restarted agent adopts what runs instead of restarting it.

Its endpoint serves ``/containerLogs``, ``/exec``, ``/attach`` and ``/portForward`` (see
:mod:`pilothouse.streaming.node`) for the API server to proxy ``kubectl logs``, ``exec``,
``attach`` and ``port-forward`` to.

Use::

    agent = NodeAgent(client, runtime, network=None, node_name="node-1",
                      options=Settings(dataDir="/var/lib/pilothouse/node"))
    await agent.run()             # or: await agent.start(); ...; await agent.stop()

or ``pilothouse node --config FILE --server URL [--node-name N]`` (:func:`run_node_agent`;
also ``python -m pilothouse.node ...``), with the runtime (and network) driver of the config
file and the settings under ``components.node`` (:class:`Settings`; unknown keys and wrong
types are errors)::

    runtime:
      plugin: containerd
      options: {manage: true, pod_cidr: 10.244.1.0/24}
    components:
      node:
        nodeName: node-1              # default: the host name
        dataDir: /var/lib/pilothouse/node   # volumes (pods/<uid>/), logs (logs/)
        podCIDR: 10.244.1.0/24        # given to the runtime; spec.podCIDR of a new Node
        address: 0.0.0.0              # the endpoint (logs, exec, attach, port-forward)
        port: 10250                   # 0: a free port (published in the Node)
        nodeIP: ""                    # InternalIP; default: the default route's address
        tlsCertFile: ""               # serve the endpoint over HTTPS
        tlsKeyFile: ""
        maxPods: 110
        kubeReserved: {cpu: 100m, memory: 256Mi}   # and systemReserved: allocatable
        clusterDNS: []                # for dnsPolicy ClusterFirst (none: the node's)
        clusterDomain: cluster.local
        labels: {}                    # extra Node labels
        syncFrequency: 10             # seconds between periodic syncs of each pod
        relistPeriod: 1               # seconds between runtime relists (exits)
        statusUpdateFrequency: 10     # Node status computed; written when changed
        statusReportFrequency: 60     # ... and at least this often
        leaseDurationSeconds: 40      # renewed every quarter of it
        caFile: ""                    # ca.crt of service-account volumes
        serviceAccountVolume: true    # mount the placeholder service-account directory
        requireRuntimeReady: true     # start no pod while the runtime is not ready

Exec and attach reach a runtime with a streaming server (CRI) as a SPDY client of its
URL; without one (``Feature.STREAMING``), ``exec`` runs non-interactive commands through
``exec_sync``. Port-forward connects to ``localhost:PORT`` inside the sandbox's network
namespace (the sandbox's IP, or the host for host-network pods, when there is none).

Hooks called when a plugin manager is given: ``pilothouse_node_labels``,
``pilothouse_pod_synced``, ``pilothouse_container_started``,
``pilothouse_container_exited``, ``pilothouse_pod_network_attached``/``detached``,
``pilothouse_component_started``/``stopping`` (component ``"node"``).

Since 0.1.
"""

from pilothouse.node._agent import KUBELET_VERSION, NodeAgent
from pilothouse.node._run import add_node_command, cmd_node, run_node_agent
from pilothouse.node._settings import Settings, settings

__all__ = ["KUBELET_VERSION", "NodeAgent", "Settings", "add_node_command", "cmd_node",
           "run_node_agent", "settings"]
