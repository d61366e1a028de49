"""Object metadata shared by every component: accessors, system fields on create and update,
names, finalizers, owner references and graceful deletion.

Objects are JSON-shaped dicts. Getters never change the object and return empty values for
missing fields; setters create ``metadata`` (and the map or list they touch) when needed.

The API server calls :func:`prepare_for_create` and :func:`prepare_for_update` on every write
before validation, so what a client sends in system-managed fields never reaches the store:

=====================================  ============================  ===========================
field                                  on create                     on update
=====================================  ============================  ===========================
``uid``                                new random UUID               kept from the stored object
``creationTimestamp``                  now                           kept
``name``                               kept; from ``generateName``   kept
                                       when empty
``namespace``                          cleared for cluster-scoped    kept
                                       kinds
``generation``                         1                             kept, +1 when anything
                                                                     outside ``metadata`` and
                                                                     ``status`` changed
``resourceVersion``                    cleared (the store sets it)   kept as sent (the CAS
                                                                     precondition)
``deletionTimestamp``,                 cleared                       kept (only deletion sets
``deletionGracePeriodSeconds``                                       them: :func:`mark_for_deletion`)
``status``                             reset when the kind has a     kept from the stored object
                                       status subresource            (main resource); the only
                                                                     change (``/status``)
=====================================  ============================  ===========================

Since 0.1.
"""

from __future__ import annotations

import copy
import datetime
import os
import secrets
import time
from typing import Any

from pilothouse.model._jsoncopy import copy_json, exact_json, same_json
from pilothouse.model.kinds import Kind, _lookup
from pilothouse.model.quantity import Quantity, QuantityError

__all__ = [
    "add_finalizer", "add_owner_reference", "annotations", "api_version", "controller_ref",
    "deletion_timestamp", "finalizers", "generate_name", "generation", "has_finalizer",
    "is_being_deleted", "is_controlled_by", "is_owned_by", "labels", "mark_for_deletion",
    "metadata", "name", "namespace", "new_uid", "now_rfc3339", "now_rfc3339_micro",
    "NAME_ALPHABET", "object_key", "object_reference", "owner_reference", "owner_references", "parse_rfc3339", "pod_qos_class",
    "prepare_for_create", "prepare_for_update", "remove_finalizer", "remove_owner_reference",
    "resource_version", "set_annotation", "set_label", "split_object_key", "uid",
]

# ---------------------------------------------------------------------------- accessors


def metadata(obj: dict) -> dict:
    """``obj["metadata"]``, created empty if missing."""
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    return meta


def _get(obj: dict, key: str, default: Any = "") -> Any:
    value = (obj.get("metadata") or {}).get(key)
    return default if value is None else value


def name(obj: dict) -> str:
    return _get(obj, "name")


def namespace(obj: dict) -> str:
    """The namespace, ``""`` for cluster-scoped objects."""
    return _get(obj, "namespace")


def uid(obj: dict) -> str:
    return _get(obj, "uid")


def resource_version(obj: dict) -> str:
    return _get(obj, "resourceVersion")


def generation(obj: dict) -> int:
    return int(_get(obj, "generation", 0))


def labels(obj: dict) -> dict[str, str]:
    """The labels (the object's own dict when present, else a new empty one)."""
    return _get(obj, "labels", {})


def annotations(obj: dict) -> dict[str, str]:
    return _get(obj, "annotations", {})


def set_label(obj: dict, key: str, value: str) -> None:
    metadata(obj).setdefault("labels", {})[key] = value


def set_annotation(obj: dict, key: str, value: str) -> None:
    metadata(obj).setdefault("annotations", {})[key] = value


def api_version(group: str, version: str) -> str:
    """``apps/v1``, or ``v1`` for the core group."""
    return f"{group}/{version}" if group else version


