"""CustomResourceDefinitions: creating one serves a new kind.

The manager follows the CRD watch cache: for every served version of every CRD it registers a
:class:`~pilothouse.model.kinds.Kind` (discovery, routing, OpenAPI), adds the version's
``openAPIV3Schema`` to the schema set (unknown-field pruning, ``kubectl explain``), starts a
watch cache, and marks the CRD ``Established``. Objects are validated against the schema
(types, required, enums, bounds, patterns, lengths) and defaulted from its ``default``
values. Deleting a CRD deletes its objects, then stops serving the kind.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import TYPE_CHECKING, Any

from pilothouse.model import errors
from pilothouse.model.kinds import Kind, Subresource

if TYPE_CHECKING:
    from pilothouse.apiserver.server import APIServer

log = logging.getLogger(__name__)


def _kinds_of(crd: dict) -> list[tuple[Kind, dict | None]]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subs = version.get("subresources") or {}
        subresources: list = []
        if "status" in subs:
            subresources.append("status")
        if "scale" in subs:
            subresources.append(Subresource("scale", kind="Scale", group="autoscaling",
                                            version="v1", verbs=("get", "patch", "update")))
        kind = Kind(group=spec["group"], version=version["name"], kind=names["kind"],
                    plural=names["plural"], singular=names.get("singular", ""),
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    list_kind=names.get("listKind", ""), subresources=tuple(subresources))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        out.append((kind, schema))
    return out


class CRDManager:
    """Keeps the served custom kinds in step with the stored CRDs."""

    def __init__(self, server: "APIServer"):
        self.server = server
        self.served: dict[str, list[tuple[Kind, dict | None]]] = {}  # crd name -> kinds
        self.schemas: dict[tuple[str, str, str], dict] = {}
        self._lock = asyncio.Lock()

    @property
    def crd_kind(self) -> Kind:
        return self.server.registry.get("apiextensions.k8s.io", "v1", "CustomResourceDefinition")

    async def start(self) -> None:
        cache = await self.server.cache(self.crd_kind)
        for crd in cache.snapshot():
            await self.sync(crd)
        cache.listeners.append(self._on_event)

    def _on_event(self, event) -> None:
        asyncio.get_running_loop().create_task(
            self.remove(event.prev) if event.type == "DELETED" else self.sync(event.obj))

    def is_custom(self, kind: Kind) -> bool:
        return (kind.group, kind.version, kind.kind) in self.schemas

    async def sync(self, crd: dict) -> None:
        """Serve what ``crd`` defines (idempotent); a terminating CRD is cleaned up."""
        async with self._lock:
            name = crd["metadata"]["name"]
            if crd["metadata"].get("deletionTimestamp"):
                await self._cleanup(crd)
                return
            try:
                wanted = _kinds_of(crd)
            except (KeyError, TypeError) as exc:
                log.warning("CRD %s cannot be served: %s", name, exc)
                return
            self._unregister(name, keep={(k.group, k.version, k.plural) for k, _ in wanted})
            for kind, schema in wanted:
                registry = self.server.registry
                existing = registry.get_resource(kind.group, kind.version, kind.plural)
                if existing is not None and existing != kind:
                    registry.unregister(kind.group, kind.version, kind.plural)
                    existing = None
                if existing is None:
                    registry.register(kind)
                self.server.schemas.add_custom(kind.group, kind.version, kind.kind, schema)
                self.schemas[(kind.group, kind.version, kind.kind)] = schema or {}
            self.served[name] = wanted
            self.server.openapi.invalidate()
            for kind, _ in wanted:
                await self.server.cache(kind)
            await self._mark_established(crd)

    def _unregister(self, name: str, keep: set = frozenset()) -> None:
        for kind, _ in self.served.pop(name, []):
            if (kind.group, kind.version, kind.plural) in keep:
                continue
            try:
                self.server.registry.unregister(kind.group, kind.version, kind.plural)
            except (KeyError, ValueError):
                pass
            self.server.schemas.remove_custom(kind.group, kind.version, kind.kind)
            self.schemas.pop((kind.group, kind.version, kind.kind), None)
        self.server.openapi.invalidate()

    async def remove(self, crd: dict | None) -> None:
        if crd is None:
            return
        async with self._lock:
            self._unregister(crd["metadata"]["name"])

    async def _mark_established(self, crd: dict) -> None:
        status = crd.get("status") or {}
        conds = {c.get("type"): c for c in status.get("conditions") or []}
        if conds.get("Established", {}).get("status") == "True":
            return
        now = self.server.now()
        new = copy.deepcopy(crd)
        new["status"] = {
            "acceptedNames": (crd.get("spec") or {}).get("names", {}),
            "storedVersions": [v["name"] for v in crd["spec"].get("versions", [])
                               if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now}]}
        try:
            await self.server.storage(self.crd_kind).update(
                new, int(crd["metadata"]["resourceVersion"]))
        except errors.StatusError as exc:  # a concurrent write: the next event retries
            log.debug("CRD %s status not updated: %s", crd["metadata"]["name"], exc)

    async def _cleanup(self, crd: dict) -> None:
        """Delete every object of the CRD's kinds, then drop its finalizer."""
        name = crd["metadata"]["name"]
        for kind, _ in self.served.get(name, []) or _kinds_of(crd):
            storage = self.server.storage(kind)
            result = await storage.list()
            for kv in result.items:
                try:
                    await self.server.store.delete(kv.key)
                except Exception:  # already gone
                    pass
        self._unregister(name)
        new = copy.deepcopy(crd)
        fins = [f for f in new["metadata"].get("finalizers") or []
                if f != "customresourcecleanup.apiextensions.k8s.io"]
        new["metadata"]["finalizers"] = fins
        storage = self.server.storage(self.crd_kind)
        try:
            if not fins:
                await storage.delete("", name, int(crd["metadata"]["resourceVersion"]))
            else:
                await storage.update(new, int(crd["metadata"]["resourceVersion"]))
        except errors.StatusError as exc:
            log.debug("CRD %s cleanup: %s", name, exc)

    # -- per-object work ----------------------------------------------------------------------
    def default(self, kind: Kind, obj: dict) -> None:
        schema = self.schemas.get((kind.group, kind.version, kind.kind))
        if schema:
            _apply_defaults(schema, obj)

    def validate(self, kind: Kind, obj: dict) -> list[errors.FieldError]:
        schema = self.schemas.get((kind.group, kind.version, kind.kind))
        if not schema:
            return []
        problems: list[errors.FieldError] = []
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        props = {k: v for k, v in (schema.get("properties") or {}).items()
                 if k not in ("apiVersion", "kind", "metadata")}
        _validate({**schema, "properties": props}, body, "", problems)
        return problems


