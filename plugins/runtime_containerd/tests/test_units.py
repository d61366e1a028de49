"""Parts of the containerd plugin that need no containerd: options, config, conversions,
error mapping, discovery through the entry point."""

import pathlib

import grpc
import pytest

from pilothouse.api import cri_pb2 as pb
from pilothouse.config import ConfigError
from pilothouse.interfaces import runtime as rt
from pilothouse.plugins import discover
from pilothouse.testing import build_driver
from pilothouse_runtime_containerd import ContainerdRuntime
from pilothouse_runtime_containerd import _convert as conv
from pilothouse_runtime_containerd._managed import render_config, socket_path
from pilothouse_runtime_containerd.runtime import _grpc_error, _netns_path, bridge_cni_config


def test_entry_point_is_installed_and_implements_runtime():
    [found] = [p for p in discover(["runtime"]) if p.name == "containerd"]
    assert found.obj is ContainerdRuntime and found.error is None
    assert found.distribution == "pilothouse-runtime-containerd"
    assert ContainerdRuntime.features == frozenset(rt.Feature)


def test_options_need_endpoint_or_manage():
    with pytest.raises(ConfigError, match="endpoint"):
        build_driver("runtime", "containerd", {})
    with pytest.raises(ConfigError, match="15 characters"):
        build_driver("runtime", "containerd", {"manage": True, "bridge": "x" * 16})
    with pytest.raises(ConfigError):
        build_driver("runtime", "containerd", {"manage": True, "pod_cidr": "not-a-cidr"})
    driver = build_driver("runtime", "containerd", {"endpoint": "/run/x.sock"})
    assert driver.socket == "/run/x.sock" and driver.data_dir is None


def test_managed_socket_and_config(tmp_path):
    driver = build_driver("runtime", "containerd",
                          {"manage": True, "data_dir": str(tmp_path / "d")})
    assert driver.socket == str(tmp_path / "d" / "containerd.sock")
    text = render_config(data_dir=tmp_path, socket=tmp_path / "s.sock",
                         sandbox_image="pilothouse.local/pause:1", cni_bin_dir="/usr/lib/cni",
                         snapshotter="overlayfs", stream_address="127.0.0.1", stream_port=0,
                         log_level="info")
    for needle in ("restrict_oom_score_adj = true", "netns_mounts_under_state_dir = true",
                   f'conf_dir = "{tmp_path}/cni/net.d"', 'bin_dir = "/usr/lib/cni"',
                   f'root = "{tmp_path}/root"', f'state = "{tmp_path}/state"',
                   'sandbox_image = "pilothouse.local/pause:1"'):
        assert needle in text, needle
    import tomllib
    doc = tomllib.loads(text)
    assert doc["plugins"]["io.containerd.grpc.v1.cri"]["restrict_oom_score_adj"] is True


def test_long_data_dir_gets_a_short_socket():
    long_dir = pathlib.Path("/tmp/" + "d" * 120)
    sock = socket_path(long_dir)
    assert len(str(sock)) < 100 and str(sock).startswith("/run/pilothouse/")
    assert socket_path(long_dir) == sock


def test_bridge_cni_config():
    conf = bridge_cni_config(name="n", bridge="ph0", pod_cidr="10.1.2.0/24", ip_masq=False,
                             ipam_dir="/x")
    bridge, portmap = conf["plugins"]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "ph0" and not bridge["ipMasq"]
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.1.2.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/x"}
    assert portmap["capabilities"] == {"portMappings": True}


def test_sandbox_config_conversion():
    config = rt.PodSandboxConfig(
        metadata=rt.PodSandboxMetadata(name="p", namespace="ns", uid="u", attempt=2),
        hostname="", host_network=True, labels={"a": "b"},
        port_mappings=[rt.PortMapping(container_port=80, host_port=8080, protocol="udp")])
    msg = conv.sandbox_config(config)
    assert msg.metadata.attempt == 2 and msg.labels == {"a": "b"}
    ns = msg.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (pb.NODE, pb.CONTAINER, pb.POD)
    assert msg.port_mappings[0].protocol == pb.UDP
    assert not msg.HasField("dns_config")  # unset: containerd copies the node's resolv.conf
    config.dns = rt.DNSConfig(servers=["10.0.0.10"])
    assert conv.sandbox_config(config).dns_config.servers == ["10.0.0.10"]


def test_container_config_conversion():
    sandbox = rt.PodSandboxConfig(metadata=rt.PodSandboxMetadata(name="p", namespace="n",
                                                                 uid="u"),
                                  share_process_namespace=True)
    c = rt.ContainerConfig(
        metadata=rt.ContainerMetadata(name="c", attempt=1), image="busybox",
        env=[("A", "1"), ("B", "2")],
        mounts=[rt.Mount(container_path="/d", host_path="/h", readonly=True,
                         propagation=rt.MountPropagation.HOST_TO_CONTAINER)],
        resources=rt.Resources(memory_limit_bytes=1 << 20, cpu_shares=256),
        security=rt.SecurityContext(run_as_user=0, capabilities_drop=["ALL"]))
    msg = conv.container_config(c, sandbox)
    assert [(e.key, e.value) for e in msg.envs] == [("A", "1"), ("B", "2")]
    assert msg.mounts[0].propagation == pb.PROPAGATION_HOST_TO_CONTAINER
    assert msg.linux.resources.memory_limit_in_bytes == 1 << 20
    sec = msg.linux.security_context
    assert sec.HasField("run_as_user") and sec.run_as_user.value == 0  # root is not "unset"
    assert not sec.HasField("run_as_group")
    assert sec.namespace_options.pid == pb.POD


class _FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code, details):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize("code,details,expected", [
    (grpc.StatusCode.NOT_FOUND, 'an error occurred when try to find container "x"',
     rt.NotFound),
    (grpc.StatusCode.UNKNOWN, 'failed to reserve sandbox name "p_n_u_0": name "p_n_u_0" is '
     'reserved for "0123abcd"', rt.AlreadyExists),
    (grpc.StatusCode.UNAVAILABLE, "connection refused", rt.Unavailable),
    (grpc.StatusCode.UNIMPLEMENTED, "unknown method", rt.Unsupported),
    (grpc.StatusCode.UNKNOWN, "container is in CONTAINER_EXITED state", rt.InvalidArgument),
    (grpc.StatusCode.UNKNOWN, "something else", rt.ContainerRuntimeError),
])
def test_error_mapping(code, details, expected):
    err = _grpc_error(_FakeRpcError(code, details), "container", "x")
    assert type(err) is expected
    if expected is rt.AlreadyExists:
        assert err.id == "0123abcd"


def test_netns_path_from_verbose_info():
    info = {"info": '{"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, '
                    '{"type": "network", "path": "/x/netns/cni-1"}]}}}'}
    assert _netns_path(info) == "/x/netns/cni-1"
    assert _netns_path({}) == "" and _netns_path({"info": "not json"}) == ""


def test_open_without_containerd_is_unavailable(tmp_path):
    import asyncio
    driver = build_driver("runtime", "containerd", {
        "endpoint": str(tmp_path / "nothing.sock"), "start_timeout": 0.3})
    with pytest.raises(rt.Unavailable, match="did not answer"):
        asyncio.run(driver.open())