def object_reference(obj: dict, field_path: str = "") -> dict:
    """An ObjectReference to ``obj`` (an Event's ``involvedObject``): apiVersion, kind,
    namespace, name, uid and resourceVersion, empty members left out."""
    ref = {"apiVersion": obj.get("apiVersion") or "", "kind": obj.get("kind") or "",
           "namespace": namespace(obj), "name": name(obj), "uid": uid(obj),
           "resourceVersion": resource_version(obj), "fieldPath": field_path}
    return {k: v for k, v in ref.items() if v}


def object_key(obj: dict) -> str:
    """``<namespace>/<name>``, or ``<name>`` when cluster-scoped (client-go's cache key)."""
    ns, n = namespace(obj), name(obj)
    return f"{ns}/{n}" if ns else n


def split_object_key(key: str) -> tuple[str, str]:
    """``"ns/name"`` → ``("ns", "name")``; ``"name"`` → ``("", "name")``."""
    ns, _, n = key.rpartition("/")
    return ns, n


# ------------------------------------------------------------------- ids, names and time


# The random bytes of UIDs are read from the OS 256 UIDs at a time (one system call per
# 4 KiB, not one per create); a forked child never reuses its parent's bytes.
_RANDOM = bytearray()


def _forget_random() -> None:
    _RANDOM.clear()


os.register_at_fork(after_in_child=_forget_random)


def new_uid() -> str:
    """A fresh object UID (a random UUID, as Kubernetes uses)."""
    # what str(uuid.uuid4()) gives, without building a UUID object (one per create)
    if len(_RANDOM) < 16:
        _RANDOM[:] = os.urandom(4096)
    raw = _RANDOM[-16:]
    del _RANDOM[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc)


