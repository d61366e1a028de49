"""Field ownership (metadata.managedFields) and server-side apply, with Kubernetes semantics.

Every write records who set which field:

- :func:`update_managed_fields` for create/update/patch (``operation: Update``): the writer
  takes the fields whose values it added or changed; everybody else loses them, and every
  manager loses fields that were removed.
- :func:`server_side_apply` for ``application/apply-patch+yaml`` (``operation: Apply``):
  the applied configuration is merged into the live object (lists merge per
  :mod:`pilothouse.apiserver.patch_strategies`); fields this manager applied last time and
  no longer applies are removed unless another manager owns them; a change to a field
  another manager owns is a conflict unless ``force``.

Field sets are sets of paths; a path is a tuple of FieldsV1 keys such as
``("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image")``.
Like the rest of the package these are pure functions over JSON-shaped values.

One known difference: Kubernetes compares against the zero value of the Go type, in which
non-pointer structs (``spec``, ``spec.template``...) always exist, so an Update entry does
not own them; here absent means absent, so a create owns ``.spec`` itself (it shows as
``"f:spec": {".": {}, ...}``). Ownership of a map's own path has no effect on what apply
keeps or removes.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time as _time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from pilothouse.apiserver import _json
from pilothouse.apiserver.patch import PatchError, json_equal
from pilothouse.apiserver.patch_strategies import EMPTY, Field, strategy_for
from pilothouse.model._jsoncopy import exact_json

__all__ = [
    "FieldSet",
    "Conflict",
    "ApplyConflictError",
    "default_manager",
    "fieldset_from_object",
    "compare_objects",
    "path_to_string",
    "update_managed_fields",
    "server_side_apply",
    "conflict_message",
    "conflict_causes",
    "decode_managed_fields",
    "FIELD_MANAGER_MAX_LENGTH",
    "MAX_UPDATE_MANAGERS",
]

FIELD_MANAGER_MAX_LENGTH = 128
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"

Path = tuple[str, ...]
_MISSING = object()

# Paths never tracked (Kubernetes' stripMetaManager): type meta and server-owned metadata.
_STRIP_EXACT: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    ("f:metadata", "f:name"), ("f:metadata", "f:namespace"), ("f:metadata", "f:creationTimestamp"),
    ("f:metadata", "f:selfLink"), ("f:metadata", "f:uid"), ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:resourceVersion"),
})
_STRIP_PREFIX: Path = ("f:metadata", "f:managedFields")


# ----------------------------------------------------------------------------- managers


_MANAGERS: dict[str, str] = {}  # User-Agent -> manager: clients send the same one every time


def default_manager(user_agent: str | None) -> str:
    """The field manager of a non-apply request that names none: the User-Agent up to the
    first "/", without unprintable characters, cut to 128 bytes of UTF-8 (Kubernetes'
    ``prefixFromUserAgent``). ``kubectl/v1.32.5 (linux/amd64) kubernetes/abc`` gives
    ``kubectl``; ``OpenAPI-Generator/37.0.2/python`` gives ``OpenAPI-Generator``."""
    key = user_agent or ""
    manager = _MANAGERS.get(key)
    if manager is None:
        manager = _prefix_from_user_agent(key)
        if len(_MANAGERS) >= 1024:
            _MANAGERS.clear()
        _MANAGERS[key] = manager
    return manager


def _prefix_from_user_agent(user_agent: str) -> str:
    prefix = user_agent.split("/", 1)[0]
    out: list[str] = []
    size = 0
    for ch in prefix:
        if not ch.isprintable():
            continue
        n = len(ch.encode("utf-8"))
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)


def _validate_manager(manager: Any, *, required: bool) -> str:
    if manager is None or manager == "":
        if required:
            raise PatchError("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                             "is required for apply patch", field="fieldManager", code=422)
        return ""
    if not isinstance(manager, str):
        raise PatchError("fieldManager must be a string", field="fieldManager", code=400)
    if len(manager.encode("utf-8")) > FIELD_MANAGER_MAX_LENGTH:
        raise PatchError(f"fieldManager: Too long: may not be longer than {FIELD_MANAGER_MAX_LENGTH}",
                         field="fieldManager", code=422)
    return manager


# ----------------------------------------------------------------------------- field sets


def _canonical(value: Any) -> Any:
    """JSON value with integral floats as ints, for stable key encodings."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


_encode_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _dumps(value: Any) -> str:
    """Compact JSON with sorted keys; the scalar cases skip json.dumps (a hot path)."""
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ",".join(_encode_string(k) + ":" + _dumps(value[k]) for k in sorted(value)) + "}"
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_RANKS = {"f": 0, "k": 1, "v": 2, "i": 3}


def _element_rank(element: str) -> tuple[int, str]:
    return (_RANKS.get(element[:1], 4), element)


def _sorted_elements(elements: Iterable[str]) -> list[str]:
    """Sorted by :func:`_element_rank`. When every element starts with f, k or v (almost
    always), that is plain string order, since f < k < v."""
    out = sorted(elements)
    for element in out:
        if element[:1] not in _FKV:
            return sorted(out, key=_element_rank)
    return out


_FKV = frozenset("fkv")


