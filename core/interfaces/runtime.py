"""The runtime driver interface: pod sandboxes, containers and images on one node.

One runtime driver is active per node agent (config slot ``runtime``, entry-point group
``pilothouse.runtime``). The node agent is its only caller: it turns the Pods bound to its
node into sandboxes and containers through this interface and reports what it observes back
through the API (ARCHITECTURE.md rule 1). The shape is CRI v1's ``RuntimeService`` and
``ImageService`` (``runtime.v1``), translated to Python: a driver that speaks CRI to
containerd or CRI-O is a thin mapping, and a driver that does not speak CRI (a process
runtime, a hollow runtime for scale tests) implements the same semantics directly.

**Lifecycle.** A *pod sandbox* is the environment a pod's containers share: a network
namespace with the pod's IP, the shared IPC/UTS namespaces, the pod-level cgroup, and
(in CRI runtimes) an infra "pause" process that holds them::

    run_pod_sandbox ──► READY ──stop_pod_sandbox──► NOTREADY ──remove_pod_sandbox──► (gone)

:meth:`Runtime.run_pod_sandbox` creates and starts a sandbox in one step. Stopping it
kills every container in it and releases its network (the IP returns to the pool);
removing it also removes its containers. A sandbox never goes back to READY: the agent
creates a new one with ``attempt + 1``.

A *container* lives in exactly one sandbox::

    create_container ──► CREATED ──start_container──► RUNNING ──(exit | stop)──► EXITED
                                                                       remove_container ──► (gone)

A container runs once. Restarting (``restartPolicy``) is the agent's job: it removes or
keeps the exited container (for ``kubectl logs --previous``) and creates a new one with
``attempt + 1``. ``UNKNOWN`` is reported when the runtime lost track of the process (for
example after a crash of the runtime itself).

**Names.** The runtime derives a unique name from each sandbox's
(namespace, name, uid, attempt) and each container's (sandbox, name, attempt). Creating a
second live object with the same metadata raises :class:`AlreadyExists`; the agent looks the
old one up with a label or id filter and removes it first. IDs are opaque strings chosen by
the runtime, unique on the node; callers must not parse them.

**Image references** are accepted in any form a user writes in a pod spec (``busybox``,
``busybox:1.36``, ``registry.example/team/app@sha256:...``); drivers normalise them the way
Docker does (``docker.io/library/busybox:latest``) and report normalised names. An image's
*id* is the digest of its config (``sha256:...``); it may be used wherever a reference is.

**Logs.** Every container's stdout and stderr go to one file, at
``sandbox_config.log_directory / container_config.log_path``, in the CRI log format that
``kubectl logs`` readers expect: one record per line,
``<RFC 3339 timestamp with nanoseconds> <stdout|stderr> <P|F> <text>``, where ``P`` marks a
partial line (split because it was too long) and ``F`` a full one; the text excludes the
newline. The node agent reads these files to serve ``pods/log``; log rotation renames the
file and calls :meth:`Runtime.reopen_container_log`.

**Streaming** (``kubectl exec``, ``attach``, ``port-forward``) follows CRI: the driver does
not carry the bytes. :meth:`Runtime.exec`, :meth:`Runtime.attach` and
:meth:`Runtime.port_forward` return the URL of a one-shot session on the runtime's own
streaming server. The API server forwards the client's upgraded connection (SPDY or
WebSocket, Kubernetes' ``remotecommand``/``portforward`` subprotocols) for
``pods/exec|attach|portforward`` to the node agent; the agent serves the client's protocol
itself (:mod:`pilothouse.streaming`: WebSocket v4/v5 channels, SPDY, SPDY-in-WebSocket), then
resolves the container id, asks the driver for a URL and connects to it as a SPDY client with
the ``remotecommand`` v4 streams, relaying stdin, stdout, stderr, resize and the exit status
(runtimes such as containerd 1.6 speak neither kubectl's v5 nor SPDY-in-WebSocket). It
connects instead of redirecting because streaming servers listen on loopback. Port-forward
connects to the port inside the sandbox's network namespace (``netns_path``). A URL is
single-use and expires if unused (containerd: after one minute).

**Concurrency and blocking.** All methods are coroutines run on the node agent's event
loop. The agent may call them concurrently for different pods (never two lifecycle calls for
the same sandbox or container at once). A driver whose work blocks (synchronous RPC,
subprocesses, file I/O on large files) must move it off the loop; a method may take as long
as the operation it performs (a pull, an import, a graceful stop), but must not block the
loop while doing it.

**Errors.** Methods raise only the exceptions defined here, all subclasses of
:class:`ContainerRuntimeError` (itself a builtin :class:`RuntimeError`). Anything else
escaping a driver is a driver bug; the agent logs it and retries the pod with back-off.
Unknown sandbox and container ids raise :class:`NotFound`, except in the ``remove_*``
methods, which are idempotent and treat an unknown id as already removed. Absent images raise
:class:`ImageNotFound`, a :class:`NotFound`. A runtime that cannot be reached raises
:class:`Unavailable`; the agent marks the node NotReady until :meth:`Runtime.status` says
otherwise. An optional operation a driver does not support raises :class:`Unsupported`.

**Features.** :attr:`Runtime.features` lists the optional guarantees a driver gives (see
:class:`Feature`). The conformance suite (:mod:`pilothouse.testing.runtime`) runs the tests
for what a driver declares, so a process-based runtime passes "for what it supports".

Version history: all of this appeared in 0.1.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "AlreadyExists",
    "Container",
    "ContainerConfig",
    "ContainerMetadata",
    "ContainerRuntimeError",
    "ContainerState",
    "ContainerStats",
    "ContainerStatus",
    "DNSConfig",
    "ExecResult",
    "ExecTimeout",
    "Feature",
    "Image",
    "ImageNotFound",
    "ImagePullError",
    "InvalidArgument",
    "Mount",
    "MountPropagation",
    "NotFound",
    "PodSandbox",
    "PodSandboxConfig",
    "PodSandboxMetadata",
    "PodSandboxState",
    "PodSandboxStatus",
    "PortMapping",
    "ProgressCallback",
    "Resources",
    "Runtime",
    "RuntimeCondition",
    "RuntimeStatus",
    "RuntimeVersion",
    "SecurityContext",
    "Unavailable",
    "Unsupported",
]


# ---------------------------------------------------------------------------------------
# Errors


class ContainerRuntimeError(RuntimeError):
    """Base class of every error a runtime driver may raise. ``str(error)`` is a message
    fit for a Pod's status (``reason``/``message``), naming the object and the cause."""


