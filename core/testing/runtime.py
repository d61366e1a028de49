"""The runtime conformance suite: what every :class:`~pilothouse.interfaces.runtime.Runtime`
passes.

A runtime driver's test module runs the whole suite by subclassing
:class:`RuntimeConformance`::

    from pilothouse.testing.runtime import RuntimeConformance

    class TestContainerd(RuntimeConformance):
        plugin = "containerd"    # entry-point name, or a Runtime subclass

        def runtime_options(self, tmp_path):      # optional; default {}
            return {"manage": True, "data_dir": str(tmp_path / "containerd")}

pytest collects every ``test_*`` method of the subclass. **One driver serves the whole
class**: it is built with :func:`pilothouse.testing.build_driver` from ``plugin`` and
``runtime_options(tmp_path)`` (``tmp_path`` is a directory for the class), opened once, given
the test image (:func:`pilothouse.testing.images.build_busybox_image`, imported with
:meth:`Runtime.import_image`; drivers without :attr:`Feature.IMAGES` just get its reference),
and closed after the last test by :meth:`RuntimeConformance.teardown_runtime`. Starting a
runtime is far slower than a test, so tests share it; each test labels what it creates with
its own id and every sandbox it made is stopped and removed afterwards, whatever the outcome.

Tests are plain synchronous methods. The driver lives on one event loop owned by the class
(drivers may bind connections to their loop), and each test runs its body on that loop with
:meth:`RuntimeConformance.run`; pytest-asyncio is not needed.

**What a subclass may set or override** (the suite's stable API):

``plugin``
    The driver: an entry-point name in group ``pilothouse.runtime`` (loaded exactly as the
    config file would load it, options checked) or a :class:`Runtime` subclass.
``runtime_options(self, tmp_path) -> dict``
    The driver's options. Called once per class.
``features``
    The :class:`~pilothouse.interfaces.runtime.Feature` set to test; None (the default)
    takes the driver's own :attr:`Runtime.features`. Tests of a feature not in the set are
    skipped with a reason naming it, so a process runtime passes "for what it supports".
``image_name = "pilothouse.test/busybox:1"``
    Reference of the test image.
``call_timeout = 60.0``
    Seconds one test body may take before it fails instead of hanging. A guard against
    hangs only: no test asserts how fast anything is.
``async setup_runtime(self, runtime, tmp_path)`` / ``async teardown_runtime(self, runtime)``
    Run after :meth:`Runtime.open` (default: nothing) and at the end of the class (default:
    :meth:`Runtime.close`). A driver that starts daemons overrides the teardown to purge
    everything it left.

Every test needs Linux and the test image (Debian's ``busybox-static``); drivers that run
real containers also need root, which the subclass marks (``pytestmark``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import re
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from pilothouse.interfaces.runtime import (
    AlreadyExists,
    ContainerConfig,
    ContainerMetadata,
    ContainerRuntimeError,
    ContainerState,
    ExecTimeout,
    Feature,
    ImageNotFound,
    ImagePullError,
    InvalidArgument,
    Mount,
    NotFound,
    PodSandboxConfig,
    PodSandboxMetadata,
    PodSandboxState,
    Resources,
    Runtime,
    Unsupported,
)
from pilothouse.testing._drivers import build_driver
from pilothouse.testing.images import BUSYBOX, build_busybox_image, busybox_available

__all__ = ["CRI_LOG_LINE", "RuntimeConformance", "parse_cri_log"]

#: Seconds by which a runtime's start and exit timestamps may disagree (event clocks).
CLOCK_SLACK = 0.05

T = TypeVar("T")

#: One line of a CRI container log: timestamp, stream, tag (P partial / F full), text.
CRI_LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) "
    r"(?P<stream>stdout|stderr) (?P<tag>[PF]) (?P<text>.*)$")


def parse_cri_log(text: str) -> list[tuple[str, str, str]]:
    """Parse a CRI log file into ``(stream, tag, text)`` records; raise AssertionError naming
    the first line that is not in CRI format."""
    records = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        m = CRI_LOG_LINE.match(line)
        assert m, f"log line {number} is not in CRI format: {line!r}"
        records.append((m["stream"], m["tag"], m["text"]))
    return records


def _joined(records: list[tuple[str, str, str]], stream: str) -> str:
    """Reassemble one stream's text: partial records join the next, full ones end a line."""
    out = []
    for s, tag, text in records:
        if s == stream:
            out.append(text + ("\n" if tag == "F" else ""))
    return "".join(out)


@dataclasses.dataclass
class _Env:
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    tmp: pathlib.Path
    image: str
    features: frozenset


