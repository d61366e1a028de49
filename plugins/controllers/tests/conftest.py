"""Fixtures for the controllers' end-to-end tests; helpers (``ctrl_testlib``) on sys.path."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from ctrl_testlib import Cluster, KubeletSim, config_doc  # noqa: E402,F401

from pilothouse.controllers.testing import ControllerHostThread  # noqa: E402


def stop_apiserver(api, timeout=30.0):
    """Stop the API server; when it hangs, fail with what its loop is doing."""
    import asyncio
    import io
    if api.running is None:
        return
    fut = asyncio.run_coroutine_threadsafe(api.running.stop(), api.loop)
    try:
        fut.result(timeout)
    except TimeoutError:
        async def dump():
            out = io.StringIO()
            for task in asyncio.all_tasks(api.loop):
                task.print_stack(limit=6, file=out)
            return out.getvalue()
        stacks = asyncio.run_coroutine_threadsafe(dump(), api.loop).result(5)
        raise AssertionError("the API server did not stop:\n" + stacks) from None
    api.running = None
    api.loop.call_soon_threadsafe(api.loop.stop)


@pytest.fixture
def cluster(start_apiserver):
    api = start_apiserver({"store": {"plugin": "memory"}})
    kubelet = KubeletSim(api.url).start()
    host = ControllerHostThread(api.url, config_doc=config_doc(), identity="host-a").start()
    yield Cluster(api, host, kubelet)
    try:
        host.stop()
    finally:
        kubelet.stop()
    stop_apiserver(api)
