"""From a Pod to runtime configs: labels that tie sandboxes and containers to their pod,
the sandbox config (hostname, DNS, ports, namespaces), and the container config's resources
and security settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from pilothouse.interfaces import runtime as rt
from pilothouse.model.meta import pod_qos_class
from pilothouse.model.quantity import Quantity, QuantityError

__all__ = [
    "CONTAINER_NAME", "NODE_LABEL", "POD_NAME", "POD_NAMESPACE", "POD_UID",
    "container_hash", "container_labels", "container_resources", "hostname_of",
    "sandbox_config", "sandbox_labels", "security_context",
]

# The kubelet's own label keys, so that crictl and other tools recognise our pods.
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
#: Which node agent owns a sandbox (several agents may share one runtime in tests).
NODE_LABEL = "pilothouse.io/node"
#: Annotations on containers.
HASH_ANNOTATION = "io.kubernetes.container.hash"
RESTART_ANNOTATION = "io.kubernetes.container.restartCount"
KIND_ANNOTATION = "pilothouse.io/container-kind"  # "init" or "regular"
GRACE_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"

CPU_PERIOD = 100_000
MIN_SHARES = 2
MIN_QUOTA = 1000


def _meta(pod: dict) -> dict:
    return pod.get("metadata") or {}


def sandbox_labels(pod: dict, node_name: str) -> dict[str, str]:
    m = _meta(pod)
    return {POD_NAME: m.get("name", ""), POD_NAMESPACE: m.get("namespace", ""),
            POD_UID: m.get("uid", ""), NODE_LABEL: node_name}


def container_labels(pod: dict, name: str, node_name: str) -> dict[str, str]:
    return {**sandbox_labels(pod, node_name), CONTAINER_NAME: name}


def container_hash(container: dict) -> str:
    """A digest of the container's spec, without ``resources`` (resized in place): when it
    changes (a new image), the container is restarted."""
    spec = {k: v for k, v in container.items() if k != "resources"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def hostname_of(pod: dict) -> str:
    """The pod's hostname: ``spec.hostname`` or its name, at most 63 characters."""
    name = (pod.get("spec") or {}).get("hostname") or _meta(pod).get("name", "")
    return name[:63].rstrip("-.")


def _node_resolv_conf(path: str = "/etc/resolv.conf") -> rt.DNSConfig:
    config = rt.DNSConfig()
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return config
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            config.servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            config.searches = fields[1:]
        elif fields[0] == "options":
            config.options.extend(fields[1:])
    return config