_this_second: list = [None, ""]  # (whole second, its text): one strftime a second


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    """A ``Time`` as the API writes it, to the second: ``2026-11-21T07:54:43Z``."""
    if now is None:
        second = int(time.time())
        if _this_second[0] != second:
            _this_second[1] = datetime.datetime.fromtimestamp(
                second, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            _this_second[0] = second
        return _this_second[1]
    return _utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_micro(now: datetime.datetime | None = None) -> str:
    """A ``MicroTime`` (Lease ``renewTime``, Event ``eventTime``):
    ``2026-11-21T07:54:43.123456Z``."""
    return _utc(now).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime.datetime:
    """Parse an RFC 3339 time (``Z`` or an offset, optional fraction) into an aware UTC
    datetime. Raises ``ValueError`` for anything else."""
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    t = text.strip()
    if t[-1] in "zZ":
        t = t[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(t)
    if parsed.tzinfo is None:
        raise ValueError(f"RFC 3339 time without a time zone: {text!r}")
    return parsed.astimezone(datetime.timezone.utc)


#: Kubernetes' alphabet for generated name suffixes: no vowels (no words) and no
#: look-alikes (0/o, 1/l, 3/e).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_NAME = 63
_SUFFIX_LEN = 5


def generate_name(prefix: str) -> str:
    """``prefix`` plus 5 random characters from :data:`NAME_ALPHABET`; the prefix is cut to
    58 characters so the result fits a 63-character name."""
    prefix = prefix[:_MAX_NAME - _SUFFIX_LEN]
    return prefix + "".join(secrets.choice(NAME_ALPHABET) for _ in range(_SUFFIX_LEN))


# ---------------------------------------------------------------- create and update


def _create_status(kind: Kind, obj: dict) -> dict | None:
    """What ``status`` becomes on create, or None to keep what the client sent."""
    if kind.group == "" and kind.kind == "Node":
        return None  # the node agent registers its node with its status
    if kind.group == "" and kind.kind == "Pod":
        return {"phase": "Pending", "qosClass": pod_qos_class(obj)}
    if kind.group == "" and kind.kind == "Namespace":
        return {"phase": "Active"}
    if kind.group == "" and kind.kind in ("PersistentVolume", "PersistentVolumeClaim"):
        return {"phase": "Pending"}
    if kind.group == "apiextensions.k8s.io" and kind.kind == "CustomResourceDefinition":
        stored = [v.get("name") for v in (obj.get("spec") or {}).get("versions") or []
                  if isinstance(v, dict) and v.get("storage")]
        return {"storedVersions": stored} if stored else {}
    return {} if kind.has_status() else None


def prepare_for_create(obj: dict, kind: Kind | str | None = None, *,
                       now: datetime.datetime | None = None) -> dict:
    """Set the system fields of an object about to be created (see the module table) and
    return it. ``kind`` is a :class:`~pilothouse.model.kinds.Kind` (or a built-in's name;
    None: from the object's apiVersion and kind); unknown kinds are treated as namespaced
    without a status subresource.

    Changes ``obj`` in place; call before validation, so a generated name is validated."""
    k = _lookup(kind, obj)
    meta = metadata(obj)
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    if k is not None and not k.namespaced:
        meta.pop("namespace", None)
    for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                "selfLink"):
        meta.pop(key, None)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now_rfc3339(now)
    meta["generation"] = 1
    if k is not None:
        if k.group == "batch" and k.kind == "Job":
            _generate_job_selector(obj)
        status = _create_status(k, obj)
        if status is not None:
            obj["status"] = status
    return obj


def _generate_job_selector(job: dict) -> None:
    # Kubernetes labels a Job's pods with its name and UID and selects them by UID, unless
    # the client asked for spec.manualSelector.
    spec = job.setdefault("spec", {})
    if not isinstance(spec, dict) or spec.get("manualSelector"):
        return
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    tlabels = metadata(template).setdefault("labels", {})
    for key in ("job-name", "batch.kubernetes.io/job-name"):
        tlabels.setdefault(key, name(job))
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        tlabels.setdefault(key, uid(job))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    selector.setdefault("matchLabels", {}).setdefault("batch.kubernetes.io/controller-uid",
                                                      uid(job))


_NOT_SPEC = ("metadata", "status", "apiVersion", "kind")


def _spec_of(obj: dict) -> dict:
    return {key: value for key, value in obj.items() if key not in _NOT_SPEC}


_ABSENT = object()


def prepare_for_update(new: dict, old: dict, kind: Kind | str | None = None, *,
                       subresource: str = "", new_is_private: bool = False) -> dict:
    """Carry the system fields of the stored object ``old`` into the incoming ``new`` (see
    the module table) and return ``new``, changed in place.

    With ``subresource="status"`` only ``status`` may change: ``new`` becomes a copy of
    ``old`` with ``new``'s status (and ``new``'s resourceVersion, the precondition). For the
    main resource of a kind with a status subresource, ``status`` is kept from ``old``.
    ``generation`` is bumped when anything outside ``metadata`` and ``status`` changed.

    Client attempts to change ``name``, ``namespace`` or ``uid`` are overwritten here; call
    :func:`pilothouse.model.validation.validate_object_meta_update` first to reject them.

    ``new_is_private``: ``new`` shares nothing with anything else (but values it holds as
    ``old`` has them, which it may share with ``old``), so for a
    status write its own values that are the same JSON as ``old``'s are kept instead of
    being replaced by copies of ``old``'s (the same result, without copying what a status
    patch left alone)."""
    k = _lookup(kind, old)
    new_meta, old_meta = metadata(new), old.get("metadata") or {}
    if subresource == "status":
        had_status, status = "status" in new, new.get("status")
        rv = new_meta.get("resourceVersion")
        if new_is_private:
            mine = dict(new)
            new.clear()
            for key, value in old.items():
                if key == "status":
                    new[key] = None  # its place: replaced or dropped below
                    continue
                own = mine.get(key, _ABSENT)
                new[key] = own if own is not _ABSENT and same_json(own, value) \
                    else copy_json(value)
        else:
            new.clear()
            new.update(copy_json(old))
        if had_status:
            new["status"] = status
        else:
            new.pop("status", None)
        if rv is not None:
            metadata(new)["resourceVersion"] = rv
        return new
    for key in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
                "deletionGracePeriodSeconds"):
        if key in old_meta:
            value = old_meta[key]  # strings and integers are their own copies
            new_meta[key] = value if type(value) in (str, int) else copy.deepcopy(value)
        else:
            new_meta.pop(key, None)
    gen = int(old_meta.get("generation") or 0)
    if _spec_of(new) != _spec_of(old):
        gen += 1
    new_meta["generation"] = gen
    if k is not None and k.has_status():
        if "status" in old:
            new["status"] = copy_json(old["status"])
        else:
            new.pop("status", None)
    return new


