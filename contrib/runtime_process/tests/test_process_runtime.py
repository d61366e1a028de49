"""Behaviour specific to the process runtime, beyond the conformance suite: containers
outliving the runtime, no stray processes after a stop, what a chroot sees, users, long log
lines, terminals, a killed monitor, and the plugin's registration."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import uuid

import pytest

from pilothouse import images
from pilothouse.interfaces.runtime import (
    ContainerConfig,
    ContainerMetadata,
    ContainerRuntimeError,
    ContainerState,
    Feature,
    Mount,
    PodSandboxConfig,
    PodSandboxMetadata,
    SecurityContext,
)
from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image, busybox_available
from pilothouse.testing.runtime import parse_cri_log

from pilothouse_runtime_process import ProcessRuntime

pytestmark = pytest.mark.skipif(not busybox_available(),
                                reason="needs Debian's busybox-static")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot mode needs root")
IMAGE = "pilothouse.test/process:1"


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    return build_busybox_image(tmp_path_factory.mktemp("image"), IMAGE,
                               files={"/etc/motd": b"inside the image\n"})


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path):
    """Whatever a test leaves running (it failed half-way), remove it afterwards."""
    yield

    async def purge():
        state = tmp_path / "state"
        if not state.is_dir():
            return
        rt = ProcessRuntime(ProcessRuntime.Options(state_dir=str(state), rootfs="host"))
        await rt.open()
        for sandbox in await rt.list_pod_sandboxes():
            await rt.remove_pod_sandbox(sandbox.id)
        for container in await rt.list_containers():
            await rt.remove_container(container.id)
        await rt.close()
    asyncio.run(purge())


def make(tmp_path, rootfs="chroot"):
    return ProcessRuntime(ProcessRuntime.Options(state_dir=str(tmp_path / "state"),
                                                 rootfs=rootfs))


async def started(tmp_path, image_tar, rootfs="chroot"):
    rt = make(tmp_path, rootfs)
    await rt.open()
    await rt.import_image(str(image_tar))
    return rt


def sandbox_config(tmp_path, name="pod", **kw):
    return PodSandboxConfig(
        metadata=PodSandboxMetadata(name=name, namespace="default", uid=uuid.uuid4().hex),
        log_directory=str(tmp_path / "logs" / name), hostname=kw.pop("hostname", name), **kw)


def container_config(command, name="main", **kw):
    kw.setdefault("image", IMAGE)
    return ContainerConfig(metadata=ContainerMetadata(name=name), command=command,
                           log_path=f"{name}/0.log", **kw)


async def run_to_end(rt, sid, sconf, command, name="run", **kw):
    cid = await rt.create_container(sid, container_config(command, name, **kw), sconf)
    await rt.start_container(cid)
    for _ in range(500):
        st = await rt.container_status(cid)
        if st.state is ContainerState.EXITED:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    records = parse_cri_log(pathlib.Path(st.log_path).read_text())
    out = "".join(t + ("\n" if tag == "F" else "") for s, tag, t in records if s == "stdout")
    return st, out, records


def sleeping(marker: str) -> list[int]:
    """Pids of live ``sleep <marker>...`` processes."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                argv = pathlib.Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                state = pathlib.Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1]
            except OSError:
                continue
            if len(argv) > 1 and argv[0].endswith(b"sleep") and \
                    argv[1].startswith(marker.encode()) and state.split()[0] != b"Z":
                found.append(int(name))
    return found


def test_registered_as_the_process_runtime_entry_point(tmp_path):
    rt = build_driver("runtime", "process", {"state_dir": str(tmp_path), "rootfs": "host"})
    assert isinstance(rt, ProcessRuntime)
    assert rt.features == {Feature.IMAGES, Feature.STATS}
    assert not rt.chroot
    if os.geteuid() == 0:
        rt = build_driver("runtime", "process", {"state_dir": str(tmp_path)})
        assert rt.chroot and rt.features == {Feature.IMAGES, Feature.STATS, Feature.MOUNTS}


@needs_root
def test_containers_outlive_the_runtime_and_are_adopted(tmp_path, image_tar):
    async def body():
        rt = await started(tmp_path, image_tar)
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        cid = await rt.create_container(sid, container_config(
            ["sh", "-c", "trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.1; done"]),
            sconf)
        await rt.start_container(cid)
        await rt.close()

        again = make(tmp_path)
        await again.open()
        assert [s.id for s in await again.list_pod_sandboxes()] == [sid]
        st = await again.container_status(cid)
        assert st.state is ContainerState.RUNNING
        assert (await again.exec_sync(cid, ["cat", "/etc/motd"])).stdout == b"inside the image\n"
        await again.stop_container(cid, 10)
        st = await again.container_status(cid)
        assert (st.state, st.exit_code) == (ContainerState.EXITED, 3)
        text = pathlib.Path(st.log_path).read_text()
        assert "stdout F up" in text and "stdout F bye" in text
        await again.remove_pod_sandbox(sid)
    asyncio.run(body())