class FieldSet:
    """An immutable set of field paths, convertible to and from FieldsV1."""

    __slots__ = ("_paths", "_source")

    def __init__(self, paths: Iterable[Path] = ()):
        self._paths = frozenset(tuple(p) for p in paths)
        self._source: tuple[dict, bytes] | None = None

    @classmethod
    def _of(cls, paths: frozenset, source: tuple[dict, bytes] | None = None) -> "FieldSet":
        """A FieldSet of a frozenset of tuples, taken as it is (no per-path conversion);
        ``source`` is the FieldsV1 tree it was decoded from and that tree's JSON."""
        fs = object.__new__(cls)
        fs._paths = paths
        fs._source = source
        return fs

    # set algebra
    def __or__(self, other: "FieldSet") -> "FieldSet":
        if not other._paths or other._paths is self._paths:
            return self
        if not self._paths:
            return other
        return FieldSet._of(self._paths | other._paths)

    def __and__(self, other: "FieldSet") -> "FieldSet":
        return FieldSet._of(self._paths & other._paths)

    def __sub__(self, other: "FieldSet") -> "FieldSet":
        if not other._paths or self._paths.isdisjoint(other._paths):
            return self
        return FieldSet._of(self._paths - other._paths)

    union, intersection, difference = __or__, __and__, __sub__

    def __contains__(self, path: Any) -> bool:
        return tuple(path) in self._paths

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self._paths, key=lambda p: [_element_rank(e) for e in p]))

    def __len__(self) -> int:
        return len(self._paths)

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and self._paths == other._paths

    def __hash__(self) -> int:
        return hash(self._paths)

    def __repr__(self) -> str:
        return f"FieldSet({[path_to_string(p) for p in self]})"

    @property
    def paths(self) -> frozenset[Path]:
        return self._paths

    def without_prefixes(self, prefixes: Iterable[Path]) -> "FieldSet":
        """The paths not equal to or under any of ``prefixes`` (a recursive difference)."""
        prefixes = [tuple(p) for p in prefixes]
        if not prefixes:
            return self
        return FieldSet._of(frozenset(
            p for p in self._paths if not any(p[: len(q)] == q for q in prefixes)))

    def prefixes(self) -> frozenset[Path]:
        """Every proper prefix of every path (the ancestors that have owned descendants)."""
        return frozenset(p[:i] for p in self._paths for i in range(len(p)))

    def strings(self) -> list[str]:
        return [path_to_string(p) for p in self]

    # FieldsV1
    def to_fields_v1(self) -> dict:
        """Encode as a FieldsV1 tree: members with children carry ``".": {}``."""
        return _json.loads(self._encoded())  # a fresh tree: callers may change what they get

    def _encoded(self) -> bytes:
        encoded = _ENCODED.get(self._paths)
        if encoded is None:
            encoded = self._emit()[1]
        return encoded

    def _emit(self) -> tuple[dict, bytes]:
        """A new FieldsV1 tree and its JSON (remembered for the next time)."""
        tree = _tree_in_order(self._paths)
        if tree is None:
            tree = self._tree_general()
        encoded = _json.dumps(tree)
        _remember(_ENCODED, self._paths, encoded)
        return tree, encoded

    def _tree_general(self) -> dict:
        """The FieldsV1 tree of any set: built from the paths, then sorted level by level."""
        root: dict = {}
        for path in self._paths:
            node = root
            for element in path:
                node = node.setdefault(element, {})
            if path:
                node[_MEMBER] = True
        return _emit_fields_v1(root)

    def _tree(self) -> dict:
        """The FieldsV1 tree for a managedFields entry being written: the tree this set was
        decoded from when that is already the canonical encoding (most entries of most
        writes), else a new one."""
        encoded = _ENCODED.get(self._paths)
        if encoded is None:
            tree, encoded = self._emit()
            if self._source is not None and self._source[1] == encoded:
                return self._source[0]
            return tree
        if self._source is not None and self._source[1] == encoded:
            return self._source[0]
        return _json.loads(encoded)

    @classmethod
    def from_fields_v1(cls, tree: Any) -> "FieldSet":
        """Decode a FieldsV1 tree; raises ValueError for a malformed one."""
        if not isinstance(tree, dict):
            raise ValueError("fieldsV1 must be an object")
        try:
            key = _json.dumps(tree)
        except (TypeError, ValueError):
            key = None
        paths = _DECODED.get(key) if key is not None else None
        if paths is None:
            found: set[Path] = set()
            _walk_fields_v1(tree, (), found)
            paths = frozenset(found)
            if key is not None:
                _remember(_DECODED, key, paths)
        if cls is not FieldSet:
            return cls(paths)
        return cls._of(paths, (tree, key) if key is not None else None)


# Every write decodes the stored managedFields and encodes the new ones, and most writes leave
# most entries as they were (a Lease renewal changes no entry's fields at all): both directions
# are memoised. Keys are the FieldsV1 JSON (decoding) and the frozenset of paths (encoding).
_CACHE_SIZE = 4096
_DECODED: dict[bytes, frozenset] = {}
_ENCODED: dict[frozenset, bytes] = {}


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value



# Module-level recursion (not nested closures): a recursive closure is a reference cycle, and
# one per write made the API server's garbage collections long (measured in bench/scheduler.py).
_MEMBER = None  # key marking, in a tree being built, a node that is itself a member


def _emit_fields_v1(node: dict) -> dict:
    """The FieldsV1 form of a tree built from paths: members with children get ``"."``."""
    member = node.pop(_MEMBER, False)
    if not node:
        return {}
    out: dict = {".": {}} if member else {}
    for element in _sorted_elements(node) if len(node) > 1 else node:
        out[element] = _emit_fields_v1(node[element])
    return out


def _tree_in_order(paths: Iterable[Path]) -> dict | None:
    """The FieldsV1 tree of ``paths`` in one pass over them in sorted order, or None when an
    element does not start with f, k or v (then plain string order is not FieldsV1's; see
    :func:`_sorted_elements`). In sorted order a path comes right before its descendants
    and siblings come in order, so each node is made in its place, and a member whose
    successor extends it has children (it gets its ``"."`` first)."""
    ordered = sorted(paths)
    root: dict = {}
    nodes: dict[Path, dict] = {(): root}
    count = len(ordered)
    for i, path in enumerate(ordered):
        if not path:
            continue
        last = path[-1]
        if last[:1] not in _FKV:
            return None
        parent = nodes.get(path[:-1])
        if parent is None:  # under a prefix that is not itself a member
            parent = root
            for depth in range(len(path) - 1):
                element = path[depth]
                child = parent.get(element)
                if child is None:
                    if element[:1] not in _FKV:
                        return None
                    child = parent[element] = {}
                    nodes[path[:depth + 1]] = child
                parent = child
        node: dict = {}
        if i + 1 < count:
            following = ordered[i + 1]
            if len(following) > len(path) and following[:len(path)] == path:
                node["."] = {}
        parent[last] = node
        nodes[path] = node
    return root


def _walk_fields_v1(node: dict, path: Path, paths: set) -> None:
    for key, sub in node.items():
        if key == ".":
            if not path:
                raise ValueError("'.' at the root of fieldsV1")
            paths.add(path)
            continue
        if not isinstance(sub, dict):
            raise ValueError(f"fieldsV1 value under {key!r} must be an object")
        element = _normalize_element(key)
        if not sub:
            paths.add(path + (element,))
        else:
            _walk_fields_v1(sub, path + (element,), paths)


