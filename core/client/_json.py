"""JSON for the client's hot paths: orjson, with the standard library deciding whatever
orjson refuses (integers beyond 64 bits, non-string keys, NaN), so results and error
messages are those of :mod:`json`."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj).encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # the standard library's result or its error message
