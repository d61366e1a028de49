"""Fast JSON for the hot paths (orjson), with the standard library as the fallback for what
orjson refuses (integers beyond 64 bits, non-string keys)."""

from __future__ import annotations

import json
from typing import Any

from pilothouse.model._jsoncopy import copy_json

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    orjson = None


def dumps(obj: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:
            pass
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # let the standard library decide (and word the error)
    return json.loads(data)


#: A deep copy of a JSON value (see :func:`pilothouse.model._jsoncopy.copy_json`).
copy = copy_json
