"""Container environment from a pod spec: ``env`` (values with ``$(VAR)`` references,
``valueFrom`` field, resource, ConfigMap and Secret references) and ``envFrom``; and the
same ``$(VAR)`` expansion for ``command`` and ``args``."""

from __future__ import annotations

import base64
import fractions
import math
import re
from collections.abc import Awaitable, Callable, Mapping

from pilothouse.model.quantity import Quantity, QuantityError

__all__ = ["ConfigError", "Lookup", "expand", "field_value", "resolve_env",
           "resource_field_value", "service_env"]

#: ``lookup(kind, namespace, name)`` → the ConfigMap/Secret object, or None when absent.
Lookup = Callable[[str, str, str], Awaitable[dict | None]]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class ConfigError(Exception):
    """The container cannot be configured yet (``CreateContainerConfigError``): a
    referenced ConfigMap, Secret or key is missing, or a reference is invalid."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$(NAME)`` becomes the value of NAME when
    defined and stays as written otherwise; ``$$`` is a literal ``$``."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append(text[i:])
                break
            name = text[i + 2:close]
            out.append(env[name] if name in env else text[i:close + 1])
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the downward API writes them: ``key="value"`` lines, sorted,
    values quoted like Go's ``%q``."""
    import json
    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))


def field_value(pod: dict, path: str, *, host_ip: str = "", pod_ips: tuple[str, ...] = ()
                ) -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``. Raises
    :class:`ConfigError` for an unsupported path."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", ""),
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName", ""),
        "status.hostIP": lambda: host_ip,
        "status.hostIPs": lambda: host_ip,
        "status.podIP": lambda: pod_ips[0] if pod_ips else "",
        "status.podIPs": lambda: ",".join(pod_ips),
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldPath {path!r}")
    return simple[path]()


def _container(pod: dict, name: str) -> dict | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    return None


def resource_field_value(pod: dict, container: dict, ref: dict,
                         allocatable: Mapping[str, Quantity]) -> str:
    """The value of a ``resourceFieldRef``: the container's limit or request divided by
    ``divisor`` and rounded up; an unset limit is the node's allocatable amount."""
    target = container
    if ref.get("containerName"):
        target = _container(pod, ref["containerName"])
        if target is None:
            raise ConfigError(f"resourceFieldRef: no container {ref['containerName']!r}")
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    res = target.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)
    try:
        value = Quantity(str(raw)) if raw is not None else allocatable.get(name, Quantity(0))
        divisor = Quantity(str(ref.get("divisor") or "1"))
    except QuantityError as exc:
        raise ConfigError(f"resourceFieldRef {resource}: {exc}") from None
    if divisor.is_zero():
        divisor = Quantity(1)
    ratio: fractions.Fraction = value.to_fraction() / divisor.to_fraction()
    if raw is None and kind == "requests":
        ratio = fractions.Fraction(0)
    return str(math.ceil(ratio))


def _data(obj: dict, kind: str) -> dict[str, str]:
    """A ConfigMap's or Secret's data as text (Secret values are base64)."""
    out: dict[str, str] = {}
    if kind == "Secret":
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = v
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", "replace")
    else:
        out.update(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v).decode("utf-8", "replace")
    return out


async def resolve_env(pod: dict, container: dict, lookup: Lookup, *, host_ip: str = "",
                      pod_ips: tuple[str, ...] = (),
                      allocatable: Mapping[str, Quantity] | None = None,
                      service_env: Mapping[str, str] | None = None
                      ) -> list[tuple[str, str]]:
    """The container's environment, in order: ``envFrom`` sources, then ``env``; a later
    definition of a name replaces an earlier one. ``service_env`` (Service links) comes
    first and is overridden by both. Raises :class:`ConfigError`."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(service_env or {})
    cache: dict[tuple[str, str], dict | None] = {}

    async def source(kind: str, name: str, optional: bool, what: str) -> dict[str, str] | None:
        if not name:
            raise ConfigError(f"{what}: a {kind} name is required")
        key = (kind, name)
        if key not in cache:
            cache[key] = await lookup(kind, namespace, name)
        obj = cache[key]
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return _data(obj, kind)

    for entry in container.get("envFrom") or []:
        prefix = entry.get("prefix") or ""
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = entry.get(field)
            if ref is None:
                continue
            data = await source(kind, ref.get("name", ""), bool(ref.get("optional")),
                                f"envFrom.{field}")
            for k, v in (data or {}).items():
                name = prefix + k
                if _ENV_NAME.match(name):  # the kubelet skips invalid names too
                    env[name] = v
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "valueFrom" not in var or var.get("valueFrom") is None:
            env[name] = expand(var.get("value") or "", env)
            continue
        vf = var["valueFrom"]
        if vf.get("fieldRef"):
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""),
                                    host_ip=host_ip, pod_ips=pod_ips)
        elif vf.get("resourceFieldRef"):
            env[name] = resource_field_value(pod, container, vf["resourceFieldRef"],
                                             allocatable or {})
        else:
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = vf.get(field)
                if ref is None:
                    continue
                optional = bool(ref.get("optional"))
                data = await source(kind, ref.get("name", ""), optional, f"env {name}")
                key = ref.get("key", "")
                if data is None:
                    break
                if key not in data:
                    if optional:
                        break
                    raise ConfigError(f'couldn\'t find key {key} in {kind} '
                                      f'{namespace}/{ref.get("name", "")}')
                env[name] = data[key]
                break
    return list(env.items())


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: list[dict]) -> dict[str, str]:
    """The Service environment variables the kubelet gives containers (Docker-links style):
    ``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT[_<PORTNAME>]``, ``<NAME>_PORT``,
    ``<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`` for each Service with a cluster IP."""
    out: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP") or ""
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = _env_name(svc["metadata"]["name"])
        out[f"{name}_SERVICE_HOST"] = ip
        out[f"{name}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                out[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p.get("port"))
        host = f"[{ip}]" if ":" in ip else ip
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP").lower()
            url = f"{proto}://{host}:{p.get('port')}"
            prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
            if i == 0:
                out[f"{name}_PORT"] = url
            out[prefix] = url
            out[f"{prefix}_PROTO"] = proto
            out[f"{prefix}_PORT"] = str(p.get("port"))
            out[f"{prefix}_ADDR"] = ip
    return out
