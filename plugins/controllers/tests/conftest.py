"""Fixtures for the controllers' end-to-end tests; helpers (``ctrl_testlib``) on sys.path."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from ctrl_testlib import API, KubeletSim, config_doc  # noqa: E402

from pilothouse.controllers.testing import ControllerHostThread  # noqa: E402


class Cluster:
    """An API server, the controller host (all controllers of this distribution) and the
    kubelet simulator with two nodes."""

    def __init__(self, api_server, host, kubelet):
        self.server, self.host, self.kubelet = api_server, host, kubelet
        self.api = API(api_server.url)
        self.url = api_server.url

    def kubectl(self, *args, input=None, check=True, timeout=120):
        out = self.server.kubectl(*args, input=input, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out


@pytest.fixture
def cluster(start_apiserver):
    api = start_apiserver({"store": {"plugin": "memory"}})
    kubelet = KubeletSim(api.url).start()
    host = ControllerHostThread(api.url, config_doc=config_doc(), identity="host-a").start()
    yield Cluster(api, host, kubelet)
    host.stop()
    kubelet.stop()
