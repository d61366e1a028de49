"""The runtime conformance suite against a private containerd started by the plugin."""

import hashlib

import pytest

from pilothouse.testing.runtime import RuntimeConformance

pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("require_containerd")]


class TestContainerd(RuntimeConformance):
    plugin = "containerd"

    def runtime_options(self, tmp_path):
        tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
        return {"manage": True, "data_dir": str(tmp_path / "containerd"),
                "bridge": f"phc{tag}", "pod_cidr": "10.231.0.0/24"}

    async def teardown_runtime(self, runtime):
        await runtime.destroy()
