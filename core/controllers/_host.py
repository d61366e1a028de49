"""The controller host: every enabled controller plugin, one shared informer factory, one
leader-election Lease per controller, restarts with back-off, prompt shutdown.

Only the API is used (ARCHITECTURE.md rule 1). Each controller campaigns for its own Lease
(``<leasePrefix><name>`` in ``leaseNamespace``), so two hosts never run the same controller
at once, and controllers of one host may lead on different hosts. While a controller leads,
its ``run`` is awaited; an exception (or an early return) restarts it after a back-off that
doubles up to ``restartMaxBackoffSeconds``, without giving the Lease up. Losing the Lease
cancels it; stopping the host sets its ``context.stop``, waits ``shutdownGraceSeconds``,
cancels what is left and releases the Leases, all within a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from pilothouse.client import Client, InformerFactory, LeaderElector
from pilothouse.config import Config, ConfigError, parse_config
from pilothouse.interfaces.controllers import Controller, ControllerContext

from pilothouse.controllers._settings import Settings, settings as read_settings

log = logging.getLogger("pilothouse.controllers")


@dataclasses.dataclass(slots=True)
class HostContext(ControllerContext):
    """The :class:`~pilothouse.interfaces.controllers.ControllerContext` this host hands out,
    with two additions: ``identity`` (this host's leader-election identity) and
    ``reconciled(key, error)``, which calls the ``pilothouse_object_reconciled`` hook
    (:class:`~pilothouse.controllers.QueueController` calls it after every reconcile)."""

    identity: str = ""
    reconciled: Callable[[str, BaseException | None], None] | None = None


def default_identity() -> str:
    """``<host name>_<pid>``: the leader-election identity of this process."""
    return f"{socket.gethostname()}_{os.getpid()}"


@dataclasses.dataclass
class ControllerState:
    """What the host knows of one controller (for ``host.state[name]``)."""

    leader: bool = False
    running: bool = False
    starts: int = 0
    crashes: int = 0
    last_error: str = ""


class ControllerHost:
    """Runs controllers against one API server.

    ``ControllerHost(client, {name: controller}, Settings(...))`` takes constructed
    controllers (tests, embedding); :meth:`from_config` loads the enabled ones by entry
    point. :meth:`run` serves until ``stop`` is set; :meth:`start` / :meth:`stop` do the same
    as a background task. ``identity`` defaults to :func:`default_identity`; two hosts in
    one process must be given different identities.
    """

    def __init__(self, client: Any, controllers: dict[str, Controller],
                 settings: Settings | None = None, *, pm: Any = None,
                 identity: str | None = None):
        for name, ctrl in controllers.items():
            if not isinstance(ctrl, Controller):
                raise ConfigError([f"controllers: {name!r} is not a "
                                   f"pilothouse.interfaces.controllers.Controller"])
        self.client = client
        self.controllers = dict(controllers)
        self.settings = settings or Settings()
        self.pm = pm
        self.identity = identity or default_identity()
        self.informers = InformerFactory(client, resync=self.settings.resyncSeconds)
        self.state = {name: ControllerState() for name in self.controllers}
        self.electors: dict[str, LeaderElector] = {}
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None

    @classmethod
    def from_config(cls, config: Config, client: Any, *,
                    identity: str | None = None) -> "ControllerHost":
        """Load the controllers ``config`` enables (only the ``controllers`` section and the
        broadcast plugins: a controller host never constructs the store or the runtime)."""
        s = read_settings(config)
        doc: dict = {"base": "none", "controllers": config.raw.get("controllers") or {}}
        if config.raw.get("plugins"):
            doc["plugins"] = config.raw["plugins"]
        from pilothouse.plugins import load_plugins
        loaded = load_plugins(parse_config(doc, config.source))
        return cls(client, {lp.ref.name: lp.instance for lp in loaded.controllers}, s,
                   pm=loaded.pm, identity=identity)

    # ------------------------------------------------------------------ hooks

    def _hook(self, hook: str, **kwargs: Any) -> None:
        if self.pm is None:
            return
        try:
            getattr(self.pm.hook, hook)(**kwargs)
        except Exception:
            log.exception("hook %s failed", hook)

    def _reconciled(self, controller: str, key: str, error: BaseException | None) -> None:
        self._hook("pilothouse_object_reconciled", controller=controller, key=key, error=error)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (forever without one)."""
        stop = stop or asyncio.Event()
        self._stop = stop
        tasks = [asyncio.create_task(self._supervise(name, ctrl, stop),
                                     name=f"controller {name}")
                 for name, ctrl in self.controllers.items()]
        log.info("controller host %s: %s", self.identity, ", ".join(self.controllers) or
                 "no controller enabled")
        try:
            await stop.wait()
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdownGraceSeconds
                                            + 0.3) if tasks else (None, [])
            for task in pending:
                task.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.informers.stop()

    async def _supervise(self, name: str, ctrl: Controller, stop: asyncio.Event) -> None:
        s = self.settings
        if not s.leaderElect:
            await self._keep_running(name, ctrl, stop)
            return
        elector = LeaderElector(self.client, s.leasePrefix + name, self.identity,
                                namespace=s.leaseNamespace, lease_duration=s.leaseDuration,
                                renew_deadline=s.renewDeadline, retry_period=s.retryPeriod)
        self.electors[name] = elector

        async def lead() -> None:
            self.state[name].leader = True
            try:
                await self._keep_running(name, ctrl, stop)
            except Exception:  # never expected; the elector would swallow it
                log.exception("controller %s: supervisor failed", name)
                await _sleep_or_stop(stop, s.retryPeriod)
                raise
            finally:
                self.state[name].leader = False
        while not stop.is_set():
            try:
                await elector.run(lead, stop)
            except Exception:  # the elector itself failed (e.g. a bug): campaign again
                log.exception("leader election for %s failed", name)
                await _sleep_or_stop(stop, s.retryPeriod)
        try:  # give the lease up so a successor need not wait for it to expire
            await asyncio.wait_for(elector.release(), 0.3)
        except (asyncio.TimeoutError, Exception):
            pass

    async def _keep_running(self, name: str, ctrl: Controller, stop: asyncio.Event) -> None:
        s, st = self.settings, self.state[name]
        loop = asyncio.get_running_loop()
        delay = s.restartBackoffSeconds
        while not stop.is_set():
            context = HostContext(self.client, self.informers, asyncio.Event(), name,
                                  identity=self.identity,
                                  reconciled=lambda key, error: self._reconciled(name, key,
                                                                                 error))
            st.starts += 1
            st.running = True
            self._hook("pilothouse_controller_started", name=name)
            started = loop.time()
            try:
                await _run_until_stopped(ctrl.run(context), stop, context.stop,
                                         s.shutdownGraceSeconds)
                if stop.is_set():
                    return
                st.last_error = "run() returned before the controller was asked to stop"
                log.warning("controller %s: %s; restarting", name, st.last_error)
            except asyncio.CancelledError:
                context.stop.set()
                raise
            except Exception as exc:
                st.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("controller %s crashed; restarting in %.2gs", name, delay)
            finally:
                st.running = False
            st.crashes += 1
            if loop.time() - started > 10 * s.restartMaxBackoffSeconds:
                delay = s.restartBackoffSeconds  # it ran fine for long: start over
            await _sleep_or_stop(stop, delay)
            delay = min(max(delay * 2, 0.01), s.restartMaxBackoffSeconds)

    async def start(self) -> "ControllerHost":
        """Run in a background task (returns at once)."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name="controller host")
        return self

    async def stop(self) -> None:
        """Stop a host started with :meth:`start`: controllers return, Leases are released."""
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None

    async def crash(self) -> None:
        """Cancel a started host abruptly, as a killed process would stop: nothing is
        released, so a successor waits for the Leases to expire (tests)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def _run_until_stopped(coro: Coroutine, stop: asyncio.Event, own_stop: asyncio.Event,
                             grace: float) -> None:
    """Await ``coro``; when ``stop`` is set first, set ``own_stop``, give it ``grace``
    seconds to return, then cancel it."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            own_stop.set()
            await asyncio.wait([task], timeout=grace)
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            return
        task.result()
    finally:
        stopper.cancel()
        if not task.done():
            own_stop.set()
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


async def run_controller_host(config: Config, server_url: str, *, token: str | None = None,
                              identity: str | None = None, stop: asyncio.Event | None = None,
                              handle_signals: bool = False) -> None:
    """Run the controller host for ``config`` against the API server at ``server_url`` until
    ``stop`` is set (forever without one; with ``handle_signals``, SIGINT and SIGTERM set it:
    the ``pilothouse controller-manager`` command)."""
    stop = stop or asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    async with Client(server_url, token=token, user_agent="pilothouse-controller-manager/0.1") \
            as client:
        host = ControllerHost.from_config(config, client, identity=identity)
        await host.run(stop)
