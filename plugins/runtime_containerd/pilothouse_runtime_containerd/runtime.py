"""The ``containerd`` runtime driver: :class:`~pilothouse.interfaces.runtime.Runtime` over
CRI v1 gRPC to containerd's built-in CRI plugin, optionally on a private containerd it
starts itself. See the README for options and behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import pathlib
import re
import shutil
import socket
import tempfile
import zlib
from collections.abc import Mapping, Sequence

import grpc

from pilothouse.api import cri_pb2 as pb
from pilothouse.api import cri_pb2_grpc as cri_grpc
from pilothouse.interfaces import runtime as rt
from pilothouse.interfaces.runtime import (
    AlreadyExists,
    ContainerRuntimeError,
    ExecTimeout,
    ImageNotFound,
    ImagePullError,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unsupported,
)

from pilothouse_runtime_containerd import _convert as conv
from pilothouse.images import ImageError, normalize_ref
from pilothouse_runtime_containerd._managed import (
    ManagedContainerd,
    mounts_under,
    render_config,
    socket_path,
)

__all__ = ["ContainerdRuntime"]

_CNI_FILE = "10-pilothouse.conflist"
_RESERVED = re.compile(r'is reserved for "([0-9a-f]+)"')
_UNPACKED = re.compile(r"^unpacking (\S+) \((sha256:[0-9a-f]{64})\)", re.M)
_CHUNK = 1 << 20


@dataclasses.dataclass
class Options:
    """Options of the ``containerd`` runtime plugin (see README.md)."""

    #: Socket of an existing containerd with the CRI plugin (``/run/containerd/containerd.sock``).
    #: With ``manage: true``, leave empty: the private instance's socket is used.
    endpoint: str = ""
    #: Start a private containerd on ``data_dir`` (and stop it on close).
    manage: bool = False
    #: Directory of the private containerd's config, state, images and CNI files.
    data_dir: str = "/var/lib/pilothouse/containerd"
    #: The node's pod CIDR, for the bridge + host-local CNI config this plugin writes.
    pod_cidr: str = "10.88.0.0/16"
    #: Name of the Linux bridge pods attach to (at most 15 characters).
    bridge: str = "ph0"
    #: Masquerade traffic from pods to outside the pod CIDR.
    ip_masq: bool = True
    #: Where the CNI plugin binaries are (Debian: /usr/lib/cni).
    cni_bin_dir: str = "/usr/lib/cni"
    #: With ``endpoint``: a CNI conf dir to write the pod network config into ("": leave the
    #: existing containerd's CNI config alone).
    cni_conf_dir: str = ""
    #: The sandbox ("pause") image. When absent and pulling is off, a busybox-based one is
    #: built and imported under this name.
    sandbox_image: str = "pilothouse.local/pause:1"
    #: Let pull_image reach registries. Off by default: no registry is reachable here.
    allow_pull: bool = False
    #: containerd namespace the CRI plugin uses.
    namespace: str = "k8s.io"
    snapshotter: str = "overlayfs"
    containerd_binary: str = "containerd"
    ctr_binary: str = "ctr"
    #: Address and port of containerd's streaming server (exec/attach/port-forward URLs).
    stream_address: str = "127.0.0.1"
    stream_port: int = 0
    #: Seconds a CRI call may take beyond its own timeout before it fails as Unavailable.
    request_timeout: float = 60.0
    #: Seconds open() waits for containerd (and its CNI config) to become ready.
    start_timeout: float = 30.0
    log_level: str = "info"


def _grpc_error(exc: grpc.aio.AioRpcError, kind: str, id: str) -> ContainerRuntimeError:
    code, msg = exc.code(), exc.details() or str(code)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(kind, id, msg)
    if m := _RESERVED.search(msg):
        return AlreadyExists(kind, id, m.group(1), msg)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExists(kind, id, "", msg)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"containerd: {msg}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Unsupported(f"containerd: {msg}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.OUT_OF_RANGE) or " state" in msg and "CONTAINER_" in msg:
        return InvalidArgument(f"{kind} {id}: {msg}")
    return ContainerRuntimeError(f"{kind} {id}: {msg}")


def bridge_cni_config(*, name: str, bridge: str, pod_cidr: str, ip_masq: bool,
                      ipam_dir: str) -> dict:
    """The default pod network: one bridge, addresses from ``pod_cidr`` by host-local,
    hostPort support by portmap."""
    net = ipaddress.ip_network(pod_cidr, strict=False)
    default = "0.0.0.0/0" if net.version == 4 else "::/0"
    return {
        "cniVersion": "0.4.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": ip_masq,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(net)}]],
                      "routes": [{"dst": default}], "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


class ContainerdRuntime(rt.Runtime):
    """Runs pods under containerd through its CRI v1 API."""

    Options = Options
    features = frozenset(rt.Feature)

    def __init__(self, options: Options | None = None):
        self.options = o = options or Options()
        if not o.manage and not o.endpoint:
            raise ValueError("set either 'endpoint' (socket of a running containerd) or "
                             "'manage: true' (start a private containerd)")
        if len(o.bridge) > 15:
            raise ValueError(f"bridge name {o.bridge!r} is longer than 15 characters")
        ipaddress.ip_network(o.pod_cidr, strict=False)  # ValueError for a bad CIDR
        self._managed: ManagedContainerd | None = None
        self._socket = o.endpoint
        if o.manage:
            data_dir = pathlib.Path(o.data_dir).resolve()
            self._socket = o.endpoint or str(socket_path(data_dir))
            self._managed = ManagedContainerd(
                data_dir=str(data_dir), binary=o.containerd_binary,
                config_text=render_config(
                    data_dir=data_dir, socket=pathlib.Path(self._socket),
                    sandbox_image=o.sandbox_image, cni_bin_dir=o.cni_bin_dir,
                    snapshotter=o.snapshotter, stream_address=o.stream_address,
                    stream_port=o.stream_port, log_level=o.log_level))
        self._channel: grpc.aio.Channel | None = None
        self._rt: cri_grpc.RuntimeServiceStub | None = None
        self._img: cri_grpc.ImageServiceStub | None = None
        self._image_ids: dict[str, str] = {}
        self._sandbox_image = o.sandbox_image
        self._pod_cidr = o.pod_cidr

    # -- plumbing -----------------------------------------------------------------------

    @property
    def socket(self) -> str:
        """The containerd socket this driver talks to."""
        return self._socket

    @property
    def data_dir(self) -> pathlib.Path | None:
        """The private containerd's data directory (None when not managed)."""
        return self._managed.data_dir if self._managed else None

    def _cni_conf_dir(self) -> pathlib.Path | None:
        if self._managed:
            return self._managed.data_dir / "cni" / "net.d"
        return pathlib.Path(self.options.cni_conf_dir) if self.options.cni_conf_dir else None

    async def _call(self, method, request, *, kind: str = "runtime", id: str = "",
                    timeout: float | None = None):
        if self._channel is None:
            raise Unavailable("the containerd runtime driver is not open")
        try:
            return await method(request, timeout=(timeout if timeout is not None
                                                  else self.options.request_timeout))
        except grpc.aio.AioRpcError as exc:
            raise _grpc_error(exc, kind, id) from None

    # -- driver lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        o = self.options
        if self._managed:
            if shutil.which(o.containerd_binary) is None:
                raise Unavailable(f"{o.containerd_binary} not found: install Debian's "
                                  f"containerd package or set containerd_binary")
            if os.geteuid() != 0:
                raise Unavailable("a private containerd needs root")
        self._channel = grpc.aio.insecure_channel(f"unix://{self._socket}", options=[
            ("grpc.max_receive_message_length", 64 << 20),
            # reconnect quickly when containerd (re)starts instead of gRPC's 1 s back-off
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 1000)])
        self._rt = cri_grpc.RuntimeServiceStub(self._channel)
        self._img = cri_grpc.ImageServiceStub(self._channel)
        try:
            if self._managed:
                if self._managed.running_pid() is None or not await self._answers(2.0):
                    await self._managed.stop()
                    await self._managed.start()
                else:
                    self._managed.prepare()
                    self._managed.pid = self._managed.running_pid()
            await self._wait_ready()
            if self._cni_conf_dir() is not None:
                await self._write_cni(bridge_cni_config(
                    name="pilothouse", bridge=o.bridge, pod_cidr=self._pod_cidr,
                    ip_masq=o.ip_masq, ipam_dir=self._ipam_dir()), wait=True)
            await self._ensure_sandbox_image()
        except BaseException:
            await self.close()
            raise

    def _ipam_dir(self) -> str:
        if self._managed:
            return str(self._managed.data_dir / "cni" / "ipam")
        return "/var/lib/cni/networks"

    async def _answers(self, timeout: float) -> bool:
        try:
            await self._rt.Version(pb.VersionRequest(), timeout=timeout)
            return True
        except grpc.aio.AioRpcError:
            return False

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.start_timeout
        while True:
            if self._managed and self._managed.exited() is not None:
                raise Unavailable(f"containerd exited with status {self._managed.exited()}; "
                                  f"its log ({self._managed.log_path}) ends with:\n"
                                  f"{self._managed.log_tail()}")
            if self._socket_accepts() and await self._answers(1.0):
                return
            if loop.time() > deadline:
                where = (f"; its log is {self._managed.log_path}" if self._managed else "")
                raise Unavailable(f"containerd at {self._socket} did not answer within "
                                  f"{self.options.start_timeout}s{where}")
            await asyncio.sleep(0.05)

    def _socket_accepts(self) -> bool:
        """Cheap check before a gRPC call, so that gRPC never backs off on a socket that
        does not exist yet."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self._socket)
                return True
            except OSError:
                return False

    async def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
            self._channel = None
        if self._managed:
            with contextlib.suppress(Exception):
                await self._managed.stop()

    async def destroy(self, *, remove_data: bool = True) -> None:
        """Remove every sandbox in the namespace, stop the private containerd, unmount and
        delete what it left (network namespaces, rootfs mounts, the bridge) and, with
        ``remove_data``, its data directory. For tests and ``pilothouse down --purge``.
        Only for ``manage: true``; the driver is closed afterwards."""
        if not self._managed:
            raise Unsupported("destroy() is only for a private containerd (manage: true)")
        if self._channel is None:
            with contextlib.suppress(ContainerRuntimeError):
                if self._managed.running_pid() is not None:
                    self._channel = grpc.aio.insecure_channel(f"unix://{self._socket}")
                    self._rt = cri_grpc.RuntimeServiceStub(self._channel)
                    self._img = cri_grpc.ImageServiceStub(self._channel)
        if self._channel is not None:
            with contextlib.suppress(ContainerRuntimeError):
                for sandbox in await self.list_pod_sandboxes():
                    with contextlib.suppress(ContainerRuntimeError):
                        await self.stop_pod_sandbox(sandbox.id)
                    with contextlib.suppress(ContainerRuntimeError):
                        await self.remove_pod_sandbox(sandbox.id)
        await self.close()
        data = self._managed.data_dir
        for point in mounts_under(data):
            await _run("umount", "-l", point)
        if self.options.bridge:
            await _run("ip", "link", "del", self.options.bridge)
        if remove_data:
            await asyncio.to_thread(shutil.rmtree, data, True)

    # -- network ------------------------------------------------------------------------

    async def _write_cni(self, config: Mapping, *, wait: bool) -> None:
        conf_dir = self._cni_conf_dir()
        assert conf_dir is not None
        conf_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        target = conf_dir / _CNI_FILE
        if not target.exists() or target.read_text() != text:
            fd, tmp = tempfile.mkstemp(dir=conf_dir, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, target)  # containerd watches the directory and reloads
        if wait:
            await self._wait_network_ready()

    async def _wait_network_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.start_timeout
        while True:
            status = await self.status()
            net = [c for c in status.conditions if c.type == "NetworkReady"]
            if not net or net[0].status:
                return
            if loop.time() > deadline:
                raise Unavailable(f"containerd's pod network is not ready: "
                                  f"{net[0].reason}: {net[0].message}")
            await asyncio.sleep(0.05)

    async def configure_network(self, *, pod_cidr: str = "",
                                cni_config: Mapping | None = None) -> None:
        if pod_cidr:
            try:
                ipaddress.ip_network(pod_cidr, strict=False)
            except ValueError as exc:
                raise InvalidArgument(f"pod CIDR {pod_cidr!r}: {exc}") from None
        if cni_config is not None and (not isinstance(cni_config, Mapping)
                                       or not cni_config.get("plugins")):
            raise InvalidArgument("cni_config must be a CNI network configuration list "
                                  "with 'cniVersion', 'name' and 'plugins'")
        if self._cni_conf_dir() is not None:
            o = self.options
            config = dict(cni_config) if cni_config is not None else bridge_cni_config(
                name="pilothouse", bridge=o.bridge, pod_cidr=pod_cidr or self._pod_cidr,
                ip_masq=o.ip_masq, ipam_dir=self._ipam_dir())
            await self._release_bridge(config)
            await self._write_cni(config, wait=True)
        if pod_cidr:
            self._pod_cidr = pod_cidr
            await self._call(self._rt.UpdateRuntimeConfig, pb.UpdateRuntimeConfigRequest(
                runtime_config=pb.RuntimeConfig(
                    network_config=pb.NetworkConfig(pod_cidr=pod_cidr))))

    async def _release_bridge(self, config: Mapping) -> None:
        """CNI's bridge plugin refuses a bridge whose gateway address is from another
        subnet. When the new config moves the bridge to another subnet, delete the bridge so
        CNI recreates it, provided no sandbox still uses it."""
        first = (config.get("plugins") or [{}])[0]
        ranges = (first.get("ipam") or {}).get("ranges") or [[{}]]
        subnet = ranges[0][0].get("subnet") if ranges and ranges[0] else None
        if first.get("type") != "bridge" or not first.get("bridge") or not subnet:
            return
        bridge = first["bridge"]
        proc = await asyncio.create_subprocess_exec(
            "ip", "-j", "addr", "show", "dev", bridge,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return  # no such bridge yet
        try:
            addrs = [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])
                     if a.get("family") in ("inet", "inet6") and a.get("scope") == "global"]
        except (ValueError, KeyError, TypeError):
            return
        net = ipaddress.ip_network(subnet, strict=False)
        stale = [a for a in addrs if ipaddress.ip_address(a).version == net.version
                 and ipaddress.ip_address(a) not in net]
        if not stale:
            return
        ready = await self.list_pod_sandboxes(state=rt.PodSandboxState.READY)
        live = [s for s in ready if (await self.pod_sandbox_status(s.id)).ip]
        if live:
            raise InvalidArgument(
                f"cannot move bridge {bridge} from {', '.join(stale)} to {net}: "
                f"{len(live)} pod(s) still use it; stop them first")
        await _run("ip", "link", "del", bridge)

    # -- version and status -------------------------------------------------------------

    async def version(self) -> rt.RuntimeVersion:
        r = await self._call(self._rt.Version, pb.VersionRequest(version="v1"))
        return rt.RuntimeVersion(r.runtime_name, r.runtime_version, r.runtime_api_version)

    async def status(self) -> rt.RuntimeStatus:
        r = await self._call(self._rt.Status, pb.StatusRequest())
        return rt.RuntimeStatus(tuple(
            rt.RuntimeCondition(c.type, c.status, c.reason, c.message)
            for c in r.status.conditions))

    # -- sandboxes ------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: rt.PodSandboxConfig) -> str:
        if config.host_network and config.hostname:
            raise InvalidArgument("a host-network sandbox must have an empty hostname "
                                  f"(got {config.hostname!r}): it shares the node's")
        m = config.metadata
        name = f"{m.namespace}/{m.name} (uid {m.uid}, attempt {m.attempt})"
        r = await self._call(self._rt.RunPodSandbox,
                             pb.RunPodSandboxRequest(config=conv.sandbox_config(config)),
                             kind="sandbox", id=name)
        return r.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._call(self._rt.StopPodSandbox,
                         pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                         kind="sandbox", id=sandbox_id)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        try:
            await self._call(self._rt.RemovePodSandbox,
                             pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                             kind="sandbox", id=sandbox_id)
        except NotFound:
            pass

    async def pod_sandbox_status(self, sandbox_id: str) -> rt.PodSandboxStatus:
        r = await self._call(self._rt.PodSandboxStatus,
                             pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
                             kind="sandbox", id=sandbox_id)
        return conv.pod_sandbox_status(r.status, _netns_path(r.info))

    async def list_pod_sandboxes(self, *, id: str | None = None,
                                 state: rt.PodSandboxState | None = None,
                                 labels: Mapping[str, str] | None = None
                                 ) -> list[rt.PodSandbox]:
        f = pb.PodSandboxFilter(id=id or "", label_selector=dict(labels or {}))
        if state is not None:
            f.state.state = conv.SANDBOX_STATE_PB[state]
        r = await self._call(self._rt.ListPodSandbox, pb.ListPodSandboxRequest(filter=f))
        return [conv.pod_sandbox(s) for s in r.items]

    # -- containers -----------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig,
                               sandbox_config: rt.PodSandboxConfig) -> str:
        name = f"{config.metadata.name} (attempt {config.metadata.attempt})"
        request = pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=conv.container_config(config, sandbox_config),
            sandbox_config=conv.sandbox_config(sandbox_config))
        try:
            r = await self._call(self._rt.CreateContainer, request, kind="container", id=name)
        except NotFound as exc:
            if "image" in str(exc):
                raise ImageNotFound(config.image, "not present on this node") from None
            raise NotFound("sandbox", sandbox_id, str(exc)) from None
        except ContainerRuntimeError as exc:
            if "sandbox" in str(exc) and "not in ready state" in str(exc):
                raise InvalidArgument(str(exc)) from None
            raise
        return r.container_id

    async def start_container(self, container_id: str) -> None:
        await self._call(self._rt.StartContainer,
                         pb.StartContainerRequest(container_id=container_id),
                         kind="container", id=container_id)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        seconds = max(0, int(-(-timeout // 1)))  # CRI takes whole seconds; round up
        await self._call(self._rt.StopContainer,
                         pb.StopContainerRequest(container_id=container_id, timeout=seconds),
                         kind="container", id=container_id,
                         timeout=seconds + self.options.request_timeout)

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._call(self._rt.RemoveContainer,
                             pb.RemoveContainerRequest(container_id=container_id),
                             kind="container", id=container_id)
        except NotFound:
            pass

    async def _image_id(self, image_ref: str) -> str:
        if image_ref.startswith("sha256:") or not image_ref:
            return image_ref
        if image_ref not in self._image_ids:
            found = await self.image_status(image_ref)
            if found is None:
                return image_ref
            self._image_ids[image_ref] = found.id
        return self._image_ids[image_ref]

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        r = await self._call(self._rt.ContainerStatus,
                             pb.ContainerStatusRequest(container_id=container_id),
                             kind="container", id=container_id)
        listed = await self._call(self._rt.ListContainers, pb.ListContainersRequest(
            filter=pb.ContainerFilter(id=r.status.id)))
        sandbox_id = listed.containers[0].pod_sandbox_id if listed.containers else ""
        image_id = r.status.image_id or await self._image_id(r.status.image_ref)
        return conv.container_status(r.status, sandbox_id, image_id)

    async def list_containers(self, *, id: str | None = None, sandbox_id: str | None = None,
                              state: rt.ContainerState | None = None,
                              labels: Mapping[str, str] | None = None) -> list[rt.Container]:
        f = pb.ContainerFilter(id=id or "", pod_sandbox_id=sandbox_id or "",
                               label_selector=dict(labels or {}))
        if state is not None:
            f.state.state = conv.CONTAINER_STATE_PB[state]
        r = await self._call(self._rt.ListContainers, pb.ListContainersRequest(filter=f))
        return [conv.container(c, c.image_id or await self._image_id(c.image_ref))
                for c in r.containers]

    async def update_container_resources(self, container_id: str,
                                         resources: rt.Resources) -> None:
        await self._call(self._rt.UpdateContainerResources,
                         pb.UpdateContainerResourcesRequest(
                             container_id=container_id, linux=conv.resources(resources)),
                         kind="container", id=container_id)

    async def reopen_container_log(self, container_id: str) -> None:
        await self._call(self._rt.ReopenContainerLog,
                         pb.ReopenContainerLogRequest(container_id=container_id),
                         kind="container", id=container_id)

    async def exec_sync(self, container_id: str, cmd: Sequence[str],
                        timeout: float = 0) -> rt.ExecResult:
        seconds = max(0, int(-(-timeout // 1)))
        try:
            r = await self._call(
                self._rt.ExecSync,
                pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=seconds),
                kind="container", id=container_id,
                timeout=(seconds + self.options.request_timeout) if seconds else 86400.0 * 365)
        except Unavailable as exc:
            if seconds and "timeout" in str(exc) and "exceeded" in str(exc):
                raise ExecTimeout(f"{list(cmd)!r} in container {container_id} did not finish "
                                  f"within {timeout}s") from None
            raise
        return rt.ExecResult(r.exit_code, r.stdout, r.stderr)

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool = False,
                   stdin: bool = False, stdout: bool = True, stderr: bool = True) -> str:
        r = await self._call(self._rt.Exec, pb.ExecRequest(
            container_id=container_id, cmd=list(cmd), tty=tty, stdin=stdin, stdout=stdout,
            stderr=stderr and not tty), kind="container", id=container_id)
        return r.url

    async def attach(self, container_id: str, *, tty: bool = False, stdin: bool = False,
                     stdout: bool = True, stderr: bool = True) -> str:
        r = await self._call(self._rt.Attach, pb.AttachRequest(
            container_id=container_id, tty=tty, stdin=stdin, stdout=stdout,
            stderr=stderr and not tty), kind="container", id=container_id)
        return r.url

    async def port_forward(self, sandbox_id: str, ports: Sequence[int] = ()) -> str:
        r = await self._call(self._rt.PortForward, pb.PortForwardRequest(
            pod_sandbox_id=sandbox_id, port=list(ports)), kind="sandbox", id=sandbox_id)
        return r.url

    async def container_stats(self, container_id: str) -> rt.ContainerStats:
        r = await self._call(self._rt.ContainerStats,
                             pb.ContainerStatsRequest(container_id=container_id),
                             kind="container", id=container_id)
        return conv.container_stats(r.stats)

    async def list_container_stats(self, *, sandbox_id: str | None = None,
                                   labels: Mapping[str, str] | None = None
                                   ) -> list[rt.ContainerStats]:
        r = await self._call(self._rt.ListContainerStats, pb.ListContainerStatsRequest(
            filter=pb.ContainerStatsFilter(pod_sandbox_id=sandbox_id or "",
                                           label_selector=dict(labels or {}))))
        return [conv.container_stats(s) for s in r.stats]

    # -- images ---------------------------------------------------------------------------

    def _pinned(self, image: pb.Image) -> bool:
        return any(_same_ref(t, self._sandbox_image) for t in image.repo_tags)

    async def list_images(self) -> list[rt.Image]:
        r = await self._call(self._img.ListImages, pb.ListImagesRequest(), kind="image")
        return [conv.image(i, self._pinned(i)) for i in r.images]

    async def image_status(self, ref: str) -> rt.Image | None:
        r = await self._call(self._img.ImageStatus,
                             pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)),
                             kind="image", id=ref)
        if not r.HasField("image") or not r.image.id:
            return None
        return conv.image(r.image, self._pinned(r.image))

    async def pull_image(self, ref: str, *,
                         sandbox_config: rt.PodSandboxConfig | None = None) -> str:
        present = await self.image_status(ref)
        if not self.options.allow_pull:
            if present is None:
                raise ImageNotFound(ref, "it is not present on this node and pulling is "
                                         "disabled (runtime option allow_pull); load it with "
                                         "`pilothouse image import FILE.tar`")
            return present.id
        request = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
        if sandbox_config is not None:
            request.sandbox_config.CopyFrom(conv.sandbox_config(sandbox_config))
        try:
            r = await self._call(self._img.PullImage, request, kind="image", id=ref,
                                 timeout=self.options.request_timeout * 10)
        except NotFound as exc:
            raise ImageNotFound(ref, str(exc)) from None
        except ContainerRuntimeError as exc:
            raise ImagePullError(f"pulling {ref}: {exc}") from None
        return r.image_ref

    async def remove_image(self, ref: str) -> None:
        try:
            await self._call(self._img.RemoveImage,
                             pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)),
                             kind="image", id=ref)
        except NotFound:
            pass
        self._image_ids.clear()

    async def import_image(self, path: str,
                           progress: rt.ProgressCallback | None = None) -> list[str]:
        try:
            total = os.path.getsize(path)
        except OSError as exc:
            raise InvalidArgument(f"cannot read image archive {path}: {exc.strerror}") from None
        if shutil.which(self.options.ctr_binary) is None:
            raise Unavailable(f"{self.options.ctr_binary} not found (Debian package "
                              f"containerd); it is needed to import images")
        # ctr reads the archive from stdin so that progress is the bytes we hand it; ctr
        # 1.6 cannot read gzip-compressed archives, so those are decompressed on the way.
        proc = await asyncio.create_subprocess_exec(
            self.options.ctr_binary, "--address", self._socket,
            "--namespace", self.options.namespace, "images", "import",
            "--snapshotter", self.options.snapshotter, "-",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)

        async def feed() -> None:
            done = 0
            gunzip = None
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, _CHUNK):
                    if done == 0 and chunk[:2] == b"\x1f\x8b":
                        gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    done += len(chunk)
                    data = gunzip.decompress(chunk) if gunzip else chunk
                    try:
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # ctr gave up; its stderr says why
                    if progress is not None:
                        progress(done, total)
                if gunzip is not None:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        proc.stdin.write(gunzip.flush())
                        await proc.stdin.drain()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.close()
            if progress is not None and done != total:
                progress(total, total)

        try:
            _, out, err = await asyncio.gather(feed(), proc.stdout.read(), proc.stderr.read())
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if code != 0:
            detail = (err.decode(errors="replace").strip() or text.strip()).replace(
                "ctr: ", "")
            raise InvalidArgument(f"cannot import {path}: {detail}")
        refs = [m.group(1) for m in _UNPACKED.finditer(text)]
        for ref in refs:  # the CRI plugin learns of new images through events: wait for it
            await self._await_image(ref)
        self._image_ids.clear()
        return refs

    async def _await_image(self, ref: str, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.image_status(ref) is None:
            if loop.time() > deadline:
                raise ContainerRuntimeError(f"imported {ref} but the CRI plugin does not "
                                            f"list it after {timeout}s")
            await asyncio.sleep(0.02)

    async def _ensure_sandbox_image(self) -> None:
        """Make the sandbox image present: containerd would try to pull it otherwise."""
        status = await self._call(self._rt.Status, pb.StatusRequest(verbose=True))
        with contextlib.suppress(KeyError, ValueError, TypeError):
            self._sandbox_image = json.loads(status.info["config"])["sandboxImage"]
        if await self.image_status(self._sandbox_image) is not None or self.options.allow_pull:
            return
        from pilothouse_runtime_containerd._pause import build_pause_image
        with tempfile.TemporaryDirectory(prefix="pilothouse-pause-") as tmp:
            tar = await asyncio.to_thread(build_pause_image, tmp, self._sandbox_image)
            await self.import_image(str(tar))


def _same_ref(a: str, b: str) -> bool:
    try:
        return normalize_ref(a) == normalize_ref(b)
    except ImageError:
        return a == b


def _netns_path(info: Mapping[str, str]) -> str:
    """The network namespace path from containerd's verbose sandbox info (its OCI spec)."""
    try:
        doc = json.loads(info["info"])
        for ns in doc["runtimeSpec"]["linux"]["namespaces"]:
            if ns.get("type") == "network":
                return ns.get("path", "")
    except (KeyError, ValueError, TypeError):
        pass
    return ""


async def _run(*argv: str) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()
