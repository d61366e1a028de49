"""Patch machinery for PATCH requests: JSON merge patch, JSON patch, strategic merge patch.

Every function here is pure: it takes JSON-shaped Python values (dict, list, str, int,
float, bool, None), never mutates its arguments, and returns a new value. Failures raise
:class:`PatchError`, which the API server turns into a Kubernetes ``Status``.

- ``application/merge-patch+json``  -> :func:`apply_merge_patch` (RFC 7386)
- ``application/json-patch+json``   -> :func:`apply_json_patch` (RFC 6902)
- ``application/strategic-merge-patch+json`` -> :func:`apply_strategic_merge_patch`
  (Kubernetes' strategic merge patch, with the per-field list semantics of
  :mod:`pilothouse.apiserver.patch_strategies`)
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any, Mapping

from pilothouse.apiserver.patch_strategies import EMPTY, Field
from pilothouse.model._jsoncopy import copy_json

__all__ = [
    "PatchError",
    "apply_merge_patch",
    "apply_json_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
    "json_equal",
    "parse_json_pointer",
]


class PatchError(Exception):
    """A patch that is malformed or cannot be applied to the object.

    ``message`` is meant for the user (it becomes the Status message), ``field`` names
    the part of the patch at fault (a JSON pointer such as ``/spec/replicas``, or an
    op position such as ``[2].path``) or is None. ``code`` is the HTTP status the API
    server should answer: 400 for a patch document that is malformed, 422 for a
    well-formed patch that does not apply (a failed ``test``, a missing path, ...).
    """

    def __init__(self, message: str, field: str | None = None, code: int = 422):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code

    def __repr__(self) -> str:
        return f"PatchError({self.message!r}, field={self.field!r}, code={self.code})"


# --------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: 1 == 1.0, but True != 1 and dict key order is ignored."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return a == b


def _deepcopy(value: Any) -> Any:
    if type(value) is dict or type(value) is list:
        return copy_json(value)
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)
# --------------------------------------------------------------------------------------


def apply_merge_patch(obj: Any, patch: Any, *, share: bool = False) -> Any:
    """Apply an RFC 7386 JSON merge patch to ``obj`` and return the result.

    A patch that is not an object replaces the target; ``null`` members delete keys;
    object members are merged recursively; lists are replaced whole.

    The result shares nothing with ``obj`` or ``patch``, unless ``share``: then the objects
    the patch changes (and the result itself and its ``metadata``) are new, and every value
    the patch leaves alone is ``obj``'s own, not a copy (for an ``obj`` nobody changes).
    """
    if not isinstance(patch, dict):
        return _deepcopy(patch)
    if not isinstance(obj, dict):
        result: dict = {}
    elif share:
        result = dict(obj)
        if type(result.get("metadata")) is dict:
            result["metadata"] = dict(result["metadata"])
        _merge_shared(result, patch)
        return result
    else:
        result = _deepcopy(obj)
    _merge_into(result, patch)
    return result


def _merge_shared(target: dict, patch: dict) -> None:
    """:func:`_merge_into` for a ``target`` whose values may be shared: an object the patch
    goes into is copied (one level) before it changes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            current = target[key] = dict(current) if isinstance(current, dict) else {}
            _merge_shared(current, value)
        else:
            target[key] = _deepcopy(value)


