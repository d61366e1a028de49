"""Fixtures for the containerd runtime plugin's tests."""

import os
import shutil

import pytest


def containerd_missing() -> str | None:
    """Why a private containerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in ("containerd", "ctr", "runc"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (Debian packages containerd, runc)"
    if not os.path.exists("/usr/lib/cni/bridge"):
        return "CNI plugins missing (Debian package containernetworking-plugins)"
    return None


@pytest.fixture(scope="session")
def require_containerd():
    reason = containerd_missing()
    if reason:
        pytest.skip(reason)