class NotFound(ContainerRuntimeError):
    """A sandbox, container or image does not exist (or no longer does).

    ``kind`` is ``"sandbox"``, ``"container"`` or ``"image"``; ``id`` the id or reference
    asked for. The agent treats it as "already gone" when it was stopping or removing.
    """

    def __init__(self, kind: str, id: str, detail: str = ""):
        super().__init__(f"{kind} {id!r} not found" + (f": {detail}" if detail else ""))
        self.kind, self.id = kind, id


class ImageNotFound(NotFound):
    """The image is not present on the node (and, for :meth:`Runtime.pull_image`, cannot be
    fetched). The agent reports the pod as ``ErrImageNeverPull``/``ErrImagePull``."""

    def __init__(self, ref: str, detail: str = ""):
        super().__init__("image", ref, detail)
        self.ref = ref


class ImagePullError(ContainerRuntimeError):
    """Fetching an image from a registry failed (unreachable, unauthorised, bad manifest).
    The agent reports ``ErrImagePull`` and retries with back-off."""


class AlreadyExists(ContainerRuntimeError):
    """A sandbox or container with the same metadata (name, namespace, uid, attempt) is
    already live. ``kind`` is ``"sandbox"`` or ``"container"``; ``id`` the existing object's
    id when the runtime says it (else ``""``)."""

    def __init__(self, kind: str, name: str, id: str = "", detail: str = ""):
        super().__init__(f"{kind} {name!r} already exists"
                         + (f" as {id}" if id else "") + (f": {detail}" if detail else ""))
        self.kind, self.name, self.id = kind, name, id


class InvalidArgument(ContainerRuntimeError):
    """The request cannot be carried out as given: a bad config (missing image, relative
    mount path), an archive that is not an image, an operation not allowed in the object's
    state (starting a container twice). Retrying the same request will fail again."""


class ExecTimeout(ContainerRuntimeError):
    """:meth:`Runtime.exec_sync` did not finish within its timeout. The command was killed.
    The agent counts it as a failed probe."""


class Unavailable(ContainerRuntimeError):
    """The runtime cannot be reached or is not serving (socket missing, daemon starting or
    crashed). The outcome of a mutating call that raises this is unknown; the agent
    re-lists and converges."""


class Unsupported(ContainerRuntimeError):
    """This driver does not implement the operation (see :attr:`Runtime.features`)."""


# ---------------------------------------------------------------------------------------
# Configuration types (what the node agent asks for)


class MountPropagation(enum.Enum):
    """Mount propagation of a :class:`Mount`, as in a pod's ``mountPropagation``."""

    PRIVATE = "private"  #: no propagation either way (``None`` in the pod spec)
    HOST_TO_CONTAINER = "host-to-container"  #: rslave: host mounts appear inside
    BIDIRECTIONAL = "bidirectional"  #: rshared: mounts propagate both ways (privileged only)


@dataclasses.dataclass(kw_only=True, slots=True)
class Mount:
    """A host path bind-mounted into a container. Both paths are absolute; ``host_path``
    must exist (the agent creates volume directories before creating the container).
    ``host_path`` may be a file."""

    container_path: str
    host_path: str
    readonly: bool = False
    propagation: MountPropagation = MountPropagation.PRIVATE


@dataclasses.dataclass(kw_only=True, slots=True)
class PortMapping:
    """A ``hostPort`` of a pod: traffic to ``host_ip:host_port`` on the node reaches
    ``container_port`` in the sandbox. ``protocol`` is ``"TCP"``, ``"UDP"`` or ``"SCTP"``;
    ``host_ip`` ``""`` means every address."""

    container_port: int
    host_port: int = 0
    protocol: str = "TCP"
    host_ip: str = ""