# --------------------------------------------------------------------------- finalizers


def finalizers(obj: dict) -> list[str]:
    return list(_get(obj, "finalizers", []))


def has_finalizer(obj: dict, finalizer: str) -> bool:
    return finalizer in _get(obj, "finalizers", [])


def add_finalizer(obj: dict, finalizer: str) -> bool:
    """Append ``finalizer`` unless present; True when the object changed."""
    current = metadata(obj).setdefault("finalizers", [])
    if finalizer in current:
        return False
    current.append(finalizer)
    return True


def remove_finalizer(obj: dict, finalizer: str) -> bool:
    """Remove every occurrence of ``finalizer``; True when the object changed. An emptied
    list is removed."""
    meta = metadata(obj)
    current = meta.get("finalizers") or []
    kept = [f for f in current if f != finalizer]
    if len(kept) == len(current):
        return False
    if kept:
        meta["finalizers"] = kept
    else:
        meta.pop("finalizers", None)
    return True


# ---------------------------------------------------------------------- owner references


def owner_references(obj: dict) -> list[dict]:
    return list(_get(obj, "ownerReferences", []))


def owner_reference(owner: dict, *, controller: bool = True,
                    block_owner_deletion: bool = True) -> dict:
    """An ownerReference pointing at ``owner`` (which must have apiVersion, kind, name and
    uid), as controllers put on what they create."""
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "name": name(owner), "uid": uid(owner), "controller": controller,
            "blockOwnerDeletion": block_owner_deletion}


def controller_ref(obj: dict) -> dict | None:
    """The ownerReference with ``controller: true``, or None."""
    for ref in _get(obj, "ownerReferences", []):
        if ref.get("controller"):
            return ref
    return None


def _owner_uid(owner: dict | str) -> str:
    return owner if isinstance(owner, str) else uid(owner)


def is_owned_by(obj: dict, owner: dict | str) -> bool:
    """True when any ownerReference of ``obj`` has the UID of ``owner`` (an object or a
    UID string)."""
    target = _owner_uid(owner)
    return bool(target) and any(r.get("uid") == target
                                for r in _get(obj, "ownerReferences", []))


def is_controlled_by(obj: dict, owner: dict | str) -> bool:
    """True when the controller reference of ``obj`` has the UID of ``owner``."""
    ref = controller_ref(obj)
    return ref is not None and bool(ref.get("uid")) and ref.get("uid") == _owner_uid(owner)


def add_owner_reference(obj: dict, ref: dict) -> None:
    """Add ``ref``, replacing an existing reference with the same UID."""
    refs = metadata(obj).setdefault("ownerReferences", [])
    for i, existing in enumerate(refs):
        if existing.get("uid") == ref.get("uid"):
            refs[i] = ref
            return
    refs.append(ref)


def remove_owner_reference(obj: dict, owner: dict | str) -> bool:
    """Remove references to ``owner`` (object or UID); True when the object changed."""
    meta = metadata(obj)
    target = _owner_uid(owner)
    refs = meta.get("ownerReferences") or []
    kept = [r for r in refs if r.get("uid") != target]
    if len(kept) == len(refs):
        return False
    if kept:
        meta["ownerReferences"] = kept
    else:
        meta.pop("ownerReferences", None)
    return True


# -------------------------------------------------------------------------------- deletion


def deletion_timestamp(obj: dict) -> datetime.datetime | None:
    """When the object's graceful deletion ends, or None when it is not being deleted."""
    ts = _get(obj, "deletionTimestamp", None)
    return parse_rfc3339(ts) if ts else None


