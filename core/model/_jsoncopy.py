"""Deep copies of JSON values, for the API server's hot paths."""

from __future__ import annotations

import copy as _copy
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    orjson = None

# Only the exact JSON types: a subclass of str or int, a dataclass or a datetime must not
# come back from a copy as a plain value (orjson raises for them and the copy falls back).
_EXACT = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
          | orjson.OPT_PASSTHROUGH_DATETIME) if orjson is not None else 0


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value, as ``copy.deepcopy`` makes it but several times faster
    (an orjson round trip). What a round trip would change (NaN and infinities, tuples,
    integers beyond 64 bits, non-string keys, other types) is copied by ``copy.deepcopy``."""
    if type(value) not in (dict, list):
        return _copy.deepcopy(value)
    if orjson is not None:
        try:
            copied = orjson.loads(orjson.dumps(value, option=_EXACT))
        except TypeError:
            pass
        else:
            if copied == value:  # NaN != NaN, None != inf, [] != ()
                return copied
    return _copy.deepcopy(value)


def exact_json(value: Any) -> bytes | None:
    """The JSON text of ``value`` when it tells ``value`` apart from every other value (for a
    memo key), or None when it would not (NaN, infinities, tuples, other types...)."""
    if orjson is None:
        return None
    try:
        encoded = orjson.dumps(value, option=_EXACT)
    except TypeError:
        return None
    return encoded if orjson.loads(encoded) == value else None


def same_json(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same JSON value with the same types throughout (Python
    equality alone takes ``True`` for ``1`` and ``1.0`` for ``1``); False when unsure
    (values a JSON text cannot tell apart from others, such as subclasses of str)."""
    if a is b:
        return True
    if orjson is None or a != b:
        return False
    try:
        return orjson.dumps(a, option=_EXACT) == orjson.dumps(b, option=_EXACT)
    except TypeError:
        return False
