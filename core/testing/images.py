"""Tiny container images for tests, built locally (no registry is reachable).

:func:`build_busybox_image` writes a one-layer image whose root filesystem is Debian's
statically linked busybox (package ``busybox-static``) with a link per applet in ``/bin``, so
``sh``, ``sleep``, ``httpd``, ``cat``, ``env``... all work. It is a thin wrapper over
:func:`pilothouse.images.build_image`; the archive it returns is what
:meth:`pilothouse.interfaces.runtime.Runtime.import_image` loads (containerd:
``ctr images import``).
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import tarfile
import tempfile

from pilothouse.images import build_image, normalize_ref

__all__ = ["BUSYBOX", "build_busybox_image", "busybox_available", "busybox_rootfs"]

#: Where Debian's ``busybox-static`` installs its binary.
BUSYBOX = "/bin/busybox"

# Members of build_image's hybrid tar that belong to only one of the two formats.
_DOCKER_ONLY = {"manifest.json", "repositories"}
_OCI_ONLY = {"oci-layout", "index.json"}


def busybox_available(path: str = BUSYBOX) -> bool:
    """True when ``path`` is a statically linked busybox (usable as a whole rootfs)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    # A dynamically linked ELF names its interpreter (PT_INTERP) near the start.
    return head[:4] == b"\x7fELF" and b"ld-linux" not in head and b"/lib64/ld" not in head


def busybox_rootfs(directory: str | os.PathLike, *, busybox: str = BUSYBOX,
                   files: dict[str, bytes] | None = None) -> pathlib.Path:
    """Fill ``directory`` with a busybox root filesystem and return it: ``/bin/busybox``,
    a symlink per applet in ``/bin``, ``/etc/passwd`` and ``/etc/group`` (root, nobody),
    empty ``/tmp`` (1777), ``/proc``, ``/sys``, ``/dev``, ``/root``, ``/var/www``, and
    ``files`` (absolute path → content)."""
    root = pathlib.Path(directory)
    for d in ("bin", "dev", "etc", "proc", "sys", "root", "var/www", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    target = root / "bin" / "busybox"
    target.write_bytes(pathlib.Path(busybox).read_bytes())
    target.chmod(0o755)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        link = root / "bin" / applet
        if "/" not in applet and not link.is_symlink():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/home:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for name, data in (files or {}).items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _filter_tar(source: pathlib.Path, target: pathlib.Path, drop: set[str]) -> None:
    with tarfile.open(source) as src, tarfile.open(target, "w",
                                                   format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            if member.name in drop:
                continue
            data = src.extractfile(member) if member.isfile() else None
            dst.addfile(member, io.BytesIO(data.read()) if data else None)


def build_busybox_image(tmp_path: str | os.PathLike, name: str = "pilothouse.test/busybox:1",
                        *, cmd: list[str] | None = None, entrypoint: list[str] | None = None,
                        env: dict[str, str] | None = None,
                        files: dict[str, bytes] | None = None,
                        format: str = "oci", busybox: str = BUSYBOX) -> pathlib.Path:
    """Write an image archive with busybox as its root filesystem; return the tar's path.

    ``name`` is the reference the archive gives the image (``repo:tag``; normalised, so
    ``busybox:1`` means ``docker.io/library/busybox:1``). ``cmd`` defaults to
    ``["/bin/sh"]``; ``entrypoint`` to none; ``env`` is added to a default ``PATH`` and to
    ``PILOTHOUSE_TEST_IMAGE=<reference>``, which makes every name a distinct image (distinct
    id), so removing one test image never removes another. ``files`` maps absolute paths to
    contents to add (e.g. ``{"/var/www/index.html": b"hi"}``).

    ``format``: ``"oci"`` (OCI image layout only: ``oci-layout``, ``index.json``,
    ``blobs/sha256/``), ``"docker"`` (``docker save`` only: ``manifest.json``,
    ``repositories`` and the blobs), or ``"hybrid"`` (both, as
    :func:`pilothouse.images.build_image` writes). Reproducible: the same inputs give the same
    bytes. Raises ``FileNotFoundError`` when busybox is missing (install ``busybox-static``).
    """
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install Debian's busybox-static")
    if format not in ("oci", "docker", "hybrid"):
        raise ValueError(f"format must be 'oci', 'docker' or 'hybrid', not {format!r}")
    ref = normalize_ref(name)
    repo, _, tag = ref.rpartition(":")
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "PILOTHOUSE_TEST_IMAGE": ref}
    environment.update(env or {})
    out_dir = pathlib.Path(tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = ref.replace("/", "_").replace(":", "_")
    out = out_dir / f"{safe}.{format}.tar"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".rootfs-") as rootfs:
        busybox_rootfs(rootfs, busybox=busybox, files=files)
        hybrid = out if format == "hybrid" else out_dir / f".{safe}.hybrid.tar"
        build_image(rootfs, repo, tag, hybrid, entrypoint=entrypoint,
                    cmd=cmd if cmd is not None else ["/bin/sh"], env=environment)
    if format != "hybrid":
        _filter_tar(hybrid, out, _DOCKER_ONLY if format == "oci" else _OCI_ONLY)
        hybrid.unlink()
    return out
