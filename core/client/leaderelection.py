"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go does it.

The candidate that holds the Lease (``spec.holderIdentity``) renews ``spec.renewTime`` every
``retry_period``; others take it over only when ``renewTime + leaseDurationSeconds`` has
passed. Every write is a compare-and-swap on the Lease's resourceVersion, so two candidates
can never both believe they won. A leader that cannot renew within ``renew_deadline`` stops
leading (its callback is cancelled) before the lease can expire for others.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable

from pilothouse.model import errors

from pilothouse.client._rest import Client

log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str) -> datetime.datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(s, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    raise ValueError(s)


class LeaderElector:
    def __init__(self, client: Client, name: str, identity: str, *,
                 namespace: str = "kube-system", lease_duration: float = 15.0,
                 renew_deadline: float = 10.0, retry_period: float = 2.0):
        self.leases = client.resource("coordination.k8s.io/v1", "Lease")
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration, self.renew_deadline = lease_duration, renew_deadline
        self.retry_period = retry_period
        self.is_leader = False

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the lease afterwards."""
        now = _now()
        spec = {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, int(round(self.lease_duration))),
                "renewTime": _fmt(now)}
        try:
            lease = await self.leases.get(self.name, self.namespace)
        except errors.NotFound:
            try:
                await self.leases.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                          "metadata": {"name": self.name,
                                                       "namespace": self.namespace},
                                          "spec": {**spec, "acquireTime": _fmt(now),
                                                   "leaseTransitions": 0}})
                return True
            except errors.AlreadyExists:
                return False
        cur = lease.get("spec") or {}
        holder = cur.get("holderIdentity")
        if holder and holder != self.identity:
            renewed = cur.get("renewTime") or cur.get("acquireTime")
            duration = cur.get("leaseDurationSeconds") or self.lease_duration
            if renewed and _parse(renewed) + datetime.timedelta(seconds=duration) > now:
                return False
            spec["acquireTime"] = _fmt(now)
            spec["leaseTransitions"] = (cur.get("leaseTransitions") or 0) + 1
        else:
            spec["acquireTime"] = cur.get("acquireTime") or _fmt(now)
            spec["leaseTransitions"] = cur.get("leaseTransitions") or 0
        lease["spec"] = spec
        try:
            await self.leases.update(lease)  # CAS on the resourceVersion we read
            return True
        except errors.Conflict:
            return False

    async def run(self, lead: Callable[[], Awaitable[None]],
                  stop: asyncio.Event | None = None) -> None:
        """Campaign until ``stop``; while leader, run ``lead()`` (cancelled on loss)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                acquired = await self.try_acquire_or_renew()
            except errors.StatusError as exc:
                log.debug("lease %s: %s", self.name, exc)
                acquired = False
            if not acquired:
                await _sleep_or_stop(stop, self.retry_period)
                continue
            self.is_leader = True
            log.info("%s became leader of %s", self.identity, self.name)
            task = asyncio.create_task(lead())
            try:
                await self._renew_until_lost(task, stop)
            finally:
                self.is_leader = False
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            if task.done() and not task.cancelled() and task.exception() is None:
                return
        await self.release()

    async def _renew_until_lost(self, task: asyncio.Task, stop: asyncio.Event) -> None:
        last_renew = asyncio.get_running_loop().time()
        while not stop.is_set() and not task.done():
            await _sleep_or_stop(stop, self.retry_period, task)
            if stop.is_set() or task.done():
                return
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), self.renew_deadline)
            except (errors.StatusError, asyncio.TimeoutError):
                ok = False
            now = asyncio.get_running_loop().time()
            if ok:
                last_renew = now
            elif not ok and now - last_renew > self.renew_deadline:
                log.warning("%s lost the lease %s", self.identity, self.name)
                return

    async def release(self) -> None:
        """Give the lease up (so a successor need not wait for it to expire)."""
        try:
            lease = await self.leases.get(self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = None
                await self.leases.update(lease)
        except errors.StatusError:
            pass


async def _sleep_or_stop(stop: asyncio.Event, seconds: float,
                         task: asyncio.Task | None = None) -> None:
    waits = [asyncio.ensure_future(stop.wait())]
    if task is not None:
        waits.append(task)
    done, pending = await asyncio.wait(waits, timeout=seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
    if waits[0] in pending:
        waits[0].cancel()
