"""ProcessRuntime: pods' containers as plain host processes, for machines without containerd.

Each container is a process started by a small monitor (:mod:`._shim`) that outlives the
runtime, writes the CRI log and records the exit status. A sandbox is bookkeeping only: no
namespaces, no network of its own. See the README for what this does not isolate.

State lives under ``state_dir``::

    images/                       pilothouse.images.ImageStore (OCI layout + unpacked roots)
    sandboxes/<id>.json           a sandbox: metadata, config, state
    containers/<id>/meta.json     a container: metadata, labels, image, log path...
    containers/<id>/spec.json     what the monitor runs: argv, env, root, workdir, user
    containers/<id>/started.json  written by the monitor once the process runs
    containers/<id>/exit.json     written by the monitor when it has exited
    containers/<id>/rootfs/       chroot mode: the container's private copy of the image
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Literal

from pilothouse import images
from pilothouse.interfaces.runtime import (
    AlreadyExists,
    Container,
    ContainerConfig,
    ContainerMetadata,
    ContainerRuntimeError,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    ExecResult,
    ExecTimeout,
    Feature,
    Image,
    ImageNotFound,
    InvalidArgument,
    Mount,
    MountPropagation,
    NotFound,
    PodSandbox,
    PodSandboxConfig,
    PodSandboxMetadata,
    PodSandboxState,
    PodSandboxStatus,
    ProgressCallback,
    Runtime,
    RuntimeCondition,
    RuntimeStatus,
    RuntimeVersion,
    Unavailable,
)

from pilothouse_runtime_process import _shim

_SHIM = os.path.abspath(_shim.__file__)
_POLL = 0.02
_DEV_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
              "urandom": (1, 9), "tty": (5, 0)}


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/pilothouse/runtime-process"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "pilothouse", "runtime-process")


def _node_ip() -> str:
    """This node's primary address: the source address of a route to the outside."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing
            return s.getsockname()[0]
    return "127.0.0.1"


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and _shim.proc_start_time(pid) == start


def _signal_number(name: str) -> int:
    name = name.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown stop signal {name!r}") from None


