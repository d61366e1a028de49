"""Turn a plugin's raw ``options`` mapping from the config file into its ``Options`` dataclass.

Errors name the plugin and the option and say what was expected; all of them are collected so
one ``pilothouse config check`` run shows every mistake.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        args = typing.get_args(tp)
        return f"mapping of {_type_name(args[1])}" if args else "mapping"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _check(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, converted value) for one value against one annotation."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, conv = _check(value, arg)
            if ok:
                return True, conv
        return False, value
    if tp is type(None):
        return value is None, value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            return False, value
        args = typing.get_args(tp)
        out = []
        for item in value:
            ok, conv = _check(item, args[0]) if args else (True, item)
            if not ok:
                return False, value
            out.append(conv)
        return True, tuple(out) if (origin or tp) is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False, value
        args = typing.get_args(tp)
        if args:
            for k, v in value.items():
                if not (_check(k, args[0])[0] and _check(v, args[1])[0]):
                    return False, value
        return True, dict(value)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def build_options(options_cls: type | None, raw: Any, where: str) -> tuple[Any, list[str]]:
    """Build ``options_cls(**raw)`` with type checks.

    ``where`` names the plugin in messages, e.g. ``store plugin 'raft'``. Returns
    ``(instance or None, errors)``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [f"{where}: options must be a mapping, got {_type_name(type(raw))}"]
    if options_cls is None:
        if raw:
            return None, [f"{where}: takes no options, but got {', '.join(sorted(raw))}"]
        return None, []
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    errors, values = [], {}
    for key, value in raw.items():
        if key not in fields:
            errors.append(f"{where}: unknown option {key!r}; known options: "
                          f"{', '.join(sorted(fields)) or '(none)'}")
            continue
        ok, conv = _check(value, hints.get(key, Any))
        if not ok:
            errors.append(f"{where}: option {key!r} must be {_type_name(hints[key])}, "
                          f"got {value!r}")
        else:
            values[key] = conv
    for name, f in fields.items():
        if (name not in raw and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING):
            errors.append(f"{where}: option {name!r} is required ({_type_name(hints[name])})")
    if errors:
        return None, errors
    try:
        instance = options_cls(**values)
    except (TypeError, ValueError) as exc:  # __post_init__ checks of the plugin's own
        return None, [f"{where}: {exc}"]
    return instance, []


def describe_options(options_cls: type | None) -> list[dict]:
    """Describe a plugin's options for ``plugins list --output json`` and docs."""
    if options_cls is None:
        return []
    hints = typing.get_type_hints(options_cls)
    out = []
    for f in dataclasses.fields(options_cls):
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else None)
        out.append({"name": f.name, "type": _type_name(hints[f.name]),
                    "default": default, "help": f.metadata.get("help", "")})
    return out
