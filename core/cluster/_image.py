"""The example image ``pilothouse up`` makes available, since no registry is reachable.

A one-layer image whose root filesystem is Debian's static busybox with a link per applet
(``sh``, ``httpd``, ``sleep``, ``wget``, ``kill``, ...) and a default page in ``/var/www``.
Its default reference is ``pilothouse.local/busybox:1``: a tag other than ``latest`` makes
``imagePullPolicy`` default to ``IfNotPresent``, so pods use the imported copy and never
try a registry.
"""

from __future__ import annotations

import pathlib
import tempfile

from pilothouse.images import build_image, normalize_ref
from pilothouse.testing.images import BUSYBOX, busybox_rootfs

__all__ = ["INDEX_HTML", "build_example_image", "image_tar_path"]

INDEX_HTML = (b"<!doctype html>\n<title>pilothouse</title>\n"
              b"<p>Hello from a pilothouse pod (busybox httpd).</p>\n")


def image_tar_path(image_dir: pathlib.Path, ref: str) -> pathlib.Path:
    safe = normalize_ref(ref).replace("/", "_").replace(":", "_")
    return image_dir / f"{safe}.tar"


def build_example_image(image_dir: pathlib.Path, ref: str) -> tuple[pathlib.Path, bool]:
    """Build the busybox image tar for ``ref`` under ``image_dir`` unless it is there and
    newer than ``/bin/busybox``; return its path and whether it was (re)built."""
    out = image_tar_path(image_dir, ref)
    busybox = pathlib.Path(BUSYBOX)
    if out.exists() and out.stat().st_mtime >= busybox.stat().st_mtime:
        return out, False
    full = normalize_ref(ref)
    repo, _, tag = full.rpartition(":")
    image_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=image_dir, prefix=".rootfs-") as rootfs:
        busybox_rootfs(rootfs, files={"/var/www/index.html": INDEX_HTML})
        build_image(rootfs, repo, tag, out, cmd=["/bin/sh"],
                    env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    return out, True