def _in_root(root: str, path: str) -> str:
    """``path`` inside the directory ``root``, with symlinks on the way resolved as if
    ``root`` were ``/``: an image's links can never make the runtime write on the host."""
    resolved: list[str] = []
    pending = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        full = os.path.join(root, *resolved, part)
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                raise InvalidArgument(f"too many symbolic links resolving {path} in the image")
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mounts_in(root: str) -> list[str]:
    """Mount points at or below ``root`` (in this mount namespace), deepest first."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                out.append(point)
    return sorted(out, key=len, reverse=True)


def _remove_tree(path: str) -> None:
    """Delete a container directory, refusing to descend into anything mounted there (a
    process running as root may have mounted host directories inside its root)."""
    mounted = _mounts_in(os.path.realpath(path))
    for point in mounted:
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_in(os.path.realpath(path)):
        raise ContainerRuntimeError(f"{path}: still has mounts inside; not deleting it")
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


@dataclasses.dataclass
class _Sandbox:
    id: str
    metadata: PodSandboxMetadata
    state: PodSandboxState
    created_at: float
    hostname: str
    log_directory: str
    host_network: bool
    ip: str
    labels: dict[str, str]
    annotations: dict[str, str]
    dns: dict

    def to_json(self) -> dict:
        doc = dataclasses.asdict(self)
        doc["state"] = self.state.value
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> _Sandbox:
        doc = dict(doc)
        doc["metadata"] = PodSandboxMetadata(**doc["metadata"])
        doc["state"] = PodSandboxState(doc["state"])
        return cls(**doc)


@dataclasses.dataclass
class _Container:
    id: str
    sandbox_id: str
    metadata: ContainerMetadata
    image: str
    image_id: str
    created_at: float
    log_path: str
    labels: dict[str, str]
    annotations: dict[str, str]
    mounts: list[dict]
    stop_signal: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> _Container:
        doc = dict(doc)
        doc["metadata"] = ContainerMetadata(**doc["metadata"])
        return cls(**doc)


@dataclasses.dataclass
class _Observed:
    state: ContainerState
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    pid: int | None = None
    shim_pid: int | None = None
    shim_start: int | None = None


class ProcessRuntime(Runtime):
    """A :class:`~pilothouse.interfaces.runtime.Runtime` whose containers are host
    processes (like Nomad's ``raw_exec``), each watched by a detached monitor process.

    Entry point ``process`` in group ``pilothouse.runtime``. Images are real (imported into
    a local :class:`pilothouse.images.ImageStore`); in ``chroot`` mode a container runs
    chrooted into its own copy of the image's root filesystem, in ``host`` mode on the
    host's filesystem with the image's command, environment and working directory.
    Containers keep running when the runtime (or the node agent) stops, and are adopted by
    the next :meth:`open`.
    """

    @dataclasses.dataclass
    class Options:
        """``state_dir``: where images, sandboxes and containers are kept (default
        ``/var/lib/pilothouse/runtime-process`` as root, else under ``$XDG_DATA_HOME``).
        ``rootfs``: ``"chroot"`` (needs root), ``"host"``, or ``"auto"`` (chroot when
        running as root). ``pod_ip``: the address reported for pods without host
        networking; they share the node's network, so the default is the node's address."""

        state_dir: str = ""
        rootfs: Literal["auto", "chroot", "host"] = "auto"
        pod_ip: str = ""

    def __init__(self, options: ProcessRuntime.Options | None = None):
        self.options = options or self.Options()
        self.state_dir = os.path.abspath(self.options.state_dir or _default_state_dir())
        self.is_root = os.geteuid() == 0
        mode = self.options.rootfs
        self.chroot = mode == "chroot" or (mode == "auto" and self.is_root)
        features = {Feature.IMAGES, Feature.STATS}
        if self.chroot:
            features.add(Feature.MOUNTS)  # bind mounts in a private mount namespace
        self.features = frozenset(features)
        self.store = images.ImageStore(os.path.join(self.state_dir, "images"))
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._starting: set[str] = set()
        self._image_sizes: dict[str, int] = {}
        self._opened = False

    # -- paths and persistence ---------------------------------------------------------------

    def _sandbox_file(self, sandbox_id: str) -> str:
        return os.path.join(self.state_dir, "sandboxes", f"{sandbox_id}.json")

    def _cdir(self, container_id: str) -> str:
        return os.path.join(self.state_dir, "containers", container_id)

    def _save_sandbox(self, sandbox: _Sandbox) -> None:
        _shim.write_json_atomic(self._sandbox_file(sandbox.id), sandbox.to_json())

    # -- driver lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Create the state directory and adopt the sandboxes and containers a previous run
        left (their processes kept running)."""
        if self.options.rootfs == "chroot" and not self.is_root:
            raise Unavailable("process runtime: rootfs 'chroot' needs root; run as root or "
                              "set rootfs: host")
        if self.chroot and not shutil.which("cp"):
            raise Unavailable("process runtime: 'cp' (coreutils) is needed in chroot mode")
        try:
            for sub in ("sandboxes", "containers", "images"):
                os.makedirs(os.path.join(self.state_dir, sub), exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"process runtime: cannot use state directory "
                              f"{self.state_dir}: {exc.strerror}") from None
        self._sandboxes.clear()
        self._containers.clear()
        for name in os.listdir(os.path.join(self.state_dir, "sandboxes")):
            doc = _read_json(os.path.join(self.state_dir, "sandboxes", name))
            if name.endswith(".json") and doc:
                sandbox = _Sandbox.from_json(doc)
                self._sandboxes[sandbox.id] = sandbox
        for cid in os.listdir(os.path.join(self.state_dir, "containers")):
            doc = _read_json(os.path.join(self._cdir(cid), "meta.json"))
            if doc is None:  # a create that crashed half-way
                await asyncio.to_thread(_remove_tree, self._cdir(cid))
                continue
            container = _Container.from_json(doc)
            self._containers[container.id] = container
        self._opened = True

    async def close(self) -> None:
        """Nothing to release: containers and their monitors keep running."""
        self._opened = False

    async def version(self) -> RuntimeVersion:
        """``pilothouse-process``, the distribution's version, API ``pilothouse/0.1``."""
        try:
            version = importlib.metadata.version("pilothouse-runtime-process")
        except importlib.metadata.PackageNotFoundError:
            version = "0.1.0"
        return RuntimeVersion("pilothouse-process", version, "pilothouse/0.1")

    async def status(self) -> RuntimeStatus:
        """Ready when the state directory is writable; the network is the host's, always
        ready."""
        ok = os.access(self.state_dir, os.W_OK)
        return RuntimeStatus((
            RuntimeCondition("RuntimeReady", ok, "" if ok else "StateDirNotWritable",
                             "" if ok else f"{self.state_dir} is not writable"),
            RuntimeCondition("NetworkReady", True)))

    # -- sandboxes ---------------------------------------------------------------------------

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        try:
            return self._sandboxes[sandbox_id]
        except KeyError:
            raise NotFound("sandbox", sandbox_id) from None

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        """Record a sandbox; nothing runs. Pods share the host's network, PID, IPC and UTS
        namespaces whatever the config says."""
        if config.host_network and config.hostname:
            raise InvalidArgument("a host-network sandbox must have an empty hostname "
                                  f"(got {config.hostname!r})")
        for s in self._sandboxes.values():
            if s.metadata == config.metadata:
                raise AlreadyExists("sandbox", f"{config.metadata.namespace}/"
                                    f"{config.metadata.name}", s.id)
        sandbox = _Sandbox(
            id=secrets.token_hex(32), metadata=config.metadata, state=PodSandboxState.READY,
            created_at=time.time(), hostname=config.hostname,
            log_directory=config.log_directory, host_network=config.host_network,
            ip="" if config.host_network else (self.options.pod_ip or _node_ip()),
            labels=dict(config.labels), annotations=dict(config.annotations),
            dns=dataclasses.asdict(config.dns))
        self._save_sandbox(sandbox)
        self._sandboxes[sandbox.id] = sandbox
        return sandbox.id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Kill every container of the sandbox (SIGKILL) and mark it NOTREADY."""
        sandbox = self._sandbox(sandbox_id)
        for c in [c for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            await self.stop_container(c.id, 0)
        if sandbox.state is not PodSandboxState.NOTREADY:
            sandbox.state = PodSandboxState.NOTREADY
            self._save_sandbox(sandbox)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers (killed first). Idempotent."""
        if sandbox_id not in self._sandboxes:
            return
        for c in [c for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            await self.remove_container(c.id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._sandbox_file(sandbox_id))
        self._sandboxes.pop(sandbox_id, None)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        """The sandbox's state; ``ip`` is the node's address (pods share its network), or
        ``""`` for host networking and once stopped; there is never a network namespace."""
        s = self._sandbox(sandbox_id)
        ready = s.state is PodSandboxState.READY
        return PodSandboxStatus(
            id=s.id, metadata=s.metadata, state=s.state, created_at=s.created_at,
            ip=s.ip if ready else "", netns_path="", host_network=s.host_network,
            labels=dict(s.labels), annotations=dict(s.annotations))

    async def list_pod_sandboxes(self, *, id: str | None = None,
                                 state: PodSandboxState | None = None,
                                 labels: Mapping[str, str] | None = None) -> list[PodSandbox]:
        """Sandboxes matching every filter; ``id`` may be a unique prefix."""
        found = list(self._sandboxes.values())
        if id is not None:
            found = self._by_id(found, id)
        return [PodSandbox(id=s.id, metadata=s.metadata, state=s.state,
                           created_at=s.created_at, labels=dict(s.labels),
                           annotations=dict(s.annotations))
                for s in found
                if (state is None or s.state is state)
                and all(s.labels.get(k) == v for k, v in (labels or {}).items())]

    @staticmethod
    def _by_id(items: list, id: str) -> list:
        exact = [x for x in items if x.id == id]
        if exact:
            return exact
        prefixed = [x for x in items if x.id.startswith(id)] if id else []
        return prefixed if len(prefixed) == 1 else []

    # -- containers --------------------------------------------------------------------------

    def _container(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFound("container", container_id) from None

    def _observe(self, c: _Container) -> _Observed:
        directory = self._cdir(c.id)
        started = _read_json(os.path.join(directory, "started.json"))
        exited = _read_json(os.path.join(directory, "exit.json"))
        if exited is not None:
            return _Observed(ContainerState.EXITED,
                             started_at=(started or exited).get("started_at"),
                             finished_at=exited["finished_at"], exit_code=exited["exit_code"],
                             reason=exited.get("reason", ""), message=exited.get("message", ""))
        if started is None:
            return _Observed(ContainerState.CREATED)
        obs = _Observed(ContainerState.RUNNING, started_at=started["started_at"],
                        pid=started["pid"], shim_pid=started["shim_pid"],
                        shim_start=started["shim_start"])
        if _alive(started["shim_pid"], started["shim_start"]):
            return obs
        # the monitor is gone without recording an exit (killed, or the node rebooted)
        exited = _read_json(os.path.join(directory, "exit.json"))
        if exited is not None:  # it wrote it just now
            return self._observe(c)
        if _alive(started["pid"], started["pid_start"]):
            obs.state = ContainerState.UNKNOWN
            obs.message = "the container's monitor process died; its output is not logged"
            return obs
        doc = {"exit_code": 255, "finished_at": time.time(), "reason": "Error",
               "message": "the container's monitor process died; exit status unknown"}
        _shim.write_json_atomic(os.path.join(directory, "exit.json"), doc)
        return self._observe(c)

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig) -> str:
        """Resolve the image, command, environment, user and working directory, and (in
        chroot mode) copy the image's root filesystem for the container and create its
        mount points. Mounts are made in chroot mode only (see the README)."""
        sandbox = self._sandbox(sandbox_id)
        if sandbox.state is not PodSandboxState.READY:
            raise InvalidArgument(f"sandbox {sandbox_id} is not ready")
        for c in self._containers.values():
            if c.sandbox_id == sandbox_id and c.metadata == config.metadata:
                raise AlreadyExists("container", config.metadata.name, c.id)
        if not config.image:
            raise InvalidArgument("container config has no image")
        try:
            image = self.store.get(config.image)
        except images.ImageError as exc:
            raise InvalidArgument(str(exc)) from None
        if image is None:
            raise ImageNotFound(config.image, "import it with 'pilothouse image import "
                                "FILE.tar' (no registry is used)")
        argv = list(config.command or image.entrypoint) + list(
            config.args if (config.args or config.command) else image.cmd)
        if not argv:
            raise InvalidArgument(f"no command: the container and image {config.image} "
                                  f"specify none")
        cid = secrets.token_hex(32)
        directory = self._cdir(cid)
        os.makedirs(directory)
        try:
            spec = await asyncio.to_thread(self._prepare, directory, sandbox, config, image,
                                           argv)
        except BaseException:
            await asyncio.to_thread(_remove_tree, directory)
            raise
        log_path = ""
        if config.log_path:
            log_path = os.path.join(sandbox.log_directory or directory, config.log_path)
        spec["log_path"] = log_path or None
        container = _Container(
            id=cid, sandbox_id=sandbox_id, metadata=config.metadata, image=config.image,
            image_id=image.id, created_at=time.time(), log_path=log_path,
            labels=dict(config.labels), annotations=dict(config.annotations),
            mounts=[{**dataclasses.asdict(m), "propagation": m.propagation.value}
                    for m in config.mounts],
            stop_signal=str(image.config.get("config", {}).get("StopSignal") or "SIGTERM"))
        _signal_number(container.stop_signal)
        _shim.write_json_atomic(os.path.join(directory, "spec.json"), spec)
        _shim.write_json_atomic(os.path.join(directory, "meta.json"), container.to_json())
        self._containers[cid] = container
        return cid

    def _prepare(self, directory: str, sandbox: _Sandbox, config: ContainerConfig,
                 image: images.StoredImage, argv: list[str]) -> dict:
        """Build the monitor's spec (blocking: copies the root filesystem in chroot mode)."""
        root = None
        if self.chroot:
            root = os.path.join(directory, "rootfs")
            out = subprocess.run(["cp", "-a", "--reflink=auto", image.rootfs, root],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise ContainerRuntimeError(f"cannot copy the root filesystem of "
                                            f"{config.image}: {out.stderr.strip()}")
            self._populate_root(root, sandbox)
        env: dict[str, str] = {}
        for item in image.env:
            key, _, value = item.partition("=")
            env[key] = value
        for key, value in config.env:
            env[key] = value
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.setdefault("HOSTNAME", sandbox.hostname or socket.gethostname())
        uid, gid, groups, home = self._user(root, config, image)
        env.setdefault("HOME", home)
        workdir = config.working_dir or image.working_dir
        mounts = []
        if root is not None:
            os.makedirs(_in_root(root, workdir), exist_ok=True)
            for m in config.mounts:
                mounts.append(self._mount_point(root, m))
        elif not os.path.isdir(workdir):
            if config.working_dir:
                raise InvalidArgument(f"working directory {workdir} does not exist on the "
                                      f"host (rootfs mode 'host')")
            workdir = os.path.join(directory, "work")
            os.makedirs(workdir, exist_ok=True)
            if uid is not None:
                os.chown(workdir, uid, gid if gid is not None else -1)
        return {"argv": argv, "env": env, "root": root, "workdir": workdir, "uid": uid,
                "mount_namespace": root is not None, "mounts": mounts,
                "gid": gid, "groups": groups, "tty": config.tty, "stdin": config.stdin,
                "oom_score_adj": config.resources.oom_score_adj,
                "no_new_privs": config.security.no_new_privs}

    @staticmethod
    def _mount_point(root: str, mount: Mount) -> dict:
        """Check a bind mount and create its mount point in the container's root."""
        if not os.path.isabs(mount.container_path) or not os.path.isabs(mount.host_path):
            raise InvalidArgument(f"mount {mount.host_path} -> {mount.container_path}: both "
                                  f"paths must be absolute")
        if not os.path.exists(mount.host_path):
            raise InvalidArgument(f"mount source {mount.host_path} does not exist")
        target = _in_root(root, mount.container_path)
        if target == root:
            raise InvalidArgument("a volume cannot be mounted on the container's /")
        if os.path.isdir(mount.host_path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "a").close()
        return {"host_path": mount.host_path, "target": target, "readonly": mount.readonly}

    def _populate_root(self, root: str, sandbox: _Sandbox) -> None:
        """Give a chroot the files a container expects: device nodes, hosts, resolv.conf."""
        dev = _in_root(root, "/dev")
        os.makedirs(dev, exist_ok=True)
        for name, (major, minor) in _DEV_NODES.items():
            path = os.path.join(dev, name)
            if not os.path.lexists(path):
                os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))
                os.chmod(path, 0o666)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            if not os.path.lexists(os.path.join(dev, name)):
                os.symlink(target, os.path.join(dev, name))
        os.makedirs(os.path.join(dev, "shm"), exist_ok=True)
        os.makedirs(_in_root(root, "/proc"), exist_ok=True)
        os.makedirs(_in_root(root, "/tmp"), exist_ok=True)
        etc = _in_root(root, "/etc")
        os.makedirs(etc, exist_ok=True)
        hostname = sandbox.hostname or socket.gethostname()
        files = {"hostname": f"{hostname}\n",
                 "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                          f"{sandbox.ip or '127.0.1.1'}\t{hostname}\n"}
        dns = sandbox.dns
        if dns["servers"] or dns["searches"] or dns["options"]:
            files["resolv.conf"] = "".join(
                [f"nameserver {s}\n" for s in dns["servers"]]
                + ([f"search {' '.join(dns['searches'])}\n"] if dns["searches"] else [])
                + ([f"options {' '.join(dns['options'])}\n"] if dns["options"] else []))
        else:
            with contextlib.suppress(OSError), open("/etc/resolv.conf") as f:
                files["resolv.conf"] = f.read()
        for name, text in files.items():
            path = os.path.join(etc, name)
            if os.path.islink(path):
                os.unlink(path)
            with open(path, "w") as f:
                f.write(text)

    def _user(self, root: str | None, config: ContainerConfig, image: images.StoredImage
              ) -> tuple[int | None, int | None, list[int] | None, str]:
        """(uid, gid, supplementary groups, home) to run as; None keeps the runtime's."""
        sec = config.security
        user, _, group = image.user.partition(":")
        passwd = self._passwd(root)
        uid = gid = None
        home = "/root" if self.is_root else os.path.expanduser("~")
        if sec.run_as_user is not None:
            uid = sec.run_as_user
        elif user:
            if user.isdigit():
                uid = int(user)
            elif user in passwd:
                uid = passwd[user][0]
            else:
                raise InvalidArgument(f"image user {user!r} is not in the image's /etc/passwd")
        if uid is not None:
            entry = next((e for e in passwd.values() if e[0] == uid), None)
            gid = entry[1] if entry else uid
            home = entry[2] if entry else "/"
        if sec.run_as_group is not None:
            gid = sec.run_as_group
        elif group:
            gid = int(group) if group.isdigit() else self._group(root, group)
        if uid is None and gid is None and not sec.supplemental_groups:
            return None, None, None, home if root is None else "/root"
        if not self.is_root:
            if (uid is not None and uid != os.getuid()) or (
                    gid is not None and gid != os.getgid()) or sec.supplemental_groups:
                raise InvalidArgument("the process runtime is not root: containers run as "
                                      f"uid {os.getuid()} and cannot change user or groups")
            return None, None, None, home
        uid = 0 if uid is None else uid
        gid = 0 if gid is None else gid
        return uid, gid, sorted({gid, *sec.supplemental_groups}), home

    @staticmethod
    def _passwd(root: str | None) -> dict[str, tuple[int, int, str]]:
        path = _in_root(root, "/etc/passwd") if root else "/etc/passwd"
        out = {}
        with contextlib.suppress(OSError), open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2].isdigit() and parts[3].isdigit():
                    out[parts[0]] = (int(parts[2]), int(parts[3]), parts[5] or "/")
        return out

    @staticmethod
    def _group(root: str | None, name: str) -> int:
        path = _in_root(root, "/etc/group") if root else "/etc/group"
        with contextlib.suppress(OSError), open(path) as f:
            for line in f:
                parts = line.split(":")
                if len(parts) >= 3 and parts[0] == name and parts[2].isdigit():
                    return int(parts[2])
        raise InvalidArgument(f"group {name!r} is not in {path}")

    async def start_container(self, container_id: str) -> None:
        """Start the container's monitor, which starts the process; return once it runs or
        raise :class:`ContainerRuntimeError` with the reason it could not (then EXITED,
        exit code 128)."""
        c = self._container(container_id)
        if container_id in self._starting or self._observe(c).state is not ContainerState.CREATED:
            raise InvalidArgument(f"container {container_id} is not CREATED (a container "
                                  f"runs once)")
        self._starting.add(container_id)
        try:
            reply = await asyncio.to_thread(self._spawn_monitor, self._cdir(container_id))
        finally:
            self._starting.discard(container_id)
        if "error" in reply:
            raise ContainerRuntimeError(f"container {c.metadata.name}: {reply['error']}")

    @staticmethod
    def _spawn_monitor(directory: str) -> dict:
        with open(os.path.join(directory, "shim.log"), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _SHIM, "run", directory],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, close_fds=True, cwd=directory)
        try:
            line = proc.stdout.readline()
        finally:
            proc.stdout.close()
            proc.wait()
        if line:
            return json.loads(line)
        with open(os.path.join(directory, "shim.log"), errors="replace") as f:
            tail = f.read()[-2000:].strip()
        message = f"the container monitor failed: {tail or 'no output'}"
        if not os.path.exists(os.path.join(directory, "exit.json")):
            _shim.write_json_atomic(os.path.join(directory, "exit.json"), {
                "exit_code": 128, "finished_at": time.time(), "started_at": time.time(),
                "reason": "StartError", "message": message})
        return {"error": message}

    async def _wait_exit(self, c: _Container, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._observe(c).state not in (ContainerState.RUNNING, ContainerState.UNKNOWN):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """Send the stop signal to the container's process group, wait ``timeout``
        seconds, then SIGKILL the group (the monitor then kills every remaining
        descendant). The stop signal is the image's ``StopSignal``, else SIGTERM; unlike a
        PID-1 process in a container, an unhandled SIGTERM ends the process (exit 143).
        Stopping a CREATED or EXITED container changes nothing."""
        c = self._container(container_id)
        while container_id in self._starting:
            await asyncio.sleep(_POLL)
        obs = self._observe(c)
        if obs.state in (ContainerState.CREATED, ContainerState.EXITED):
            return  # CRI: a CREATED container stays CREATED and is only ever removed
        pgid = obs.pid
        if timeout > 0:
            with contextlib.suppress(OSError):
                os.killpg(pgid, _signal_number(c.stop_signal))
            if await self._wait_exit(c, timeout):
                return
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
        if obs.state is ContainerState.UNKNOWN:
            with contextlib.suppress(OSError):
                os.kill(pgid, signal.SIGKILL)
        if not await self._wait_exit(c, 30):
            raise ContainerRuntimeError(f"container {container_id} did not exit after SIGKILL")

    async def remove_container(self, container_id: str) -> None:
        """Kill the container if it runs, then delete its directory (root copy included);
        the log file stays. Idempotent."""
        c = self._containers.get(container_id)
        if c is None:
            return
        if self._observe(c).state in (ContainerState.RUNNING, ContainerState.UNKNOWN):
            await self.stop_container(container_id, 0)
        self._containers.pop(container_id, None)
        await asyncio.to_thread(_remove_tree, self._cdir(container_id))

    def _status(self, c: _Container) -> ContainerStatus:
        obs = self._observe(c)
        return ContainerStatus(
            id=c.id, sandbox_id=c.sandbox_id, metadata=c.metadata, state=obs.state,
            image=c.image, image_id=c.image_id, created_at=c.created_at,
            started_at=obs.started_at, finished_at=obs.finished_at, exit_code=obs.exit_code,
            reason=obs.reason, message=obs.message, log_path=c.log_path,
            mounts=tuple(Mount(**{**m, "propagation": MountPropagation(m["propagation"])})
                         for m in c.mounts),
            labels=dict(c.labels), annotations=dict(c.annotations))

    async def container_status(self, container_id: str) -> ContainerStatus:
        """State, times, exit code and reason read from the monitor's files."""
        return self._status(self._container(container_id))

    async def list_containers(self, *, id: str | None = None, sandbox_id: str | None = None,
                              state: ContainerState | None = None,
                              labels: Mapping[str, str] | None = None) -> list[Container]:
        """Containers matching every filter; ``id`` may be a unique prefix."""
        found = list(self._containers.values())
        if id is not None:
            found = self._by_id(found, id)
        out = []
        for c in found:
            if sandbox_id is not None and c.sandbox_id != sandbox_id:
                continue
            if not all(c.labels.get(k) == v for k, v in (labels or {}).items()):
                continue
            current = self._observe(c).state
            if state is not None and current is not state:
                continue
            out.append(Container(id=c.id, sandbox_id=c.sandbox_id, metadata=c.metadata,
                                 image=c.image, image_id=c.image_id, state=current,
                                 created_at=c.created_at, labels=dict(c.labels),
                                 annotations=dict(c.annotations)))
        return out

    async def reopen_container_log(self, container_id: str) -> None:
        """Make the monitor reopen the log file (SIGHUP); returns once the new file
        exists."""
        c = self._container(container_id)
        obs = self._observe(c)
        if obs.state is not ContainerState.RUNNING:
            raise InvalidArgument(f"container {container_id} is not running")
        if not c.log_path:
            return
        with contextlib.suppress(OSError):
            os.kill(obs.shim_pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not os.path.exists(c.log_path) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)

    async def exec_sync(self, container_id: str, cmd: Sequence[str],
                        timeout: float = 0) -> ExecResult:
        """Run ``cmd`` with the container's root, working directory, user and environment;
        a timeout kills the command's whole process group."""
        c = self._container(container_id)
        if self._observe(c).state is not ContainerState.RUNNING:
            raise InvalidArgument(f"container {container_id} is not running")
        if not cmd:
            raise InvalidArgument("exec_sync needs a command")
        status_r, status_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", _SHIM, "exec", self._cdir(container_id),
                str(status_w), "--", *cmd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(status_w,),
                start_new_session=True)
        except OSError as exc:
            os.close(status_r)
            raise ContainerRuntimeError(f"cannot run exec launcher: {exc}") from None
        finally:
            os.close(status_w)
        try:
            try:
                out, err = await asyncio.wait_for(proc.communicate(),
                                                  timeout if timeout > 0 else None)
            except (asyncio.TimeoutError, TimeoutError):
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise ExecTimeout(f"exec {list(cmd)!r} in container {container_id} did not "
                                  f"finish within {timeout}s; killed") from None
            except asyncio.CancelledError:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise
            failure = os.read(status_r, 65536)
        finally:
            os.close(status_r)
        if failure:
            raise ContainerRuntimeError(failure.decode(errors="replace"))
        return ExecResult(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode,
                          out, err)

    async def container_stats(self, container_id: str) -> ContainerStats:
        """CPU time and resident memory of the processes in the container's process group
        (from /proc; a descendant that left the group is not counted)."""
        c = self._container(container_id)
        obs = self._observe(c)
        cpu = mem = 0
        if obs.state is ContainerState.RUNNING and obs.pid:
            cpu, mem = await asyncio.to_thread(_group_usage, obs.pid)
        writable = 0
        return ContainerStats(container_id=c.id, timestamp=time.time(),
                              cpu_usage_core_ns=cpu, memory_working_set_bytes=mem,
                              writable_layer_bytes=writable)

    # -- images ------------------------------------------------------------------------------

    def _image(self, stored: images.StoredImage) -> Image:
        size = self._image_sizes.get(stored.id)
        if size is None:
            size = self._image_sizes[stored.id] = _tree_size(stored.rootfs)
        digests = tuple(dict.fromkeys(f"{ref.rpartition(':')[0]}@{stored.manifest_digest}"
                                      for ref in stored.refs))
        return Image(id=stored.id, repo_tags=stored.refs, repo_digests=digests, size=size,
                     user=stored.user)

    async def list_images(self) -> list[Image]:
        """Every image in the local store."""
        stored = await asyncio.to_thread(self.store.list)
        return [await asyncio.to_thread(self._image, s) for s in stored]

    async def image_status(self, ref: str) -> Image | None:
        """The image named ``ref`` (reference, id or unique id prefix), or None."""
        try:
            stored = await asyncio.to_thread(self.store.get, ref)
        except images.ImageError:
            return None
        return None if stored is None else await asyncio.to_thread(self._image, stored)

    async def pull_image(self, ref: str, *,
                         sandbox_config: PodSandboxConfig | None = None) -> str:
        """Return the id of a present image; there is no registry, so an absent one raises
        :class:`ImageNotFound` saying how to import it."""
        image = await self.image_status(ref)
        if image is None:
            raise ImageNotFound(ref, "the process runtime pulls from no registry; build or "
                                "import it: pilothouse image import FILE.tar")
        return image.id

    async def remove_image(self, ref: str) -> None:
        """Remove the image ``ref`` names with all its tags (as CRI's RemoveImage does).
        Containers are unaffected: each has its own copy of the root filesystem, or none in
        host mode. Idempotent."""
        try:
            stored = await asyncio.to_thread(self.store.get, ref)
            if stored is not None:
                await asyncio.to_thread(self.store.remove, stored.id)
        except images.ImageError as exc:
            raise InvalidArgument(str(exc)) from None
        if stored is not None:
            self._image_sizes.pop(stored.id, None)

    async def import_image(self, path: str,
                           progress: ProgressCallback | None = None) -> list[str]:
        """Import an OCI layout or docker-archive tar (optionally gzip-compressed) into the
        local store with :func:`pilothouse.images.import_image_to_dir`; return its
        references (image ids for unnamed images). ``progress`` is called on the event
        loop with the tar's size as the total."""
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)

        def work() -> list[str]:
            named = images.read_image_tar(path, verify_layers=False).refs
            stored = images.import_image_to_dir(path, self.store.root, report)
            out = [r for r in named if any(r in s.refs for s in stored)]
            return out or [s.id for s in stored]

        try:
            refs = await asyncio.to_thread(work)
        except FileNotFoundError:
            raise InvalidArgument(f"{path}: no such file") from None
        except (images.ImageError, OSError) as exc:
            raise InvalidArgument(f"cannot import {path}: {exc}") from None
        await asyncio.sleep(0)  # let the last progress callback run before returning
        return refs


def _tree_size(root: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _group_usage(pgid: int) -> tuple[int, int]:
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = mem = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rfind(b")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            cpu += (int(fields[11]) + int(fields[12])) * tick_ns
            with open(f"/proc/{name}/statm") as f:
                mem += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return cpu, mem