def dns_config(pod: dict, cluster_dns: list[str], cluster_domain: str) -> rt.DNSConfig:
    """The sandbox's resolver per ``dnsPolicy`` and ``dnsConfig``. ClusterFirst without
    configured cluster DNS servers falls back to the node's resolver, as the kubelet does."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    extra = spec.get("dnsConfig") or {}
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        ns = _meta(pod).get("namespace", "default")
        host = _node_resolv_conf()
        config = rt.DNSConfig(
            servers=list(cluster_dns),
            searches=[f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            + [s for s in host.searches if s],
            options=["ndots:5"])
    elif policy == "None":
        config = rt.DNSConfig()
    else:  # Default
        if not extra:
            return rt.DNSConfig()  # the runtime copies the node's resolv.conf
        config = _node_resolv_conf()
    for server in extra.get("nameservers") or []:
        if server not in config.servers:
            config.servers.append(server)
    for search in extra.get("searches") or []:
        if search not in config.searches:
            config.searches.append(search)
    for option in extra.get("options") or []:
        name = option.get("name", "")
        value = option.get("value")
        text = f"{name}:{value}" if value not in (None, "") else name
        config.options = [o for o in config.options if o.split(":", 1)[0] != name] + [text]
    config.searches = config.searches[:32]
    return config


def sandbox_config(pod: dict, *, node_name: str, log_directory: str, attempt: int,
                   cluster_dns: list[str], cluster_domain: str) -> rt.PodSandboxConfig:
    m, spec = _meta(pod), pod.get("spec") or {}
    host_network = bool(spec.get("hostNetwork"))
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append(rt.PortMapping(container_port=int(p["containerPort"]),
                                            host_port=int(p["hostPort"]),
                                            protocol=p.get("protocol") or "TCP",
                                            host_ip=p.get("hostIP") or ""))
    psc = spec.get("securityContext") or {}
    privileged = any(((c.get("securityContext") or {}).get("privileged"))
                     for c in (spec.get("containers") or []) + (spec.get("initContainers") or []))
    return rt.PodSandboxConfig(
        metadata=rt.PodSandboxMetadata(name=m.get("name", ""), namespace=m.get("namespace", ""),
                                       uid=m.get("uid", ""), attempt=attempt),
        hostname="" if host_network else hostname_of(pod),
        log_directory=log_directory,
        dns=dns_config(pod, cluster_dns, cluster_domain),
        port_mappings=ports,
        labels=sandbox_labels(pod, node_name),
        annotations={k: v for k, v in (m.get("annotations") or {}).items()},
        host_network=host_network, host_pid=bool(spec.get("hostPID")),
        host_ipc=bool(spec.get("hostIPC")),
        share_process_namespace=bool(spec.get("shareProcessNamespace")),
        sysctls={s["name"]: str(s.get("value", "")) for s in psc.get("sysctls") or []
                 if s.get("name")},
        privileged=privileged)


def _quantity(resources: dict, kind: str, name: str) -> Quantity | None:
    value = ((resources or {}).get(kind) or {}).get(name)
    if value is None:
        return None
    try:
        return Quantity(str(value))
    except QuantityError:
        return None


def container_resources(pod: dict, container: dict, node_memory: int) -> rt.Resources:
    """cgroup settings from the container's requests and limits, as the kubelet derives
    them: shares from the CPU request (``milli * 1024 / 1000``, at least 2), quota from the
    CPU limit over a 100 ms period, the memory limit, and an OOM score from the QoS class."""
    res = container.get("resources") or {}
    cpu_req = _quantity(res, "requests", "cpu")
    cpu_lim = _quantity(res, "limits", "cpu")
    mem_req = _quantity(res, "requests", "memory")
    mem_lim = _quantity(res, "limits", "memory")
    if cpu_req is None and cpu_lim is not None:
        cpu_req = cpu_lim
    shares = max(MIN_SHARES, cpu_req.milli_value() * 1024 // 1000) if cpu_req else MIN_SHARES
    quota = period = 0
    if cpu_lim is not None and cpu_lim.milli_value() > 0:
        period = CPU_PERIOD
        quota = max(MIN_QUOTA, cpu_lim.milli_value() * CPU_PERIOD // 1000)
    memory = mem_lim.value() if mem_lim is not None else 0
    qos = pod_qos_class(pod)
    if qos == "Guaranteed":
        oom = -997
    elif qos == "BestEffort":
        oom = 1000
    else:
        request = (mem_req or mem_lim).value() if (mem_req or mem_lim) else 0
        oom = 1000 - (1000 * request) // node_memory if node_memory else 999
        oom = min(max(oom, 2), 999)
    return rt.Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=period,
                        memory_limit_bytes=memory, oom_score_adj=oom)


def security_context(pod: dict, container: dict) -> rt.SecurityContext:
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def pick(key):
        return csc.get(key) if csc.get(key) is not None else psc.get(key)
    caps = csc.get("capabilities") or {}
    groups = list(psc.get("supplementalGroups") or [])
    if psc.get("fsGroup") is not None and psc["fsGroup"] not in groups:
        groups.append(psc["fsGroup"])
    return rt.SecurityContext(
        run_as_user=pick("runAsUser"), run_as_group=pick("runAsGroup"),
        privileged=bool(csc.get("privileged")),
        readonly_rootfs=bool(csc.get("readOnlyRootFilesystem")),
        capabilities_add=list(caps.get("add") or []),
        capabilities_drop=list(caps.get("drop") or []),
        no_new_privs=csc.get("allowPrivilegeEscalation") is False,
        supplemental_groups=groups)


def allocatable_of(node_status: Mapping) -> dict[str, Quantity]:
    out = {}
    for k, v in (node_status.get("allocatable") or {}).items():
        try:
            out[k] = Quantity(str(v))
        except QuantityError:
            pass
    return out
