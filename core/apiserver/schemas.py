"""Schemas of the served kinds: field validation, unknown fields, and the OpenAPI v3 documents.

Built-in kinds use Kubernetes' published OpenAPI definitions as shipped (in JSON-schema form)
by the ``kubernetes-validate`` distribution, read at run time from the installed package: the
descriptions ``kubectl explain`` prints, the types checked on write, and the list-map keys.
Custom resources add the ``openAPIV3Schema`` of their CRD version.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import pathlib
import re
from typing import Any

from pilothouse.model import errors
from pilothouse.model._jsoncopy import same_json

#: The Kubernetes minor version whose schemas we serve (also reported by /version).
KUBE_MINOR = 32
_REF = "#/$defs/"


@functools.lru_cache(maxsize=1)
def builtin_definitions() -> dict[str, dict]:
    """Kubernetes' definitions by name (``io.k8s.api.apps.v1.Deployment``)."""
    import kubernetes_validate
    root = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v1.{KUBE_MINOR}.0-local" / "_definitions.json"
    if not path.exists():
        raise RuntimeError(f"kubernetes-validate lacks schemas for 1.{KUBE_MINOR} ({path}); "
                           f"pip install 'kubernetes-validate>=1.{KUBE_MINOR}'")
    return json.loads(path.read_text())["$defs"]


