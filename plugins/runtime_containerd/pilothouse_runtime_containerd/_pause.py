"""The sandbox ("pause") image, built locally from busybox when no registry is reachable.

The sandbox container only has to hold the pod's namespaces open: its process sleeps, exits
cleanly on SIGTERM or SIGINT, and as PID 1 of the pod's namespace reaps orphans (ash's
``wait`` collects any child).
"""

from __future__ import annotations

import os
import pathlib
import tempfile

from pilothouse.images import build_image, normalize_ref

BUSYBOX = "/bin/busybox"
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done"


def build_pause_image(out_dir: str | os.PathLike, ref: str, busybox: str = BUSYBOX
                      ) -> pathlib.Path:
    """Write an image tar named ``ref`` whose process is a busybox shell loop; return it."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install Debian's busybox-static, or "
                                f"import a sandbox image yourself")
    repo, _, tag = normalize_ref(ref).rpartition(":")
    out = pathlib.Path(out_dir) / "pause.tar"
    with tempfile.TemporaryDirectory(dir=out_dir) as rootfs:
        root = pathlib.Path(rootfs)
        (root / "bin").mkdir()
        (root / "bin" / "busybox").write_bytes(pathlib.Path(busybox).read_bytes())
        (root / "bin" / "busybox").chmod(0o755)
        for applet in ("sh", "sleep"):
            (root / "bin" / applet).symlink_to("busybox")
        for d in ("dev", "proc", "sys", "etc"):
            (root / d).mkdir()
        build_image(rootfs, repo, tag, out, entrypoint=["/bin/sh", "-c", PAUSE_SCRIPT],
                    env={"PATH": "/bin"})
    return out