def is_being_deleted(obj: dict) -> bool:
    """True once ``deletionTimestamp`` is set: the object waits for its finalizers or its
    grace period, and controllers should stop acting on it."""
    return bool(_get(obj, "deletionTimestamp", None))


def mark_for_deletion(obj: dict, grace_period_seconds: int = 0, *,
                      now: datetime.datetime | None = None) -> bool:
    """Start (or shorten) graceful deletion as the API server's DELETE does; True when the
    object changed and must be written back.

    The first call sets ``deletionTimestamp`` to now plus the grace period,
    ``deletionGracePeriodSeconds`` to it and bumps ``generation``. Later calls may only
    shorten a pending grace period (moving the timestamp earlier by the difference); a
    longer or equal one, or an object whose grace period is already 0 or unset, is left as
    is.
    """
    meta = metadata(obj)
    grace = max(0, int(grace_period_seconds))
    if meta.get("deletionTimestamp"):
        current = meta.get("deletionGracePeriodSeconds")
        if not current or grace >= current:
            return False
        start = parse_rfc3339(meta["deletionTimestamp"]) - datetime.timedelta(seconds=current)
        meta["deletionTimestamp"] = now_rfc3339(start + datetime.timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        return True
    meta["deletionTimestamp"] = now_rfc3339(_utc(now) + datetime.timedelta(seconds=grace))
    meta["deletionGracePeriodSeconds"] = grace
    if meta.get("generation"):
        meta["generation"] = int(meta["generation"]) + 1
    return True


# ------------------------------------------------------------------------------ pods


_QUANTITIES: dict[str, Quantity | None] = {}  # text -> Quantity (immutable), None: invalid


def _quantity_or_none(value: Any) -> Quantity | None:
    if type(value) is str and len(value) <= 253:
        if value in _QUANTITIES:
            return _QUANTITIES[value]
        try:
            q: Quantity | None = Quantity(value)
        except (QuantityError, TypeError):
            q = None
        if len(_QUANTITIES) >= 4096:
            _QUANTITIES.clear()
        _QUANTITIES[value] = q
        return q
    try:
        return Quantity(value)
    except (QuantityError, TypeError):
        return None


def _positive(resources: dict, key: str) -> dict[str, Quantity]:
    out = {}
    for res, value in ((resources or {}).get(key) or {}).items():
        if res not in ("cpu", "memory"):
            continue
        q = _quantity_or_none(value)
        if q is None:
            continue
        if q > 0:
            out[res] = q
    return out


#: QoS classes by the JSON of the containers' resources (pods of one template share it).
_QOS: dict[bytes, str] = {}


def pod_qos_class(pod: dict) -> str:
    """The pod's QoS class as the kubelet and the API server compute it from cpu and memory
    of its containers and init containers: ``Guaranteed`` (every container has cpu and
    memory limits and requests equal to them), ``BestEffort`` (no requests or limits at
    all) or ``Burstable``."""
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    key = exact_json([c.get("resources") if isinstance(c, dict) else c for c in containers])
    qos = _QOS.get(key) if key is not None else None
    if qos is None:
        qos = _qos_class(containers)
        if key is not None:
            if len(_QOS) >= 1024:
                _QOS.clear()
            _QOS[key] = qos
    return qos


def _qos_class(containers: list) -> str:
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    guaranteed = True
    for container in containers:
        res = container.get("resources") or {}
        lim = _positive(res, "limits")
        # a limit without a request implies an equal request (defaulting copies it), so the
        # answer does not depend on whether defaults were applied yet
        req = {**lim, **_positive(res, "requests")}
        for name_, q in req.items():
            requests[name_] = requests.get(name_, Quantity(0)) + q
        for name_, q in lim.items():
            limits[name_] = limits.get(name_, Quantity(0)) + q
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(r) == q for r, q in requests.items()) \
            and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"
