"""Pods on the bridge network: serve a page with busybox httpd and fetch it by pod IP."""

import asyncio
import shlex
import hashlib
import socket
import urllib.request

import pytest

from pilothouse.interfaces.runtime import (
    ContainerConfig,
    ContainerMetadata,
    PodSandboxConfig,
    PodSandboxMetadata,
    PortMapping,
)
from pilothouse.testing import build_driver
from pilothouse.testing.images import build_busybox_image

pytestmark = [pytest.mark.needs_root, pytest.mark.usefixtures("require_containerd")]

PAGE = b"<h1>served from a pilothouse pod</h1>\n"


def _fetch(url: str, timeout: float = 20.0) -> bytes:
    """GET ``url``, retrying while the server in the pod is still starting."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _node_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing address
        return s.getsockname()[0]


_PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


def _nat_rules() -> list[str]:
    import subprocess
    return subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _remove_portmap_chains() -> None:
    """portmap leaves its shared top-level chains behind after the last hostPort pod is
    gone. Remove them only when no rule sits in the DNAT chain (nobody else uses them)."""
    import subprocess
    rules = _nat_rules()
    if any(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in rules):
        return
    for rule in rules:
        if rule.startswith("-A ") and any(f"-j {c}" in rule for c in _PORTMAP_CHAINS) \
                and not rule.startswith("-A CNI-HOSTPORT"):
            subprocess.run(["iptables", "-t", "nat", "-D", *shlex.split(rule)[1:]], check=False)
    for chain in _PORTMAP_CHAINS:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], check=False,
                       capture_output=True)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], check=False,
                       capture_output=True)


def test_httpd_in_a_pod_is_reachable_by_pod_ip(tmp_path):
    had_portmap = any(r == f"-N {_PORTMAP_CHAINS[0]}" for r in _nat_rules())
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    runtime = build_driver("runtime", "containerd", {
        "manage": True, "data_dir": str(tmp_path / "containerd"), "bridge": f"phn{tag}",
        "pod_cidr": "10.232.0.0/24"})
    host_port = _free_port()

    async def scenario():
        await runtime.open()
        try:
            tar = await asyncio.to_thread(
                build_busybox_image, tmp_path, "pilothouse.test/httpd:1",
                files={"/var/www/index.html": PAGE},
                cmd=["httpd", "-f", "-v", "-p", "80", "-h", "/var/www"])
            [image] = await runtime.import_image(str(tar))

            def pod(name, **kw):
                return PodSandboxConfig(
                    metadata=PodSandboxMetadata(name=name, namespace="default",
                                                uid=f"uid-{name}-{tag}"),
                    hostname=name, log_directory=str(tmp_path / "logs" / name), **kw)

            web = pod("web", port_mappings=[PortMapping(container_port=80,
                                                        host_port=host_port)])
            web_id = await runtime.run_pod_sandbox(web)
            cid = await runtime.create_container(web_id, ContainerConfig(
                metadata=ContainerMetadata(name="httpd"), image=image,
                log_path="httpd/0.log"), web)
            await runtime.start_container(cid)
            ip = (await runtime.pod_sandbox_status(web_id)).ip
            assert ip.startswith("10.232.0."), ip

            # from the node, by pod IP
            assert await asyncio.to_thread(_fetch, f"http://{ip}/index.html") == PAGE

            # from another pod, across the bridge
            client = pod("client")
            client_id = await runtime.run_pod_sandbox(client)
            ccid = await runtime.create_container(client_id, ContainerConfig(
                metadata=ContainerMetadata(name="wget"), image=image,
                command=["sleep", "3600"], log_path="wget/0.log"), client)
            await runtime.start_container(ccid)
            code, out, err = await runtime.exec_sync(
                ccid, ["wget", "-q", "-O", "-", f"http://{ip}/index.html"], timeout=20)
            assert (code, out) == (0, PAGE), err

            # through the pod's hostPort on the node's address (CNI portmap)
            page = await asyncio.to_thread(_fetch, f"http://{_node_ip()}:{host_port}/")
            assert page == PAGE
        finally:
            await runtime.destroy()
            if not had_portmap:
                _remove_portmap_chains()

    asyncio.run(scenario())


def test_configure_network_changes_the_pod_cidr_for_new_sandboxes(tmp_path):
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    runtime = build_driver("runtime", "containerd", {
        "manage": True, "data_dir": str(tmp_path / "containerd"), "bridge": f"phm{tag}",
        "pod_cidr": "10.234.0.0/24"})

    def pod(name):
        return PodSandboxConfig(
            metadata=PodSandboxMetadata(name=name, namespace="default", uid=f"{name}-{tag}"),
            hostname=name, log_directory=str(tmp_path / "logs" / name))

    async def scenario():
        await runtime.open()
        try:
            first = await runtime.run_pod_sandbox(pod("first"))
            assert (await runtime.pod_sandbox_status(first)).ip.startswith("10.234.0.")

            from pilothouse.interfaces.runtime import InvalidArgument
            with pytest.raises(InvalidArgument, match="still use it"):
                await runtime.configure_network(pod_cidr="10.234.7.0/24")
            await runtime.stop_pod_sandbox(first)  # releases its IP

            await runtime.configure_network(pod_cidr="10.234.7.0/24")
            second = await runtime.run_pod_sandbox(pod("second"))
            assert (await runtime.pod_sandbox_status(second)).ip.startswith("10.234.7.")

            # a network driver's own CNI config list is installed verbatim
            custom = {
                "cniVersion": "0.4.0", "name": "from-network-driver", "plugins": [{
                    "type": "bridge", "bridge": f"phm{tag}", "isGateway": True,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.234.9.0/24"}]],
                             "dataDir": str(tmp_path / "ipam")}}]}
            await runtime.stop_pod_sandbox(second)
            await runtime.configure_network(cni_config=custom)
            third = await runtime.run_pod_sandbox(pod("third"))
            assert (await runtime.pod_sandbox_status(third)).ip.startswith("10.234.9.")

            with pytest.raises(InvalidArgument):
                await runtime.configure_network(pod_cidr="not-a-cidr")
            with pytest.raises(InvalidArgument):
                await runtime.configure_network(cni_config={"name": "no plugins"})
        finally:
            await runtime.destroy()

    asyncio.run(scenario())
