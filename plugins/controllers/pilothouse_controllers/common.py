"""Helpers shared by the controllers of this distribution: pod state, ownership (adopt and
release by selector, as Kubernetes' ControllerRefManager does), compare-and-swap patches."""

from __future__ import annotations

import copy
import dataclasses
import datetime

from pilothouse.model import errors
from pilothouse.model.kinds import Kind
from pilothouse.model.meta import controller_ref, owner_reference
from pilothouse.model.selectors import LabelSelector

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def fmt_time(t: datetime.datetime | None = None) -> str:
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    for f in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.datetime.strptime(text, f).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def deleting(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def active_pod(pod: dict) -> bool:
    """Counts toward a ReplicaSet: not finished and not being deleted."""
    return not terminal(pod) and not deleting(pod)


def ready_condition(pod: dict) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def pod_ready(pod: dict) -> bool:
    c = ready_condition(pod)
    return bool(c) and c.get("status") == "True"


def available_in(pod: dict, min_ready_seconds: int, at: datetime.datetime) -> float | None:
    """Seconds until a ready pod counts as available (0: it is; None: it is not ready)."""
    if not pod_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    if since is None:
        return 0.0
    left = (since + datetime.timedelta(seconds=min_ready_seconds) - at).total_seconds()
    return max(0.0, left)


def selector_of(obj: dict) -> LabelSelector | None:
    """The object's spec.selector; None for a missing or empty one (it selects nothing)."""
    sel = (obj.get("spec") or {}).get("selector")
    if not sel:
        return None
    parsed = LabelSelector.from_dict(sel)
    return None if parsed.empty() else parsed


def ns_terminating(namespaces, name: str) -> bool:
    """True when the namespace (from a Namespace informer) is being deleted."""
    ns = namespaces.get(name) if namespaces is not None else None
    return ns is not None and deleting(ns)


async def patch_owner_references(resource, obj: dict, refs: list[dict]) -> dict | None:
    """Set ``obj``'s ownerReferences to ``refs``, compare-and-swap on its resourceVersion
    (a 409 when it changed meanwhile: the caller retries with fresh state). None when the
    object is gone."""
    m = meta(obj)
    ops: list[dict] = [{"op": "test", "path": "/metadata/resourceVersion",
                        "value": m.get("resourceVersion")}]
    if refs:
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
    elif "ownerReferences" in m:
        ops.append({"op": "remove", "path": "/metadata/ownerReferences"})
    else:
        return obj
    try:
        return await resource.patch(m["name"], ops, m.get("namespace"), content_type=JSON_PATCH)
    except errors.NotFound:
        return None


async def claim(owner: dict, api_version: str, kind: str, candidates: list[dict],
                selector: LabelSelector | None, resource, fresh_owner) -> list[dict]:
    """Kubernetes' ControllerRefManager: of ``candidates`` (same namespace), return those
    ``owner`` controls afterwards. Orphans matching the selector are adopted (after
    ``fresh_owner()`` — a live read — confirms the owner still exists and is not being
    deleted); owned objects that no longer match are released (unless the owner is being
    deleted). Objects controlled by someone else are left alone."""
    uid = meta(owner).get("uid")
    claimed, fresh_checked = [], None
    for obj in candidates:
        labels = meta(obj).get("labels") or {}
        matches = selector is not None and selector.matches(labels)
        ref = controller_ref(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                claimed.append(obj)
                continue
            if deleting(owner):
                continue
            refs = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != uid]
            await patch_owner_references(resource, obj, refs)
            continue
        if deleting(owner) or not matches or deleting(obj):
            continue
        if fresh_checked is None:
            fresh = await fresh_owner()
            fresh_checked = fresh is not None and meta(fresh).get("uid") == uid and \
                not deleting(fresh)
        if not fresh_checked:
            continue
        refs = [r for r in meta(obj).get("ownerReferences") or [] if r.get("uid") != uid]
        refs.append(owner_reference({**owner, "apiVersion": api_version, "kind": kind}))
        adopted = await patch_owner_references(resource, obj, refs)
        if adopted is not None:
            claimed.append(adopted)
    return claimed


def strip_hash(labels: dict | None, key: str) -> dict:
    out = dict(labels or {})
    out.pop(key, None)
    return out


def deep(obj):
    return copy.deepcopy(obj)


@dataclasses.dataclass(frozen=True)
class APIResource:
    """One resource from API discovery (preferred version of its group)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` (``pods`` in the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


async def discover(client) -> list[APIResource]:
    """Every top-level resource the API server serves, in each group's preferred version.
    Kinds the client does not know yet (custom resources) are registered with its registry
    so that ``client.resource(api_version, kind)`` works for them."""
    versions = [("", v) for v in (await client.request("GET", "/api")).get("versions") or []]
    for group in (await client.request("GET", "/apis")).get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("version") or \
            ((group.get("versions") or [{}])[0]).get("version")
        if preferred:
            versions.append((group["name"], preferred))
    out = []
    for group, version in versions:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = await client.request("GET", path)
        except errors.NotFound:  # the group went away meanwhile (a CRD deleted)
            continue
        for res in listing.get("resources") or []:
            if "/" in res.get("name", ""):
                continue
            r = APIResource(group, version, res["kind"], res["name"], bool(res.get("namespaced")),
                            frozenset(res.get("verbs") or ()))
            if client.registry.get(group, version, r.kind) is None and \
                    client.registry.get_resource(group, version, r.plural) is None:
                try:
                    client.registry.register(Kind(group, version, r.kind, r.plural,
                                                  namespaced=r.namespaced,
                                                  verbs=tuple(sorted(r.verbs))))
                except ValueError:
                    pass
            out.append(r)
    return out