def _apply_defaults(schema: dict, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _apply_defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _apply_defaults(schema["items"], item)


def _validate(schema: dict, value: Any, path: str, out: list) -> None:
    if value is None:
        if not schema.get("nullable") and path:
            out.append(errors.FieldError.invalid(path, None, "must not be null"))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            out.append(errors.FieldError(errors.FieldErrorType.TYPE_INVALID, path, value,
                                         "must be an integer or a string"))
        return
    t = schema.get("type")
    checks = {"string": lambda v: isinstance(v, str),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool),
              "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list)}
    if t in checks and not checks[t](value):
        out.append(errors.FieldError(errors.FieldErrorType.TYPE_INVALID, path, value,
                                     f"must be of type {t}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        out.append(errors.FieldError.not_supported(path, value, [str(e) for e in schema["enum"]]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and (value < schema["minimum"] or (
                schema.get("exclusiveMinimum") is True and value == schema["minimum"])):
            out.append(errors.FieldError.invalid(
                path, value, f"should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and (value > schema["maximum"] or (
                schema.get("exclusiveMaximum") is True and value == schema["maximum"])):
            out.append(errors.FieldError.invalid(
                path, value, f"should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(errors.FieldError(errors.FieldErrorType.TOO_LONG, path, value,
                                         f"may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(errors.FieldError.invalid(
                path, value, f"should be at least {schema['minLength']} chars long"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(errors.FieldError.invalid(
                path, value, f"should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(errors.FieldError(errors.FieldErrorType.TOO_MANY, path, len(value),
                                         f"must have at most {schema['maxItems']} items"))
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(errors.FieldError.invalid(
                path, value, f"should have at least {schema['minItems']} items"))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _validate(schema["items"], item, f"{path}[{i}]", out)
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                out.append(errors.FieldError.required(f"{path}.{name}" if path else name))
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if key in props:
                _validate(props[key], sub, child, out)
            elif isinstance(extra, dict):
                _validate(extra, sub, child, out)
