"""Defaulting: the values Kubernetes fills in for fields a client left out.

:func:`apply_defaults` changes an object in place (and returns it) with the defaults of its
kind, registered per group and kind with :func:`register_defaulter`. Only fields that are
missing (or ``None``; ``""`` for string enums) are filled; a value the client gave is never
replaced. Defaulting is idempotent.

The API server applies defaults right after decoding a request body, before admission and
validation, as Kubernetes does; an object read back therefore shows them all. Built-in
defaults (Kubernetes' ``SetDefaults_*`` for the v1 APIs):

* **Pod** spec: ``restartPolicy: Always``, ``dnsPolicy: ClusterFirst``,
  ``schedulerName: default-scheduler``, ``terminationGracePeriodSeconds: 30``,
  ``securityContext: {}``, ``enableServiceLinks: true``, ``serviceAccount`` mirrors
  ``serviceAccountName``; with ``hostNetwork`` each port's ``hostPort`` is its
  ``containerPort``. Each container: ``imagePullPolicy`` ``Always`` for a ``:latest`` or
  untagged image, else ``IfNotPresent``; ``terminationMessagePath: /dev/termination-log``;
  ``terminationMessagePolicy: File``; port ``protocol: TCP``; requests copied from limits
  where only a limit is given; probes ``timeoutSeconds: 1``, ``periodSeconds: 10``,
  ``successThreshold: 1``, ``failureThreshold: 3`` (``httpGet`` ``path: /``,
  ``scheme: HTTP``); env ``fieldRef.apiVersion: v1``. Volumes without a source become
  ``emptyDir: {}``; configMap, secret, downwardAPI and projected volumes get
  ``defaultMode: 420`` (0644). The ServiceAccount *admission* plugin, not defaulting, sets
  the service account itself. Pod templates of workloads get the same spec defaults except
  ``enableServiceLinks`` and requests-from-limits (applied when the pod is created).
* **Deployment**: ``replicas: 1``, ``strategy: RollingUpdate`` with ``maxSurge`` and
  ``maxUnavailable`` ``25%``, ``revisionHistoryLimit: 10``, ``progressDeadlineSeconds:
  600``. **ReplicaSet**: ``replicas: 1``. **DaemonSet**: ``updateStrategy: RollingUpdate``
  (``maxUnavailable: 1``, ``maxSurge: 0``), ``revisionHistoryLimit: 10``. **StatefulSet**:
  ``replicas: 1``, ``podManagementPolicy: OrderedReady``, ``updateStrategy: RollingUpdate``
  (``partition: 0``), ``revisionHistoryLimit: 10``, PVC retention ``Retain``/``Retain``.
* **Job**: ``parallelism: 1`` and ``completions: 1`` when neither is set,
  ``backoffLimit: 6``, ``completionMode: NonIndexed``, ``suspend: false``,
  ``podReplacementPolicy: TerminatingOrFailed``, labels from the template when the Job has
  none. **CronJob**: ``concurrencyPolicy: Allow``, ``suspend: false``,
  ``successfulJobsHistoryLimit: 3``, ``failedJobsHistoryLimit: 1``.
* **Service**: ``type: ClusterIP``, ``sessionAffinity: None`` (``ClientIP`` gets a 10800 s
  timeout), port ``protocol: TCP`` and ``targetPort`` = ``port``,
  ``internalTrafficPolicy: Cluster`` (not for ExternalName), ``externalTrafficPolicy:
  Cluster`` for NodePort and LoadBalancer, ``allocateLoadBalancerNodePorts: true`` for
  LoadBalancer.
* **Namespace**: ``spec.finalizers: [kubernetes]``, ``status.phase: Active``.
  **Secret**: ``type: Opaque``; ``stringData`` is merged into ``data`` (base64) and
  dropped, as Kubernetes does on write. **Node**: ``status.allocatable`` from
  ``capacity``. Endpoints and EndpointSlice ports ``protocol: TCP``;
  PersistentVolume(Claim) ``volumeMode: Filesystem`` (PV reclaim policy ``Retain``),
  ``status.phase: Pending``; StorageClass ``reclaimPolicy: Delete``,
  ``volumeBindingMode: Immediate``; PriorityClass ``preemptionPolicy:
  PreemptLowerPriority``; HorizontalPodAutoscaler ``minReplicas: 1`` and 80% CPU when it has
  no metrics; RBAC ``roleRef.apiGroup`` and subjects' ``apiGroup``; LimitRange container
  items' ``default`` from ``max`` and ``defaultRequest`` from ``default`` or ``min``;
  CustomResourceDefinition ``names.singular``, ``names.listKind``, ``conversion: None``.

Since 0.1.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from pilothouse.model.kinds import Kind, _lookup

__all__ = ["Defaulter", "apply_defaults", "default_pod_spec", "image_pull_policy",
           "register_defaulter"]

Defaulter = Callable[[dict], None]
_DEFAULTERS: dict[tuple[str, str], Defaulter] = {}


def register_defaulter(group: str, kind: str, defaulter: Defaulter) -> None:
    """Register ``defaulter(obj)`` (changes ``obj`` in place) for ``group``/``kind``,
    replacing any earlier one. Process-wide; plugins call it from
    ``pilothouse_register_kinds`` for their own kinds.

    A defaulter must change nothing below the top level of an object it has already
    defaulted (fill in what is missing, never rewrite what is there): it runs on every
    create and update, and an update's new object may hold the stored object's own values,
    which nobody may change."""
    _DEFAULTERS[(group, kind)] = defaulter


def apply_defaults(kind: Kind | str | None, obj: dict) -> dict:
    """Fill in the defaults of ``obj``'s kind (see the module docstring) and return ``obj``.
    ``kind`` is a :class:`~pilothouse.model.kinds.Kind`, a built-in kind's name, or None to
    use the object's apiVersion and kind. Kinds without a defaulter are left unchanged."""
    k = _lookup(kind, obj)
    if k is not None:
        key = (k.group, k.kind)
    else:
        key = ((obj.get("apiVersion") or "").rpartition("/")[0],
               kind if isinstance(kind, str) else obj.get("kind") or "")
    defaulter = _DEFAULTERS.get(key)
    if defaulter is not None:
        defaulter(obj)
    return obj


