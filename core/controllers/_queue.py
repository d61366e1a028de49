"""QueueController: the informer → key → work queue → reconcile loop most controllers are.

Public contract for plugin authors (exported as :class:`pilothouse.controllers.QueueController`).
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import secrets
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from pilothouse.client import Informer, WorkQueue, object_key
from pilothouse.interfaces.controllers import Controller, ControllerContext
from pilothouse.model import errors

log = logging.getLogger("pilothouse.controllers")

KeyFunc = Callable[[dict], Iterable[Hashable]]


def _keys_of(obj: dict) -> list[str]:
    return [object_key(obj)]


class QueueController(Controller):
    """A level-triggered controller: informers map objects to keys, a
    :class:`~pilothouse.client.WorkQueue` deduplicates them, workers call :meth:`reconcile`.

    Subclass it, say what to watch in :meth:`setup` and what to do in :meth:`reconcile`::

        class ConfigMapCounter(QueueController):
            def setup(self):
                self.cms = self.watch("v1", "ConfigMap")          # queues "ns/name"
                self.watch("v1", "Pod", keys=lambda p: [...])    # map pods to the keys
            async def reconcile(self, key):
                cm = self.cms.get(key)                           # read the cache...
                ...                                              # ...act through self.client
                return None                                      # or seconds to look again

    The contract:

    * :meth:`setup` (plain or ``async``) runs at every (re)start, before the informers are
      started. Call :meth:`watch` there (or later, for resources found at run time: such an
      informer is started by :meth:`watch` and its objects are queued as they arrive). Informers come from the host's shared factory (one list+watch per
      resource for every controller of the host); handlers are registered once per
      controller instance and survive restarts.
    * When every watched informer has synced, the key of every cached object (through its
      ``keys`` function) and every key of :meth:`initial_keys` is queued: a restarted
      controller re-checks everything from the API alone (ARCHITECTURE.md rule 2). After that
      each add, update (old and new object), delete and periodic resync queues the keys.
    * :meth:`reconcile` gets one key at a time per key (never two workers on the same key;
      ``workers`` keys in parallel). It compares desired and observed state and acts. Return
      None when done, or a number of seconds after which the key should be looked at again
      (e.g. a deadline); raise to retry with per-key exponential back-off
      (``retry_base_delay * 2**n`` up to ``retry_max_delay``). A :class:`Conflict
      <pilothouse.model.errors.Conflict>` (a stale read lost a compare-and-swap) is retried
      the same way and logged quietly.
    * After every reconcile the host's ``pilothouse_object_reconciled`` hook is called with
      :meth:`describe` of the key and the error (or None).
    * :meth:`run` returns promptly once ``context.stop`` is set; in-flight reconciles are
      cancelled, so a reconcile must leave the API in a state the next one can continue
      from (it always reads before it writes).

    Helpers while running: ``self.context``, ``self.client``, ``self.name``, ``self.queue``,
    :meth:`enqueue`, :meth:`wait_for` (read your writes back through the cache), :meth:`event`
    (record a core/v1 Event).

    Since 0.1.
    """

    #: Keys reconciled concurrently.
    workers: int = 1
    #: Per-key retry back-off after an error: ``retry_base_delay * 2**n``, capped.
    retry_base_delay: float = 0.005
    retry_max_delay: float = 60.0
    #: Seconds the watched informers get to sync before :meth:`run` fails (and is restarted).
    sync_timeout: float = 60.0

    context: ControllerContext
    queue: WorkQueue

    # ------------------------------------------------------------ to implement

    def setup(self) -> Any:
        """Declare what to watch with :meth:`watch` (called at every start). May be a
        coroutine (``async def setup``), e.g. to read API discovery first."""

    async def reconcile(self, key: Hashable) -> float | None:
        """Bring the object(s) behind ``key`` to their desired state; see the class doc."""
        raise NotImplementedError

    def initial_keys(self) -> Iterable[Hashable]:
        """Keys queued once at every start after the informers synced (default: none).
        Periodic controllers queue one key here and return a period from reconcile."""
        return ()

    def describe(self, key: Hashable) -> str:
        """``key`` as reported to the ``pilothouse_object_reconciled`` hook (``"ns/name"``
        or ``"name"`` by default, when keys are object keys)."""
        return str(key)

    # ------------------------------------------------------------ helpers

    def watch(self, api_version: str, kind: str, *, keys: KeyFunc | None = _keys_of,
              namespace: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None) -> Informer:
        """The shared informer of a kind; its events queue ``keys(obj)`` (default: the
        object's ``ns/name``; None: watch for the cache only, queue nothing)."""
        inf = self.context.informers.informer(api_version, kind, namespace,
                                              label_selector=label_selector,
                                              field_selector=field_selector)
        if inf not in self._watched:
            self._watched.append(inf)
            if self._running:
                inf.start()
        if keys is not None:
            if (inf, keys) not in self._key_funcs:
                self._key_funcs.append((inf, keys))
            if id(inf) not in self._hooked:  # one set of handlers per informer, for good
                self._hooked.add(id(inf))
                inf.add_handlers(lambda obj: self._dispatch(inf, obj),
                                 lambda old, new: self._dispatch(inf, old, new),
                                 lambda obj: self._dispatch(inf, obj))
        return inf

    def enqueue(self, key: Hashable, after: float = 0.0) -> None:
        """Queue ``key`` now, or after ``after`` seconds (an earlier pending add wins)."""
        queue = getattr(self, "queue", None)
        if queue is not None and self._running:
            queue.add_after(key, after) if after > 0 else queue.add(key)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (usually on an informer's cache) is true: after a
        write, so the next reconcile does not act on a cache that has not seen it yet.
        Returns False on timeout or stop (the caller usually requeues)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline or self.context.stop.is_set():
                return False
            await asyncio.sleep(0.01)
        return True

    def event(self, obj: dict, type: str, reason: str, message: str) -> None:
        """Record a core/v1 Event about ``obj`` in the background (never waits; failures are
        logged at debug level: events are best effort)."""
        m = obj.get("metadata") or {}
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{m.get('name', 'object')}.{secrets.token_hex(8)}",
                           "namespace": m.get("namespace") or "default"},
              "involvedObject": {"apiVersion": obj.get("apiVersion", ""),
                                 "kind": obj.get("kind", ""), "name": m.get("name", ""),
                                 "namespace": m.get("namespace", ""), "uid": m.get("uid", ""),
                                 "resourceVersion": m.get("resourceVersion", "")},
              "reason": reason, "message": message[:1024], "type": type,
              "source": {"component": f"{self.name}-controller"},
              "reportingComponent": f"{self.name}-controller", "count": 1,
              "firstTimestamp": now, "lastTimestamp": now}

        async def write() -> None:
            try:
                await self.client.resource("v1", "Event").create(ev)
            except errors.StatusError as exc:
                log.debug("event %s for %s not recorded: %s", reason, m.get("name"), exc)
        task = asyncio.get_running_loop().create_task(write())
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    # ------------------------------------------------------------ machinery

    # state lives in __dict__ so that subclasses need not call super().__init__()
    @property
    def _watched(self) -> list[Informer]:
        return self.__dict__.setdefault("_qc_watched", [])

    @property
    def _hooked(self) -> set:
        return self.__dict__.setdefault("_qc_hooked", set())

    @property
    def _key_funcs(self) -> list[tuple[Informer, KeyFunc]]:
        return self.__dict__.setdefault("_qc_key_funcs", [])

    @property
    def _event_tasks(self) -> set:
        return self.__dict__.setdefault("_qc_event_tasks", set())

    @property
    def _running(self) -> bool:
        return self.__dict__.get("_qc_running", False)

    def _dispatch(self, inf: Informer, *objs: dict) -> None:
        """An informer event: queue the keys of every key function the current run
        declared for that informer."""
        for watched, keys in list(self._key_funcs):
            if watched is inf:
                self._queue_keys(keys, *objs)

    def _queue_keys(self, keys: KeyFunc, *objs: dict) -> None:
        if not self._running:
            return
        for obj in objs:
            try:
                for key in keys(obj) or ():
                    self.queue.add(key)
            except Exception:
                log.exception("%s: key function failed", self.name)

    async def run(self, context: ControllerContext) -> None:
        """Set up, sync, queue every key, and reconcile until ``context.stop`` is set."""
        self.context = context
        self.client = context.client
        self.name = context.name
        self.queue = WorkQueue(self.retry_base_delay, self.retry_max_delay)
        self._watched.clear()
        self._key_funcs.clear()  # this run's setup declares them again
        prepared = self.setup()
        if inspect.isawaitable(prepared):
            await prepared
        for inf in self._watched:
            inf.start()
        workers: list[asyncio.Task] = []
        stop_wait = asyncio.ensure_future(context.stop.wait())
        try:
            synced = asyncio.ensure_future(asyncio.wait_for(
                asyncio.gather(*(inf.synced.wait() for inf in self._watched)),
                self.sync_timeout))
            await asyncio.wait([synced, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if not synced.done():
                synced.cancel()
                return
            synced.result()
            self.__dict__["_qc_running"] = True
            for inf, keys in self._key_funcs:
                if inf in self._watched:
                    for obj in inf.list():
                        self._queue_keys(keys, obj)
            for key in self.initial_keys():
                self.queue.add(key)
            workers = [asyncio.create_task(self._worker(), name=f"{self.name} worker {i}")
                       for i in range(max(1, int(self.workers)))]
            done, _ = await asyncio.wait([stop_wait, *workers],
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait:
                    task.result()  # a worker died: let the host restart the controller
        finally:
            self.__dict__["_qc_running"] = False
            stop_wait.cancel()
            await self.queue.shutdown()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        reported: Callable | None = getattr(self.context, "reconciled", None)
        while True:
            key = await self.queue.get()
            if key is None:
                return
            error: BaseException | None = None
            try:
                after = await self.reconcile(key)
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            except Exception as exc:
                error = exc
                delay = self.queue.add_rate_limited(key)
                quiet = isinstance(exc, (errors.Conflict, errors.AlreadyExists))
                (log.debug if quiet else log.warning)(
                    "%s: reconcile %s failed (retry in %.3gs): %s: %s", self.name,
                    self.describe(key), delay, type(exc).__name__, exc,
                    exc_info=not isinstance(exc, errors.StatusError) and not quiet)
            else:
                self.queue.forget(key)
                if after is not None:
                    self.queue.add_after(key, max(0.0, float(after)))
            self.queue.done(key)
            if reported is not None:
                try:
                    reported(self.describe(key), error)
                except Exception:
                    log.exception("%s: reconciled hook failed", self.name)
