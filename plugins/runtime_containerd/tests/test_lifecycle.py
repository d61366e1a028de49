"""The driver's own lifecycle: pods survive a restart of the private containerd, and a
second driver can use a running containerd through ``endpoint``."""

import asyncio
import hashlib

import pytest

from pilothouse.interfaces.runtime import (
    ContainerConfig,
    ContainerMetadata,
    ContainerState,
    PodSandboxConfig,
    PodSandboxMetadata,
    PodSandboxState,
    Unavailable,
)
from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image

pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("require_containerd")]


def test_pods_survive_restart_and_endpoint_mode(tmp_path):
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    options = {"manage": True, "data_dir": str(tmp_path / "containerd"),
               "bridge": f"phl{tag}", "pod_cidr": "10.235.0.0/24"}
    first = build_driver("runtime", "containerd", options)
    config = PodSandboxConfig(
        metadata=PodSandboxMetadata(name="survivor", namespace="default", uid=f"s-{tag}"),
        hostname="survivor", log_directory=str(tmp_path / "logs"))

    async def scenario():
        await first.open()
        second = None
        try:
            [image] = await first.import_image(
                str(await asyncio.to_thread(build_busybox_image, tmp_path)))
            sid = await first.run_pod_sandbox(config)
            cid = await first.create_container(sid, ContainerConfig(
                metadata=ContainerMetadata(name="c"), image=image, command=["sleep", "3600"],
                log_path="c.log"), config)
            await first.start_container(cid)
            ip = (await first.pod_sandbox_status(sid)).ip

            # the agent stops: containerd goes, the pod keeps running in its shim
            pid = first.data_dir.joinpath("containerd.pid").read_text().strip()
            await first.close()
            with pytest.raises(ProcessLookupError):
                import os
                os.kill(int(pid), 0)
            with pytest.raises(Unavailable):
                await first.version()

            # the agent starts again on the same data dir and finds its pod as it was
            second = build_driver("runtime", "containerd", options)
            await second.open()
            assert (await second.pod_sandbox_status(sid)).state is PodSandboxState.READY
            assert (await second.pod_sandbox_status(sid)).ip == ip
            assert (await second.container_status(cid)).state is ContainerState.RUNNING
            assert (await second.exec_sync(cid, ["echo", "still here"])).stdout == \
                b"still here\n"

            # a driver in endpoint mode shares that containerd and does not stop it
            shared = build_driver("runtime", "containerd", {"endpoint": second.socket})
            await shared.open()
            assert [s.id for s in await shared.list_pod_sandboxes()] == [sid]
            await shared.close()
            assert (await second.version()).runtime_name == "containerd"
        finally:
            await (second or first).destroy()

    asyncio.run(scenario())
