"""What a one-node cluster needs on the machine, and installing what is missing.

* Debian packages, for the ``containerd`` runtime: containerd (and ctr), runc, the CNI
  plugins (bridge, host-local, loopback, portmap), iptables and iproute2 (the bridge
  network); for the example image, a static busybox. Installed with apt-get when running as
  root on a machine that has it; otherwise the exact command is printed.
* Python distributions: every plugin the config names must be installed. From a source
  checkout (``plugins/*`` next to ``core/``) the missing built-in ones are pip-installed
  in editable mode; otherwise the pip command is printed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

from pilothouse.plugins import GROUPS, discover
from pilothouse.testing.images import busybox_available

__all__ = ["APT_COMMAND", "Missing", "apt_install", "checkout_plugins", "checkout_root",
           "pip_install_command", "python_missing", "system_missing"]

APT_COMMAND = "apt-get update && apt-get install -y"

#: Built-in plugin distributions by slot, for the message printed outside a checkout.
BUILTIN_DISTRIBUTIONS = {"store": "pilothouse-store-raft",
                         "runtime": "pilothouse-runtime-containerd",
                         "scheduler": "pilothouse-sched-default",
                         "controllers": "pilothouse-controllers"}


@dataclasses.dataclass(frozen=True)
class Missing:
    """Something the machine lacks: ``what`` (for the message) and the Debian package."""

    what: str
    package: str


def system_missing(doc: dict) -> list[Missing]:
    """The system components the generated config ``doc`` needs and this machine lacks."""
    out: list[Missing] = []
    runtime = doc.get("runtime") or {}
    if runtime.get("plugin") == "containerd":
        options = runtime.get("options") or {}
        binaries = [("ctr", "containerd"), ("runc", "runc"), ("iptables", "iptables"),
                    ("ip", "iproute2")]
        if options.get("manage"):
            binaries.insert(0, ("containerd", "containerd"))
        for binary, package in binaries:
            if shutil.which(binary) is None and not _in_sbin(binary):
                out.append(Missing(f"{binary} (command)", package))
        cni = pathlib.Path(options.get("cni_bin_dir") or "/usr/lib/cni")
        absent = [p for p in ("bridge", "host-local", "loopback", "portmap")
                  if not (cni / p).exists()]
        if absent:
            out.append(Missing(f"CNI plugins {', '.join(absent)} in {cni}",
                               "containernetworking-plugins"))
    if not busybox_available():
        out.append(Missing("a static /bin/busybox (for the example image)", "busybox-static"))
    return out


def _in_sbin(binary: str) -> bool:
    # non-root PATHs often lack /usr/sbin, where Debian puts runc and iptables
    return any(os.access(f"{d}/{binary}", os.X_OK) for d in ("/usr/sbin", "/sbin"))


def apt_available() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str], log_path: pathlib.Path) -> None:
    """``apt-get update`` then ``apt-get install -y PACKAGES``, output to ``log_path``.
    Raises ``RuntimeError`` with the log's tail when either fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        for argv in (["apt-get", "update"],
                     ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL).returncode
            if rc != 0:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"{' '.join(argv)} failed (exit {rc}); from {log_path}:\n"
                                   + "\n".join(tail))


def python_missing(doc: dict) -> list[tuple[str, str]]:
    """``(slot, name)`` of every plugin the config names that is not installed."""
    from pilothouse.config import parse_config
    config = parse_config(doc, "<pilothouse up>")
    installed = {(p.slot, p.name) for p in discover(load=False)}
    wanted = []
    for ref in config.all_refs():
        key = (ref.slot, ref.name)
        if key not in installed and key not in wanted:
            wanted.append(key)
    return wanted


def checkout_root() -> pathlib.Path | None:
    """The source checkout this ``pilothouse`` runs from (``core/`` beside ``plugins/``),
    or None for an installed copy."""
    import pilothouse
    core = pathlib.Path(pilothouse.__file__).resolve().parent
    root = core.parent
    if core.name == "core" and (root / "plugins").is_dir() and (root / "pyproject.toml").is_file():
        return root
    return None


def checkout_plugins(root: pathlib.Path) -> dict[tuple[str, str], pathlib.Path]:
    """``(slot, name)`` → the folder under ``root/plugins`` whose distribution provides
    that entry point."""
    slot_of = {group: slot for slot, (group, _, _) in GROUPS.items()}
    out = {}
    for pyproject in sorted(root.glob("plugins/*/pyproject.toml")):
        try:
            project = tomllib.loads(pyproject.read_text()).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for group, eps in (project.get("entry-points") or {}).items():
            if group in slot_of:
                for name in eps:
                    out[(slot_of[group], name)] = pyproject.parent
    return out


def pip_install_command(folders: list[pathlib.Path]) -> list[str]:
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if os.geteuid() == 0:
        argv.append("--root-user-action=ignore")
    for folder in folders:
        argv += ["-e", str(folder)]
    return argv
