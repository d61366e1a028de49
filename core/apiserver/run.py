"""``pilothouse apiserver``: run the API server on its own, with the configured plugins.

Settings (``components.apiserver`` in the config file)::

    components:
      apiserver:
        address: 127.0.0.1      # listen address
        port: 6443              # 0 picks a free port
        kubeconfig: ~/.kube/config   # written at start-up so kubectl works as it is
        compactionInterval: 300 # seconds between store compactions (0: never)
        compactionRetain: 10000 # revisions kept for watch resumption
        watchCacheSize: 50000   # events per resource kept in memory for watch resumption

Plain requests are served by the API server's own HTTP/1.1 front
(:mod:`pilothouse.apiserver._http`), which hands watches, streams and upgrades to aiohttp.
``PILOTHOUSE_APISERVER_HTTP=aiohttp`` in the environment serves every request with aiohttp
instead (an escape hatch, and the baseline of ``bench/apiserver_http.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import pathlib
import signal

import yaml
from aiohttp import web

from pilothouse._options import build_options
from pilothouse.config import Config, ConfigError
from pilothouse.plugins import LoadedPlugins, load_plugins

from pilothouse.apiserver._http import HTTPServer
from pilothouse.apiserver.server import APIRunner, APIServer

log = logging.getLogger("pilothouse.apiserver")

HTTP_ENV = "PILOTHOUSE_APISERVER_HTTP"  # "aiohttp": no fast path (see the module docstring)


@dataclasses.dataclass
class Settings:
    address: str = "127.0.0.1"
    port: int = 6443
    kubeconfig: str = "~/.kube/config"
    compactionInterval: float = 300.0
    compactionRetain: int = 10000
    watchCacheSize: int = 50000


def settings(config: Config) -> Settings:
    built, errors = build_options(Settings, config.component("apiserver"),
                                  "components.apiserver")
    if errors:
        raise ConfigError(errors, config.source)
    return built


def write_kubeconfig(path: str, server_url: str, name: str = "pilothouse") -> pathlib.Path:
    """Write (or update the ``pilothouse`` entries of) a kubeconfig pointing at the server
    and make it the current context."""
    target = pathlib.Path(os.path.expanduser(path))
    doc = {}
    if target.exists():
        doc = yaml.safe_load(target.read_text()) or {}
    doc.setdefault("apiVersion", "v1")
    doc.setdefault("kind", "Config")

    def upsert(section, entry):
        items = [e for e in doc.get(section) or [] if e.get("name") != name]
        doc[section] = items + [entry]
    upsert("clusters", {"name": name, "cluster": {"server": server_url}})
    upsert("users", {"name": name, "user": {}})
    upsert("contexts", {"name": name, "context": {"cluster": name, "user": name,
                                                  "namespace": "default"}})
    doc["current-context"] = name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(target)
    return target


class RunningAPIServer:
    """An API server listening on a port, with its store open: ``await start()`` /
    ``await stop()``. Used by ``pilothouse apiserver``, ``pilothouse up`` and the test kit."""

    def __init__(self, plugins: LoadedPlugins, address: str = "127.0.0.1", port: int = 0,
                 compaction_interval: float = 300.0, compaction_retain: int = 10000,
                 watch_cache_size: int = 50000):
        self.watch_cache_size = watch_cache_size
        self.plugins = plugins
        self.store = plugins.driver("store")
        self.address, self.port = address, port
        self.compaction_interval, self.compaction_retain = compaction_interval, compaction_retain
        self.server: APIServer | None = None
        self._runner: web.BaseRunner | None = None
        self._http: HTTPServer | None = None
        self._compactor: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    async def start(self) -> None:
        await self.store.open()
        self.server = APIServer(self.store, self.plugins, watch_window=self.watch_cache_size)
        if os.environ.get(HTTP_ENV, "").strip().lower() == "aiohttp":
            self._runner = APIRunner(self.server, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.address, self.port, reuse_address=True)
            await site.start()
            if self.port == 0:
                self.port = site._server.sockets[0].getsockname()[1]
        else:
            self._http = HTTPServer(self.server, self.address, self.port, access_log=None)
            await self._http.start()
            self.port = self._http.port
        self.server.host = f"{self.address}:{self.port}"
        await self.server.start()
        if self.compaction_interval > 0:
            self._compactor = asyncio.create_task(self._compact_forever())
        self.plugins.pm.hook.pilothouse_component_started(component="apiserver",
                                                          config=self.plugins.config)

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self.compaction_interval)
            try:
                current = await self.store.current_revision()
                target = current - self.compaction_retain
                if target > await self.store.compacted_revision():
                    await self.store.compact(target)
                    self.plugins.pm.hook.pilothouse_store_compacted(revision=target)
            except Exception as exc:  # compaction is best effort; retried next period
                log.warning("store compaction failed: %s", exc)

    async def stop(self) -> None:
        self.plugins.pm.hook.pilothouse_component_stopping(component="apiserver")
        if self._compactor:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        if self.server:
            await self.server.stop()
        if self._http:
            await self._http.stop()
        if self._runner:
            await self._runner.cleanup()
        await self.store.close()


async def serve(config: Config) -> None:
    s = settings(config)
    plugins = load_plugins(config)
    plugins.pm.hook.pilothouse_configure(config=config)
    running = RunningAPIServer(plugins, s.address, s.port, s.compactionInterval,
                               s.compactionRetain, s.watchCacheSize)
    await running.start()
    # The watch caches keep many long-lived objects: full garbage collections over them show
    # up as tens of milliseconds of tail latency. Move what start-up made out of the collector's
    # way and collect the young generation less often (no reference cycles are created per
    # request on the hot path).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    path = write_kubeconfig(s.kubeconfig, running.url)
    print(f"pilothouse apiserver: serving on {running.url} with store "
          f"'{config.driver('store').name}'; kubeconfig written to {path}", flush=True)
    print(f"  try: kubectl --kubeconfig {path} get namespaces", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
