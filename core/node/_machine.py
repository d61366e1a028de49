"""What the agent reports about the machine: capacity, identity, addresses."""

from __future__ import annotations

import contextlib
import os
import platform
import socket

__all__ = ["MachineInfo", "machine_info", "node_ip", "go_arch"]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


def go_arch() -> str:
    """The machine's architecture as Kubernetes names it (``GOARCH``)."""
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def _read(path: str) -> str:
    with contextlib.suppress(OSError):
        with open(path) as f:
            return f.read().strip()
    return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _memory_bytes() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def node_ip() -> str:
    """The address of the interface the default route leaves from (no packet is sent)."""
    with contextlib.suppress(OSError):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
    return "127.0.0.1"


class MachineInfo:
    """A snapshot of the machine, read once (cheap to re-read)."""

    def __init__(self, data_dir: str):
        self.cpus = _cpus()
        self.memory = _memory_bytes()
        try:
            st = os.statvfs(data_dir)
            self.storage = st.f_blocks * st.f_frsize
        except OSError:
            self.storage = 0
        self.boot_id = _read("/proc/sys/kernel/random/boot_id")
        self.machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
        self.system_uuid = _read("/sys/class/dmi/id/product_uuid").lower() or self.machine_id
        self.kernel = platform.release()
        self.os_image = _os_image()
        self.arch = go_arch()
        self.hostname = socket.gethostname()


def machine_info(data_dir: str) -> MachineInfo:
    return MachineInfo(data_dir)