@pytest.mark.parametrize("rootfs", [pytest.param("chroot", marks=needs_root), "host"])
def test_stop_leaves_no_process_behind(tmp_path, image_tar, rootfs):
    marker = str(4000 + os.getpid() % 1000)

    async def body():
        rt = await started(tmp_path, image_tar, rootfs)
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        # a child in the group, a grandchild that escaped into its own session, and a
        # main process that ignores SIGTERM
        cid = await rt.create_container(sid, container_config([
            "sh", "-c", f"trap '' TERM; sleep {marker}1 & setsid sleep {marker}2 & "
                        f"while :; do sleep 0.1; done"]), sconf)
        await rt.start_container(cid)
        for _ in range(200):
            if len(sleeping(marker)) >= 2:
                break
            await asyncio.sleep(0.02)
        assert len(sleeping(marker)) == 2
        await rt.stop_container(cid, 0.5)
        st = await rt.container_status(cid)
        assert (st.state, st.exit_code) == (ContainerState.EXITED, 137)
        for _ in range(100):
            if not sleeping(marker):
                break
            await asyncio.sleep(0.02)
        assert sleeping(marker) == []
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


@needs_root
def test_chroot_sees_its_own_copy_of_the_image(tmp_path, image_tar):
    host_marker = tmp_path / "host-only"
    host_marker.write_text("x")

    async def body():
        rt = await started(tmp_path, image_tar)
        sconf = sandbox_config(tmp_path, "web")
        sid = await rt.run_pod_sandbox(sconf)
        st, out, _ = await run_to_end(rt, sid, sconf, ["sh", "-c",
            f"test -e {host_marker} && echo SEES-HOST || echo OWN-ROOT; cat /etc/motd; "
            "echo changed > /etc/motd; echo x > /dev/null && echo DEVNULL; cat /etc/hostname; "
            "echo $HOSTNAME; pwd"], working_dir="/var/www")
        assert st.exit_code == 0, out
        assert out.splitlines() == ["OWN-ROOT", "inside the image", "DEVNULL", "web", "web",
                                    "/var/www"]
        # the write went to the container's copy: the image and other containers keep theirs
        st, out, _ = await run_to_end(rt, sid, sconf, ["cat", "/etc/motd"], name="second")
        assert out == "inside the image\n"
        image = await rt.image_status(IMAGE)
        await rt.remove_image(IMAGE)  # a running container would keep working
        assert await rt.image_status(image.id) is None
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


@needs_root
def test_runs_as_the_requested_user(tmp_path, image_tar):
    async def body():
        rt = await started(tmp_path, image_tar)
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        st, out, _ = await run_to_end(rt, sid, sconf, ["sh", "-c", "id -u; id -g; id -G"],
                                      security=SecurityContext(run_as_user=65534,
                                                               run_as_group=65534,
                                                               supplemental_groups=[1234]))
        assert st.exit_code == 0
        uid, gid, groups = out.splitlines()
        assert (uid, gid) == ("65534", "65534") and set(groups.split()) == {"65534", "1234"}
        cid = await rt.create_container(sid, container_config(
            ["sleep", "3600"], "sleeper", security=SecurityContext(run_as_user=65534)), sconf)
        await rt.start_container(cid)
        assert (await rt.exec_sync(cid, ["id", "-u"])).stdout == b"65534\n"
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


def test_host_mode_runs_on_the_host_filesystem(tmp_path, image_tar):
    marker = tmp_path / "host-file"
    marker.write_text("on the host\n")

    async def body():
        rt = await started(tmp_path, image_tar, "host")
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        st, out, _ = await run_to_end(rt, sid, sconf, ["sh", "-c", f"cat {marker}; pwd"],
                                      working_dir=str(tmp_path))
        assert st.exit_code == 0 and out.splitlines() == ["on the host", str(tmp_path)]
        st, out, _ = await run_to_end(rt, sid, sconf, ["pwd"], name="image-workdir")
        assert out == "/\n"  # the image's working directory, on the host
        # an image whose working directory does not exist here: a scratch directory instead
        (tmp_path / "empty").mkdir()
        images.build_image(tmp_path / "empty", "pilothouse.test/empty", "1",
                           tmp_path / "empty.tar", workdir="/no/such/dir/here", cmd=["pwd"])
        assert await rt.import_image(str(tmp_path / "empty.tar")) == [
            "pilothouse.test/empty:1"]
        st, out, _ = await run_to_end(rt, sid, sconf, [], name="scratch",
                                      image="pilothouse.test/empty:1")
        assert out.strip().startswith(rt.state_dir)
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