def _merge_into(target: dict, patch: dict) -> None:
    """Merge ``patch`` into ``target``, a copy of our own (changed in place)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = target[key] = {}
            _merge_into(current, value)
        else:
            target[key] = _deepcopy(value)


def create_merge_patch(original: Any, modified: Any) -> Any:
    """Return a merge patch that turns ``original`` into ``modified`` (the inverse of
    :func:`apply_merge_patch` for values without nulls)."""
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return _deepcopy(modified)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, value in modified.items():
        if key not in original:
            patch[key] = _deepcopy(value)
        elif not json_equal(original[key], value):
            if isinstance(original[key], dict) and isinstance(value, dict):
                patch[key] = create_merge_patch(original[key], value)
            else:
                patch[key] = _deepcopy(value)
    return patch


# --------------------------------------------------------------------------------------
# JSON patch (RFC 6902)
# --------------------------------------------------------------------------------------

_OPS = ("add", "remove", "replace", "move", "copy", "test")


def parse_json_pointer(pointer: Any) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped reference tokens.

    ``""`` is the whole document; ``"/a~1b/~0c"`` is ``["a/b", "~c"]``.
    Raises ValueError for a malformed pointer.
    """
    if not isinstance(pointer, str):
        raise ValueError(f"JSON pointer must be a string, not {type(pointer).__name__}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    tokens = []
    for raw in pointer[1:].split("/"):
        i = raw.find("~")
        while i != -1:
            if i + 1 >= len(raw) or raw[i + 1] not in "01":
                raise ValueError(f"JSON pointer {pointer!r} has an invalid escape in {raw!r}")
            i = raw.find("~", i + 2)
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _array_index(token: str, length: int, *, allow_end: bool) -> int:
    """Turn a reference token into a list index; ``allow_end`` admits len and '-'."""
    if token == "-":
        if allow_end:
            return length
        raise ValueError("index '-' refers to a nonexistent element")
    if not token.isdigit() or not token.isascii() or (len(token) > 1 and token[0] == "0"):
        raise ValueError(f"{token!r} is not a valid array index")
    index = int(token)
    limit = length if allow_end else length - 1
    if index > limit:
        raise ValueError(f"index {index} is out of range for an array of length {length}")
    return index


def _resolve_parent(doc: Any, tokens: list[str]) -> Any:
    """Return the container that holds the last token of ``tokens``."""
    node = doc
    for depth, token in enumerate(tokens[:-1]):
        if isinstance(node, dict):
            if token not in node:
                raise LookupError(f"missing value at {_pointer(tokens[: depth + 1])}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), allow_end=False)]
        else:
            raise LookupError(f"{_pointer(tokens[:depth])} is not an object or array")
    if not isinstance(node, (dict, list)):
        raise LookupError(f"{_pointer(tokens[:-1]) or 'the document root'} is not an object or array")
    return node


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise LookupError(f"missing value at {_pointer(tokens)}")
        return parent[last]
    return parent[_array_index(last, len(parent), allow_end=False)]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_array_index(last, len(parent), allow_end=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise LookupError("cannot remove the document root")
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise LookupError(f"missing value at {_pointer(tokens)}")
        return doc, parent.pop(last)
    return doc, parent.pop(_array_index(last, len(parent), allow_end=False))


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise LookupError(f"missing value at {_pointer(tokens)}")
        parent[last] = value
    else:
        parent[_array_index(last, len(parent), allow_end=False)] = value
    return doc


def apply_json_patch(obj: Any, ops: Any, *, max_operations: int | None = 10000) -> Any:
    """Apply an RFC 6902 JSON patch (a list of operations) to ``obj``.

    Supports add, remove, replace, move, copy and test with RFC 6901 pointers
    (``~0``/``~1`` escapes, ``-`` for the end of an array). The patch is atomic: on the
    first failing operation a :class:`PatchError` names the op's position and path and
    nothing is returned. A malformed document (not a list, an op that is not an object,
    an unknown op, a missing member) gives code 400; an op that does not apply gives 422.
    ``max_operations`` mirrors the API server's limit on the number of operations.
    """
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations", code=400)
    if max_operations is not None and len(ops) > max_operations:
        raise PatchError(
            f"the allowed maximum operations in a JSON patch is {max_operations}, "
            f"got {len(ops)}",
            code=400,
        )
    doc = _deepcopy(obj)
    for index, op in enumerate(ops):
        doc = _apply_one(doc, index, op)
    return doc


def _member(op: dict, name: str, index: int) -> Any:
    if name not in op:
        raise PatchError(
            f"JSON patch operation {index} ({op.get('op')!r}) is missing {name!r}",
            field=f"[{index}].{name}",
            code=400,
        )
    return op[name]


def _apply_one(doc: Any, index: int, op: Any) -> Any:
    if not isinstance(op, dict):
        raise PatchError(f"JSON patch operation {index} is not an object", field=f"[{index}]", code=400)
    name = _member(op, "op", index)
    if name not in _OPS:
        raise PatchError(
            f"JSON patch operation {index} has unknown op {name!r} "
            f"(expected one of {', '.join(_OPS)})",
            field=f"[{index}].op",
            code=400,
        )
    path = _member(op, "path", index)
    try:
        tokens = parse_json_pointer(path)
    except ValueError as exc:
        raise PatchError(f"JSON patch operation {index} ({name}): {exc}", field=str(path), code=400)
    from_tokens: list[str] = []
    if name in ("move", "copy"):
        source = _member(op, "from", index)
        try:
            from_tokens = parse_json_pointer(source)
        except ValueError as exc:
            raise PatchError(f"JSON patch operation {index} ({name}): {exc}", field=str(source), code=400)
    if name in ("add", "replace", "test"):
        value = _deepcopy(_member(op, "value", index))

    try:
        if name == "add":
            return _add(doc, tokens, value)
        if name == "remove":
            return _remove(doc, tokens)[0]
        if name == "replace":
            return _replace(doc, tokens, value)
        if name == "move":
            if tokens[: len(from_tokens)] == from_tokens and len(tokens) > len(from_tokens):
                raise LookupError(f"cannot move {op['from']} into its own child {path}")
            if tokens == from_tokens:
                _get(doc, from_tokens)
                return doc
            doc, moved = _remove(doc, from_tokens)
            return _add(doc, tokens, moved)
        if name == "copy":
            return _add(doc, tokens, _deepcopy(_get(doc, from_tokens)))
        # test
        current = _get(doc, tokens)
        if not json_equal(current, value):
            raise LookupError(
                f"testing value {path} failed: expected {json.dumps(value)}, "
                f"found {json.dumps(current)}"
            )
        return doc
    except (LookupError, ValueError) as exc:
        raise PatchError(
            f"JSON patch operation {index} ({name} {path}) failed: {exc}", field=path
        ) from None


# --------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------
#
# The semantics follow Kubernetes' apimachinery strategicpatch (the "apply a patch" half):
# maps merge recursively, ``null`` deletes, lists follow the field's strategy (replace by
# default, merge by key for lists of maps, union for lists of scalars), and the directives
# ``$patch``, ``$retainKeys``, ``$setElementOrder/<list>`` and
# ``$deleteFromPrimitiveList/<list>`` are honoured. Merged lists get Kubernetes' order:
# the patch's (or ``$setElementOrder``'s) order for patched items, live order for the
# others, interleaved by live order where both are known; a new item with no
# ``$setElementOrder`` lands before the untouched live items, as in Kubernetes.
#
# Deliberate differences, all on patches kubectl never sends: ``$patch: merge`` on a map is
# accepted as the default (Kubernetes rejects it); ``$patch: delete`` on a nested map
# removes the key (Kubernetes leaves ``{}``, which typed decoding then drops); a value
# added where the live object has none is cleaned of directives and nulls (Kubernetes
# stores it raw and relies on typed decoding to drop unknown ``$`` keys).

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"
_DELETE = object()  # sentinel: "$patch: delete" on a map


def apply_strategic_merge_patch(obj: Any, patch: Any, schema: Field | Mapping[str, Field] | None = None) -> Any:
    """Apply a Kubernetes strategic merge patch to ``obj``.

    ``schema`` is the strategy tree of the object's kind (see
    :func:`pilothouse.apiserver.patch_strategies.strategy_for`), a mapping of top-level
    field names to :class:`Field`, or None (every list replaced, every map merged, as for
    a kind with no patch tags). Raises :class:`PatchError` for a malformed patch (400) or
    one that cannot be applied (422).
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", code=400)
    node = _as_node(schema)
    original = _deepcopy(obj) if isinstance(obj, dict) else {}
    result = _smp_map(original, _deepcopy(patch), node, "")
    return {} if result is _DELETE else result


def _as_node(schema: Any) -> Field:
    if schema is None:
        return EMPTY
    if isinstance(schema, Field):
        return schema
    if isinstance(schema, Mapping):
        return Field(fields=MappingProxyType(dict(schema)))
    raise TypeError(f"schema must be a Field or a mapping, not {type(schema).__name__}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _scalar_key(value: Any) -> Any:
    """Hashable identity of a JSON value: 1 == 1.0, True != 1."""
    if isinstance(value, bool) or value is None:
        return ("c", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True))


def _smp_map(original: dict, patch: dict, node: Field, path: str) -> Any:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return _smp_map({}, patch, node, path)
        if directive == "delete":
            return _DELETE
        if directive != "merge":
            raise PatchError(f"unknown patch type: {directive!r} in map at {path or '<root>'}",
                             field=path or None, code=400)

    if _RETAIN_KEYS in patch:
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError(f"invalid patch format of retainKeys at {path or '<root>'}: "
                             "$retainKeys must be a list of strings", field=path or None, code=400)
        keep = set(retain)
        for key, value in patch.items():
            if value is None or key.startswith("$"):
                continue
            if key not in keep:
                raise PatchError(
                    f"patch content doesn't match retainKeys list: {_join(path, key)} is not in {retain}",
                    field=_join(path, key),
                )
        for key in [k for k in original if k not in keep]:
            del original[key]

    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        _apply_set_element_order(original, patch, key, node, path)

    for key in [k for k in patch if k.startswith(_DELETE_PRIMITIVES)]:
        to_delete = patch.pop(key)
        name = key[len(_DELETE_PRIMITIVES):]
        if not isinstance(to_delete, list) or any(isinstance(v, (dict, list)) for v in to_delete):
            raise PatchError(f"invalid patch format of primitive list at {_join(path, key)}: "
                             "it must be a list of scalars", field=_join(path, name), code=400)
        current = original.get(name)
        if isinstance(current, list):
            doomed = {_scalar_key(v) for v in to_delete}
            original[name] = [v for v in current
                              if isinstance(v, (dict, list)) or _scalar_key(v) not in doomed]

    for key, value in patch.items():
        child = node.child(key)
        child_path = _join(path, key)
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if key not in original or current is None or _kind(current) != _kind(value):
            fresh = _fresh(value, child, child_path)
            if fresh is _DELETE:
                original.pop(key, None)
            else:
                original[key] = fresh
            continue
        if isinstance(value, dict):
            merged = _fresh(value, child, child_path) if child.replaces else _smp_map(current, value, child, child_path)
            if merged is _DELETE:
                del original[key]
            else:
                original[key] = merged
        elif isinstance(value, list):
            if child.merges_list:
                original[key] = _smp_list(current, value, child, child_path)
            else:
                original[key] = value
        else:
            original[key] = value
    return original


def _fresh(value: Any, node: Field, path: str) -> Any:
    """A patch value with nothing to merge into: directives applied to empty, nulls dropped."""
    if isinstance(value, dict):
        return _smp_map({}, value, node, path)
    if isinstance(value, list) and node.merges_list:
        return _smp_list([], value, node, path)
    return value


def _element_kind(items: list, path: str) -> str | None:
    kinds = {_kind(v) for v in items}
    if "list" in kinds:
        raise PatchError(f"lists of lists are not supported (at {path})", field=path)
    if len(kinds) > 1:
        raise PatchError(f"list at {path} mixes maps and scalars", field=path)
    return kinds.pop() if kinds else None


def _merge_value(item: dict, key: str, path: str) -> Any:
    if key not in item:
        raise PatchError(f"map in list at {path} does not contain declared merge key {key!r}: "
                         f"{json.dumps(item, sort_keys=True)}", field=path)
    return _scalar_key(item[key])


def _find(items: list, key: str | None, probe: Any) -> int:
    """Index of ``probe`` in ``items`` (by merge key value for maps), or -1."""
    if key is None:
        wanted = _scalar_key(probe)
        for i, v in enumerate(items):
            if not isinstance(v, (dict, list)) and _scalar_key(v) == wanted:
                return i
        return -1
    if not isinstance(probe, dict) or key not in probe:
        return -1
    wanted = _scalar_key(probe[key])
    for i, v in enumerate(items):
        if isinstance(v, dict) and key in v and _scalar_key(v[key]) == wanted:
            return i
    return -1


def _smp_list(original: list, patch: list, node: Field, path: str) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original + patch, path)
    if kind != "map":
        merged: list = []
        seen: set = set()
        for v in original + patch:
            k = _scalar_key(v)
            if k not in seen:
                seen.add(k)
                merged.append(v)
        return _normalize_order(merged, patch, original, None)

    key = node.patch_merge_key
    if not key:
        raise PatchError(f"cannot merge lists without merge key for {path}", field=path)
    # Items carrying "$patch" first: delete by key, or replace the whole list.
    plain: list = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            wanted = _merge_value(item, key, path)
            original = [o for o in original
                        if not (isinstance(o, dict) and key in o and _scalar_key(o[key]) == wanted)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError(f"merging lists cannot yet be specified in the patch (at {path})", field=path)
        else:
            raise PatchError(f"unknown patch type: {directive!r} in list at {path}", field=path, code=400)
    if replace:
        original = [_fresh(item, node, path) for item in plain]
        plain = []

    merged = list(original)
    for item in plain:
        _merge_value(item, key, path)
        index = _find(merged, key, item)
        if index >= 0:
            result = _smp_map(merged[index], item, node, path)
            if result is _DELETE:
                del merged[index]
            else:
                merged[index] = result
        else:
            result = _smp_map({}, item, node, path)
            if result is not _DELETE:
                merged.append(result)
    return _normalize_order(merged, plain, original, key)


def _normalize_order(merged: list, patch_order: list, server_order: list, key: str | None) -> list:
    """Kubernetes' ordering: items named in ``patch_order`` keep that relative order,
    the others keep ``server_order``; the two runs are interleaved by server order."""
    patched = [v for v in merged if _find(patch_order, key, v) >= 0]
    server_only = [v for v in merged if _find(patch_order, key, v) < 0]
    patched.sort(key=lambda v: _find(patch_order, key, v))
    server_only.sort(key=lambda v: (_find(server_order, key, v) < 0, _find(server_order, key, v)))
    out: list = []
    i = j = 0
    while i < len(server_only) or j < len(patched):
        if i >= len(server_only):
            out.append(patched[j])
            j += 1
        elif j >= len(patched):
            out.append(server_only[i])
            i += 1
        else:
            li = _find(server_order, key, server_only[i])
            ri = _find(server_order, key, patched[j])
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patched[j])
                j += 1
    return out


def _apply_set_element_order(original: dict, patch: dict, directive_key: str, node: Field, path: str) -> None:
    order = patch.pop(directive_key)
    name = directive_key[len(_SET_ORDER):]
    child = node.child(name)
    child_path = _join(path, name)
    if not isinstance(order, list):
        raise PatchError(f"invalid patch format of setElementOrder list at {child_path}: "
                         "it must be a list", field=child_path, code=400)
    current = original.get(name)
    patch_list = patch.get(name)
    if current is not None and not isinstance(current, list):
        return  # the main pass replaces the non-list value
    if patch_list is not None and not isinstance(patch_list, list):
        return
    key = None
    if order and _element_kind(order, child_path) == "map":
        key = child.patch_merge_key
        if key is None:
            raise PatchError(f"cannot order a list without merge key at {child_path}", field=child_path)
    found_current, found_patch = current is not None, name in patch
    current = current or []
    patch_list = patch_list or []
    _validate_set_order(patch_list, order, key, child_path)
    patch.pop(name, None)
    if not found_current and not found_patch:
        return
    if not patch_list:
        merged = list(current)
    elif not current:
        merged = _fresh(patch_list, child, child_path) if child.merges_list else patch_list
    elif child.merges_list:
        merged = _smp_list(current, patch_list, child, child_path)
    else:
        merged = patch_list
    original[name] = _normalize_order(merged, order, current, key)


def _validate_set_order(patch_list: list, order: list, key: str | None, path: str) -> None:
    """Every non-delete patch item must appear in ``order``, in the same relative order."""
    items = [v for v in patch_list if not (isinstance(v, dict) and _DIRECTIVE in v)]
    if not items or not order:
        return
    i = 0
    for entry in order:
        if i < len(items) and _same_item(items[i], entry, key):
            i += 1
    if i < len(items):
        raise PatchError(
            f"the order in patch list {json.dumps(patch_list)} doesn't match "
            f"$setElementOrder list {json.dumps(order)} at {path}",
            field=path, code=400,
        )


def _same_item(a: Any, b: Any, key: str | None) -> bool:
    if key is None:
        return not isinstance(a, (dict, list)) and not isinstance(b, (dict, list)) and _scalar_key(a) == _scalar_key(b)
    return (isinstance(a, dict) and isinstance(b, dict) and key in a and key in b
            and _scalar_key(a[key]) == _scalar_key(b[key]))
