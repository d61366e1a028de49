"""Reading a request: its path (what resource, which verb), query parameters, and body.

Path parsing follows Kubernetes' request-info rules, so authorizers see the same attributes
(verb, group, resource, subresource, namespace, name) a Kubernetes authorizer would.
"""

from __future__ import annotations

import dataclasses

import yaml

from pilothouse.apiserver import _json
from pilothouse.model import errors

MAX_BODY = 3 * 1024 * 1024
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
JSON = "application/json"
YAML = "application/yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
BODY_TYPES = (JSON, YAML)
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


@dataclasses.dataclass
class RequestInfo:
    """What a request asks for. ``resource_request`` is False for ``/version``, discovery
    and OpenAPI paths (then only ``verb`` and ``path`` mean anything)."""

    verb: str
    path: str
    resource_request: bool = False
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()


def parse_path(method: str, path: str, query) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    info = RequestInfo(verb=method.lower(), path=path)
    if not parts or parts[0] not in ("api", "apis"):
        return info
    info.api_prefix = parts[0]
    if parts[0] == "api":
        if len(parts) < 2:
            return info
        info.version, rest = parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return info
        info.group, info.version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return info
    info.resource_request = True
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.parts = tuple(rest)
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    if len(rest) > 3:
        raise errors.NotFound(info.resource, "/".join(rest[1:]), group=info.group)
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        if info.name:
            info.verb = "get"
        else:
            info.verb = "watch" if parse_bool(query.get("watch")) else "list"
    elif verb == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = _WRITE_VERBS.get(verb) or verb.lower()
    if info.resource == "namespaces" and info.name and info.namespace == info.name \
            and rest[0] == "namespaces":
        info.namespace = ""  # a namespace object itself is cluster-scoped
    return info


def parse_bool(value: str | None, name: str = "") -> bool:
    """Go's ParseBool, which is what the Python client and kubectl expect."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.BadRequest(f"invalid boolean value {value!r} for parameter {name!r}")


def parse_int(query, name: str, default: int = 0, minimum: int = 0) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.BadRequest(f"invalid value {raw!r} for parameter {name!r}: "
                                f"must be an integer") from None
    if value < minimum:
        raise errors.BadRequest(f"invalid value {raw!r} for parameter {name!r}: "
                                f"must be at least {minimum}")
    return value


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_body(raw: bytes, content_type: str | None, allowed: tuple[str, ...] = BODY_TYPES):
    """Decode a request body of an allowed media type. A missing Content-Type is JSON (the
    Python client sends none). Raises 413, 415 or 400 with Kubernetes' wording."""
    if len(raw) > MAX_BODY:
        raise errors.RequestEntityTooLarge(f"limit is {MAX_BODY} bytes")
    mt = media_type(content_type) or JSON
    if mt == PROTOBUF:
        raise errors.StatusError(
            "the body of the request was in protobuf, which this server does not accept; send "
            "JSON or YAML instead (with kubectl: 'kubectl apply -f' or 'kubectl create -f' "
            "with a manifest rather than a generator command such as 'create configmap')",
            code=415, reason="UnsupportedMediaType")
    if mt not in allowed:
        raise errors.UnsupportedMediaType(allowed)
    if not raw.strip():
        raise errors.BadRequest("the request body is empty; send an object")
    try:
        if mt in (YAML, APPLY_PATCH):
            value = yaml.safe_load(raw)
        else:
            value = _json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0]
        raise errors.BadRequest(f"the body of the request could not be decoded as "
                                f"{'YAML' if mt in (YAML, APPLY_PATCH) else 'JSON'}: {detail}") \
            from None
    return value, mt


def accept_has(accept: str | None, *fragments: str) -> bool:
    """True when one entry of the Accept header contains every fragment."""
    for entry in (accept or "").split(","):
        params = entry.replace(" ", "")
        if all(f in params for f in fragments):
            return True
    return False


_TABLE_ACCEPTS: dict[str | None, bool] = {}


def wants_table(accept: str | None) -> bool:
    # memoised: a server sees a handful of distinct Accept headers, on every request
    found = _TABLE_ACCEPTS.get(accept)
    if found is None:
        found = accept_has(accept, "as=Table", "g=meta.k8s.io")
        if len(_TABLE_ACCEPTS) >= 256:
            _TABLE_ACCEPTS.clear()
        _TABLE_ACCEPTS[accept] = found
    return found


def wants_aggregated_discovery(accept: str | None) -> bool:
    return accept_has(accept, "as=APIGroupDiscoveryList", "v=v2")