def _resolve(defs: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = defs[schema["$ref"][len(_REF):]]
    return schema


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Node:
    """One schema as the walk needs it: its ``$ref`` resolved, its type set computed once."""

    __slots__ = ("raw", "skip", "expected", "want", "number_ok", "preserve", "props", "extra",
                 "extra_dict", "extra_true", "has_items", "items", "kids", "extra_node",
                 "items_node")

    def __init__(self, raw: Any, schema: dict):
        self.raw = raw  # keeps id(raw), the cache key, from being reused
        self.skip = bool(schema.get("x-kubernetes-int-or-string")) or "oneOf" in schema \
            or "anyOf" in schema
        expected = _types(schema) - {"null"}
        self.expected = frozenset(expected)
        self.want = sorted(expected)[0] if expected else ""
        self.number_ok = "number" in expected
        self.preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        self.props = schema.get("properties")
        self.extra = schema.get("additionalProperties")
        self.extra_dict = isinstance(self.extra, dict)
        self.extra_true = self.extra is True
        self.has_items = "items" in schema
        self.items = schema.get("items")
        # the walk's memo of the nodes below this one: property name -> node of its schema
        self.kids: dict[str, _Node] = {}
        self.extra_node: _Node | None = None
        self.items_node: _Node | None = None


_SCALARS = (str, int, float, bool)
_LEAF_TYPES = {str: "string", int: "integer", bool: "boolean"}


def _display(parts: tuple) -> str:
    """The display path of ``parts`` as the walk writes it: ``spec.containers[0].image``."""
    path = ""
    for part in parts:
        if type(part) is int:
            path = f"{path}[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


class SchemaSet:
    """Schemas by group/version/kind: built-ins plus those added for custom resources."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = dict(builtin_definitions())
        self._nodes: dict[int, _Node] = {}  # by id() of the schema as written (before $ref)
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        self._custom: set[str] = set()  # definitions of custom resources (they may change)
        for name, schema in self.defs.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", ()):
                self.by_gvk.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)

    def add_custom(self, group: str, version: str, kind: str, schema: dict | None) -> str:
        """Register a custom resource's ``openAPIV3Schema`` (None: accept anything). Returns
        the definition name."""
        name = f"{'.'.join(reversed(group.split('.')))}.{version}.{kind}"
        body = copy.deepcopy(schema) if schema else {"type": "object",
                                                     "x-kubernetes-preserve-unknown-fields": True}
        props = body.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"$ref": _REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
        body["x-kubernetes-group-version-kind"] = [{"group": group, "version": version,
                                                    "kind": kind}]
        self.defs[name] = body
        self.by_gvk[(group, version, kind)] = name
        self._custom.add(name)
        self._nodes.clear()  # a $ref may now lead elsewhere
        return name

    def remove_custom(self, group: str, version: str, kind: str) -> None:
        name = self.by_gvk.pop((group, version, kind), None)
        if name:
            self.defs.pop(name, None)
            self._custom.discard(name)
        self._nodes.clear()

    def schema_for(self, group: str, version: str, kind: str) -> dict | None:
        name = self.by_gvk.get((group, version, kind))
        return self.defs[name] if name else None

    def check(self, group: str, version: str, kind: str, obj: dict,
              ignore: tuple[str, ...] = ("status",), unchanged: dict | None = None
              ) -> tuple[list[tuple[str, tuple]], list[errors.FieldError]]:
        """Walk ``obj`` against its schema. Returns (unknown fields as ``(display path,
        path parts)``, type errors). Top-level fields in ``ignore`` are not checked.

        ``unchanged`` is the stored object ``obj`` replaces (a patch's starting point): a
        top-level field that is the same JSON there (types included) is not walked again,
        as it passed this check when it was written. Only for built-in kinds, whose schemas
        never change; a custom resource's schema may have changed since the write."""
        name = self.by_gvk.get((group, version, kind))
        schema = self.defs[name] if name else None
        unknown: list[tuple[str, tuple]] = []
        problems: list[errors.FieldError] = []
        if schema is not None and obj is not None:
            node = self._node(schema)
            if unchanged and type(obj) is dict and name not in self._custom:
                ignore = (*ignore, *(key for key, value in obj.items()
                                     if key not in ignore and type(value) in (dict, list)
                                     and same_json(value, unchanged.get(key))))
            if not node.skip:
                self._walk_node(node, obj, (), unknown, problems, ignore)
        return unknown, problems

    def _node(self, schema: Any) -> _Node:
        node = self._nodes.get(id(schema))
        if node is None:
            node = self._nodes[id(schema)] = _Node(schema, _resolve(self.defs, schema))
        return node

    def _walk_node(self, node: _Node, value: Any, parts: tuple, unknown: list, problems: list,
                   ignore: tuple[str, ...] = ()) -> None:
        """The walk of :meth:`_walk_slow` with the display path made only for what it
        reports, and the child nodes remembered by property name (``value`` is not None and
        ``node`` is not skipped)."""
        actual = _json_type(value)
        expected = node.expected
        if expected and actual not in expected and not (actual == "integer" and node.number_ok):
            problems.append(errors.FieldError(errors.FieldErrorType.TYPE_INVALID,
                                              _display(parts), value,
                                              f"must be of type {node.want}"))
            return
        if actual == "object":
            if node.preserve:
                return
            props = node.props
            kids = node.kids
            for key, sub in value.items():
                child = kids.get(key) if type(key) is str else None
                if child is None:
                    if props is not None and key in props:
                        if not parts and key in ignore:
                            continue
                        child = self._node(props[key])
                        if type(key) is str:
                            kids[key] = child
                    elif node.extra_dict:
                        child = node.extra_node
                        if child is None:
                            child = node.extra_node = self._node(node.extra)
                    elif props is not None and not node.extra_true:
                        unknown.append((_display(parts + (key,)), parts + (key,)))
                        continue
                    else:
                        continue
                elif not parts and key in ignore:
                    continue
                if sub is None or child.skip:
                    continue
                kind = _LEAF_TYPES.get(type(sub))
                if kind is not None or type(sub) is float:  # a leaf: only its type to check
                    if child.expected:
                        if kind is None:
                            kind = "integer" if sub.is_integer() else "number"
                        if kind not in child.expected and not (kind == "integer"
                                                               and child.number_ok):
                            problems.append(errors.FieldError(
                                errors.FieldErrorType.TYPE_INVALID, _display(parts + (key,)),
                                sub, f"must be of type {child.want}"))
                    continue
                self._walk_node(child, sub, parts + (key,), unknown, problems)
        elif actual == "array" and node.has_items:
            child = node.items_node
            if child is None:
                child = node.items_node = self._node(node.items)
            if child.skip:
                return
            for i, item in enumerate(value):
                if item is not None:
                    self._walk_node(child, item, parts + (i,), unknown, problems)

    def _walk_slow(self, node: _Node, value: Any, path: str, parts: tuple, unknown: list,
                   problems: list, ignore: tuple[str, ...] = ()) -> None:
        """The general walk, building every display path as it goes: what :meth:`_walk_node`
        must answer (the tests compare them)."""
        if value is None or node.skip:
            return
        actual = _json_type(value)
        expected = node.expected
        if expected and actual not in expected and not (actual == "integer" and node.number_ok):
            problems.append(errors.FieldError(errors.FieldErrorType.TYPE_INVALID, path, value,
                                              f"must be of type {node.want}"))
            return
        if actual == "object":
            if node.preserve:
                return
            props = node.props
            for key, sub in value.items():
                if props is not None and key in props:
                    if path == "" and key in ignore:
                        continue
                    child = self._node(props[key])
                elif node.extra_dict:
                    child = self._node(node.extra)
                elif props is not None and not node.extra_true:
                    unknown.append((f"{path}.{key}" if path else key, parts + (key,)))
                    continue
                else:
                    continue
                if sub is None or child.skip:
                    continue
                if type(sub) in _SCALARS:  # a leaf: only its type to check, inline
                    if child.expected:
                        kind = _json_type(sub)
                        if kind not in child.expected and not (kind == "integer"
                                                               and child.number_ok):
                            problems.append(errors.FieldError(
                                errors.FieldErrorType.TYPE_INVALID,
                                f"{path}.{key}" if path else key, sub,
                                f"must be of type {child.want}"))
                    continue
                self._walk_slow(child, sub, f"{path}.{key}" if path else key, parts + (key,),
                                unknown, problems)
        elif actual == "array" and node.has_items:
            child = self._node(node.items)
            for i, item in enumerate(value):
                self._walk_slow(child, item, f"{path}[{i}]", parts + (i,), unknown, problems)

    # -- OpenAPI v3 ------------------------------------------------------------------------
    def openapi_document(self, group: str, version: str, kinds: list) -> dict:
        """The OpenAPI 3.0 document of one group version: paths for every kind (the PATCH
        operations list ``fieldValidation``, which makes kubectl validate server-side) and
        the transitive closure of their schemas."""
        schemas: dict[str, dict] = {}
        todo = []
        paths: dict[str, dict] = {}
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        for kind in kinds:
            name = self.by_gvk.get((group, version, kind.kind))
            if name is None:
                continue
            todo.append(name)
            gvk = {"group": group, "version": version, "kind": kind.kind}
            ref = {"$ref": f"#/components/schemas/{name}"}
            body = {"content": {"application/json": {"schema": ref}}}
            ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
            params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
                       "description": "Ignore, Warn or Strict: what to do with unknown or "
                                      "duplicate fields"},
                      {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                      {"name": "dryRun", "in": "query", "schema": {"type": "string"}}]
            ns = "/namespaces/{namespace}" if kind.namespaced else ""
            op = {"x-kubernetes-group-version-kind": gvk}
            paths[f"{prefix}{ns}/{kind.plural}"] = {
                "get": {**op, "operationId": f"list{kind.kind}", "responses": ok,
                        "x-kubernetes-action": "list"},
                "post": {**op, "operationId": f"create{kind.kind}", "requestBody": body,
                         "parameters": params, "responses": ok, "x-kubernetes-action": "post"}}
            paths[f"{prefix}{ns}/{kind.plural}/{{name}}"] = {
                "get": {**op, "operationId": f"read{kind.kind}", "responses": ok,
                        "x-kubernetes-action": "get"},
                "put": {**op, "operationId": f"replace{kind.kind}", "requestBody": body,
                        "parameters": params, "responses": ok, "x-kubernetes-action": "put"},
                "patch": {**op, "operationId": f"patch{kind.kind}", "parameters": params,
                          "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in (
                              "application/json-patch+json", "application/merge-patch+json",
                              "application/strategic-merge-patch+json",
                              "application/apply-patch+yaml")}},
                          "responses": ok, "x-kubernetes-action": "patch"},
                "delete": {**op, "operationId": f"delete{kind.kind}", "responses": ok,
                           "x-kubernetes-action": "delete"}}
        while todo:
            name = todo.pop()
            if name in schemas:
                continue
            converted = _to_openapi(self.defs[name])
            schemas[name] = converted
            todo.extend(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(converted)))
        return {"openapi": "3.0.0",
                "info": {"title": "Pilothouse", "version": f"v1.{KUBE_MINOR}.0"},
                "paths": paths, "components": {"schemas": schemas}}


def _to_openapi(schema: Any) -> Any:
    """JSON-schema flavour → OpenAPI 3.0: ``$defs`` refs become component refs, nullable type
    lists become a single type, string-or-number unions become int-or-string markers."""
    if not isinstance(schema, dict):
        return schema
    out: dict = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            out["allOf"] = [{"$ref": "#/components/schemas/" + value[len(_REF):]}]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else value
        elif key == "oneOf" and isinstance(value, list) and all(
                isinstance(v, dict) and _types(v) - {"null"} for v in value):
            out["x-kubernetes-int-or-string"] = True
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _to_openapi(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _to_openapi(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_to_openapi(v) for v in value]
        elif key in ("$schema", "$id"):
            continue
        else:
            out[key] = value
    return out


def document_hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