def _set(d: dict, key: str, value: object) -> None:
    if d.get(key) is None or (isinstance(value, str) and d.get(key) == ""):
        d[key] = value


def _sub(d: dict, key: str) -> dict:
    """``d[key]`` as a dict, created when missing or null."""
    if not isinstance(d.get(key), dict):
        d[key] = {}
    return d[key]


# ------------------------------------------------------------------------------- pods


def image_pull_policy(image: str) -> str:
    """``Always`` when the image's tag is ``latest`` or it has neither tag nor digest,
    otherwise ``IfNotPresent``."""
    if not image:
        return "IfNotPresent"  # Kubernetes cannot parse it, so finds no "latest" tag
    name, at, _digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else ""
    if at and not tag:
        return "IfNotPresent"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: object) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        _set(probe, key, value)
    _default_handler(probe)


def _default_handler(handler: dict) -> None:
    if isinstance(handler.get("httpGet"), dict):
        _set(handler["httpGet"], "path", "/")
        _set(handler["httpGet"], "scheme", "HTTP")


def _default_container(c: dict, host_network: bool) -> None:
    _set(c, "imagePullPolicy", image_pull_policy(c.get("image") or ""))
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            if host_network and port.get("containerPort"):
                _set(port, "hostPort", port["containerPort"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _default_handler(lifecycle[hook])
    for env in c.get("env") or []:
        if isinstance(env, dict) and isinstance(env.get("valueFrom"), dict) and \
                isinstance(env["valueFrom"].get("fieldRef"), dict):
            _set(env["valueFrom"]["fieldRef"], "apiVersion", "v1")


_MODE_0644 = 420
_VOLUME_SOURCES_WITH_MODE = ("configMap", "secret", "downwardAPI", "projected")
_ANY_VOLUME_SOURCE = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore",
                      "gitRepo", "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim",
                      "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
                      "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
                      "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
                      "storageos", "csi", "ephemeral", "image")


def default_pod_spec(spec: dict) -> dict:
    """Apply the PodSpec defaults (those of pod templates too) to ``spec`` in place."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "terminationGracePeriodSeconds", 30)
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("serviceAccountName"):
        _set(spec, "serviceAccount", spec["serviceAccountName"])
    elif spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    host_network = bool(spec.get("hostNetwork"))
    for part in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(part) or []:
            if isinstance(c, dict):
                _default_container(c, host_network and part != "ephemeralContainers")
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        if not any(vol.get(s) is not None for s in _ANY_VOLUME_SOURCE):
            vol["emptyDir"] = {}
        for source in _VOLUME_SOURCES_WITH_MODE:
            if isinstance(vol.get(source), dict):
                _set(vol[source], "defaultMode", _MODE_0644)
        if isinstance(vol.get("hostPath"), dict):
            _set(vol["hostPath"], "type", "")
    return spec


def _default_pod(obj: dict) -> None:
    spec = default_pod_spec(_sub(obj, "spec"))
    _set(spec, "enableServiceLinks", True)
    for part in ("initContainers", "containers"):
        for c in spec.get(part) or []:
            if not isinstance(c, dict) or not isinstance(c.get("resources"), dict):
                continue
            limits = c["resources"].get("limits")
            if isinstance(limits, dict) and limits:
                requests = _sub(c["resources"], "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)


def _default_template(spec: dict) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(_sub(template, "spec"))


# ---------------------------------------------------------------------------- workloads


def _default_deployment(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _sub(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _sub(strategy, "rollingUpdate")
        _set(ru, "maxUnavailable", "25%")
        _set(ru, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _default_template(spec)


def _default_replicaset(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "replicas", 1)
    _default_template(spec)


def _default_daemonset(obj: dict) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _sub(strategy, "rollingUpdate")
        _set(ru, "maxUnavailable", 1)
        _set(ru, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _default_template(spec)


def _default_statefulset(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _sub(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _sub(strategy, "rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        _set(strategy["rollingUpdate"], "partition", 0)
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    _set(retention, "whenDeleted", "Retain")
    _set(retention, "whenScaled", "Retain")
    _set(spec, "replicas", 1)
    _set(spec, "revisionHistoryLimit", 10)
    _default_template(spec)


def _default_job_spec(spec: dict) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _set(spec, "podReplacementPolicy",
         "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed")
    _default_template(spec)


def _default_job(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _default_job_spec(spec)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = _sub(obj, "metadata")
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)


def _default_cronjob(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
        _default_template(job_template["spec"])


# ----------------------------------------------------------------------------- services


def _default_service(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _sub(_sub(spec, "sessionAffinityConfig"), "clientIP")
        _set(client_ip, "timeoutSeconds", 10800)
    _set(spec, "type", "ClusterIP")
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        _set(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    stype = spec["type"]
    if stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and
                                                 spec.get("externalIPs")):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if stype in ("ClusterIP", "NodePort", "LoadBalancer"):
        _set(spec, "internalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)


def _default_ports(ports: object) -> None:
    for port in ports or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")


def _default_endpoints(obj: dict) -> None:
    for subset in obj.get("subsets") or []:
        if isinstance(subset, dict):
            _default_ports(subset.get("ports"))


def _default_endpointslice(obj: dict) -> None:
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            if port.get("name") is None:
                port["name"] = ""


# ---------------------------------------------------------------------- cluster objects


def _default_namespace(obj: dict) -> None:
    spec = _sub(obj, "spec")
    if not spec.get("finalizers"):
        spec["finalizers"] = ["kubernetes"]
    _set(_sub(obj, "status"), "phase", "Active")


def _default_secret(obj: dict) -> None:
    _set(obj, "type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _sub(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _default_node(obj: dict) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and status.get("capacity") and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])


def _default_pv(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    _set(_sub(obj, "status"), "phase", "Pending")


def _default_pvc(obj: dict) -> None:
    _set(_sub(obj, "spec"), "volumeMode", "Filesystem")
    _set(_sub(obj, "status"), "phase", "Pending")


def _default_storageclass(obj: dict) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def _default_priorityclass(obj: dict) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


def _default_hpa(obj: dict) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def _default_binding(obj: dict) -> None:
    _set(_sub(obj, "roleRef"), "apiGroup", "rbac.authorization.k8s.io")
    for subject in obj.get("subjects") or []:
        if not isinstance(subject, dict) or subject.get("apiGroup"):
            continue
        if subject.get("kind") == "ServiceAccount":
            subject["apiGroup"] = ""
        elif subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


def _default_limitrange(obj: dict) -> None:
    for item in (obj.get("spec") or {}).get("limits") or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = _sub(item, "default")
        request = _sub(item, "defaultRequest")
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        for name, value in default.items():
            request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            request.setdefault(name, value)


def _default_crd(obj: dict) -> None:
    spec = _sub(obj, "spec")
    names = _sub(spec, "names")
    if names.get("kind"):
        _set(names, "singular", names["kind"].lower())
        _set(names, "listKind", names["kind"] + "List")
    _set(_sub(spec, "conversion"), "strategy", "None")


for _group, _kind, _fn in (
        ("", "Pod", _default_pod), ("", "Service", _default_service),
        ("", "Namespace", _default_namespace), ("", "Secret", _default_secret),
        ("", "Node", _default_node), ("", "Endpoints", _default_endpoints),
        ("", "PersistentVolume", _default_pv), ("", "PersistentVolumeClaim", _default_pvc),
        ("", "LimitRange", _default_limitrange),
        ("apps", "Deployment", _default_deployment),
        ("apps", "ReplicaSet", _default_replicaset),
        ("apps", "DaemonSet", _default_daemonset),
        ("apps", "StatefulSet", _default_statefulset),
        ("batch", "Job", _default_job), ("batch", "CronJob", _default_cronjob),
        ("discovery.k8s.io", "EndpointSlice", _default_endpointslice),
        ("rbac.authorization.k8s.io", "RoleBinding", _default_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding", _default_binding),
        ("scheduling.k8s.io", "PriorityClass", _default_priorityclass),
        ("autoscaling", "HorizontalPodAutoscaler", _default_hpa),
        ("storage.k8s.io", "StorageClass", _default_storageclass),
        ("apiextensions.k8s.io", "CustomResourceDefinition", _default_crd)):
    _DEFAULTERS[(_group, _kind)] = _fn