class RuntimeConformance:
    """The runtime driver conformance suite; subclass it (see the module docstring)."""

    plugin: str | type | None = None
    features: frozenset | None = None
    image_name: str = "pilothouse.test/busybox:1"
    call_timeout: float = 60.0

    # -- the API a driver's test class may override ----------------------------------------

    def runtime_options(self, tmp_path: pathlib.Path) -> dict:
        """The driver's options (called once per class)."""
        return {}

    async def setup_runtime(self, runtime: Runtime, tmp_path: pathlib.Path) -> None:
        """Extra set-up after :meth:`Runtime.open`."""

    async def teardown_runtime(self, runtime: Runtime) -> None:
        """Release the driver at the end of the class."""
        await runtime.close()

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    def _runtime_env(self, request, tmp_path_factory):
        cls = request.cls
        if cls.plugin is None:
            pytest.fail(f"{cls.__name__}: set `plugin` to an entry-point name or a class")
        if not busybox_available():
            pytest.skip(f"{BUSYBOX} is not a static busybox: apt-get install busybox-static")
        tmp = tmp_path_factory.mktemp("runtime")
        instance = cls()
        loop = asyncio.new_event_loop()
        runtime = build_driver("runtime", cls.plugin, instance.runtime_options(tmp))
        assert isinstance(runtime, Runtime), f"{cls.plugin!r} is not a Runtime"
        features = frozenset(cls.features if cls.features is not None else runtime.features)

        async def start() -> str:
            await runtime.open()
            await instance.setup_runtime(runtime, tmp)
            if Feature.IMAGES not in features:
                return self.image_name
            tar = await asyncio.to_thread(build_busybox_image, tmp / "images", self.image_name)
            refs = await runtime.import_image(str(tar))
            assert refs, "import_image returned no reference for the test image"
            return refs[0]

        try:
            image = loop.run_until_complete(asyncio.wait_for(start(), 300))
        except BaseException:
            with contextlib.suppress(Exception):
                loop.run_until_complete(instance.teardown_runtime(runtime))
            loop.close()
            raise
        env = _Env(loop, runtime, tmp, image, features)
        yield env
        try:
            loop.run_until_complete(asyncio.wait_for(instance.teardown_runtime(runtime), 120))
        finally:
            loop.close()

    @pytest.fixture(autouse=True)
    def _per_test(self, _runtime_env, tmp_path):
        self.env = _runtime_env
        self.runtime = _runtime_env.runtime
        self.image = _runtime_env.image
        self.tmp = tmp_path
        self.test_id = uuid.uuid4().hex[:12]
        self._sandboxes: list[str] = []
        yield
        self.env.loop.run_until_complete(asyncio.wait_for(self._cleanup(), 120))

    async def _cleanup(self) -> None:
        found = {s.id for s in await self.runtime.list_pod_sandboxes(
            labels={"pilothouse.test/id": self.test_id})}
        for sandbox_id in list(dict.fromkeys(self._sandboxes)) + sorted(found):
            with contextlib.suppress(NotFound):
                await self.runtime.stop_pod_sandbox(sandbox_id)
            await self.runtime.remove_pod_sandbox(sandbox_id)

    # -- helpers for tests ---------------------------------------------------------------------

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run ``coro`` on the driver's loop, failing the test after ``call_timeout``."""
        limit = timeout or self.call_timeout

        async def guarded():
            try:
                return await asyncio.wait_for(coro, limit)
            except TimeoutError:
                raise AssertionError(f"no answer from the runtime within {limit}s") from None
        return self.env.loop.run_until_complete(guarded())

    def require(self, feature: Feature) -> None:
        """Skip the test unless the driver is tested for ``feature``."""
        if feature not in self.env.features:
            pytest.skip(f"driver does not declare Feature.{feature.name}")

    def sandbox_config(self, name: str = "pod", *, attempt: int = 0, uid: str | None = None,
                       **kw: Any) -> PodSandboxConfig:
        """A sandbox config labelled for this test, with a log directory under tmp_path."""
        labels = {"pilothouse.test/id": self.test_id, **kw.pop("labels", {})}
        uid = uid or f"{self.test_id}-{name}"
        kw.setdefault("hostname", "" if kw.get("host_network") else name)
        log_dir = self.tmp / "logs" / f"default_{name}_{uid}"
        return PodSandboxConfig(
            metadata=PodSandboxMetadata(name=name, namespace="default", uid=uid,
                                        attempt=attempt),
            log_directory=str(log_dir), labels=labels, **kw)

    async def sandbox(self, name: str = "pod", **kw: Any) -> tuple[str, PodSandboxConfig]:
        """Run a sandbox (removed after the test); return its id and config."""
        config = self.sandbox_config(name, **kw)
        sandbox_id = await self.runtime.run_pod_sandbox(config)
        self._sandboxes.append(sandbox_id)
        return sandbox_id, config

    def container_config(self, name: str = "main", command: list[str] | None = None, *,
                         attempt: int = 0, **kw: Any) -> ContainerConfig:
        kw.setdefault("log_path", f"{name}/{attempt}.log")
        kw.setdefault("image", self.image)
        return ContainerConfig(metadata=ContainerMetadata(name=name, attempt=attempt),
                               command=["sleep", "3600"] if command is None else command,
                               **kw)

    async def container(self, sandbox: tuple[str, PodSandboxConfig], name: str = "main",
                        command: list[str] | None = None, *, start: bool = True,
                        **kw: Any) -> str:
        """Create (and by default start) a container in ``sandbox``; return its id."""
        sandbox_id, sandbox_config = sandbox
        cid = await self.runtime.create_container(
            sandbox_id, self.container_config(name, command, **kw), sandbox_config)
        if start:
            await self.runtime.start_container(cid)
        return cid

    async def wait_exited(self, container_id: str, timeout: float = 30.0):
        """Poll until the container is EXITED; return its status."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.runtime.container_status(container_id)
            if status.state is ContainerState.EXITED:
                return status
            assert loop.time() < deadline, (
                f"container {container_id} still {status.state.name} after {timeout}s")
            await asyncio.sleep(0.05)

    async def output(self, sandbox, command: list[str], **kw: Any) -> tuple[int, str, str]:
        """Run ``command`` in a new container to completion; return (exit code, stdout,
        stderr) as read from its CRI log."""
        name = kw.pop("name", f"run-{uuid.uuid4().hex[:6]}")
        cid = await self.container(sandbox, name, command, **kw)
        status = await self.wait_exited(cid)
        records = await self.read_log(status.log_path)
        return status.exit_code, _joined(records, "stdout"), _joined(records, "stderr")

    async def read_log(self, path: str, *, until: str | None = None,
                       timeout: float = 10.0) -> list[tuple[str, str, str]]:
        """Parse a container log, waiting (when ``until`` is given) for that text to appear.
        Log writers may lag the process's exit slightly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                text = pathlib.Path(path).read_text()
            except FileNotFoundError:
                text = ""
            records = parse_cri_log(text)
            if until is None or until in "".join(r[2] for r in records):
                return records
            assert loop.time() < deadline, f"{until!r} did not appear in {path}: {text!r}"
            await asyncio.sleep(0.05)

    # =========================================================================================
    # version and status

    def test_version_names_the_runtime(self):
        v = self.run(self.runtime.version())
        assert v.runtime_name and v.runtime_version and v.runtime_api_version

    def test_status_is_ready(self):
        status = self.run(self.runtime.status())
        types = {c.type for c in status.conditions}
        assert {"RuntimeReady", "NetworkReady"} <= types, status
        assert status.ready, status

    # =========================================================================================
    # sandboxes

    def test_sandbox_lifecycle(self):
        async def body():
            rt = self.runtime
            sid, config = await self.sandbox(labels={"role": "web"},
                                              annotations={"note": "kept as given"})
            st = await rt.pod_sandbox_status(sid)
            assert st.id == sid and st.state is PodSandboxState.READY
            assert st.metadata == config.metadata
            assert st.labels["role"] == "web" and st.annotations == {"note": "kept as given"}
            assert st.created_at > 0
            listed = await rt.list_pod_sandboxes(labels={"pilothouse.test/id": self.test_id})
            assert [s.id for s in listed] == [sid]
            assert listed[0].state is PodSandboxState.READY
            assert [s.id for s in await rt.list_pod_sandboxes(id=sid)] == [sid]
            assert [s.id for s in await rt.list_pod_sandboxes(
                labels={"pilothouse.test/id": self.test_id}, state=PodSandboxState.READY)] == [sid]
            assert await rt.list_pod_sandboxes(labels={"pilothouse.test/id": self.test_id,
                                                       "role": "db"}) == []

            await rt.stop_pod_sandbox(sid)
            assert (await rt.pod_sandbox_status(sid)).state is PodSandboxState.NOTREADY
            assert (await rt.pod_sandbox_status(sid)).ip == ""
            assert [s.id for s in await rt.list_pod_sandboxes(
                labels={"pilothouse.test/id": self.test_id},
                state=PodSandboxState.NOTREADY)] == [sid]
            await rt.stop_pod_sandbox(sid)  # idempotent

            await rt.remove_pod_sandbox(sid)
            assert await rt.list_pod_sandboxes(labels={"pilothouse.test/id": self.test_id}) == []
            with pytest.raises(NotFound):
                await rt.pod_sandbox_status(sid)
            await rt.remove_pod_sandbox(sid)  # idempotent
        self.run(body())

    def test_sandbox_with_same_metadata_already_exists(self):
        async def body():
            sid, config = await self.sandbox()
            with pytest.raises(AlreadyExists):
                await self.runtime.run_pod_sandbox(config)
            # the next attempt is a new sandbox
            sid2, _ = await self.sandbox(attempt=1, uid=config.metadata.uid)
            assert sid2 != sid
        self.run(body())

    def test_sandboxes_get_their_own_ip_and_netns(self):
        self.require(Feature.POD_NETWORK)

        async def body():
            sandboxes = await asyncio.gather(*(self.sandbox(f"net{i}") for i in range(3)))
            statuses = [await self.runtime.pod_sandbox_status(s) for s, _ in sandboxes]
            ips = [s.ip for s in statuses]
            assert all(ips) and len(set(ips)) == 3, ips
            for s in statuses:
                assert not s.host_network
                assert s.netns_path and os.path.exists(s.netns_path), s.netns_path
            # the pod sees its own address
            code, out, _ = await self.output(sandboxes[0], ["sh", "-c", "ip -4 addr"])
            assert code == 0 and ips[0] in out, out
        self.run(body())

    def test_host_network_sandbox(self):
        async def body():
            sandbox = await self.sandbox("hostnet", host_network=True)
            st = await self.runtime.pod_sandbox_status(sandbox[0])
            assert st.host_network and st.ip == "" and st.state is PodSandboxState.READY
            code, out, _ = await self.output(sandbox, ["hostname"])
            assert code == 0 and out.strip() == os.uname().nodename
            with pytest.raises(InvalidArgument):
                await self.runtime.run_pod_sandbox(self.sandbox_config(
                    "badhost", host_network=True, hostname="not-allowed"))
        self.run(body())

    def test_stop_sandbox_stops_its_containers(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox)
            assert (await self.runtime.container_status(cid)).state is ContainerState.RUNNING
            await self.runtime.stop_pod_sandbox(sandbox[0])
            status = await self.runtime.container_status(cid)
            assert status.state is ContainerState.EXITED
        self.run(body())

    def test_remove_sandbox_removes_its_containers(self):
        async def body():
            sandbox = await self.sandbox()
            running = await self.container(sandbox, "a")
            created = await self.container(sandbox, "b", start=False)
            await self.runtime.stop_pod_sandbox(sandbox[0])
            await self.runtime.remove_pod_sandbox(sandbox[0])
            assert await self.runtime.list_containers(sandbox_id=sandbox[0]) == []
            for cid in (running, created):
                with pytest.raises(NotFound):
                    await self.runtime.container_status(cid)
        self.run(body())

    # =========================================================================================
    # containers

    def test_container_lifecycle(self):
        async def body():
            rt = self.runtime
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, start=False, labels={"tier": "x"},
                                       annotations={"a": "1"})
            st = await rt.container_status(cid)
            assert st.id == cid and st.sandbox_id == sandbox[0]
            assert st.state is ContainerState.CREATED and st.started_at is None
            assert st.metadata == ContainerMetadata(name="main", attempt=0)
            assert st.labels["tier"] == "x" and st.annotations == {"a": "1"}
            assert st.image_id.startswith("sha256:") or Feature.IMAGES not in self.env.features
            listed = await rt.list_containers(sandbox_id=sandbox[0])
            assert [c.id for c in listed] == [cid]
            assert listed[0].state is ContainerState.CREATED

            await rt.start_container(cid)
            st = await rt.container_status(cid)
            assert st.state is ContainerState.RUNNING and st.started_at >= st.created_at
            with pytest.raises(ContainerRuntimeError):
                await rt.start_container(cid)  # a container runs once

            await rt.stop_container(cid, 0)
            st = await rt.container_status(cid)
            assert st.state is ContainerState.EXITED and st.exit_code == 137
            assert st.finished_at >= st.started_at - CLOCK_SLACK
            await rt.stop_container(cid, 0)  # idempotent
            await rt.remove_container(cid)
            assert await rt.list_containers(id=cid) == []
            with pytest.raises(NotFound):
                await rt.container_status(cid)
            await rt.remove_container(cid)  # idempotent
        self.run(body())

    def test_stop_created_container_and_remove_running_one(self):
        async def body():
            sandbox = await self.sandbox()
            created = await self.container(sandbox, "created", start=False)
            await self.runtime.stop_container(created, 1)
            assert (await self.runtime.container_status(created)).state in (
                ContainerState.CREATED, ContainerState.EXITED)
            running = await self.container(sandbox, "running")
            await self.runtime.remove_container(running)  # kills it first
            with pytest.raises(NotFound):
                await self.runtime.container_status(running)
        self.run(body())

    def test_exit_codes_and_reasons(self):
        async def body():
            sandbox = await self.sandbox()
            ok = await self.container(sandbox, "ok", ["sh", "-c", "exit 0"])
            bad = await self.container(sandbox, "bad", ["sh", "-c", "exit 3"])
            ok_st, bad_st = await self.wait_exited(ok), await self.wait_exited(bad)
            assert ok_st.exit_code == 0 and ok_st.reason == "Completed"
            assert bad_st.exit_code == 3 and bad_st.reason == "Error"
            for st in (ok_st, bad_st):
                # a process that exits at once can have its exit stamped a hair before its
                # start by a runtime that takes the two from different events (containerd)
                assert st.created_at <= st.started_at <= st.finished_at + CLOCK_SLACK
        self.run(body())

    def test_container_with_same_name_and_attempt_already_exists(self):
        async def body():
            sandbox = await self.sandbox()
            first = await self.container(sandbox, "app", ["sh", "-c", "exit 1"])
            await self.wait_exited(first)
            with pytest.raises(AlreadyExists):
                await self.container(sandbox, "app", start=False)
            again = await self.container(sandbox, "app", ["true"], attempt=1)
            assert again != first
            assert (await self.wait_exited(again)).exit_code == 0
        self.run(body())

    def test_missing_executable_fails_to_start(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, start=False, command=["/no/such/binary"])
            with pytest.raises(ContainerRuntimeError):
                await self.runtime.start_container(cid)
            assert (await self.runtime.container_status(cid)).state is not ContainerState.RUNNING
        self.run(body())

    def test_list_containers_filters(self):
        async def body():
            rt = self.runtime
            s1, s2 = await self.sandbox("one"), await self.sandbox("two")
            a = await self.container(s1, "a", labels={"k": "v"})
            b = await self.container(s1, "b", start=False)
            c = await self.container(s2, "c", labels={"k": "v"})
            ids = lambda cs: sorted(x.id for x in cs)  # noqa: E731
            assert ids(await rt.list_containers(sandbox_id=s1[0])) == sorted([a, b])
            assert ids(await rt.list_containers(labels={"k": "v"})) == sorted([a, c])
            assert ids(await rt.list_containers(sandbox_id=s1[0],
                                                state=ContainerState.CREATED)) == [b]
            running = ids(await rt.list_containers(state=ContainerState.RUNNING))
            assert a in running and c in running and b not in running
            assert ids(await rt.list_containers(id=c)) == [c]
            assert await rt.list_containers(id="0" * 64) == []
        self.run(body())

    # =========================================================================================
    # logs, environment, mounts

    def test_logs_are_written_in_cri_format(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, "logger", [
                "sh", "-c", "echo out-1; echo err-1 >&2; echo out-2; printf partial"])
            st = await self.wait_exited(cid)
            expected = os.path.join(sandbox[1].log_directory, "logger", "0.log")
            assert st.log_path == expected
            records = await self.read_log(st.log_path, until="partial")
            assert _joined(records, "stdout") == "out-1\nout-2\npartial"
            assert _joined(records, "stderr") == "err-1\n"
            assert ("stdout", "F", "out-1") in records and ("stderr", "F", "err-1") in records
            # the unterminated last line is a partial record (streams may interleave)
            assert [r for r in records if r[0] == "stdout"][-1] == ("stdout", "P", "partial")
        self.run(body())

    def test_environment(self):
        async def body():
            sandbox = await self.sandbox()
            code, out, _ = await self.output(
                sandbox, ["sh", "-c", 'echo "$GREETING|$EMPTY|$SPACED|$PATH"'],
                env=[("GREETING", "hello"), ("EMPTY", ""), ("SPACED", "a b  c")])
            greeting, empty, spaced, path = out.rstrip("\n").split("|")
            assert (code, greeting, empty, spaced) == (0, "hello", "", "a b  c")
            assert "/bin" in path.split(":")  # the image's environment is kept
            code, out, _ = await self.output(sandbox, ["sh", "-c", "echo $PATH"],
                                             env=[("PATH", "/bin:/custom")])
            assert out.strip() == "/bin:/custom"  # and overridden by name
        self.run(body())

    def test_command_args_and_working_dir(self):
        async def body():
            sandbox = await self.sandbox()
            code, out, _ = await self.output(sandbox, ["sh", "-c"], args=["pwd; echo $0", "x"],
                                             working_dir="/tmp")
            assert code == 0 and out.split() == ["/tmp", "x"], out
        self.run(body())

    def test_mounts(self):
        self.require(Feature.MOUNTS)

        async def body():
            ro = self.tmp / "ro"
            rw = self.tmp / "rw"
            ro.mkdir()
            rw.mkdir()
            (ro / "data.txt").write_text("from the host\n")
            sandbox = await self.sandbox()
            code, out, err = await self.output(sandbox, ["sh", "-c",
                "cat /in/data.txt; echo written > /out/new.txt; "
                "if echo x > /in/denied 2>/dev/null; then echo WRITABLE; else echo READONLY; fi"],
                mounts=[Mount(container_path="/in", host_path=str(ro), readonly=True),
                        Mount(container_path="/out", host_path=str(rw))])
            assert code == 0, err
            assert out.splitlines() == ["from the host", "READONLY"], out
            assert (rw / "new.txt").read_text() == "written\n"
            assert not (ro / "denied").exists()
        self.run(body())

    def test_isolation(self):
        self.require(Feature.ISOLATION)

        async def body():
            sandbox = await self.sandbox("isolated")
            marker = self.tmp / "host-only-marker"
            marker.write_text("x")
            code, out, _ = await self.output(sandbox, ["sh", "-c",
                f"hostname; test -e {marker} && echo SEES-HOST || echo OWN-ROOT; "
                "test -x /bin/busybox && echo IMAGE-ROOT; cat /proc/1/cmdline | tr '\\0' ' '"])
            lines = out.splitlines()
            assert lines[0] == "isolated" and lines[1] == "OWN-ROOT" and lines[2] == "IMAGE-ROOT"
            assert lines[3].startswith("sh -c"), lines  # PID 1 is our own process
        self.run(body())

    def test_run_as_user_and_group(self):
        self.require(Feature.ISOLATION)

        async def body():
            from pilothouse.interfaces.runtime import SecurityContext
            sandbox = await self.sandbox()
            code, out, _ = await self.output(
                sandbox, ["sh", "-c", "id -u; id -g"],
                security=SecurityContext(run_as_user=1234, run_as_group=2345))
            assert (code, out.split()) == (0, ["1234", "2345"]), out
            code, out, _ = await self.output(sandbox, ["id", "-u"],
                                             security=SecurityContext(run_as_user=0))
            assert out.strip() == "0"
        self.run(body())

    def test_dns_config_and_sysctls(self):
        self.require(Feature.ISOLATION)
        self.require(Feature.POD_NETWORK)

        async def body():
            from pilothouse.interfaces.runtime import DNSConfig
            sandbox = await self.sandbox(
                dns=DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local"],
                              options=["ndots:5"]),
                sysctls={"net.ipv4.ip_local_port_range": "20000 30000"})
            code, out, _ = await self.output(sandbox, ["sh", "-c",
                "cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_local_port_range"])
            assert code == 0
            assert "nameserver 10.96.0.10" in out and "default.svc.cluster.local" in out
            assert "ndots:5" in out
            assert out.split()[-2:] == ["20000", "30000"], out
        self.run(body())

    # =========================================================================================
    # exec

    def test_exec_sync(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, env=[("FROM_CONFIG", "yes")])
            code, out, err = await self.runtime.exec_sync(
                cid, ["sh", "-c", "echo $FROM_CONFIG; echo oops >&2; exit 7"], timeout=30)
            assert (code, out, err) == (7, b"yes\n", b"oops\n")
            result = await self.runtime.exec_sync(cid, ["true"])
            assert result.exit_code == 0
        self.run(body())

    def test_exec_sync_timeout(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox)
            with pytest.raises(ExecTimeout):
                await self.runtime.exec_sync(cid, ["sleep", "30"], timeout=1)
            # the container is still usable afterwards
            assert (await self.runtime.exec_sync(cid, ["true"], timeout=30)).exit_code == 0
        self.run(body())

    def test_exec_sync_in_stopped_container_fails(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, command=["true"])
            await self.wait_exited(cid)
            with pytest.raises(ContainerRuntimeError) as info:
                await self.runtime.exec_sync(cid, ["true"])
            assert not isinstance(info.value, NotFound)
        self.run(body())

    def test_streaming_urls(self):
        self.require(Feature.STREAMING)

        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox)
            for url in (await self.runtime.exec(cid, ["sh"], stdin=True, tty=True),
                        await self.runtime.attach(cid, stdout=True),
                        await self.runtime.port_forward(sandbox[0], [80])):
                assert re.match(r"^https?://", url), url
        self.run(body())

    def test_exec_stream_over_websocket(self):
        """The URL speaks Kubernetes' remotecommand protocol: what the node agent proxies
        for ``kubectl exec`` (WebSocket subprotocol ``v4.channel.k8s.io``: one byte of
        channel, 1 stdout, 2 stderr, 3 the final status)."""
        self.require(Feature.STREAMING)
        import json

        import aiohttp

        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox)
            url = await self.runtime.exec(
                cid, ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
            channels: dict[int, bytes] = {}
            async with aiohttp.ClientSession() as session, session.ws_connect(
                    re.sub(r"^http", "ws", url), protocols=["v4.channel.k8s.io"]) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
                        channels[msg.data[0]] = channels.get(msg.data[0], b"") + msg.data[1:]
            assert channels.get(1) == b"to-out\n" and channels.get(2) == b"to-err\n", channels
            status = json.loads(channels[3])
            assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
            assert status["details"]["causes"][0]["message"] == "3"
        self.run(body())

    # =========================================================================================
    # stopping

    def test_stop_sends_sigterm_first(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, "graceful", [
                "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; "
                            "while :; do sleep 0.1; done"])
            st = await self.runtime.container_status(cid)
            await self.read_log(st.log_path, until="ready")
            await self.runtime.stop_container(cid, 30)
            st = await self.runtime.container_status(cid)
            assert st.state is ContainerState.EXITED and st.exit_code == 7
            await self.read_log(st.log_path, until="got-term")
        self.run(body())

    def test_stop_kills_a_process_that_ignores_sigterm(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, "stubborn", [
                "sh", "-c", "trap 'echo ignored-term' TERM; echo ready; "
                            "while :; do sleep 0.1; done"])
            st = await self.runtime.container_status(cid)
            await self.read_log(st.log_path, until="ready")
            await self.runtime.stop_container(cid, 1)
            st = await self.runtime.container_status(cid)
            assert st.state is ContainerState.EXITED
            assert st.exit_code == 137, f"expected SIGKILL (137), got {st.exit_code}"
            await self.read_log(st.log_path, until="ignored-term")  # TERM came first
        self.run(body())

    # =========================================================================================
    # resources and stats

    def test_resource_limits(self):
        self.require(Feature.RESOURCE_LIMITS)
        read_limit = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                      "|| cat /sys/fs/cgroup/memory.max")

        async def body():
            sandbox = await self.sandbox()
            limit = 64 * 1024 * 1024
            cid = await self.container(sandbox, resources=Resources(
                memory_limit_bytes=limit, cpu_shares=512, cpu_quota=50000, cpu_period=100000))
            code, out, _ = await self.runtime.exec_sync(cid, ["sh", "-c", read_limit])
            assert code == 0 and int(out) == limit, out
            await self.runtime.update_container_resources(
                cid, Resources(memory_limit_bytes=2 * limit))
            code, out, _ = await self.runtime.exec_sync(cid, ["sh", "-c", read_limit])
            assert code == 0 and int(out) == 2 * limit, out
        self.run(body())

    def test_container_stats(self):
        self.require(Feature.STATS)

        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, command=[
                "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 3600"])
            await self.runtime.exec_sync(cid, ["true"])
            stats = await self.runtime.container_stats(cid)
            assert stats.container_id == cid and stats.timestamp > 0
            assert stats.memory_working_set_bytes > 0
            listed = await self.runtime.list_container_stats(sandbox_id=sandbox[0])
            assert [s.container_id for s in listed] == [cid]
        self.run(body())

    def test_reopen_container_log(self):
        async def body():
            sandbox = await self.sandbox()
            cid = await self.container(sandbox, "rotating", [
                "sh", "-c", "i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.05; done"])
            st = await self.runtime.container_status(cid)
            await self.read_log(st.log_path, until="line-2")
            rotated = st.log_path + ".1"
            os.rename(st.log_path, rotated)
            try:
                await self.runtime.reopen_container_log(cid)
            except Unsupported:
                pytest.skip("driver does not reopen logs (the agent copies and truncates)")
            records = await self.read_log(st.log_path, until="line-")
            assert records and records[0][0] == "stdout"
        self.run(body())

    # =========================================================================================
    # images

    def test_images_import_list_status_remove(self):
        self.require(Feature.IMAGES)

        async def body():
            rt = self.runtime
            name = f"pilothouse.test/imported-{self.test_id}:2"
            tar = await asyncio.to_thread(build_busybox_image, self.tmp, name,
                                          cmd=["sh", "-c", "echo from-imported"])
            seen: list[tuple[int, int]] = []
            refs = await rt.import_image(str(tar), lambda done, total: seen.append((done, total)))
            assert refs == [name]
            size = tar.stat().st_size
            assert seen and seen[-1] == (size, size), seen[-3:]
            assert all(t == size for _, t in seen)
            assert [d for d, _ in seen] == sorted(d for d, _ in seen)

            image = await rt.image_status(name)
            assert image is not None and name in image.repo_tags
            assert image.id.startswith("sha256:")
            assert (await rt.image_status(image.id)).id == image.id
            assert image.id in {i.id for i in await rt.list_images()}
            assert await rt.pull_image(name) == image.id  # present: returned at once

            sandbox = await self.sandbox()
            code, out, _ = await self.output(sandbox, [], image=name)  # the image's cmd
            assert (code, out) == (0, "from-imported\n")
            await rt.remove_pod_sandbox(sandbox[0])  # its container used the image

            await rt.remove_image(name)
            assert await rt.image_status(name) is None
            assert name not in {t for i in await rt.list_images() for t in i.repo_tags}
            await rt.remove_image(name)  # idempotent
            assert await rt.image_status(self.image) is not None  # others untouched
        self.run(body())

    def test_import_docker_archive(self):
        self.require(Feature.IMAGES)

        async def body():
            name = f"pilothouse.test/docker-{self.test_id}:1"
            tar = await asyncio.to_thread(build_busybox_image, self.tmp, name, format="docker")
            assert await self.runtime.import_image(str(tar)) == [name]
            assert await self.runtime.image_status(name) is not None
            await self.runtime.remove_image(name)
        self.run(body())

    def test_import_gzip_compressed_archive(self):
        self.require(Feature.IMAGES)

        async def body():
            import gzip
            name = f"pilothouse.test/gzip-{self.test_id}:1"
            tar = await asyncio.to_thread(build_busybox_image, self.tmp, name)
            gz = self.tmp / "image.tar.gz"
            gz.write_bytes(gzip.compress(tar.read_bytes()))
            seen: list[tuple[int, int]] = []
            assert await self.runtime.import_image(str(gz), lambda d, t: seen.append((d, t))) \
                == [name]
            assert seen[-1] == (gz.stat().st_size,) * 2
            await self.runtime.remove_image(name)
        self.run(body())

    def test_import_rejects_a_bad_archive(self):
        self.require(Feature.IMAGES)

        async def body():
            bad = self.tmp / "not-an-image.tar"
            bad.write_bytes(b"this is not a tar file\n" * 100)
            with pytest.raises(InvalidArgument):
                await self.runtime.import_image(str(bad))
            with pytest.raises(InvalidArgument):
                await self.runtime.import_image(str(self.tmp / "missing.tar"))
        self.run(body())

    def test_missing_image(self):
        self.require(Feature.IMAGES)

        async def body():
            absent = "pilothouse.test/absent:404"
            assert await self.runtime.image_status(absent) is None
            with pytest.raises((ImageNotFound, ImagePullError)):
                await self.runtime.pull_image(absent)
            sandbox = await self.sandbox()
            with pytest.raises(ImageNotFound):
                await self.runtime.create_container(
                    sandbox[0], self.container_config(image=absent), sandbox[1])
        self.run(body())

    # =========================================================================================
    # errors for unknown ids

    def test_unknown_ids(self):
        async def body():
            rt = self.runtime
            ghost = "f" * 64
            for call in (rt.pod_sandbox_status(ghost), rt.stop_pod_sandbox(ghost),
                         rt.container_status(ghost), rt.start_container(ghost),
                         rt.stop_container(ghost, 0), rt.exec_sync(ghost, ["true"])):
                with pytest.raises(NotFound):
                    await call
            await rt.remove_pod_sandbox(ghost)  # removal of what is not there succeeds
            await rt.remove_container(ghost)
            assert await rt.list_pod_sandboxes(id=ghost) == []
            assert await rt.list_containers(id=ghost) == []
            config = self.sandbox_config()
            with pytest.raises(NotFound):
                await rt.create_container(ghost, self.container_config(), config)
        self.run(body())
