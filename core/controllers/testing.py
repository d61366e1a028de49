"""Test kit for controller plugins: run the real controller host in a thread against a real
API server (e.g. the ``start_apiserver`` fixture's).

::

    api = start_apiserver()
    with ControllerHostThread(api.url, config_doc={"controllers": {"enabled": ["mine"]}}) as h:
        ...                                   # act through kubectl or h.client
        h.wait_for(lambda: ..., what="...")   # bounded wait, no wall-time assertion

Give either ``config_doc`` (controllers by entry point) or ``controllers`` (name →
constructed instance). ``settings`` are ``components.controller-manager`` values; the
default :data:`TEST_SETTINGS` use short leases so take-over tests finish in seconds.

Since 0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pilothouse.testing.cluster import LoopThread
from pilothouse.client import Client
from pilothouse.config import parse_config

from pilothouse.controllers._host import ControllerHost
from pilothouse.controllers._settings import COMPONENT, Settings

__all__ = ["ControllerHostThread", "TEST_SETTINGS"]

#: Short leases and back-offs for tests.
TEST_SETTINGS = dict(leaseDuration=3.0, renewDeadline=2.0, retryPeriod=0.2,
                     restartBackoffSeconds=0.05, restartMaxBackoffSeconds=1.0,
                     resyncSeconds=30.0)


class ControllerHostThread(LoopThread):
    """A :class:`~pilothouse.controllers.ControllerHost` on its own event loop in a daemon
    thread. ``client`` is the host's API client; :meth:`run` runs a coroutine on its loop."""

    def __init__(self, url: str, *, config_doc: dict | None = None,
                 controllers: dict | None = None, settings: dict | None = None,
                 identity: str | None = None, pm: Any = None):
        super().__init__("pilothouse-controllers")
        self.url = url
        self._doc, self._controllers, self._pm = config_doc, controllers, pm
        self._settings = {**TEST_SETTINGS, **(settings or {})}
        self.identity = identity
        self.client: Client | None = None
        self.host: ControllerHost | None = None

    def start(self) -> "ControllerHostThread":
        self._thread.start()

        async def boot():
            self.client = Client(self.url)
            if self._doc is not None:
                doc = dict(self._doc)
                comps = dict(doc.get("components") or {})
                comps[COMPONENT] = {**self._settings, **(comps.get(COMPONENT) or {})}
                doc["components"] = comps
                self.host = ControllerHost.from_config(parse_config(doc, "<test>"),
                                                       self.client, identity=self.identity)
            else:
                self.host = ControllerHost(self.client, self._controllers or {},
                                           Settings(**self._settings), pm=self._pm,
                                           identity=self.identity)
            await self.host.start()
        self.run(boot())
        return self

    def stop(self) -> None:
        """Stop gracefully (Leases released)."""
        self._shutdown(graceful=True)

    def crash(self) -> None:
        """Stop abruptly, like a killed process: Leases stay held until they expire."""
        self._shutdown(graceful=False)

    def _shutdown(self, graceful: bool) -> None:
        if self.host is not None:
            async def down():
                try:
                    await (self.host.stop() if graceful else self.host.crash())
                finally:
                    await self.client.close()
            try:
                self.run(down(), timeout=30)
            except TimeoutError:
                raise AssertionError("the controller host did not stop; pending tasks:\n"
                                     + self._pending_tasks()) from None
            finally:
                self.host = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def _pending_tasks(self) -> str:
        def dump():
            import io
            out = io.StringIO()
            for task in asyncio.all_tasks(self.loop):
                task.print_stack(limit=8, file=out)
            return out.getvalue()
        try:
            return asyncio.run_coroutine_threadsafe(_call(dump), self.loop).result(5)
        except Exception as exc:  # the loop itself is stuck
            return f"(cannot list them: {type(exc).__name__})"

    def __enter__(self) -> "ControllerHostThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def state(self, name: str) -> Any:
        return self.call(lambda: self.host.state[name])

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
                 what: str = "condition") -> Any:
        """Poll ``check()`` until it returns something truthy (bounded: raises
        AssertionError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()
