"""Translation between the driver interface's dataclasses and CRI v1 messages."""

from __future__ import annotations

from pilothouse.api import cri_pb2 as pb
from pilothouse.interfaces import runtime as rt

_PROPAGATION = {
    rt.MountPropagation.PRIVATE: pb.PROPAGATION_PRIVATE,
    rt.MountPropagation.HOST_TO_CONTAINER: pb.PROPAGATION_HOST_TO_CONTAINER,
    rt.MountPropagation.BIDIRECTIONAL: pb.PROPAGATION_BIDIRECTIONAL,
}
_PROPAGATION_BACK = {v: k for k, v in _PROPAGATION.items()}
_PROTOCOL = {"TCP": pb.TCP, "UDP": pb.UDP, "SCTP": pb.SCTP}
_CONTAINER_STATE = {
    pb.CONTAINER_CREATED: rt.ContainerState.CREATED,
    pb.CONTAINER_RUNNING: rt.ContainerState.RUNNING,
    pb.CONTAINER_EXITED: rt.ContainerState.EXITED,
    pb.CONTAINER_UNKNOWN: rt.ContainerState.UNKNOWN,
}
CONTAINER_STATE_PB = {v: k for k, v in _CONTAINER_STATE.items()}
_SANDBOX_STATE = {pb.SANDBOX_READY: rt.PodSandboxState.READY,
                  pb.SANDBOX_NOTREADY: rt.PodSandboxState.NOTREADY}
SANDBOX_STATE_PB = {v: k for k, v in _SANDBOX_STATE.items()}


def seconds(ns: int) -> float | None:
    return ns / 1e9 if ns else None


def _namespaces(c: rt.PodSandboxConfig) -> pb.NamespaceOption:
    return pb.NamespaceOption(
        network=pb.NODE if c.host_network else pb.POD,
        pid=pb.NODE if c.host_pid else (pb.POD if c.share_process_namespace else pb.CONTAINER),
        ipc=pb.NODE if c.host_ipc else pb.POD)


def sandbox_config(c: rt.PodSandboxConfig) -> pb.PodSandboxConfig:
    m = c.metadata
    out = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=m.name, uid=m.uid, namespace=m.namespace,
                                       attempt=m.attempt),
        hostname=c.hostname, log_directory=c.log_directory,
        port_mappings=[pb.PortMapping(protocol=_PROTOCOL[p.protocol.upper()],
                                      container_port=p.container_port, host_port=p.host_port,
                                      host_ip=p.host_ip) for p in c.port_mappings],
        labels=dict(c.labels), annotations=dict(c.annotations),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=c.cgroup_parent, sysctls=dict(c.sysctls),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=_namespaces(c), privileged=c.privileged)))
    if c.dns.servers or c.dns.searches or c.dns.options:
        # An unset dns_config makes containerd copy the node's resolv.conf.
        out.dns_config.CopyFrom(pb.DNSConfig(servers=c.dns.servers, searches=c.dns.searches,
                                             options=c.dns.options))
    return out


def resources(r: rt.Resources) -> pb.LinuxContainerResources:
    return pb.LinuxContainerResources(
        cpu_period=r.cpu_period, cpu_quota=r.cpu_quota, cpu_shares=r.cpu_shares,
        memory_limit_in_bytes=r.memory_limit_bytes, oom_score_adj=r.oom_score_adj,
        cpuset_cpus=r.cpuset_cpus, cpuset_mems=r.cpuset_mems)


def mount(m: rt.Mount) -> pb.Mount:
    return pb.Mount(container_path=m.container_path, host_path=m.host_path,
                    readonly=m.readonly, propagation=_PROPAGATION[m.propagation])