@dataclasses.dataclass(kw_only=True, slots=True)
class DNSConfig:
    """The sandbox's ``/etc/resolv.conf``: name servers, search domains and options
    (``ndots:5``...). An all-empty config means "copy the node's"."""

    servers: list[str] = dataclasses.field(default_factory=list)
    searches: list[str] = dataclasses.field(default_factory=list)
    options: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(kw_only=True, slots=True)
class Resources:
    """Linux resource limits of a container (cgroup settings). Zero means "not set".

    ``cpu_shares`` is the relative weight (the agent derives it from the CPU request:
    ``millicores * 1024 / 1000``, at least 2). ``cpu_quota``/``cpu_period`` (microseconds)
    cap CPU time (from the CPU limit; period 100000). ``memory_limit_bytes`` is the hard
    memory limit; a container above it is OOM-killed and its status says ``OOMKilled``.
    ``oom_score_adj`` is the kernel OOM score adjustment (the agent derives it from the QoS
    class); runtimes that cannot set it may clamp it. ``cpuset_cpus``/``cpuset_mems`` pin
    the container (``"0-1"``; ``""`` for no pinning).
    """

    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    memory_limit_bytes: int = 0
    oom_score_adj: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""


@dataclasses.dataclass(kw_only=True, slots=True)
class SecurityContext:
    """The Linux security settings of a container, from the pod's ``securityContext``.

    ``run_as_user``/``run_as_group`` (None: the image's user); ``privileged`` (all
    capabilities, host devices, no seccomp); ``readonly_rootfs``; ``capabilities_add`` and
    ``capabilities_drop`` (names like ``"NET_ADMIN"``, ``"ALL"`` in drop); ``no_new_privs``
    (``allowPrivilegeEscalation: false``); ``supplemental_groups``.
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    readonly_rootfs: bool = False
    capabilities_add: list[str] = dataclasses.field(default_factory=list)
    capabilities_drop: list[str] = dataclasses.field(default_factory=list)
    no_new_privs: bool = False
    supplemental_groups: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(kw_only=True, slots=True)
class PodSandboxMetadata:
    """Identity of a sandbox: the Pod's ``name``, ``namespace`` and ``uid``, and ``attempt``
    (0 for the first sandbox of a pod, +1 each time the agent has to recreate it)."""

    name: str
    namespace: str
    uid: str
    attempt: int = 0


@dataclasses.dataclass(kw_only=True, slots=True)
class PodSandboxConfig:
    """What :meth:`Runtime.run_pod_sandbox` creates; the agent builds it from the Pod.

    ``hostname`` is the pod's hostname; it must be ``""`` when ``host_network`` is true (the
    sandbox then shares the node's UTS namespace and hostname). ``log_directory`` is an
    absolute directory (the agent creates it: ``/var/log/pods/<ns>_<name>_<uid>``) under
    which container log paths are resolved. ``host_network``/``host_pid``/``host_ipc`` share
    the node's namespaces; ``share_process_namespace`` gives the pod one PID namespace.
    ``labels`` are for selection by the agent (:meth:`Runtime.list_pod_sandboxes`) and are
    returned as given; ``annotations`` are opaque to the agent and may carry
    runtime-specific hints. ``cgroup_parent`` is the pod-level cgroup (``""``: the
    runtime's default). ``sysctls`` are namespaced sysctls for the pod. ``privileged``
    allows privileged containers in this sandbox.

    The same config object is passed again to :meth:`Runtime.create_container` and
    :meth:`Runtime.pull_image` for the pod.
    """

    metadata: PodSandboxMetadata
    hostname: str = ""
    log_directory: str = ""
    dns: DNSConfig = dataclasses.field(default_factory=DNSConfig)
    port_mappings: list[PortMapping] = dataclasses.field(default_factory=list)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    share_process_namespace: bool = False
    cgroup_parent: str = ""
    sysctls: dict[str, str] = dataclasses.field(default_factory=dict)
    privileged: bool = False


@dataclasses.dataclass(kw_only=True, slots=True)
class ContainerMetadata:
    """Identity of a container within its sandbox: the spec's ``name`` and ``attempt``
    (restart count: 0 for the first container of that name, +1 per restart)."""

    name: str
    attempt: int = 0


@dataclasses.dataclass(kw_only=True, slots=True)
class ContainerConfig:
    """What :meth:`Runtime.create_container` creates; the agent builds it from one container
    of the Pod spec.

    ``image`` is a reference or image id; the image must be present (the agent pulls or
    checks first). ``command`` replaces the image's entrypoint and ``args`` its cmd, as in
    Kubernetes (empty: keep the image's). ``working_dir`` ``""`` keeps the image's. ``env``
    is ordered; the image's environment is kept and these override it by name. ``mounts``
    are bind mounts (volumes, ``/etc/hosts``, the service account token...).
    ``log_path`` is relative to the sandbox's ``log_directory`` (``<name>/<attempt>.log``);
    ``""`` means no log file. ``stdin`` keeps a stdin pipe open for :meth:`Runtime.attach`;
    ``stdin_once`` closes it after the first attach session ends; ``tty`` allocates a
    terminal (stdout and stderr are then one stream, logged as stdout). ``labels`` are for
    selection and returned as given; ``annotations`` are opaque. The signal
    :meth:`Runtime.stop_container` sends first is the image's ``StopSignal``, else
    ``SIGTERM``.
    """

    metadata: ContainerMetadata
    image: str
    command: list[str] = dataclasses.field(default_factory=list)
    args: list[str] = dataclasses.field(default_factory=list)
    working_dir: str = ""
    env: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    mounts: list[Mount] = dataclasses.field(default_factory=list)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    log_path: str = ""
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    resources: Resources = dataclasses.field(default_factory=Resources)
    security: SecurityContext = dataclasses.field(default_factory=SecurityContext)


# ---------------------------------------------------------------------------------------
# Observed state (what the driver reports)


class Feature(enum.Enum):
    """Optional guarantees a driver declares in :attr:`Runtime.features`.

    Everything not listed here is required of every driver: the sandbox and container
    lifecycle, exit codes, logs in CRI format, ``env``, ``exec_sync``, graceful stop with
    SIGKILL after the timeout, listing with label filters, and the error contract.
    """

    #: Containers run isolated: the image's root filesystem is ``/``, with their own mount,
    #: PID, UTS and IPC namespaces. Without it a container may be a host process.
    ISOLATION = "isolation"
    #: Every sandbox without ``host_network`` gets its own network namespace and an IP
    #: reachable from the node (:attr:`PodSandboxStatus.ip`).
    POD_NETWORK = "pod-network"
    #: :class:`Mount` bind mounts are honoured (needs :attr:`ISOLATION` to be meaningful).
    MOUNTS = "mounts"
    #: :class:`Resources` are enforced by cgroups and
    #: :meth:`Runtime.update_container_resources` works.
    RESOURCE_LIMITS = "resource-limits"
    #: :meth:`Runtime.container_stats` reports CPU and memory use.
    STATS = "stats"
    #: :meth:`Runtime.exec`, :meth:`Runtime.attach` and :meth:`Runtime.port_forward` work.
    STREAMING = "streaming"
    #: A local image store: :meth:`Runtime.import_image`, :meth:`Runtime.list_images`,
    #: :meth:`Runtime.remove_image` manage real images. Without it the driver may accept any
    #: reference and run commands from the host.
    IMAGES = "images"


class PodSandboxState(enum.Enum):
    """State of a sandbox (see the module docstring)."""

    READY = "READY"  #: running; containers can be created and started in it
    NOTREADY = "NOTREADY"  #: stopped (or its infra process died); only removal is useful


class ContainerState(enum.Enum):
    """State of a container (see the module docstring)."""

    CREATED = "CREATED"  #: created, not started yet
    RUNNING = "RUNNING"  #: its process is running
    EXITED = "EXITED"  #: its process has ended; exit code and times are final
    UNKNOWN = "UNKNOWN"  #: the runtime cannot tell; the agent treats it as not running


@dataclasses.dataclass(frozen=True, slots=True)
class PodSandbox:
    """A sandbox as listed by :meth:`Runtime.list_pod_sandboxes`. ``created_at`` is in
    seconds since the epoch."""

    id: str
    metadata: PodSandboxMetadata
    state: PodSandboxState
    created_at: float
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class PodSandboxStatus:
    """Full status of one sandbox, from :meth:`Runtime.pod_sandbox_status`.

    ``ip`` is the primary pod IP (``status.podIP``; ``""`` when the sandbox has host
    networking, no network, or is NOTREADY); ``additional_ips`` further addresses (dual
    stack). ``netns_path`` is the path of its network namespace (``/var/run/netns/...``;
    ``""`` for host networking or when the runtime does not expose it), which a network
    driver in direct mode attaches to. ``host_network`` echoes the config.
    """

    id: str
    metadata: PodSandboxMetadata
    state: PodSandboxState
    created_at: float
    ip: str = ""
    additional_ips: tuple[str, ...] = ()
    netns_path: str = ""
    host_network: bool = False
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Container:
    """A container as listed by :meth:`Runtime.list_containers`.

    ``image`` is the reference it was created from; ``image_id`` the id it resolved to.
    ``created_at`` is in seconds since the epoch.
    """

    id: str
    sandbox_id: str
    metadata: ContainerMetadata
    image: str
    image_id: str
    state: ContainerState
    created_at: float
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerStatus:
    """Full status of one container, from :meth:`Runtime.container_status`.

    Times are seconds since the epoch, None until the event happened (``started_at`` before
    start, ``finished_at`` before exit). ``exit_code`` is meaningful when EXITED (a process
    killed by signal N exits ``128 + N``). ``reason`` is a CamelCase word when EXITED:
    ``"Completed"`` (exit 0), ``"Error"`` (non-zero), ``"OOMKilled"``; ``message`` may say
    more. ``log_path`` is the absolute path of the log file (``""``: none). ``mounts`` echo
    the config.
    """

    id: str
    sandbox_id: str
    metadata: ContainerMetadata
    state: ContainerState
    image: str
    image_id: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    log_path: str = ""
    mounts: tuple[Mount, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerStats:
    """Resource use of one container at ``timestamp`` (seconds since the epoch).

    ``cpu_usage_core_ns`` is cumulative CPU time in nanoseconds; ``memory_working_set_bytes``
    what ``kubectl top`` shows (usage minus inactive file cache); ``writable_layer_bytes``
    the size of its writable layer, when known (else 0).
    """

    container_id: str
    timestamp: float
    cpu_usage_core_ns: int = 0
    memory_working_set_bytes: int = 0
    writable_layer_bytes: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Image:
    """An image in the node's image store.

    ``id`` is the config digest (``sha256:...``); ``repo_tags`` the normalised references
    that name it (``docker.io/library/busybox:1.36``); ``repo_digests`` references by
    manifest digest; ``size`` its unpacked size in bytes (0 if unknown); ``user`` the user
    the image runs as (``""``: root); ``pinned`` images are never removed by image garbage
    collection (the sandbox image is).
    """

    id: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    user: str = ""
    pinned: bool = False


class ExecResult(NamedTuple):
    """The outcome of :meth:`Runtime.exec_sync`; unpacks as
    ``exit_code, stdout, stderr = await runtime.exec_sync(...)``."""

    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeVersion:
    """From :meth:`Runtime.version`: the runtime's name and version (``"containerd"``,
    ``"1.6.20"``) and the API it speaks (``"v1"`` for CRI v1, ``"pilothouse/0.1"`` for a
    driver that speaks none). The agent reports these in ``Node.status.nodeInfo``
    (``containerRuntimeVersion: containerd://1.6.20``)."""

    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeCondition:
    """One condition of :class:`RuntimeStatus`: ``type`` is ``"RuntimeReady"`` or
    ``"NetworkReady"`` (a driver may add others); ``status`` true when the condition holds;
    ``reason``/``message`` explain a false one."""

    type: str
    status: bool
    reason: str = ""
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """From :meth:`Runtime.status`. The node is Ready only when every condition holds."""

    conditions: tuple[RuntimeCondition, ...]

    @property
    def ready(self) -> bool:
        """True when every condition holds."""
        return all(c.status for c in self.conditions)


#: ``progress(done_bytes, total_bytes)``, called by :meth:`Runtime.import_image`.
ProgressCallback = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------
# The driver


class Runtime(abc.ABC):
    """Runs pod sandboxes and containers and manages images on one node.

    A driver class is constructed by the plugin loader as ``cls(options)`` where ``options``
    is an instance of the class's ``Options`` dataclass (see :mod:`pilothouse.plugins`).
    Construction must not do I/O; :meth:`open` does. Methods other than :meth:`open` may be
    called only between :meth:`open` and :meth:`close`.
    """

    #: Optional guarantees this driver gives (see :class:`Feature`). Since 0.1.
    features: frozenset[Feature] = frozenset()

    # -- lifecycle of the driver ---------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect to the runtime, or start it when the driver manages its own.

        Called once by the node agent at start, before any other method. Adopts whatever a
        previous run left (sandboxes and containers keep running across agent restarts;
        the agent re-lists them). May block for as long as the runtime takes to come up.

        Raises :class:`Unavailable` with a message saying what to fix (socket missing, binary
        not installed, permission denied) when the runtime cannot be used; the driver has
        then released what it acquired, and the agent may call :meth:`open` again (retry
        with back-off).

        Since 0.1.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and stop anything the driver itself started.

        Called once by the node agent at shutdown. Pods keep running where the runtime
        allows it (containerd shims outlive containerd); a driver whose containers die
        with it says so in its README. Idempotent; never raises.

        Since 0.1.
        """

    async def version(self) -> RuntimeVersion:
        """Return the runtime's name and version and the API it speaks.

        Called by the node agent after :meth:`open` (to fill ``Node.status.nodeInfo``) and
        as a cheap liveness check. Raises :class:`Unavailable`. Read-only.

        Since 0.1.
        """
        return RuntimeVersion(type(self).__name__, "0", "pilothouse/0.1")

    async def status(self) -> RuntimeStatus:
        """Return whether the runtime and its pod network are ready.

        Called by the node agent periodically (every node status update); a false
        condition makes the Node NotReady with the condition's reason and message, and the
        agent starts no new pods. ``NetworkReady`` is false until the pod network is
        configured (:meth:`configure_network`). Raises :class:`Unavailable`. Read-only.
        The default says both conditions hold.

        Since 0.1.
        """
        return RuntimeStatus((RuntimeCondition("RuntimeReady", True),
                              RuntimeCondition("NetworkReady", True)))

    async def configure_network(self, *, pod_cidr: str = "",
                                cni_config: Mapping | None = None) -> None:
        """Tell the runtime how to give pods addresses.

        Called by the node agent after :meth:`open` and whenever the Node's ``podCIDR``
        changes or the network driver (:class:`~pilothouse.interfaces.network.
        NetworkDriver`, CNI mode) produces a new configuration. ``pod_cidr`` is the node's
        pod CIDR (``""``: unchanged); ``cni_config`` a complete CNI network configuration
        list (a dict with ``cniVersion``, ``name``, ``plugins``), or None to let the driver
        build its own default from ``pod_cidr``. Affects sandboxes created afterwards only.
        Idempotent. Raises :class:`InvalidArgument` for a config the runtime rejects. The
        default ignores both (for drivers without :attr:`Feature.POD_NETWORK`).

        Since 0.1.
        """
        return None

    # -- pod sandboxes -------------------------------------------------------------------

    @abc.abstractmethod
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        """Create and start a sandbox for a pod; return its id. The sandbox is READY.

        Called by the node agent when a pod bound to its node has no READY sandbox (first
        start, or its sandbox died: then ``metadata.attempt`` is one more than before).
        Sets up the sandbox's namespaces, cgroup, hostname, DNS and (without
        ``host_network``) its network through the runtime's pod network, so that
        :meth:`pod_sandbox_status` reports its IP. May block until all that is done (pulls
        the runtime's infra image if it needs one).

        Raises :class:`AlreadyExists` when a sandbox with the same metadata exists (READY or
        not); :class:`InvalidArgument` for a bad config (e.g. a hostname with
        ``host_network``); :class:`ContainerRuntimeError` when setup fails, in which case
        the driver has released everything it acquired (no half-made sandbox remains).
        Not idempotent: a retry after :class:`Unavailable` may find the sandbox made.

        Since 0.1.
        """

    @abc.abstractmethod
    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop a sandbox: kill every container in it (SIGKILL; the agent has already
        stopped them gracefully with :meth:`stop_container`), stop its infra process and
        release its network (the pod IP returns to the pool). The sandbox becomes NOTREADY
        and its containers EXITED; they stay listable until removed.

        Called by the node agent when a pod is deleted or has finished, and when a sandbox
        must be recreated. Idempotent: stopping a NOTREADY sandbox succeeds. Raises
        :class:`NotFound` for an unknown id (the agent treats it as stopped). May block
        until the processes are gone.

        Since 0.1.
        """

    @abc.abstractmethod
    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove a sandbox and every container in it, stopping them first (forcibly) if
        needed. Afterwards no trace of it remains: not listed, network namespace and
        mounts gone. Log files under ``log_directory`` are not removed (the agent does
        that).

        Called by the node agent after :meth:`stop_pod_sandbox` when the pod is gone from
        the API or the sandbox was replaced. Idempotent: an unknown or already removed id
        succeeds silently. May block.

        Since 0.1.
        """

    @abc.abstractmethod
    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        """Return the full status of one sandbox, including its IP and network namespace
        path. Called by the node agent after :meth:`run_pod_sandbox` (for ``podIP``) and on
        every pod sync. Raises :class:`NotFound`. Read-only; returns promptly.

        Since 0.1.
        """

    @abc.abstractmethod
    async def list_pod_sandboxes(self, *, id: str | None = None,
                                 state: PodSandboxState | None = None,
                                 labels: Mapping[str, str] | None = None) -> list[PodSandbox]:
        """List sandboxes, READY and NOTREADY, matching every given filter: ``id`` (exact;
        drivers may also accept a unique prefix), ``state``, and ``labels`` (every pair must
        be among the sandbox's labels). Order is unspecified.

        Called by the node agent at start and on every relist to find the sandboxes it owns
        (it labels them ``io.kubernetes.pod.uid``...) and to garbage-collect orphans.
        Read-only; an ``id`` matching nothing gives ``[]``, not :class:`NotFound`.

        Since 0.1.
        """

    # -- containers ----------------------------------------------------------------------

    @abc.abstractmethod
    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig) -> str:
        """Create a container in a READY sandbox and return its id; it is CREATED and not
        running. ``sandbox_config`` is the config the sandbox was created with (for its
        ``log_directory``, namespaces and privileges).

        Called by the node agent for each container of a pod (init containers one at a time,
        in order, then the others) once their image is present. Prepares the root
        filesystem, mounts and log file; does not run the process.

        Raises :class:`NotFound` (unknown sandbox), :class:`ImageNotFound` (image absent;
        it is not pulled here), :class:`AlreadyExists` (same name and attempt in this
        sandbox), :class:`InvalidArgument` (bad config, or the sandbox is NOTREADY).
        Not idempotent.

        Since 0.1.
        """

    @abc.abstractmethod
    async def start_container(self, container_id: str) -> None:
        """Start a CREATED container's process; it becomes RUNNING (or EXITED at once, if
        the process ends that fast). Returns once the process has been started, not when it
        is "ready".

        Called by the node agent right after :meth:`create_container`. Raises
        :class:`NotFound`; :class:`InvalidArgument` if the container is not CREATED;
        :class:`ContainerRuntimeError` when the process cannot be started (executable
        missing: the message says so, and the container is EXITED with a non-zero code,
        usually 128). Not idempotent (a container starts once). Blocks until the process
        exists (tens of milliseconds), not longer.

        Since 0.1.
        """

    @abc.abstractmethod
    async def stop_container(self, container_id: str, timeout: float) -> None:
        """Stop a container gracefully: send its stop signal (the image's ``StopSignal``,
        else ``SIGTERM``), wait up to ``timeout`` seconds for it to exit, then
        ``SIGKILL`` it and wait for it to be gone. ``timeout=0`` kills at once. Returns when
        the container is EXITED (exit code 137 after SIGKILL; a process that handles the
        signal exits with its own code). Note that a container's main process is PID 1 of
        its PID namespace, where the kernel ignores signals it installs no handler for: a
        process that does not handle SIGTERM is only ended by the SIGKILL.

        Called by the node agent when a pod is deleted (``timeout`` from
        ``terminationGracePeriodSeconds``, minus the time taken by the ``preStop`` hook),
        on liveness failure, and before removing a container. May block for ``timeout`` plus
        a little. Idempotent: stopping an EXITED container succeeds and changes nothing;
        so does stopping a CREATED one (it stays CREATED, never runs, and is removed with
        :meth:`remove_container`). Raises :class:`NotFound` for an unknown id.

        Since 0.1.
        """

    @abc.abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Remove a container (killing it first if it runs) with its writable layer. Its
        log file stays (the agent removes log directories with the pod).

        Called by the node agent to garbage-collect exited containers beyond those kept for
        ``kubectl logs --previous``. Idempotent: an unknown or already removed id succeeds
        silently. May block.

        Since 0.1.
        """

    @abc.abstractmethod
    async def container_status(self, container_id: str) -> ContainerStatus:
        """Return the full status of one container: state, exit code, reason, times, log
        path. Called by the node agent on every pod sync to build the pod's
        ``containerStatuses``. Raises :class:`NotFound`. Read-only; returns promptly.

        Since 0.1.
        """

    @abc.abstractmethod
    async def list_containers(self, *, id: str | None = None, sandbox_id: str | None = None,
                              state: ContainerState | None = None,
                              labels: Mapping[str, str] | None = None) -> list[Container]:
        """List containers (in every state) matching every given filter: ``id``,
        ``sandbox_id``, ``state``, ``labels`` (subset match). Order is unspecified.

        Called by the node agent on every relist (it keeps a pod-to-containers cache from
        this) and by garbage collection. Read-only; no match gives ``[]``.

        Since 0.1.
        """

    async def update_container_resources(self, container_id: str,
                                         resources: Resources) -> None:
        """Change the cgroup limits of a CREATED or RUNNING container in place.

        Called by the node agent for in-place pod resizing. Zero fields are left as they
        are. Raises :class:`NotFound`, :class:`InvalidArgument` (e.g. a memory limit below
        current use), :class:`Unsupported` without :attr:`Feature.RESOURCE_LIMITS` (the
        default). Idempotent.

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} cannot update container resources")

    async def reopen_container_log(self, container_id: str) -> None:
        """Make the runtime close the container's log file and open ``log_path`` afresh.

        Called by the node agent's log rotation after it renamed the current log file:
        later output goes to a new file at the original path. Raises :class:`NotFound`;
        :class:`InvalidArgument` if the container is not RUNNING. Idempotent. The default
        raises :class:`Unsupported` (the agent then rotates by copy-and-truncate).

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} cannot reopen container logs")

    @abc.abstractmethod
    async def exec_sync(self, container_id: str, cmd: Sequence[str],
                        timeout: float = 0) -> ExecResult:
        """Run ``cmd`` in a RUNNING container (same namespaces, root, environment and user)
        and wait for it; return its exit code and its complete stdout and stderr.

        Called by the node agent for ``exec`` liveness/readiness/startup probes and
        lifecycle hooks (``postStart``/``preStop``). ``timeout`` in seconds; 0 means none.
        Raises :class:`ExecTimeout` (the command is killed), :class:`NotFound`,
        :class:`InvalidArgument` (container not running), :class:`ContainerRuntimeError`
        when the command cannot be started (the message says why). A command that runs and
        fails is not an error: it is a non-zero ``exit_code``. Blocks (asynchronously) until
        the command ends. Not idempotent: every call runs the command again.

        Since 0.1.
        """

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool = False,
                   stdin: bool = False, stdout: bool = True, stderr: bool = True) -> str:
        """Prepare an interactive exec session and return the URL of the runtime's
        streaming server that serves it (see "Streaming" in the module docstring).

        Called by the node agent when the API server forwards ``pods/exec``. ``stdin``,
        ``stdout``, ``stderr`` say which streams the client wants (at least one of the
        three); with ``tty`` stderr is merged into stdout. Nothing runs until the agent
        connects to the URL. Each call prepares a new session; returns promptly. Raises
        :class:`NotFound`, :class:`InvalidArgument` (container not running),
        :class:`Unsupported` without :attr:`Feature.STREAMING` (the default).

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} has no streaming server (exec)")

    async def attach(self, container_id: str, *, tty: bool = False, stdin: bool = False,
                     stdout: bool = True, stderr: bool = True) -> str:
        """Prepare an attach session to a RUNNING container's main process and return its
        streaming URL, as :meth:`exec` does (``kubectl attach``; ``stdin`` needs the
        container created with ``stdin=True``; ``tty`` must match its config).

        Called by the node agent when the API server forwards ``pods/attach``. Each call
        prepares a new session; returns promptly. Raises :class:`NotFound`,
        :class:`InvalidArgument`, :class:`Unsupported` (the default).

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} has no streaming server (attach)")

    async def port_forward(self, sandbox_id: str, ports: Sequence[int] = ()) -> str:
        """Prepare a port-forward session into a READY sandbox's network namespace and
        return its streaming URL, as :meth:`exec` does (``kubectl port-forward``). ``ports``
        lists the container ports the client will use (may be empty; the client names
        ports per stream).

        Called by the node agent when the API server forwards ``pods/portforward``. Each
        call prepares a new session; returns promptly. Raises :class:`NotFound`,
        :class:`Unsupported` (the default).

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} has no streaming server (port-forward)")

    async def container_stats(self, container_id: str) -> ContainerStats:
        """Return the current resource use of one container.

        Called by the node agent for the metrics it serves (``kubectl top``) and for
        eviction decisions, every few seconds per container: should be cheap. Raises
        :class:`NotFound`, :class:`Unsupported` without :attr:`Feature.STATS` (the
        default). Read-only.

        Since 0.1.
        """
        raise Unsupported(f"{type(self).__name__} does not report container stats")

    async def list_container_stats(self, *, sandbox_id: str | None = None,
                                   labels: Mapping[str, str] | None = None
                                   ) -> list[ContainerStats]:
        """Return :meth:`container_stats` for every RUNNING container matching the filters
        (as in :meth:`list_containers`). Called by the node agent's metrics endpoint and
        eviction manager, every few seconds. The default calls :meth:`container_stats` per
        container; drivers override it with one bulk call. Read-only. Raises
        :class:`Unsupported`.

        Since 0.1.
        """
        out = []
        for c in await self.list_containers(sandbox_id=sandbox_id, labels=labels,
                                            state=ContainerState.RUNNING):
            try:
                out.append(await self.container_stats(c.id))
            except NotFound:
                continue
        return out

    # -- images --------------------------------------------------------------------------

    @abc.abstractmethod
    async def list_images(self) -> list[Image]:
        """List every image in the node's image store.

        Called by the node agent for ``Node.status.images`` (every node status update) and
        by image garbage collection. Read-only; returns promptly.

        Since 0.1.
        """

    @abc.abstractmethod
    async def image_status(self, ref: str) -> Image | None:
        """Return the image that ``ref`` (a reference or an image id) names, or None when it
        is not present. Called by the node agent before creating a container, to apply
        ``imagePullPolicy`` (``IfNotPresent``/``Never`` pull only when this is None).
        Read-only; an absent image is not an error.

        Since 0.1.
        """

    @abc.abstractmethod
    async def pull_image(self, ref: str, *,
                         sandbox_config: PodSandboxConfig | None = None) -> str:
        """Make the image ``ref`` present and return its id.

        Called by the node agent per ``imagePullPolicy`` before :meth:`create_container`,
        with the pod's sandbox config (for runtimes that pull per pod). Present images are
        returned at once (``Always`` policy re-resolves the tag where a registry is
        reachable). No registry is reachable where Pilothouse is developed, so drivers may
        disable pulling: then an absent image raises :class:`ImageNotFound` with a message
        saying how to import it. Otherwise raises :class:`ImagePullError`. Idempotent. May
        block for the whole download.

        Since 0.1.
        """

    @abc.abstractmethod
    async def remove_image(self, ref: str) -> None:
        """Remove the image that ``ref`` (a reference or an id) names, with every reference
        to it: like CRI's ``RemoveImage``, removing by one tag also removes the image's
        other tags.

        Called by image garbage collection and ``pilothouse image rm``. Idempotent: an
        absent image succeeds. Raises :class:`InvalidArgument` when a container still uses
        the image and the runtime refuses.

        Since 0.1.
        """

    @abc.abstractmethod
    async def import_image(self, path: str,
                           progress: ProgressCallback | None = None) -> list[str]:
        """Load the images in a local archive into the node's store and return the
        references it named (normalised; an archive without names yields image ids).

        ``path`` is a tar file (optionally gzip-compressed) in OCI image layout
        (``oci-layout``, ``index.json``, ``blobs/sha256/...``; names taken from the
        ``org.opencontainers.image.ref.name`` annotation, as full references) or
        ``docker save`` format (``manifest.json`` with ``RepoTags``). ``progress``, when
        given, is called from the event loop as ``progress(done_bytes, total_bytes)``
        while the archive is read, with ``total_bytes`` the file size, ending with
        ``done == total``.

        Called by ``pilothouse image import`` (through the node agent) and by tests.
        Importing an image that is present replaces its tags (idempotent). Raises
        :class:`InvalidArgument` for an unreadable or malformed archive,
        :class:`Unsupported` without :attr:`Feature.IMAGES`. Blocks (asynchronously) for
        the import; images are usable by :meth:`create_container` when it returns.

        Since 0.1.
        """
