"""The garbage collector: ownerReferences across every resource the API serves.

* An object whose owners are all gone (by UID: an owner recreated under the same name does
  not count) is deleted, in the background, or per its own ``orphan``/``foregroundDeletion``
  finalizer. An owner missing from the cache is confirmed gone by a live read first.
* Owners that are gone or being deleted in the foreground are dropped from the references of
  an object that still has another, live owner.
* ``foregroundDeletion`` (``propagationPolicy: Foreground``): the owner's dependents are
  deleted (those with dependents of their own in the foreground too); the finalizer is
  removed, and the owner with it, once no dependent with ``blockOwnerDeletion`` is left.
* ``orphan`` (``propagationPolicy: Orphan``): the owner's reference is removed from every
  dependent, then the finalizer.

Objects are watched through the host's shared informers of every listable, watchable,
deletable resource of API discovery (``events`` excepted), rediscovered every
``rediscoverSeconds`` for custom resources. The decisions are pure functions
(:func:`owner_verdict`, :func:`plan_for_dependent`), tested on their own.
"""

from __future__ import annotations

import dataclasses

from pilothouse.controllers import QueueController
from pilothouse.model import errors

from pilothouse_controllers import common

ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"
SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"
DISCOVERY_KEY = "@discovery"


def owner_verdict(ref: dict, owner: dict | None) -> str:
    """What an ownerReference means, given the owner as found (None: not found):
    ``dangling`` (gone, or another object by that name), ``waiting`` (being deleted in the
    foreground: its dependents must go first) or ``solid``."""
    if owner is None or common.meta(owner).get("uid") != ref.get("uid"):
        return DANGLING
    if common.deleting(owner) and FOREGROUND in (common.meta(owner).get("finalizers") or []):
        return WAITING
    return SOLID


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a dependent: ``action`` is ``keep``, ``drop-refs`` (patch away the
    references in ``uids``) or ``delete`` (with ``policy``)."""

    action: str
    uids: tuple = ()
    policy: str | None = None


def plan_for_dependent(obj: dict, verdicts: dict[str, str], has_dependents: bool) -> Plan:
    """Kubernetes' attemptToDeleteItem for one object whose owners were judged
    (``verdicts``: owner UID → verdict)."""
    solid = [u for u, v in verdicts.items() if v == SOLID]
    bad = tuple(u for u, v in verdicts.items() if v != SOLID)
    if not bad:
        return Plan("keep")
    if solid:
        return Plan("drop-refs", bad)
    if common.deleting(obj):
        return Plan("keep")  # already going; its own finalizers are handled separately
    if WAITING in verdicts.values() and has_dependents:
        return Plan("delete", policy="Foreground")
    finalizers = common.meta(obj).get("finalizers") or []
    policy = "Orphan" if ORPHAN in finalizers else \
        "Foreground" if FOREGROUND in finalizers else "Background"
    return Plan("delete", policy=policy)


def blocking(dependents: list[dict], owner_uid: str) -> list[dict]:
    """The dependents that hold a foreground deletion of their owner."""
    return [d for d in dependents
            if any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
                   for r in common.meta(d).get("ownerReferences") or [])]


class GarbageCollector(QueueController):
    """Entry point ``garbagecollector``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 5
        #: seconds between API discovery runs (new custom resources)
        rediscoverSeconds: float = 30.0
        #: resources never collected, as ``plural`` or ``plural.group``
        ignoredResources: list[str] = dataclasses.field(
            default_factory=lambda: ["events", "events.events.k8s.io"])

    def __init__(self, options: "GarbageCollector.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers
        self.objects: dict[str, tuple] = {}        # uid → (informer, cache key)
        self.dependents: dict[str, set[str]] = {}  # owner uid → dependent uids
        self._tracked: set[int] = set()

    async def setup(self) -> None:
        await self._discover()

    def initial_keys(self):
        return [DISCOVERY_KEY]

    def describe(self, key: str) -> str:
        entry = self.objects.get(key)
        obj = entry[0].get(entry[1]) if entry else None
        return entry[1] if obj is not None else key

    async def _discover(self) -> None:
        ignored = set(self.options.ignoredResources)
        for r in await common.discover(self.client):
            if r.qualified in ignored or not {"list", "watch", "delete"} <= r.verbs:
                continue
            inf = self.watch(r.api_version, r.kind, keys=self._keys)
            if id(inf) not in self._tracked:
                self._tracked.add(id(inf))
                inf.add_handlers(lambda o, inf=inf: self._track(inf, None, o),
                                 lambda old, new, inf=inf: self._track(inf, old, new),
                                 lambda o: self._untrack(o))
                for obj in inf.list():
                    self._track(inf, None, obj)

    # ------------------------------------------------------------ bookkeeping

    @staticmethod
    def _owner_uids(obj: dict | None) -> set[str]:
        return {r.get("uid") for r in common.meta(obj or {}).get("ownerReferences") or []
                if r.get("uid")}

    def _track(self, inf, old: dict | None, new: dict) -> None:
        uid = common.meta(new).get("uid")
        if not uid:
            return
        self.objects[uid] = (inf, _key(new))
        for owner in self._owner_uids(old) - self._owner_uids(new):
            self.dependents.get(owner, set()).discard(uid)
        for owner in self._owner_uids(new):
            self.dependents.setdefault(owner, set()).add(uid)

    def _untrack(self, obj: dict) -> None:
        uid = common.meta(obj).get("uid")
        if not uid:
            return
        entry = self.objects.get(uid)
        if entry is not None and entry[1] == _key(obj):
            del self.objects[uid]
        for owner in self._owner_uids(obj):
            deps = self.dependents.get(owner)
            if deps is not None:
                deps.discard(uid)
                if not deps:
                    del self.dependents[owner]

    def _keys(self, obj: dict) -> list[str]:
        """An event on ``obj`` concerns ``obj`` itself (its owners may be gone), its owners
        (one may wait for it to go), and its dependents (it may have gone)."""
        uid = common.meta(obj).get("uid")
        out = [uid] if uid else []
        out += list(self._owner_uids(obj))
        out += list(self.dependents.get(uid, ()))
        return out

    def _get(self, uid: str) -> dict | None:
        entry = self.objects.get(uid)
        if entry is None:
            return None
        obj = entry[0].get(entry[1])
        return obj if obj is not None and common.meta(obj).get("uid") == uid else None

    def _dependents_of(self, uid: str) -> list[dict]:
        return [d for d in (self._get(u) for u in list(self.dependents.get(uid, ()))) if d]

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        if key == DISCOVERY_KEY:
            await self._discover()
            return self.options.rediscoverSeconds
        obj = self._get(key)
        if obj is None:
            return None
        finalizers = common.meta(obj).get("finalizers") or []
        if common.deleting(obj) and ORPHAN in finalizers:
            await self._orphan(obj)
            return None
        if common.deleting(obj) and FOREGROUND in finalizers:
            return await self._foreground(obj)
        refs = common.meta(obj).get("ownerReferences") or []
        if not refs:
            return None
        verdicts = {}
        for ref in refs:
            verdicts[ref.get("uid")] = await self._verdict(obj, ref)
        plan = plan_for_dependent(obj, verdicts, bool(self._dependents_of(key)))
        if plan.action == "drop-refs":
            kept = [r for r in refs if r.get("uid") not in plan.uids]
            await common.patch_owner_references(self._resource(obj), obj, kept)
        elif plan.action == "delete":
            await self._delete(obj, plan.policy)
        return None

    async def _verdict(self, obj: dict, ref: dict) -> str:
        cached = self._get(ref.get("uid"))
        if cached is not None:
            return owner_verdict(ref, cached)
        try:
            res = self.client.resource(ref.get("apiVersion", ""), ref.get("kind", ""))
        except KeyError:
            return SOLID  # a kind nobody serves (yet): never delete on a guess
        try:
            live = await res.get(ref.get("name", ""), common.meta(obj).get("namespace"))
        except errors.NotFound:
            live = None
        return owner_verdict(ref, live)

    def _resource(self, obj: dict):
        return self.objects[common.meta(obj)["uid"]][0].resource

    async def _delete(self, obj: dict, policy: str | None) -> None:
        m = common.meta(obj)
        try:
            await self._resource(obj).delete(m["name"], m.get("namespace"),
                                             propagation_policy=policy,
                                             preconditions={"uid": m["uid"]})
        except (errors.NotFound, errors.Conflict):
            pass  # gone, or replaced by another object of that name

    async def _remove_finalizer(self, obj: dict, finalizer: str) -> None:
        m = common.meta(obj)
        kept = [f for f in m.get("finalizers") or [] if f != finalizer]
        ops = [{"op": "test", "path": "/metadata/resourceVersion",
                "value": m.get("resourceVersion")},
               {"op": "replace", "path": "/metadata/finalizers", "value": kept}]
        try:
            await self._resource(obj).patch(m["name"], ops, m.get("namespace"),
                                            content_type=common.JSON_PATCH)
        except errors.NotFound:
            pass

    async def _orphan(self, owner: dict) -> None:
        uid = common.meta(owner)["uid"]
        for dep in self._dependents_of(uid):
            refs = [r for r in common.meta(dep).get("ownerReferences") or []
                    if r.get("uid") != uid]
            await common.patch_owner_references(self._resource(dep), dep, refs)
        await self._remove_finalizer(owner, ORPHAN)

    async def _foreground(self, owner: dict) -> float | None:
        uid = common.meta(owner)["uid"]
        dependents = self._dependents_of(uid)
        for dep in dependents:
            if not common.deleting(dep) or FOREGROUND in (
                    common.meta(dep).get("finalizers") or []):
                self.enqueue(common.meta(dep)["uid"])
        if blocking(dependents, uid):
            return 10.0  # events bring it back sooner; this is a safety net
        await self._remove_finalizer(owner, FOREGROUND)
        return None


def _key(obj: dict) -> str:
    m = common.meta(obj)
    return f"{m['namespace']}/{m['name']}" if m.get("namespace") else m["name"]
