"""The runtime conformance suite against the process runtime, in both root-filesystem modes:
``chroot`` (needs root: each container chrooted into its own copy of the image) and ``host``
(containers see the host's filesystem). Only what the driver declares in ``features`` is
tested; the rest is skipped with the feature's name."""

import os

import pytest

from pilothouse.testing.runtime import RuntimeConformance


class TestProcessRuntimeChroot(RuntimeConformance):
    plugin = "process"
    pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot mode needs root")

    def runtime_options(self, tmp_path):
        return {"state_dir": str(tmp_path / "state"), "rootfs": "chroot"}


class TestProcessRuntimeHost(RuntimeConformance):
    plugin = "process"

    def runtime_options(self, tmp_path):
        return {"state_dir": str(tmp_path / "state"), "rootfs": "host"}