def container_config(c: rt.ContainerConfig, sandbox: rt.PodSandboxConfig) -> pb.ContainerConfig:
    s = c.security
    security = pb.LinuxContainerSecurityContext(
        capabilities=pb.Capability(add_capabilities=s.capabilities_add,
                                   drop_capabilities=s.capabilities_drop),
        privileged=s.privileged, namespace_options=_namespaces(sandbox),
        readonly_rootfs=s.readonly_rootfs, supplemental_groups=s.supplemental_groups,
        no_new_privs=s.no_new_privs)
    if s.run_as_user is not None:
        security.run_as_user.value = s.run_as_user
    if s.run_as_group is not None:
        security.run_as_group.value = s.run_as_group
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=c.metadata.name, attempt=c.metadata.attempt),
        image=pb.ImageSpec(image=c.image), command=c.command, args=c.args,
        working_dir=c.working_dir, envs=[pb.KeyValue(key=k, value=v) for k, v in c.env],
        mounts=[mount(m) for m in c.mounts], labels=dict(c.labels),
        annotations=dict(c.annotations), log_path=c.log_path, stdin=c.stdin,
        stdin_once=c.stdin_once, tty=c.tty,
        linux=pb.LinuxContainerConfig(resources=resources(c.resources),
                                      security_context=security))


def sandbox_metadata(m: pb.PodSandboxMetadata) -> rt.PodSandboxMetadata:
    return rt.PodSandboxMetadata(name=m.name, namespace=m.namespace, uid=m.uid,
                                 attempt=m.attempt)


def pod_sandbox(s: pb.PodSandbox) -> rt.PodSandbox:
    return rt.PodSandbox(id=s.id, metadata=sandbox_metadata(s.metadata),
                         state=_SANDBOX_STATE[s.state], created_at=s.created_at / 1e9,
                         labels=dict(s.labels), annotations=dict(s.annotations))


def pod_sandbox_status(s: pb.PodSandboxStatus, netns_path: str) -> rt.PodSandboxStatus:
    host_network = s.linux.namespaces.options.network == pb.NODE
    ready = s.state == pb.SANDBOX_READY
    return rt.PodSandboxStatus(
        id=s.id, metadata=sandbox_metadata(s.metadata), state=_SANDBOX_STATE[s.state],
        created_at=s.created_at / 1e9,
        ip=s.network.ip if ready and not host_network else "",
        additional_ips=tuple(p.ip for p in s.network.additional_ips) if ready else (),
        netns_path="" if host_network else netns_path, host_network=host_network,
        labels=dict(s.labels), annotations=dict(s.annotations))


def container_metadata(m: pb.ContainerMetadata) -> rt.ContainerMetadata:
    return rt.ContainerMetadata(name=m.name, attempt=m.attempt)


def container(c: pb.Container, image_id: str) -> rt.Container:
    return rt.Container(id=c.id, sandbox_id=c.pod_sandbox_id,
                        metadata=container_metadata(c.metadata), image=c.image.image,
                        image_id=image_id, state=_CONTAINER_STATE[c.state],
                        created_at=c.created_at / 1e9, labels=dict(c.labels),
                        annotations=dict(c.annotations))


def container_status(c: pb.ContainerStatus, sandbox_id: str, image_id: str
                     ) -> rt.ContainerStatus:
    return rt.ContainerStatus(
        id=c.id, sandbox_id=sandbox_id, metadata=container_metadata(c.metadata),
        state=_CONTAINER_STATE[c.state], image=c.image.image, image_id=image_id,
        created_at=c.created_at / 1e9, started_at=seconds(c.started_at),
        finished_at=seconds(c.finished_at), exit_code=c.exit_code, reason=c.reason,
        message=c.message, log_path=c.log_path,
        mounts=tuple(rt.Mount(container_path=m.container_path, host_path=m.host_path,
                              readonly=m.readonly,
                              propagation=_PROPAGATION_BACK.get(
                                  m.propagation, rt.MountPropagation.PRIVATE))
                     for m in c.mounts),
        labels=dict(c.labels), annotations=dict(c.annotations))


def container_stats(s: pb.ContainerStats) -> rt.ContainerStats:
    stamp = s.cpu.timestamp or s.memory.timestamp
    return rt.ContainerStats(
        container_id=s.attributes.id, timestamp=stamp / 1e9 if stamp else 0.0,
        cpu_usage_core_ns=s.cpu.usage_core_nano_seconds.value,
        memory_working_set_bytes=s.memory.working_set_bytes.value,
        writable_layer_bytes=s.writable_layer.used_bytes.value)


def image(i: pb.Image, pinned: bool = False) -> rt.Image:
    user = i.username or (str(i.uid.value) if i.HasField("uid") else "")
    return rt.Image(id=i.id, repo_tags=tuple(i.repo_tags), repo_digests=tuple(i.repo_digests),
                    size=i.size, user=user, pinned=i.pinned or pinned)