def _normalize_element(key: str) -> str:
    kind, sep, rest = key.partition(":")
    if not sep or kind not in ("f", "k", "v", "i"):
        raise ValueError(f"invalid fieldsV1 key {key!r}")
    if kind == "f":
        return key
    if kind == "i":
        if not rest.isdigit():
            raise ValueError(f"invalid fieldsV1 index {key!r}")
        return f"i:{int(rest)}"
    try:
        value = json.loads(rest)
    except ValueError:
        raise ValueError(f"invalid fieldsV1 key {key!r}") from None
    if kind == "k" and not isinstance(value, dict):
        raise ValueError(f"invalid fieldsV1 key {key!r}: k: needs an object")
    return f"{kind}:{_dumps(value)}"


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(_canonical(value), separators=(",", ":"), ensure_ascii=False)


def path_to_string(path: Iterable[str]) -> str:
    """Kubernetes' path notation: ``.spec.containers[name="nginx"].image``, ``[="a"]``, ``[0]``."""
    out = []
    for element in path:
        kind, rest = element[0], element[2:]
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={_go_value(keys[k])}" for k in sorted(keys)) + "]")
        elif kind == "v":
            out.append(f"[={_go_value(json.loads(rest))}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


# ----------------------------------------------------------------------------- walking objects

def _item_node(node: Field) -> Field:
    """The strategy of one item of list ``node`` (a map with the list's item fields)."""
    cached = node.__dict__.get("_item_node")
    if cached is None:
        cached = Field(fields=node.fields, additional=node.additional)
        object.__setattr__(node, "_item_node", cached)  # a cache on a frozen dataclass
    return cached


def _list_elements(value: list, node: Field, *, strict: bool, path: Path = ()) -> list[tuple[str, Any]] | None:
    """(path element, item) for each item of a granular list, or None if it must be
    treated as atomic. ``strict`` (the applied configuration) raises for items without
    their keys and for duplicates, as Kubernetes does; live objects fall back to atomic."""
    list_type = node.ssa_list_type
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if list_type == "set":
            if isinstance(item, (dict, list)):
                return None
            element = "v:" + _dumps(item)
        else:
            keys = node.ssa_keys
            if not keys or not isinstance(item, dict):
                return None
            first = item.get(keys[0]) if len(keys) == 1 else None
            if type(first) is str:  # the usual one key with a string value: its _dumps inline
                element = "k:{" + _encode_string(keys[0]) + ":" + _encode_string(first) + "}"
            else:
                key_values = {}
                for key in keys:
                    if key in item and item[key] is not None:
                        key_values[key] = item[key]
                    elif key in node.key_defaults:
                        key_values[key] = node.key_defaults[key]
                    elif strict:
                        raise PatchError(
                            f"{path_to_string(path)}: element {index}: associative list "
                            f"with keys has an element that omits key field {key!r} (and "
                            "doesn't have default value)",
                            field=path_to_string(path), code=422)
                    else:
                        return None
                element = "k:" + _dumps(key_values)
        if element in seen:
            if strict:
                raise PatchError(f"{path_to_string(path)}: duplicate entries for key {path_to_string((element,))}",
                                 field=path_to_string(path), code=422)
            continue
        seen.add(element)
        out.append((element, item))
    return out


def _shape(value: Any, node: Field) -> str:
    if isinstance(value, dict):
        return "leaf" if node.atomic else "map"
    if isinstance(value, list):
        list_type = node.ssa_list_type
        return "leaf" if list_type == "atomic" else "list"
    return "leaf"


def fieldset_from_object(obj: Any, strategy: Field | None = None) -> FieldSet:
    """The fields an applied configuration sets (Kubernetes' ``ToFieldSet``): every leaf,
    every item of a granular list, every atomic list or map, every null or empty map."""
    out: set[Path] = set()
    _collect(obj, strategy or EMPTY, (), out, strict=True)
    return FieldSet._of(frozenset(out))


def _collect(value: Any, node: Field, path: Path, out: set[Path], *, strict: bool) -> None:
    shape = _shape(value, node)
    if shape == "leaf":
        if path:
            out.add(path)
        return
    if shape == "map":
        for key, sub in value.items():
            child_path = path + ("f:" + key,)
            if sub is None or (isinstance(sub, dict) and not sub):
                out.add(child_path)
            _collect(sub, node.child(key), child_path, out, strict=strict)
        return
    elements = _list_elements(value, node, strict=strict, path=path)
    if elements is None:
        out.add(path)
        return
    item_node = _item_node(node)
    for element, item in elements:
        item_path = path + (element,)
        out.add(item_path)
        _collect(item, item_node, item_path, out, strict=strict)


def _all_nodes(value: Any, node: Field, path: Path, out: set[Path]) -> None:
    """Every path in a subtree present on one side only (leaves and containers)."""
    if path:
        out.add(path)
    if isinstance(value, dict):
        if node.atomic:
            return
        fields, additional = node.fields, node.additional
        for key, sub in value.items():
            if isinstance(sub, (dict, list)):
                child = fields.get(key)
                if child is None:
                    child = additional if additional is not None else EMPTY
                _all_nodes(sub, child, path + ("f:" + key,), out)
            else:
                out.add(path + ("f:" + key,))  # a leaf: nothing below it
    elif isinstance(value, list) and node.ssa_list_type != "atomic":
        elements = _list_elements(value, node, strict=False)
        if elements is not None:
            item_node = _item_node(node)
            for element, item in elements:
                if isinstance(item, (dict, list)):
                    _all_nodes(item, item_node, path + (element,), out)
                else:
                    out.add(path + (element,))


# The paths of a whole top-level field present on one side only (a create's spec and status),
# by its JSON: the objects made from one template share them. Not metadata: its name, uid
# and timestamps make every object's its own, so remembering it would only push out the rest.
_TOP_NODES: dict[tuple, tuple[Field, frozenset]] = {}
_NOT_REMEMBERED = ("f:metadata",)


def _all_nodes_of_top(value: Any, node: Field, path: Path, out: set[Path]) -> None:
    """:func:`_all_nodes`, remembered for objects directly under the root."""
    if len(path) != 1 or type(value) is not dict or path == _NOT_REMEMBERED:
        _all_nodes(value, node, path, out)
        return
    encoded = exact_json(value)
    if encoded is None:
        _all_nodes(value, node, path, out)
        return
    key = (id(node), path, encoded)
    known = _TOP_NODES.get(key)
    if known is None or known[0] is not node:
        found: set[Path] = set()
        _all_nodes(value, node, path, found)
        known = (node, frozenset(found))
        _remember(_TOP_NODES, key, known)
    out |= known[1]


@dataclass(frozen=True)
class Comparison:
    added: FieldSet
    modified: FieldSet
    removed: FieldSet


def compare_objects(old: Any, new: Any, strategy: Field | None = None) -> Comparison:
    """Which paths ``new`` adds, modifies and removes relative to ``old`` (Kubernetes'
    typed ``Compare``). Containers appear in added/removed when they appear/disappear."""
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()
    if not (type(old) is type(new) and type(old) in (dict, list) and _same_json(old, new)):
        _compare(old, new, strategy or EMPTY, (), added, modified, removed)
    return Comparison(FieldSet._of(frozenset(added)), FieldSet._of(frozenset(modified)),
                      FieldSet._of(frozenset(removed)))


def _same_json(lhs: Any, rhs: Any) -> bool:
    """True when two containers are the same JSON (so no path under them differs):
    Python equality, and the same encoding (Python equality alone takes ``True`` for ``1``)."""
    if lhs is rhs:
        return True
    if lhs != rhs:
        return False
    try:
        return _json.dumps(lhs) == _json.dumps(rhs)
    except (TypeError, ValueError):
        return False


def _unchanged(lhs: Any, rhs: Any) -> bool:
    """A quick "nothing under here differs" for the common cases (equal strings, numbers of
    one type, booleans, the same JSON container); False means "compare in full"."""
    if lhs is rhs:
        return True
    kind = type(lhs)
    if kind is not type(rhs):
        return False
    if kind is str or kind is int or kind is float or kind is bool:
        return lhs == rhs
    if kind is dict or kind is list:
        return _same_json(lhs, rhs)
    return False


def _compare(lhs: Any, rhs: Any, node: Field, path: Path,
             added: set, modified: set, removed: set) -> None:
    """Record what differs between ``lhs`` and ``rhs`` at ``path``; the callers have found
    that they are not the same JSON (:func:`_unchanged` or :func:`_same_json` said no)."""
    if type(lhs) is dict and type(rhs) is dict and not node.atomic:
        _compare_maps(lhs, rhs, node, path, added, modified, removed)  # the usual case
        return
    if lhs is _MISSING:
        _all_nodes_of_top(rhs, node, path, added)
        return
    if rhs is _MISSING:
        _all_nodes_of_top(lhs, node, path, removed)
        return
    if not isinstance(lhs, (dict, list)) and not isinstance(rhs, (dict, list)):
        if path and not json_equal(lhs, rhs):  # two leaves (what _shape says of scalars)
            modified.add(path)
        return
    ls, rs = _shape(lhs, node), _shape(rhs, node)
    if ls == "leaf" and rs == "leaf":
        if not json_equal(lhs, rhs) and path:
            modified.add(path)
        return
    if ls != rs:
        below_l: set[Path] = set()
        below_r: set[Path] = set()
        _all_nodes(lhs, node, path, below_l)
        _all_nodes(rhs, node, path, below_r)
        removed.update(below_l - {path})
        added.update(below_r - {path})
        if path:
            modified.add(path)
        return
    if ls == "map":
        _compare_maps(lhs, rhs, node, path, added, modified, removed)
        return
    le = _list_elements(lhs, node, strict=False)
    re_ = _list_elements(rhs, node, strict=False)
    if le is None or re_ is None:
        if not json_equal(lhs, rhs) and path:
            modified.add(path)
        return
    item_node = _item_node(node)
    left = dict(le)
    right = dict(re_)
    for element, lv in left.items():
        rv = right.get(element, _MISSING)
        if _unchanged(lv, rv):
            continue
        _compare(lv, rv, item_node, path + (element,), added, modified, removed)
    for element, rv in right.items():
        if element not in left:
            _compare(_MISSING, rv, item_node, path + (element,), added, modified, removed)


def _compare_maps(lhs: dict, rhs: dict, node: Field, path: Path,
                  added: set, modified: set, removed: set) -> None:
    """:func:`_compare` of two maps (``node`` not atomic)."""
    gone = 0  # keys of lhs that rhs does not have: rhs has others if it has more than the rest
    for key, lv in lhs.items():
        rv = rhs.get(key, _MISSING)
        if lv is rv:
            continue
        kind = type(lv)
        if kind is type(rv):  # _unchanged, and two different scalars recorded here
            if kind is str or kind is int or kind is float or kind is bool:
                if lv != rv:
                    modified.add(path + ("f:" + key,))
                continue
            if (kind is dict or kind is list) and _same_json(lv, rv):
                continue
        elif rv is _MISSING:
            gone += 1
        _compare(lv, rv, node.child(key), path + ("f:" + key,), added, modified, removed)
    if len(rhs) > len(lhs) - gone:
        for key, rv in rhs.items():
            if key not in lhs:
                _compare(_MISSING, rv, node.child(key), path + ("f:" + key,), added, modified,
                         removed)


# ----------------------------------------------------------------------------- apply merge


def _without_nulls(value: Any, node: Field) -> Any:
    if isinstance(value, dict) and not node.atomic:
        return {k: _without_nulls(v, node.child(k)) for k, v in value.items() if v is not None}
    if isinstance(value, list) and node.ssa_list_type != "atomic":
        item_node = _item_node(node)
        return [_without_nulls(v, item_node) for v in value]
    return _deep(value)


def _deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return value


def _apply_merge(live: Any, config: Any, node: Field) -> Any:
    """Merge an applied configuration into a live value (SSA's typed merge)."""
    if live is _MISSING or live is None:
        return _without_nulls(config, node)
    ls, cs = _shape(live, node), _shape(config, node)
    if cs == "leaf" or ls != cs:
        return _without_nulls(config, node)
    if cs == "map":
        out = _deep(live)
        for key, value in config.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _apply_merge(live.get(key, _MISSING), value, node.child(key))
        return out
    live_elements = _list_elements(live, node, strict=False)
    config_elements = _list_elements(config, node, strict=True)
    if live_elements is None or config_elements is None:
        return _without_nulls(config, node)
    item_node = _item_node(node)
    config_index = {element: i for i, (element, _) in enumerate(config_elements)}
    live_items = dict(live_elements)
    out: list = []
    next_config = 0

    def emit_config_until(stop: int) -> None:
        nonlocal next_config
        while next_config <= stop:
            element, item = config_elements[next_config]
            out.append(_apply_merge(live_items.get(element, _MISSING), item, item_node))
            next_config += 1

    # Live-only items keep their place; configured items come in the configuration's order.
    for element, item in live_elements:
        position = config_index.get(element)
        if position is None:
            out.append(_deep(item))
        elif position >= next_config:
            emit_config_until(position)
    emit_config_until(len(config_elements) - 1)
    return out


# ----------------------------------------------------------------------------- pruning


def _resolve(obj: Any, path: Path, node: Field) -> tuple[Any, Any, Field] | None:
    """(container, locator, node) for the last element of ``path`` in ``obj``, or None."""
    container: Any = obj
    current_node = node
    for depth, element in enumerate(path):
        kind, rest = element[0], element[2:]
        if kind == "f":
            if not isinstance(container, dict) or rest not in container:
                return None
            locator: Any = rest
            child_node = current_node.child(rest)
        else:
            if not isinstance(container, list):
                return None
            locator = None
            if kind == "i":
                index = int(rest)
                locator = index if index < len(container) else None
            else:
                elements = _list_elements(container, current_node, strict=False)
                for index, (candidate, _) in enumerate(elements or ()):
                    if candidate == element:
                        # _list_elements skips duplicates, so map back through identity.
                        locator = next(i for i, v in enumerate(container) if v is elements[index][1])
                        break
            if locator is None:
                return None
            child_node = _item_node(current_node)
        if depth == len(path) - 1:
            return container, locator, current_node
        container = container[locator]
        current_node = child_node
    return None


def _prune(obj: dict, to_remove: Iterable[Path], keep: FieldSet, node: Field, config: dict) -> None:
    """Remove ``to_remove`` paths from ``obj`` in place, sparing paths with kept
    descendants and the key fields of list items that stay; then drop maps and lists
    emptied by the removal that nobody owns and the configuration does not mention."""
    kept_ancestors = keep.prefixes()
    for path in sorted(to_remove, key=len):
        if path in kept_ancestors or path in keep:
            continue
        if len(path) >= 2 and path[-2][0] == "k" and path[-1][0] == "f":
            if path[-1][2:] in json.loads(path[-2][2:]):
                continue  # a key field of an item that is not itself removed
        found = _resolve(obj, path, node)
        if found is None:
            continue
        container, locator, _ = found
        del container[locator]
        # Remove maps and lists the removal left empty, unless someone owns them (a typed
        # Kubernetes object omits them too).
        parent = path[:-1]
        while parent and parent[-1][0] == "f" and parent not in keep \
                and _resolve(config, parent, node) is None:
            up = _resolve(obj, parent, node)
            if up is None:
                break
            holder, key, _ = up
            if holder[key] not in ({}, []):
                break
            del holder[key]
            parent = parent[:-1]


# ----------------------------------------------------------------------------- managedFields entries


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    fields: FieldSet
    subresource: str = ""

    @property
    def identity(self) -> tuple:
        # Appliers are one entry whatever the apiVersion; updaters are one per apiVersion.
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def to_json(self) -> dict:
        out = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = self.fields._tree()
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode_managed_fields(entries: Any) -> list[_Entry]:
    """Parse ``metadata.managedFields``; raises ValueError for a malformed list."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"managedFields[{i}] must be an object")
        operation = entry.get("operation")
        if operation not in ("Apply", "Update"):
            raise ValueError(f"managedFields[{i}].operation must be Apply or Update")
        fields_type = entry.get("fieldsType", "FieldsV1")
        if fields_type != "FieldsV1":
            raise ValueError(f"managedFields[{i}].fieldsType must be FieldsV1")
        out.append(_Entry(
            manager=str(entry.get("manager", "")),
            operation=operation,
            api_version=str(entry.get("apiVersion", "")),
            time=entry.get("time"),
            fields=FieldSet.from_fields_v1(entry.get("fieldsV1") or {}),
            subresource=str(entry.get("subresource", "") or ""),
        ))
    return out


def _entries_of(obj: Any) -> list[_Entry]:
    if not isinstance(obj, dict):
        return []
    try:
        return decode_managed_fields((obj.get("metadata") or {}).get("managedFields"))
    except ValueError:
        return []


def _sorted_json(entries: Iterable[_Entry]) -> list[dict]:
    def key(e: _Entry) -> tuple:
        return (e.operation, e.time or "", e.manager, e.api_version, e.subresource)

    return [e.to_json() for e in sorted(entries, key=key)]


def _cap_update_managers(entries: list[_Entry]) -> list[_Entry]:
    """At most MAX_UPDATE_MANAGERS Update entries: the oldest fold into "ancient-changes"."""
    updaters = [e for e in entries if e.operation == "Update"]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return entries
    updaters.sort(key=lambda e: (e.time or "", e.manager))
    count = len(updaters)
    first_by_version: dict[str, _Entry] = {}
    buckets: dict[str, _Entry] = {}
    doomed: set[int] = set()
    for entry in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        first = first_by_version.get(entry.api_version)
        if first is None:
            first_by_version[entry.api_version] = entry
            continue
        bucket = buckets.get(entry.api_version)
        if bucket is None:
            bucket = _Entry(ANCIENT_CHANGES, "Update", entry.api_version, first.time, first.fields)
            buckets[entry.api_version] = bucket
            doomed.add(id(first))
        bucket.fields = bucket.fields | entry.fields
        bucket.time = entry.time
        doomed.add(id(entry))
        count -= 1
    kept = [e for e in entries if id(e) not in doomed]
    for bucket in buckets.values():
        existing = next((e for e in kept if e.identity == bucket.identity), None)
        if existing is not None:
            existing.fields = existing.fields | bucket.fields
            existing.time = max(existing.time or "", bucket.time or "") or None
        else:
            kept.append(bucket)
    return kept


_last_second: list = [None, ""]  # (whole second, its RFC 3339 text): one strftime a second


def _now(time: Any) -> str:
    if time is None:
        second = int(_time.time())
        if _last_second[0] != second:
            _last_second[1] = _dt.datetime.fromtimestamp(second, _dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            _last_second[0] = second
        return _last_second[1]
    if isinstance(time, _dt.datetime):
        if time.tzinfo is None:
            time = time.replace(tzinfo=_dt.timezone.utc)
        return time.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(time)


def _tracked(fields: FieldSet, ignore: Iterable[Path], managed_fields: bool = True) -> FieldSet:
    """``fields`` without the paths never tracked and those under ``ignore``;
    ``managed_fields=False``: the caller knows none is under metadata.managedFields (a
    diff of two objects without it), so the paths are not searched for one."""
    kept = fields.paths - _STRIP_EXACT
    if managed_fields and any(len(p) > 1 and p[1] == "f:managedFields" and p[0] == "f:metadata"
                              for p in kept):
        kept = frozenset(p for p in kept if p[:2] != _STRIP_PREFIX)
    return FieldSet._of(kept).without_prefixes(ignore)


def _ignore_paths(ignore: Iterable[str]) -> list[Path]:
    """"status" or "spec.replicas" -> ("f:status",), ("f:spec", "f:replicas")."""
    return [tuple("f:" + part for part in dotted.split(".")) for dotted in ignore]


def _strategy_of(obj: Any, strategy: Field | None) -> Field:
    if strategy is not None:
        return strategy
    if isinstance(obj, dict):
        api_version = str(obj.get("apiVersion") or "")
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return strategy_for(group, str(obj.get("kind") or ""))
    return EMPTY


def _without_managed_fields(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return {}
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = dict(obj)
        obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return obj


def _with_entries(obj: dict, entries: list[_Entry]) -> dict:
    """``obj`` with ``entries`` as its managedFields: a new top level and metadata, the other
    values shared with ``obj``."""
    out = dict(obj)
    meta = out.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return out
    meta = out["metadata"] = dict(meta)
    entries = _cap_update_managers([e for e in entries if e.fields])
    if entries:
        meta["managedFields"] = _sorted_json(entries)
    else:
        meta.pop("managedFields", None)
    return out


# ----------------------------------------------------------------------------- stored trees
#
# Most writes leave most managedFields entries as they were (a Lease renewal changes the
# time of its writer's entry and no field set at all), and the entries an object carries are
# this server's own canonical FieldsV1 trees. The fast path of update_managed_fields works on
# those trees as they are: it checks that a tree is canonical (exactly what decoding it and
# encoding the set again would give), answers "does this entry own a changed or removed
# path" by walking the tree along those paths, and edits only the entries they touch, in
# place of decoding every set and encoding it again. Anything it does not handle (a tree in
# another form, a malformed entry, more than MAX_UPDATE_MANAGERS updaters) goes the general
# way, which is the reference: the two give the same managedFields (tests pin it).

_FAST_PATH = True  # tests switch it off to get the general path's answer

_JSON_STRING = r'"[^"\\\x00-\x1f]*"'  # a JSON string without escapes: its own canonical text
_JSON_SCALAR = _JSON_STRING + r"|0|-?[1-9][0-9]*|true|false|null"
_KEY_PAIR = re.compile(r'"([^"\\\x00-\x1f]*)":(?:' + _JSON_SCALAR + ")")
_SIMPLE_K = re.compile(r"k:\{" + _JSON_STRING + ":(?:" + _JSON_SCALAR + r")\}")
_SIMPLE_V = re.compile(r"v:(?:" + _JSON_SCALAR + ")")


def _canonical_kv(key: str) -> bool:
    """True when ``key`` is a ``k:`` or ``v:`` FieldsV1 key in the form decoding gives it
    (its own :func:`_normalize_element`); the usual forms are recognised by pattern, others
    decoded. False for anything else (``i:`` keys too: their order is not string order)."""
    kind = key[:2]
    if kind == "k:":
        if _SIMPLE_K.fullmatch(key):
            return True
        if key[2:3] == "{" and key[-1:] == "}":  # several plain pairs: in key order?
            end = len(key) - 1
            pos = 3
            previous = None
            while True:
                match = _KEY_PAIR.match(key, pos)
                if match is None:
                    break
                name = match.group(1)
                if previous is not None and not previous < name:
                    break
                previous = name
                pos = match.end()
                if pos == end:
                    return True
                if key[pos] != ",":
                    break
                pos += 1
    elif kind == "v:":
        if _SIMPLE_V.fullmatch(key):
            return True
    else:
        return False
    try:
        return _normalize_element(key) == key
    except ValueError:
        return False


def _canonical_tree(node: dict, root: bool) -> bool:
    """True when ``node`` is a valid FieldsV1 tree in canonical form, which is what its
    set encodes to: every value an object, ``"."`` (an empty object, not at the root) only
    first and only before other keys, the other keys ``f:``, ``k:`` or ``v:`` ones in the
    form decoding gives them and in string order (which is :func:`_element_rank` order
    without ``i:`` keys; a tree with those is left to the general way). Runs on every entry
    of every write: one pass, ``f:`` keys (any text after ``f:`` is canonical, and they are
    the keys from "f:" to "f;") checked by comparisons only."""
    previous = ""
    for key, sub in node.items():
        if type(sub) is not dict:
            return False
        if key <= previous or key < "f:":
            if key == "." and not previous and not root and not sub:
                previous = "."
                continue
            return False
        previous = key
        if sub and not _canonical_tree(sub, False):
            return False
        if key >= "f;" and not _canonical_kv(key):
            return False
    return previous != "."


# The JSON of trees found canonical: most entries are shared by many objects (all the pods
# of one template have the same spec entry), and encoding a tree (C) costs a tenth of
# checking it (Python). A tree not in it is checked, so a miss costs little.
_CANONICAL_SEEN: set[bytes] = set()


def _canonical_entry_tree(tree: dict) -> bool:
    """:func:`_canonical_tree` of an entry's ``fieldsV1``, remembered by its JSON."""
    try:
        key = _json.dumps(tree)
    except (TypeError, ValueError):
        return _canonical_tree(tree, True)
    if key in _CANONICAL_SEEN:
        return True
    if not _canonical_tree(tree, True):
        return False
    if len(_CANONICAL_SEEN) >= _CACHE_SIZE:
        _CANONICAL_SEEN.clear()
    _CANONICAL_SEEN.add(key)
    return True


_GONE = object()
_OWNED_LOOKUPS = 8  # up to this many changed paths are looked up one by one before a union


def _owns(tree: dict, path: Path) -> bool:
    """Whether canonical root ``tree`` has ``path`` as a member."""
    node = tree
    for element in path:
        node = node.get(element)
        if node is None:
            return False
    return not node or "." in node


def _tree_minus(node: dict, removal: dict, root: bool) -> Any:
    """Canonical ``node`` without the members of canonical ``removal`` (the tree of the
    set to take away): ``node`` itself when it owns none of them, _GONE when nothing is
    left of it. Only the parts both trees have are walked; the rest is shared."""
    was_member = not root and (not node or "." in node)
    member = was_member and not (not removal or "." in removal)
    changed = member != was_member
    children: dict = {}
    for element, sub in removal.items():
        mine = node.get(element)
        if mine is None or element == ".":
            continue
        left = _tree_minus(mine, sub, False)
        if left is not mine:
            children[element] = left
            changed = True
    if not changed:
        return node
    out: dict = {".": {}} if member else {}
    for element, sub in node.items():
        if element == ".":
            continue
        sub = children.get(element, sub)
        if sub is not _GONE:
            out[element] = sub
    if member:
        return out if len(out) > 1 else {}
    return out if out else _GONE


def _tree_union(node: dict, other: dict, root: bool) -> dict:
    """The canonical tree of the union of two canonical trees' sets (``node`` itself when
    ``other`` adds nothing; unchanged subtrees are shared)."""
    if node is other:
        return node
    was_member = not root and (not node or "." in node)
    member = was_member or (not root and (not other or "." in other))
    changed = member != was_member
    children: dict = {}
    for element, sub in other.items():
        if element == ".":
            continue
        mine = node.get(element)
        if mine is None:
            children[element] = sub
            changed = True
        else:
            merged = _tree_union(mine, sub, False)
            if merged is not mine:
                children[element] = merged
                changed = True
    if not changed:
        return node
    elements = [e for e in node if e != "."]
    elements.extend(e for e in children if e not in node)
    out: dict = {".": {}} if member and elements else {}
    for element in _sorted_elements(elements):
        sub = children.get(element)
        out[element] = node[element] if sub is None else sub
    return out


def _tree_without(tree: dict, removal: dict) -> dict:
    """Canonical root ``tree`` without the set of canonical root ``removal``."""
    left = _tree_minus(tree, removal, True)
    return {} if left is _GONE else left


def _fast_update(incoming: Any, old_obj: Any, changed: FieldSet, removed: FieldSet,
                 manager: str, api_version: str, subresource: str, time: Any) -> list | None:
    """The managedFields update_managed_fields writes, worked out on the canonical trees the
    entries carry; None when the entries are not all in the form this handles (then the
    general way decides)."""
    if incoming:
        raw = incoming  # a client's list that is canonical counts as if it were stored
    elif old_obj is None:
        raw = []
    else:
        if type(old_obj) is not dict:
            return None
        meta = old_obj.get("metadata")
        if meta is None:
            meta = {}
        elif type(meta) is not dict:
            return None
        raw = meta.get("managedFields")
        if raw is None:
            raw = []
    if type(raw) is not list:
        return None
    parsed = []
    for entry in raw:
        if type(entry) is not dict:
            return None
        operation = entry.get("operation")
        if operation != "Update" and operation != "Apply":
            return None
        if entry.get("fieldsType", "FieldsV1") != "FieldsV1":
            return None
        name = entry.get("manager", "")
        version = entry.get("apiVersion", "")
        when = entry.get("time")
        sub = entry.get("subresource", "") or ""
        if type(name) is not str or type(version) is not str or type(sub) is not str \
                or (when is not None and type(when) is not str):
            return None
        tree = entry.get("fieldsV1") or {}
        if type(tree) is not dict or (tree and not _canonical_entry_tree(tree)):
            return None
        parsed.append((operation, when, name, version, sub, tree))

    # the trees of the changed and removed sets (small ones: a renewal changes one field),
    # made when an entry needs them: what every other entry loses, what the writer's gains
    changed_tree = removed_tree = touched = None
    result = []
    previous: tuple | None = None
    for operation, when, name, version, sub, tree in parsed:
        if operation == "Update" and name == manager and version == api_version \
                and sub == subresource:
            previous = (when, tree)  # the writer's own entry (the last one, as in general)
            continue
        if tree and (changed or removed):
            if touched is None:
                changed_tree = changed._tree() if changed else None
                removed_tree = removed._tree() if removed else None
                touched = removed_tree if changed_tree is None else changed_tree \
                    if removed_tree is None else _tree_union(changed_tree, removed_tree, True)
            tree = _tree_without(tree, touched)
        result.append((operation, when, name, version, sub, tree))
    if previous is not None:
        tree = previous[1]
        if removed and tree:
            if removed_tree is None:
                removed_tree = removed._tree()
            tree = _tree_without(tree, removed_tree)
    if changed:
        if previous is None:
            tree = changed._tree() if changed_tree is None else changed_tree
        elif len(changed) > _OWNED_LOOKUPS or not all(_owns(tree, p) for p in changed.paths):
            tree = _tree_union(tree, changed._tree() if changed_tree is None else changed_tree,
                               True)
        result.append(("Update", _now(time), manager, api_version, subresource, tree))
    elif previous is not None:
        result.append(("Update", previous[0], manager, api_version, subresource, tree))
    result = [r for r in result if r[5]]
    if sum(1 for r in result if r[0] == "Update") > MAX_UPDATE_MANAGERS:
        return None
    result.sort(key=lambda r: (r[0], r[1] or "", r[2], r[3], r[4]))
    out = []
    for operation, when, name, version, sub, tree in result:
        entry = {"manager": name, "operation": operation, "apiVersion": version}
        if when is not None:
            entry["time"] = when
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = tree
        if sub:
            entry["subresource"] = sub
        out.append(entry)
    return out


# ----------------------------------------------------------------------------- Update


def update_managed_fields(
    old_obj: Any,
    new_obj: dict,
    manager: str,
    operation: str = "Update",
    api_version: str | None = None,
    time: Any = None,
    *,
    strategy: Field | None = None,
    subresource: str = "",
    ignore: Iterable[str] = (),
) -> dict:
    """Record a create/update/patch (``operation="Update"``) by ``manager``.

    ``old_obj`` is the stored object (None for a create), ``new_obj`` the object about to
    be stored. Returns a copy of ``new_obj`` whose ``metadata.managedFields`` gives
    ``manager`` the fields it added or changed (merged with what it owned), takes those
    fields from every other manager, takes removed fields from everyone, and drops
    entries left empty. If ``new_obj`` carries a non-empty valid managedFields list that
    is what the writer sets (``[{}]`` clears it); otherwise the stored list is the start.
    ``api_version`` defaults to ``new_obj["apiVersion"]``; ``time`` is a datetime or an
    RFC 3339 string (default now); ``ignore`` lists dotted paths not tracked (e.g.
    ``"status"`` for a main resource whose status is reset).
    """
    if operation != "Update":
        raise ValueError("update_managed_fields records Update operations; use server_side_apply")
    manager = _validate_manager(manager, required=False)
    api_version = api_version or str(new_obj.get("apiVersion") or "")
    node = _strategy_of(new_obj, strategy)
    ignore_paths = _ignore_paths(ignore)

    incoming = (new_obj.get("metadata") or {}).get("managedFields")
    before = _without_managed_fields(old_obj) if old_obj is not None else {}
    after = _without_managed_fields(new_obj)
    diff = compare_objects(before, after, node)
    # neither side has managedFields: no path of the diff is under it
    changed = _tracked(diff.added | diff.modified, ignore_paths, managed_fields=False)
    removed = _tracked(diff.removed, ignore_paths, managed_fields=False)

    if _FAST_PATH:
        fast = _fast_update(incoming, old_obj, changed, removed, manager, api_version,
                            subresource, time)
        if fast is not None:
            out = dict(new_obj)
            meta = out.setdefault("metadata", {})
            if not isinstance(meta, dict):
                return out
            meta = out["metadata"] = dict(meta)
            if fast:
                meta["managedFields"] = fast
            else:
                meta.pop("managedFields", None)
            return out

    if incoming == [{}]:
        entries: list[_Entry] = []
    else:
        try:
            entries = decode_managed_fields(incoming)
        except ValueError:
            entries = []
        if not entries:
            entries = _entries_of(old_obj)

    mine = _Entry(manager, "Update", api_version, None, FieldSet(), subresource)
    result: list[_Entry] = []
    previous: _Entry | None = None
    owned_before: FieldSet | None = None
    for entry in entries:
        before_fields = entry.fields
        entry = _Entry(entry.manager, entry.operation, entry.api_version, entry.time,
                       entry.fields - changed - removed, entry.subresource)
        if entry.identity == mine.identity:
            previous, owned_before = entry, before_fields
            continue
        result.append(entry)
    if changed:
        mine.fields = changed | (previous.fields if previous else FieldSet())
        if owned_before is not None and mine.fields.paths == owned_before.paths:
            mine.fields = owned_before  # the same set (a renewal): keeps its FieldsV1 tree
        mine.time = _now(time)
        result.append(mine)
    elif previous is not None:
        result.append(previous)
    return _with_entries(new_obj, result)


# ----------------------------------------------------------------------------- Apply


@dataclass(frozen=True)
class Conflict:
    """Another manager owns ``path`` and the apply would change its value."""

    manager: str
    operation: str
    api_version: str
    path: str
    subresource: str = ""

    def describe_manager(self) -> str:
        """Kubernetes' wording: ``"mgr"``, ``"mgr" with subresource "status"``, and for
        updaters ``... using apps/v1``."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def conflict_message(conflicts: list[Conflict]) -> str:
    """The Status message of the 409 an unforced conflicting apply gets."""
    if len(conflicts) == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.describe_manager()}: {c.path}"
    by_manager: dict[tuple, list[Conflict]] = {}
    for c in conflicts:
        by_manager.setdefault((c.manager, c.operation, c.api_version, c.subresource), []).append(c)
    lines: list[str] = []
    for key in sorted(by_manager):
        group = by_manager[key]
        lines.append(f"conflicts with {group[0].describe_manager()}:")
        lines.extend(f"- {c.path}" for c in group)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict_causes(conflicts: list[Conflict]) -> list[dict]:
    """``details.causes`` of that Status."""
    return [{"type": "FieldManagerConflict", "message": f"conflict with {c.describe_manager()}",
             "field": c.path} for c in conflicts]


class ApplyConflictError(Exception):
    """Convenience for callers that prefer raising: carries the conflicts, code 409."""

    code = 409
    reason = "Conflict"

    def __init__(self, conflicts: list[Conflict]):
        self.conflicts = conflicts
        self.message = conflict_message(conflicts)
        super().__init__(self.message)

    @property
    def causes(self) -> list[dict]:
        return conflict_causes(self.conflicts)


def server_side_apply(
    live_obj: dict | None,
    applied_config: dict,
    manager: str,
    api_version: str | None = None,
    force: bool = False,
    strategies: Field | None = None,
    *,
    time: Any = None,
    subresource: str = "",
    ignore: Iterable[str] = (),
) -> tuple[dict | None, list[Conflict]]:
    """Server-side apply of ``applied_config`` by ``manager`` onto ``live_obj`` (None: create).

    Returns ``(new_obj, [])`` on success, with ``metadata.managedFields`` updated, or
    ``(None, conflicts)`` when other managers own fields whose values would change and
    ``force`` is false (answer 409 with :func:`conflict_message` and
    :func:`conflict_causes`). With ``force`` the applier takes those fields.
    ``strategies`` is the kind's strategy tree (default: looked up from apiVersion/kind).
    Raises :class:`~pilothouse.apiserver.patch.PatchError` for a bad request (no
    manager, managedFields in the configuration, duplicate or keyless list items).
    """
    manager = _validate_manager(manager, required=True)
    if not isinstance(applied_config, dict):
        raise PatchError("an apply configuration must be an object", code=400)
    meta = applied_config.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise PatchError("metadata must be an object", field="metadata", code=400)
    if meta and meta.get("managedFields"):
        raise PatchError("metadata.managedFields must be nil", field="metadata.managedFields", code=400)
    for required in ("apiVersion", "kind"):
        if not applied_config.get(required):
            raise PatchError(f"{required} must be set in an apply configuration", field=required, code=400)
    api_version = api_version or str(applied_config.get("apiVersion"))
    node = _strategy_of(applied_config, strategies)
    ignore_paths = _ignore_paths(ignore)

    live = _without_managed_fields(live_obj) if live_obj is not None else {}
    entries = _entries_of(live_obj)
    applied = _tracked(fieldset_from_object(applied_config, node), ignore_paths)
    mine = _Entry(manager, "Apply", api_version, _now(time), applied, subresource)
    last = next((e for e in entries if e.identity == mine.identity), None)
    others = [e for e in entries if e.identity != mine.identity]

    merged = _apply_merge(live, applied_config, node)
    if last is not None:
        owned_elsewhere = FieldSet()
        for entry in others:
            owned_elsewhere = owned_elsewhere | entry.fields
        _prune(merged, (last.fields - applied).paths, applied | owned_elsewhere, node, applied_config)

    diff = compare_objects(live, merged, node)
    changed = _tracked(diff.added | diff.modified, ignore_paths)
    removed = _tracked(diff.removed, ignore_paths)
    conflicts: list[Conflict] = []
    for entry in others:
        for path in entry.fields & changed:
            conflicts.append(Conflict(entry.manager, entry.operation, entry.api_version,
                                      path_to_string(path), entry.subresource))
    if conflicts and not force:
        conflicts.sort(key=lambda c: (c.manager, c.operation, c.api_version, c.subresource))
        return None, conflicts

    result = [
        _Entry(e.manager, e.operation, e.api_version, e.time, e.fields - changed - removed, e.subresource)
        for e in others
    ]
    result.append(mine)
    return _with_entries(merged, result), []