def test_long_lines_become_partial_records_and_tty_merges_streams(tmp_path, image_tar):
    async def body():
        rt = await started(tmp_path, image_tar, "host")
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        st, out, records = await run_to_end(rt, sid, sconf, [
            "python3", "-c", "import sys; print('x' * 40000); print('tail', file=sys.stderr)"])
        assert [(s, tag, len(t)) for s, tag, t in records if s == "stdout"] == [
            ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 7232)]
        assert out == "x" * 40000 + "\n" and ("stderr", "F", "tail") in records
        st, out, records = await run_to_end(rt, sid, sconf, [
            "sh", "-c", "echo to-out; echo to-err >&2; test -t 1 && echo TTY"],
            name="tty", tty=True)
        assert {s for s, _, _ in records} == {"stdout"}
        assert out.splitlines() == ["to-out", "to-err", "TTY"]
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


def test_exec_sync_errors(tmp_path, image_tar):
    async def body():
        rt = await started(tmp_path, image_tar, "host")
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        cid = await rt.create_container(sid, container_config(["sleep", "3600"]), sconf)
        await rt.start_container(cid)
        with pytest.raises(ContainerRuntimeError, match="executable file not found"):
            await rt.exec_sync(cid, ["no-such-command-here"])
        result = await rt.exec_sync(cid, ["sh", "-c", "kill -9 $$"])
        assert result.exit_code == 137
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


def test_a_killed_monitor_is_noticed(tmp_path, image_tar):
    async def body():
        rt = await started(tmp_path, image_tar, "host")
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        cid = await rt.create_container(sid, container_config(["sleep", "3600"]), sconf)
        await rt.start_container(cid)
        import json
        started_doc = json.loads((pathlib.Path(rt.state_dir) / "containers" / cid /
                                  "started.json").read_text())
        os.kill(started_doc["shim_pid"], signal.SIGKILL)
        for _ in range(100):
            if (await rt.container_status(cid)).state is ContainerState.UNKNOWN:
                break
            await asyncio.sleep(0.02)
        st = await rt.container_status(cid)
        assert st.state is ContainerState.UNKNOWN and "monitor" in st.message
        await rt.stop_container(cid, 0)
        st = await rt.container_status(cid)
        assert (st.state, st.exit_code) == (ContainerState.EXITED, 255)
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


def test_non_root_cannot_switch_users(tmp_path, image_tar, monkeypatch):
    async def body():
        rt = await started(tmp_path, image_tar, "host")
        rt.is_root = False  # as an unprivileged runtime would be
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        with pytest.raises(ContainerRuntimeError, match="not root"):
            await rt.create_container(sid, container_config(
                ["true"], security=SecurityContext(run_as_user=os.getuid() + 1)), sconf)
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())


@needs_root
def test_chroot_mounts_live_in_a_private_namespace(tmp_path, image_tar):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("volume\n")
    token = tmp_path / "token"
    token.write_text("secret\n")
    gone = tmp_path / "gone"
    gone.mkdir()

    async def body():
        rt = await started(tmp_path, image_tar)
        assert Feature.MOUNTS in rt.features
        sconf = sandbox_config(tmp_path)
        sid = await rt.run_pod_sandbox(sconf)
        mounts = [Mount(container_path="/data", host_path=str(data)),
                  Mount(container_path="/run/secrets/token", host_path=str(token),
                        readonly=True)]
        cid = await rt.create_container(sid, container_config(
            ["sleep", "3600"], mounts=mounts), sconf)
        await rt.start_container(cid)
        code, out, err = await rt.exec_sync(cid, ["sh", "-c",
            "cat /data/in.txt /run/secrets/token; echo new > /data/out.txt; "
            "echo x > /run/secrets/token 2>/dev/null || echo READONLY; "
            "ps -o comm | grep -c sleep"])
        assert code == 0, err
        lines = out.decode().splitlines()
        assert lines[:3] == ["volume", "secret", "READONLY"] and int(lines[3]) >= 1
        assert (data / "out.txt").read_text() == "new\n"
        # nothing of it is mounted on the host
        container_dir = os.path.join(rt.state_dir, "containers", cid)
        assert container_dir not in pathlib.Path("/proc/self/mountinfo").read_text()
        # a mount source that vanished before start is a clear start error
        cid2 = await rt.create_container(sid, container_config(
            ["true"], "late", mounts=[Mount(container_path="/x", host_path=str(gone))]), sconf)
        gone.rmdir()
        with pytest.raises(ContainerRuntimeError, match=f"mount {gone}"):
            await rt.start_container(cid2)
        st = await rt.container_status(cid2)
        assert (st.state, st.exit_code, st.reason) == (ContainerState.EXITED, 128, "StartError")
        await rt.remove_pod_sandbox(sid)
        await rt.close()
    asyncio.run(body())
