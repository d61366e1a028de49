"""The namespace controller: a namespace being deleted is emptied — every object of every
namespaced resource of API discovery is deleted — and then its ``kubernetes`` finalizer is
removed through ``namespaces/{name}/finalize``, after which the API server deletes it (once
``metadata.finalizers`` are empty too).

While content remains, the namespace's status carries Kubernetes' conditions
(NamespaceContentRemaining, NamespaceFinalizersRemaining, NamespaceDeletionDiscoveryFailure,
NamespaceDeletionContentFailure) and it is looked at again every ``recheckSeconds`` (sooner
when objects in it change).
"""

from __future__ import annotations

import asyncio
import dataclasses

from pilothouse.controllers import QueueController
from pilothouse.model import errors

from pilothouse_controllers import common

FINALIZER = "kubernetes"
CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionContentFailure",
                   "NamespaceContentRemaining", "NamespaceFinalizersRemaining",
                   "NamespaceDeletionGroupVersionParsingFailure")


def deletion_conditions(ns: dict, remaining: dict[str, int], finalizers: dict[str, int],
                        discovery_error: str, content_errors: list[str]) -> list[dict]:
    """The namespace's deletion conditions, keeping lastTransitionTime of unchanged ones."""
    old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or []}
    wanted = {
        "NamespaceDeletionDiscoveryFailure": (
            ("True", "DiscoveryFailed", f"Discovery failed: {discovery_error}")
            if discovery_error else ("False", "ResourcesDiscovered",
                                     "All resources successfully discovered")),
        "NamespaceDeletionGroupVersionParsingFailure": (
            "False", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
        "NamespaceDeletionContentFailure": (
            ("True", "ContentDeletionFailed",
             "Failed to delete all resource types, " + "; ".join(content_errors))
            if content_errors else ("False", "ContentDeleted",
                                    "All content successfully deleted, may be waiting on "
                                    "finalization")),
        "NamespaceContentRemaining": (
            ("True", "SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
                f"{r} has {n} resource instances" for r, n in sorted(remaining.items())))
            if remaining else ("False", "ContentRemoved", "All content successfully removed")),
        "NamespaceFinalizersRemaining": (
            ("True", "SomeFinalizersRemain", "Some content in the namespace has finalizers "
             "remaining: " + ", ".join(f"{f} in {n} resource instances"
                                       for f, n in sorted(finalizers.items())))
            if finalizers else ("False", "ContentHasNoFinalizers",
                                "All content-preserving finalizers finished")),
    }
    out = []
    for ctype in CONDITION_TYPES:
        status, reason, message = wanted[ctype]
        prev = old.get(ctype)
        if prev and prev.get("status") == status and prev.get("reason") == reason and \
                prev.get("message") == message:
            out.append(prev)
        else:
            out.append({"type": ctype, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": common.fmt_time()})
    return out


class NamespaceController(QueueController):
    """Entry point ``namespace``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 2
        #: seconds between checks of a namespace whose content is still going away
        recheckSeconds: float = 5.0

    def __init__(self, options: "NamespaceController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers

    def setup(self) -> None:
        self.namespaces = self.watch("v1", "Namespace")
        self.ns_api = self.client.resource("v1", "Namespace")

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or not common.deleting(ns):
            return None
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return None  # not ours to finalize (or done)
        remaining, finalizers, content_errors = {}, {}, []
        discovery_error = ""
        try:
            resources = [r for r in await common.discover(self.client)
                         if r.namespaced and {"list", "delete"} <= r.verbs]
        except errors.StatusError as exc:
            resources, discovery_error = [], str(exc)
        results = await asyncio.gather(*(self._empty(key, r) for r in resources),
                                       return_exceptions=True)
        for r, result in zip(resources, results):
            if isinstance(result, BaseException):
                content_errors.append(f"{r.qualified}: {result}")
                continue
            count, fins = result
            if count:
                remaining[r.qualified] = count
            for f in fins:
                finalizers[f] = finalizers.get(f, 0) + 1
        if not remaining and not discovery_error and not content_errors:
            await self._finalize(key)
            return None
        await self._set_conditions(ns, remaining, finalizers, discovery_error, content_errors)
        return self.options.recheckSeconds

    async def _empty(self, namespace: str, r: common.APIResource) -> tuple[int, list[str]]:
        """Delete what is left of one resource in the namespace; return how many objects
        remain afterwards and their finalizers."""
        res = self.client.resource(r.api_version, r.kind)
        items = (await res.list(namespace))["items"]
        left, fins = 0, []
        for obj in items:
            m = common.meta(obj)
            if not common.deleting(obj):
                try:
                    obj = await res.delete(m["name"], namespace,
                                           propagation_policy="Background",
                                           preconditions={"uid": m["uid"]})
                except (errors.NotFound, errors.Conflict):
                    continue
                if not isinstance(obj, dict) or obj.get("kind") == "Status":
                    continue  # deleted at once
                m = common.meta(obj)
                if not m.get("deletionTimestamp"):
                    continue
            left += 1
            fins += list(m.get("finalizers") or [])
        return left, fins

    async def _finalize(self, name: str) -> None:
        try:
            ns = await self.ns_api.get(name)
        except errors.NotFound:
            return
        spec = ns.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
        try:
            await self.client.request("PUT", self.ns_api.path(None, name, "finalize"), body=ns)
        except errors.NotFound:
            pass

    async def _set_conditions(self, ns: dict, remaining, finalizers, discovery_error,
                              content_errors) -> None:
        conditions = deletion_conditions(ns, remaining, finalizers, discovery_error,
                                         content_errors)
        if conditions == (ns.get("status") or {}).get("conditions"):
            return
        updated = common.deep(ns)
        updated.setdefault("status", {})["conditions"] = conditions
        try:
            await self.ns_api.update_status(updated)
        except (errors.NotFound, errors.Conflict):
            pass
