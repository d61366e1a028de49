"""Validation of objects, with Kubernetes' rules, field paths and messages.

Two layers:

* **Syntax checks** return a list of messages, empty when the value is fine, exactly as
  Kubernetes' ``k8s.io/apimachinery/pkg/util/validation`` does: :func:`is_dns1123_label`,
  :func:`is_dns1123_subdomain`, :func:`is_dns1035_label`, :func:`is_qualified_name` (label
  and annotation keys: an optional DNS subdomain prefix and ``/``, then a name of at most
  63 characters), :func:`is_valid_label_value`, :func:`is_valid_port_num`,
  :func:`is_valid_port_name`, :func:`is_config_map_key`, :func:`is_valid_path_segment`.
* **Object validation** returns :class:`~pilothouse.model.errors.FieldError` lists with exact
  paths: :func:`validate_object_meta` for metadata, :func:`validate` for a whole object
  (metadata plus the per-kind rules registered with :func:`register_validator`), and
  :func:`validate_update` for an update (adds immutability rules). The API server turns a
  non-empty list into :class:`~pilothouse.model.errors.Invalid` (422).

Validation expects defaulted objects (:func:`pilothouse.model.defaults.apply_defaults` first),
as Kubernetes validates after defaulting: a pod template without ``restartPolicy`` is
defaulted to ``Always`` and then refused in a Job, exactly as Kubernetes refuses it.

Built-in rules cover Pod, Service, Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
CronJob, ConfigMap, Secret, Namespace, Node, Endpoints, EndpointSlice, Lease, RBAC roles and
bindings, PriorityClass, HorizontalPodAutoscaler, PersistentVolume(Claim), StorageClass,
LimitRange, ResourceQuota and CustomResourceDefinition; every other kind (custom resources)
gets metadata validation only, unless a plugin registers a validator for it.

Since 0.1.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from pilothouse.model._jsoncopy import exact_json as _exact_json
from pilothouse.model.errors import FieldError, FieldPath
from pilothouse.model.kinds import Kind, _lookup
from pilothouse.model.quantity import Quantity, QuantityError

__all__ = [
    "MAX_ANNOTATIONS_SIZE", "MAX_DATA_SIZE", "NameValidator", "Validator", "is_config_map_key",
    "is_dns1035_label", "is_dns1123_label", "is_dns1123_subdomain", "is_qualified_name",
    "is_valid_label_value", "is_valid_path_segment", "is_valid_port_name", "is_valid_port_num",
    "name_is_dns1035_label", "name_is_dns_label", "name_is_dns_subdomain",
    "name_is_path_segment", "register_validator", "validate", "validate_annotations",
    "validate_labels", "validate_object_meta", "validate_object_meta_update",
    "validate_pod_spec", "validate_update",
]

#: Total size of all annotation keys and values (256 KiB).
MAX_ANNOTATIONS_SIZE = 256 * 1024
#: Total size of a ConfigMap's or Secret's data (1 MiB).
MAX_DATA_SIZE = 1024 * 1024

# ------------------------------------------------------------------------ syntax checks


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Kubernetes' RegexError, including its quirky double space between examples.
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            text += " or "
        text += f"'{ex}', "
    return text + f"regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character")
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + ")*"
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric "
                  "character")
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character")
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_PERCENT_FMT = "[0-9]+%"

_RE = {fmt: re.compile(f"^(?:{fmt})$") for fmt in (
    _LABEL_FMT, _SUBDOMAIN_FMT, _DNS1035_FMT, _QNAME_FMT, _LABEL_VALUE_FMT, _CONFIG_KEY_FMT,
    _PERCENT_FMT)}


def _matches(fmt: str, value: str) -> bool:
    return bool(_RE[fmt].match(value)) and "\n" not in value


_MEMO_SIZE = 4096


def _memoized(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """A syntax check remembering its answers for short strings: every write checks the same
    names, namespaces, label keys and values again."""
    answers: dict[str, tuple[str, ...]] = {}

    @functools.wraps(check)
    def memoized(value: str) -> list[str]:
        if type(value) is not str or len(value) > 253:
            return check(value)
        found = answers.get(value)
        if found is None:
            found = tuple(check(value))
            if len(answers) >= _MEMO_SIZE:
                answers.clear()
            answers[value] = found
        return list(found)
    return memoized


@_memoized
def is_dns1123_label(value: str) -> list[str]:
    """RFC 1123 label: at most 63 lower-case alphanumerics or ``-``, alphanumeric at both
    ends (namespace names, container and port names)."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _matches(_LABEL_FMT, value):
        errs.append(_regex_error(_LABEL_MSG, _LABEL_FMT, "my-name", "123-abc"))
    return errs


@_memoized
def is_dns1123_subdomain(value: str) -> list[str]:
    """RFC 1123 subdomain: at most 253 characters of dot-separated labels (most object
    names)."""
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not _matches(_SUBDOMAIN_FMT, value):
        errs.append(_regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    return errs


@_memoized
def is_dns1035_label(value: str) -> list[str]:
    """RFC 1035 label: like an RFC 1123 label but starting with a letter (Service names)."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _matches(_DNS1035_FMT, value):
        errs.append(_regex_error(_DNS1035_MSG, _DNS1035_FMT, "my-name", "abc-123"))
    return errs


@_memoized
def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key, finalizer name and similar: ``[prefix/]name`` where the
    prefix is a DNS subdomain and the name at most 63 alphanumerics, ``-``, ``_``, ``.``,
    alphanumeric at both ends."""
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [f"a qualified name {_regex_error(_QNAME_MSG, _QNAME_FMT, 'MyName', 'my.name', '123-abc')}"
                " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _matches(_QNAME_FMT, name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name",
                                                "123-abc"))
    return errs


@_memoized
def is_valid_label_value(value: str) -> list[str]:
    """A label value: empty, or at most 63 alphanumerics, ``-``, ``_``, ``.``, alphanumeric
    at both ends."""
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _matches(_LABEL_VALUE_FMT, value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value",
                                 "12345"))
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    """1 to 65535."""
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(name: str) -> list[str]:
    """An IANA service name: at most 15 lower-case alphanumerics or ``-``, at least one
    letter, no leading, trailing or doubled ``-``."""
    errs = []
    if len(name) > 15:
        errs.append(_max_len(15))
    if not re.fullmatch(r"[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_config_map_key(key: str) -> list[str]:
    """A ConfigMap or Secret data key: at most 253 of ``[-._a-zA-Z0-9]``, not ``.`` or
    ``..`` and not starting with ``..``."""
    errs = []
    if len(key) > 253:
        errs.append(_max_len(253))
    if not _matches(_CONFIG_KEY_FMT, key):
        errs.append(_regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME",
                                 "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_path_segment(name: str, prefix: bool = False) -> list[str]:
    """A name usable as one URL path segment (RBAC objects, PersistentVolumes, HPAs): not
    ``.`` or ``..`` and without ``/`` or ``%``."""
    errs = []
    if not prefix and name in (".", ".."):
        errs.append(f"may not be '{name}'")
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


# Name validators: (name, is_prefix) -> messages. A generateName prefix may end in "-".

NameValidator = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool = False) -> list[str]:
    return is_valid_path_segment(name, prefix)


_NAME_RULES: dict[str, NameValidator] = {
    "Namespace": name_is_dns_label,
    "Service": name_is_dns1035_label,
    "Role": name_is_path_segment, "ClusterRole": name_is_path_segment,
    "RoleBinding": name_is_path_segment, "ClusterRoleBinding": name_is_path_segment,
    "PersistentVolume": name_is_path_segment,
    "HorizontalPodAutoscaler": name_is_path_segment,
}

# ------------------------------------------------------------------- small field helpers


def _path(path: FieldPath | str) -> FieldPath:
    return path if isinstance(path, FieldPath) else FieldPath(str(path))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonnegative(value: Any, path: FieldPath) -> list[FieldError]:
    if value is None:
        return []
    if not _is_int(value):
        return [FieldError.type_invalid(path, value, "must be an integer")]
    if value < 0:
        return [FieldError.invalid(path, value, "must be greater than or equal to 0")]
    return []


def _positive(value: Any, path: FieldPath) -> list[FieldError]:
    if value is None:
        return []
    if not _is_int(value):
        return [FieldError.type_invalid(path, value, "must be an integer")]
    if value <= 0:
        return [FieldError.invalid(path, value, "must be greater than zero")]
    return []


def _dict(value: Any, path: FieldPath, errs: list[FieldError]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.append(FieldError.type_invalid(path, value, "must be an object"))
        return {}
    return value


def _list(value: Any, path: FieldPath, errs: list[FieldError]) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        errs.append(FieldError.type_invalid(path, value, "must be a list"))
        return []
    return value


def _enum(value: Any, path: FieldPath, allowed: Iterable[str],
          required: bool = True) -> list[FieldError]:
    allowed = list(allowed)
    if value in (None, ""):
        return [FieldError.required(path)] if required else []
    if value not in allowed:
        return [FieldError.not_supported(path, value, allowed)]
    return []


def _name_errors(value: Any, path: FieldPath,
                 check: Callable[[str], list[str]]) -> list[FieldError]:
    if not isinstance(value, str):
        return [FieldError.type_invalid(path, value, "must be a string")]
    return [FieldError.invalid(path, value, msg) for msg in check(value)]


# ------------------------------------------------------------------------------ metadata


def validate_labels(labels: Any, path: FieldPath | str) -> list[FieldError]:
    """Keys must be qualified names and values label values; errors name ``path`` itself
    (``metadata.labels``), as Kubernetes reports them."""
    path = _path(path)
    errs: list[FieldError] = []
    for key, value in _dict(labels, path, errs).items():
        errs += [FieldError.invalid(path, key, m) for m in is_qualified_name(key)]
        if not isinstance(value, str):
            errs.append(FieldError.type_invalid(path.key(key), value, "must be a string"))
            continue
        errs += [FieldError.invalid(path, value, m) for m in is_valid_label_value(value)]
    return errs


def validate_annotations(annotations: Any, path: FieldPath | str) -> list[FieldError]:
    """Keys must be qualified names (case-insensitively); the total size of keys and values
    at most :data:`MAX_ANNOTATIONS_SIZE` bytes."""
    path = _path(path)
    errs: list[FieldError] = []
    total = 0
    for key, value in _dict(annotations, path, errs).items():
        errs += [FieldError.invalid(path, key, m) for m in is_qualified_name(key.lower())]
        if not isinstance(value, str):
            errs.append(FieldError.type_invalid(path.key(key), value, "must be a string"))
            continue
        total += len(key.encode()) + len(value.encode())
    if total > MAX_ANNOTATIONS_SIZE:
        errs.append(FieldError.too_long(path, "", MAX_ANNOTATIONS_SIZE))
    return errs


def _validate_owner_references(refs: Any, path: FieldPath) -> list[FieldError]:
    errs: list[FieldError] = []
    controller = ""
    for ref in _list(refs, path, errs):
        if not isinstance(ref, dict):
            errs.append(FieldError.type_invalid(path, ref, "must be an object"))
            continue
        api_version = ref.get("apiVersion") or ""
        if not api_version.rpartition("/")[2]:
            errs.append(FieldError.invalid(path.child("apiVersion"), api_version,
                                           "version must not be empty"))
        for fld, what in (("kind", "kind"), ("name", "name"), ("uid", "uid")):
            if not ref.get(fld):
                errs.append(FieldError.invalid(path.child(fld), ref.get(fld) or "",
                                               f"{what} must not be empty"))
        if ref.get("controller"):
            this = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                errs.append(FieldError.invalid(
                    path, refs, "Only one reference can have Controller set to true. Found "
                                f"\"true\" in references for {controller} and {this}"))
            else:
                controller = this
    return errs


def _validate_finalizers(finalizers: Any, path: FieldPath) -> list[FieldError]:
    errs: list[FieldError] = []
    items = _list(finalizers, path, errs)
    for f in items:
        errs += _name_errors(f, path, is_qualified_name)
    if "orphan" in items and "foregroundDeletion" in items:
        errs.append(FieldError.invalid(path, items, "finalizer orphan and foregroundDeletion "
                                                    "cannot be both set"))
    return errs


def validate_object_meta(obj: dict, namespaced: bool, path: FieldPath | str = "metadata", *,
                         name_fn: NameValidator = name_is_dns_subdomain) -> list[FieldError]:
    """Validate ``obj["metadata"]`` as Kubernetes' ``ValidateObjectMeta`` does: a name (or,
    before one is generated, a generateName) valid per ``name_fn`` (DNS subdomain by
    default); a namespace that is a DNS label when ``namespaced`` and absent otherwise;
    non-negative generation; label, annotation, ownerReference and finalizer syntax."""
    path = _path(path)
    errs: list[FieldError] = []
    meta = _dict(obj.get("metadata"), path, errs)
    generate = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate:
        errs += [FieldError.invalid(path.child("generateName"), generate, m)
                 for m in name_fn(generate, True)]
    if not name:
        if not generate:
            errs.append(FieldError.required(path.child("name"), "name or generateName is "
                                                                "required"))
    elif not isinstance(name, str):
        errs.append(FieldError.type_invalid(path.child("name"), name, "must be a string"))
    else:
        errs += [FieldError.invalid(path.child("name"), name, m) for m in name_fn(name, False)]
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(FieldError.required(path.child("namespace")))
        else:
            errs += _name_errors(ns, path.child("namespace"), is_dns1123_label)
    elif ns:
        errs.append(FieldError.forbidden(path.child("namespace"), "not allowed on this type"))
    # each check finds nothing in an absent field: its path is made only for a present one
    for key, check in _META_CHECKS:
        value = meta.get(key)
        if value is not None:
            errs += check(value, path.child(key))
    return errs


_META_CHECKS = (("generation", _nonnegative), ("labels", validate_labels),
                ("annotations", validate_annotations),
                ("ownerReferences", _validate_owner_references),
                ("finalizers", _validate_finalizers))


def _immutable(new: Any, old: Any, path: FieldPath) -> list[FieldError]:
    return [] if new == old else [FieldError.invalid(path, new, "field is immutable")]


def validate_object_meta_update(new: dict, old: dict,
                                path: FieldPath | str = "metadata") -> list[FieldError]:
    """Metadata rules of an update, checked on the object as the client sent it (before
    :func:`pilothouse.model.meta.prepare_for_update` restores system fields): ``name``,
    ``namespace`` and ``creationTimestamp`` are immutable, a ``uid`` if given must be the
    stored one, and no finalizer may be added once deletion started."""
    path = _path(path)
    nm, om = new.get("metadata") or {}, old.get("metadata") or {}
    errs = []
    for key in ("name", "namespace"):
        errs += _immutable(nm.get(key) or "", om.get(key) or "", path.child(key))
    for key in ("uid", "creationTimestamp"):
        if nm.get(key):
            errs += _immutable(nm.get(key), om.get(key), path.child(key))
    if om.get("deletionTimestamp"):
        added = [f for f in nm.get("finalizers") or [] if f not in (om.get("finalizers") or [])]
        if added:
            shown = ", ".join(json.dumps(f) for f in sorted(set(added)))
            errs.append(FieldError.forbidden(
                path.child("finalizers"), "no new finalizers can be added if the object is "
                                          f"being deleted, found new finalizers []string{{{shown}}}"))
    return errs


# -------------------------------------------------------------------------- quantities


_QUANTITIES: dict[str, Quantity | str] = {}  # text -> Quantity (immutable) or the error


def _quantity(value: Any, path: FieldPath, errs: list[FieldError]) -> Quantity | None:
    if type(value) is str and len(value) <= 253:
        found = _QUANTITIES.get(value)
        if found is None:
            try:
                found = Quantity(value)
            except (QuantityError, TypeError) as exc:
                found = str(exc) if isinstance(exc, QuantityError) else "must be a quantity"
            if len(_QUANTITIES) >= _MEMO_SIZE:
                _QUANTITIES.clear()
            _QUANTITIES[value] = found
        if isinstance(found, Quantity):
            return found
        errs.append(FieldError.invalid(path, value, found))
        return None
    try:
        return Quantity(value)
    except (QuantityError, TypeError) as exc:
        message = str(exc) if isinstance(exc, QuantityError) else "must be a quantity"
        errs.append(FieldError.invalid(path, value, message))
        return None


_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _resource_name_errors(name: str, path: FieldPath) -> list[FieldError]:
    errs = [FieldError.invalid(path, name, m) for m in is_qualified_name(name)]
    if not errs and "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES \
            and not name.startswith("hugepages-"):
        errs.append(FieldError.invalid(path, name, "must be a standard resource for "
                                                   "containers"))
    return errs


def _validate_resources(resources: Any, path: FieldPath) -> list[FieldError]:
    errs: list[FieldError] = []
    res = _dict(resources, path, errs)
    parsed: dict[str, dict[str, Quantity]] = {"limits": {}, "requests": {}}
    for part in ("limits", "requests"):
        ppath = path.child(part)
        for name, value in _dict(res.get(part), ppath, errs).items():
            kpath = ppath.key(name)
            errs += _resource_name_errors(name, kpath)
            q = _quantity(value, kpath, errs)
            if q is None:
                continue
            if q < 0:
                errs.append(FieldError.invalid(kpath, str(q), "must be greater than or "
                                                              "equal to 0"))
            parsed[part][name] = q
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            errs.append(FieldError.invalid(path.child("requests"), str(req),
                                           f"must be less than or equal to {name} limit of "
                                           f"{lim}"))
    return errs


# ------------------------------------------------------------------------------- pods

_PROTOCOLS = ("SCTP", "TCP", "UDP")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_VOLUME_SOURCES = ("hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore",
                   "gitRepo", "secret", "nfs", "iscsi", "glusterfs", "persistentVolumeClaim",
                   "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc",
                   "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
                   "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
                   "storageos", "csi", "ephemeral", "image")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def _port_or_name(value: Any, path: FieldPath) -> list[FieldError]:
    if _is_int(value):
        return [FieldError.invalid(path, value, m) for m in is_valid_port_num(value)]
    if isinstance(value, str):
        if not value:
            return [FieldError.required(path)]
        return [FieldError.invalid(path, value, m) for m in is_valid_port_name(value)]
    return [FieldError.type_invalid(path, value, "must be an integer or a string")]


def _validate_probe(probe: Any, path: FieldPath, liveness_like: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    p = _dict(probe, path, errs)
    if not p:
        return errs
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if p.get(h) is not None]
    if not handlers:
        errs.append(FieldError.required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        errs.append(FieldError.forbidden(path.child(handlers[1]),
                                         "may not specify more than 1 handler type"))
    for h in ("httpGet", "tcpSocket"):
        if isinstance(p.get(h), dict):
            errs += _port_or_name(p[h].get("port"), path.child(h, "port"))
    if isinstance(p.get("grpc"), dict):
        errs += [FieldError.invalid(path.child("grpc", "port"), p["grpc"].get("port"), m)
                 for m in is_valid_port_num(p["grpc"].get("port"))]
    for fld in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold", "terminationGracePeriodSeconds"):
        errs += _nonnegative(p.get(fld), path.child(fld))
    if liveness_like and p.get("successThreshold") not in (None, 1):
        errs.append(FieldError.invalid(path.child("successThreshold"), p["successThreshold"],
                                       "must be 1"))
    return errs


def _validate_container(c: dict, path: FieldPath, volumes: set[str], names: set[str],
                        host_network: bool, init: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name") or ""
    if not name:
        errs.append(FieldError.required(path.child("name")))
    else:
        errs += _name_errors(name, path.child("name"), is_dns1123_label)
        if name in names:
            errs.append(FieldError.duplicate(path.child("name"), name))
        names.add(name)
    image = c.get("image")
    if not image:
        errs.append(FieldError.required(path.child("image")))
    elif not isinstance(image, str):
        errs.append(FieldError.type_invalid(path.child("image"), image, "must be a string"))
    elif image != image.strip():
        errs.append(FieldError.invalid(path.child("image"), image,
                                       "must not have leading or trailing whitespace"))
    errs += _enum(c.get("imagePullPolicy"), path.child("imagePullPolicy"), _PULL_POLICIES)
    errs += _enum(c.get("terminationMessagePolicy"), path.child("terminationMessagePolicy"),
                  _TERMINATION_MESSAGE_POLICIES)
    port_names: set[str] = set()
    for i, port in enumerate(_list(c.get("ports"), path.child("ports"), errs)):
        ppath = path.child("ports").index(i)
        if not isinstance(port, dict):
            errs.append(FieldError.type_invalid(ppath, port, "must be an object"))
            continue
        pname = port.get("name")
        if pname:
            errs += [FieldError.invalid(ppath.child("name"), pname, m)
                     for m in is_valid_port_name(pname)]
            if pname in port_names:
                errs.append(FieldError.duplicate(ppath.child("name"), pname))
            port_names.add(pname)
        cport = port.get("containerPort")
        if not cport:
            errs.append(FieldError.required(ppath.child("containerPort")))
        else:
            errs += [FieldError.invalid(ppath.child("containerPort"), cport, m)
                     for m in is_valid_port_num(cport)]
        hport = port.get("hostPort")
        if hport:
            errs += [FieldError.invalid(ppath.child("hostPort"), hport, m)
                     for m in is_valid_port_num(hport)]
            if host_network and hport != cport:
                errs.append(FieldError.invalid(ppath.child("hostPort"), hport,
                                               "must match `containerPort` when `hostNetwork` "
                                               "is true"))
        errs += _enum(port.get("protocol"), ppath.child("protocol"), _PROTOCOLS)
    for i, env in enumerate(_list(c.get("env"), path.child("env"), errs)):
        epath = path.child("env").index(i)
        ename = (env or {}).get("name") if isinstance(env, dict) else None
        if not ename:
            errs.append(FieldError.required(epath.child("name")))
        elif not isinstance(ename, str) or not _ENV_NAME.fullmatch(ename):
            errs.append(FieldError.invalid(
                epath.child("name"), ename,
                _regex_error("a valid environment variable name must consist of alphabetic "
                             "characters, digits, '_', '-', or '.', and must not start with a "
                             "digit", "[-._a-zA-Z][-._a-zA-Z0-9]*", "my.env-name", "MY_ENV.NAME",
                             "MyEnvName1")))
    mount_paths: set[str] = set()
    for i, mount in enumerate(_list(c.get("volumeMounts"), path.child("volumeMounts"), errs)):
        mpath = path.child("volumeMounts").index(i)
        if not isinstance(mount, dict):
            errs.append(FieldError.type_invalid(mpath, mount, "must be an object"))
            continue
        mname = mount.get("name") or ""
        if not mname:
            errs.append(FieldError.required(mpath.child("name")))
        elif mname not in volumes:
            errs.append(FieldError.not_found(mpath.child("name"), mname))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(FieldError.required(mpath.child("mountPath")))
        elif mount_path in mount_paths:
            errs.append(FieldError.invalid(mpath.child("mountPath"), mount_path,
                                           "must be unique"))
        mount_paths.add(mount_path)
    errs += _validate_resources(c.get("resources"), path.child("resources"))
    if not init or c.get("restartPolicy") == "Always":
        errs += _validate_probe(c.get("livenessProbe"), path.child("livenessProbe"), True)
        errs += _validate_probe(c.get("readinessProbe"), path.child("readinessProbe"), False)
        errs += _validate_probe(c.get("startupProbe"), path.child("startupProbe"), True)
    else:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if c.get(probe) is not None:
                errs.append(FieldError.forbidden(path.child(probe), "may not be set for init "
                                                                    "containers without "
                                                                    "restartPolicy=Always"))
    if init and c.get("restartPolicy") not in (None, "Always"):
        errs.append(FieldError.not_supported(path.child("restartPolicy"), c["restartPolicy"],
                                             ["Always"]))
    if not init and c.get("restartPolicy") is not None:
        errs.append(FieldError.forbidden(path.child("restartPolicy"),
                                         "may not be set for non-init containers"))
    return errs


def _validate_tolerations(tolerations: Any, path: FieldPath) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, tol in enumerate(_list(tolerations, path, errs)):
        tpath = path.index(i)
        if not isinstance(tol, dict):
            errs.append(FieldError.type_invalid(tpath, tol, "must be an object"))
            continue
        key, op = tol.get("key") or "", tol.get("operator") or "Equal"
        if key:
            errs += [FieldError.invalid(tpath.child("key"), key, m) for m in is_qualified_name(key)]
        elif op != "Exists":
            errs.append(FieldError.invalid(tpath.child("operator"), op,
                                           "operator must be Exists when `key` is empty, which "
                                           "means \"match all values and all keys\""))
        if op == "Exists" and tol.get("value"):
            errs.append(FieldError.invalid(tpath.child("operator"), tol.get("value"),
                                           "value must be empty when `operator` is 'Exists'"))
        elif op == "Equal":
            errs += [FieldError.invalid(tpath.child("value"), tol.get("value"), m)
                     for m in is_valid_label_value(tol.get("value") or "")]
        elif op != "Exists":
            errs.append(FieldError.not_supported(tpath.child("operator"), op, ["Equal", "Exists"]))
        effect = tol.get("effect")
        if effect:
            errs += _enum(effect, tpath.child("effect"), _TAINT_EFFECTS)
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(FieldError.invalid(tpath.child("effect"), effect,
                                           "effect must be 'NoExecute' when `tolerationSeconds` "
                                           "is set"))
    return errs


def validate_pod_spec(spec: Any, path: FieldPath | str = "spec") -> list[FieldError]:
    """Validate a PodSpec (of a Pod, or a template at ``spec.template.spec``): volumes,
    containers and init containers (names unique across both, image, ports, env, mounts,
    resources with requests <= limits, probes), restartPolicy, dnsPolicy, nodeSelector,
    tolerations and the scalar fields."""
    path = _path(path)
    errs: list[FieldError] = []
    spec = _dict(spec, path, errs)
    volumes: set[str] = set()
    for i, vol in enumerate(_list(spec.get("volumes"), path.child("volumes"), errs)):
        vpath = path.child("volumes").index(i)
        if not isinstance(vol, dict):
            errs.append(FieldError.type_invalid(vpath, vol, "must be an object"))
            continue
        vname = vol.get("name") or ""
        if not vname:
            errs.append(FieldError.required(vpath.child("name")))
        else:
            errs += _name_errors(vname, vpath.child("name"), is_dns1123_label)
            if vname in volumes:
                errs.append(FieldError.duplicate(vpath.child("name"), vname))
            volumes.add(vname)
        sources = [s for s in _VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            errs.append(FieldError.required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(FieldError.forbidden(vpath.child(sources[1]),
                                             "may not specify more than 1 volume type"))
    host_network = bool(spec.get("hostNetwork"))
    names: set[str] = set()
    for i, c in enumerate(_list(spec.get("initContainers"), path.child("initContainers"), errs)):
        cpath = path.child("initContainers").index(i)
        if not isinstance(c, dict):
            errs.append(FieldError.type_invalid(cpath, c, "must be an object"))
            continue
        errs += _validate_container(c, cpath, volumes, names, host_network, init=True)
    containers = _list(spec.get("containers"), path.child("containers"), errs)
    if not containers:
        errs.append(FieldError.required(path.child("containers")))
    for i, c in enumerate(containers):
        cpath = path.child("containers").index(i)
        if not isinstance(c, dict):
            errs.append(FieldError.type_invalid(cpath, c, "must be an object"))
            continue
        errs += _validate_container(c, cpath, volumes, names, host_network, init=False)
    errs += _enum(spec.get("restartPolicy"), path.child("restartPolicy"), _RESTART_POLICIES)
    errs += _enum(spec.get("dnsPolicy"), path.child("dnsPolicy"), _DNS_POLICIES)
    errs += validate_labels(spec.get("nodeSelector"), path.child("nodeSelector"))
    for fld, check in (("serviceAccountName", is_dns1123_subdomain),
                       ("nodeName", is_dns1123_subdomain), ("hostname", is_dns1123_label),
                       ("subdomain", is_dns1123_label),
                       ("schedulerName", is_dns1123_subdomain),
                       ("priorityClassName", is_dns1123_subdomain)):
        if spec.get(fld):
            errs += _name_errors(spec[fld], path.child(fld), check)
    errs += _nonnegative(spec.get("terminationGracePeriodSeconds"),
                         path.child("terminationGracePeriodSeconds"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not (_is_int(deadline) and 1 <= deadline <= 2**31 - 1):
        errs.append(FieldError.invalid(path.child("activeDeadlineSeconds"), deadline,
                                       "must be between 1 and 2147483647, inclusive"))
    errs += _validate_tolerations(spec.get("tolerations"), path.child("tolerations"))
    return errs


_VALID_POD_SPECS: set[bytes] = set()  # the exact JSON of specs found valid


def _validate_pod(obj: dict) -> list[FieldError]:
    # A pod's spec is validated on every write of the pod (create, binding, status), and the
    # pods of one template have the same spec but for the node they are bound to: valid specs
    # are remembered by their JSON without nodeName, which is checked on its own (the only
    # rule about it).
    spec = obj.get("spec")
    key = None
    if type(spec) is dict:
        node = spec.get("nodeName")
        if node:
            key = _exact_json({k: v for k, v in spec.items() if k != "nodeName"})
            if key is not None and key in _VALID_POD_SPECS:
                return _name_errors(node, FieldPath("spec").child("nodeName"),
                                    is_dns1123_subdomain)
        else:
            key = _exact_json(spec)
            if key is not None and key in _VALID_POD_SPECS:
                return []
    errs = validate_pod_spec(spec, FieldPath("spec"))
    if key is not None and not errs:
        if len(_VALID_POD_SPECS) >= 1024:
            _VALID_POD_SPECS.clear()
        _VALID_POD_SPECS.add(key)
    return errs


# ----------------------------------------------------------------------------- services

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _validate_service(obj: dict) -> list[FieldError]:
    path = FieldPath("spec")
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), path, errs)
    stype = spec.get("type") or "ClusterIP"
    errs += _enum(stype, path.child("type"), _SERVICE_TYPES)
    headless = spec.get("clusterIP") == "None"
    ports = _list(spec.get("ports"), path.child("ports"), errs)
    if not ports and not headless and stype != "ExternalName":
        errs.append(FieldError.required(path.child("ports")))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        ppath = path.child("ports").index(i)
        if not isinstance(port, dict):
            errs.append(FieldError.type_invalid(ppath, port, "must be an object"))
            continue
        pname = port.get("name") or ""
        if len(ports) > 1 and not pname:
            errs.append(FieldError.required(ppath.child("name")))
        elif pname:
            errs += _name_errors(pname, ppath.child("name"), is_dns1123_label)
            if pname in names:
                errs.append(FieldError.duplicate(ppath.child("name"), pname))
            names.add(pname)
        errs += [FieldError.invalid(ppath.child("port"), port.get("port"), m)
                 for m in is_valid_port_num(port.get("port"))]
        errs += _enum(port.get("protocol"), ppath.child("protocol"), _PROTOCOLS)
        if port.get("targetPort") is not None:
            errs += _port_or_name(port.get("targetPort"), ppath.child("targetPort"))
        node_port = port.get("nodePort")
        if node_port:
            if stype in ("ClusterIP", "ExternalName"):
                errs.append(FieldError.forbidden(ppath.child("nodePort"),
                                                 f"may not be used when `type` is '{stype}'"))
            else:
                errs += [FieldError.invalid(ppath.child("nodePort"), node_port, m)
                         for m in is_valid_port_num(node_port)]
        key = (port.get("port"), port.get("protocol"))
        if key in seen:
            errs.append(FieldError.duplicate(ppath, {"port": key[0], "protocol": key[1]}))
        seen.add(key)
    if stype == "ExternalName":
        ext = spec.get("externalName") or ""
        if not ext:
            errs.append(FieldError.required(path.child("externalName")))
        else:
            errs += _name_errors(ext.rstrip("."), path.child("externalName"),
                                 is_dns1123_subdomain)
    else:
        errs += validate_labels(spec.get("selector"), path.child("selector"))
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            errs.append(FieldError.invalid(path.child("clusterIP"), cluster_ip,
                                           "must be a valid IP address, (e.g. 10.9.8.7 or "
                                           "2001:db8::ffff)"))
    errs += _enum(spec.get("sessionAffinity"), path.child("sessionAffinity"),
                  ("ClientIP", "None"), required=False)
    errs += _enum(spec.get("internalTrafficPolicy"), path.child("internalTrafficPolicy"),
                  ("Cluster", "Local"), required=False)
    etp = spec.get("externalTrafficPolicy")
    if etp:
        if stype not in ("NodePort", "LoadBalancer"):
            errs.append(FieldError.invalid(path.child("externalTrafficPolicy"), etp,
                                           "may only be set when `type` is 'NodePort' or "
                                           "'LoadBalancer'"))
        else:
            errs += _enum(etp, path.child("externalTrafficPolicy"), ("Cluster", "Local"))
    return errs


# ---------------------------------------------------------------------------- workloads


def _percent_or_int(value: Any, path: FieldPath) -> list[FieldError]:
    if value is None:
        return []
    if _is_int(value):
        return _nonnegative(value, path)
    if isinstance(value, str):
        if not _matches(_PERCENT_FMT, value):
            return [FieldError.invalid(path, value, _regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                _PERCENT_FMT, "1%", "93%"))]
        if int(value[:-1]) > 100:
            return [FieldError.invalid(path, value, "must not be greater than 100%")]
        return []
    return [FieldError.type_invalid(path, value, "must be an integer or a percentage")]


def _is_zero(value: Any) -> bool:
    return value == 0 or value == "0%"


def _validate_template(template: Any, path: FieldPath, selector: Any, selector_required: bool,
                       restart_policies: tuple[str, ...]) -> list[FieldError]:
    from pilothouse.model.selectors import LabelSelector, SelectorError

    errs: list[FieldError] = []
    if template is None:
        return [FieldError.required(path)]
    tpl = _dict(template, path, errs)
    tmeta = _dict(tpl.get("metadata"), path.child("metadata"), errs)
    labels = tmeta.get("labels") or {}
    errs += validate_labels(tmeta.get("labels"), path.child("metadata", "labels"))
    errs += validate_annotations(tmeta.get("annotations"), path.child("metadata", "annotations"))
    if isinstance(selector, dict) and (selector.get("matchLabels") or
                                       selector.get("matchExpressions")):
        try:
            matches = LabelSelector.from_dict(selector).matches(labels)
        except SelectorError:
            matches = True  # the selector's own errors are reported at spec.selector
        if not matches:
            errs.append(FieldError.invalid(path.child("metadata", "labels"), labels,
                                           "`selector` does not match template `labels`"))
    spec = tpl.get("spec")
    errs += validate_pod_spec(spec, path.child("spec"))
    policy = (spec or {}).get("restartPolicy") if isinstance(spec, dict) else None
    if policy and policy in _RESTART_POLICIES and policy not in restart_policies:
        errs.append(FieldError.not_supported(path.child("spec", "restartPolicy"), policy,
                                             list(restart_policies)))
    return errs


def _validate_selector(spec: dict, path: FieldPath, owner: str) -> list[FieldError]:
    from pilothouse.model.selectors import validate_label_selector

    selector = spec.get("selector")
    if selector is None:
        return [FieldError.required(path.child("selector"))]
    errs = validate_label_selector(selector, path.child("selector"))
    if isinstance(selector, dict) and not selector.get("matchLabels") and \
            not selector.get("matchExpressions"):
        errs.append(FieldError.invalid(path.child("selector"), selector,
                                       f"empty selector is invalid for {owner}"))
    return errs


def _validate_replicated(obj: dict, owner: str) -> tuple[list[FieldError], dict, FieldPath]:
    path = FieldPath("spec")
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), path, errs)
    errs += _nonnegative(spec.get("replicas"), path.child("replicas"))
    errs += _validate_selector(spec, path, owner)
    errs += _nonnegative(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    errs += _nonnegative(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit"))
    template = spec.get("template")
    errs += _validate_template(template, path.child("template"), spec.get("selector"), True,
                               ("Always",))
    if isinstance(template, dict) and isinstance(template.get("spec"), dict) and \
            template["spec"].get("activeDeadlineSeconds") is not None:
        errs.append(FieldError.forbidden(path.child("template", "spec", "activeDeadlineSeconds"),
                                         f"activeDeadlineSeconds in {owner} is not Supported"))
    return errs, spec, path


def _validate_deployment(obj: dict) -> list[FieldError]:
    errs, spec, path = _validate_replicated(obj, "deployment")
    strategy = _dict(spec.get("strategy"), path.child("strategy"), errs)
    spath = path.child("strategy")
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.append(FieldError.forbidden(spath.child("rollingUpdate"), "may not be "
                                             "specified when strategy `type` is 'Recreate'"))
    elif stype == "RollingUpdate":
        ru = _dict(strategy.get("rollingUpdate"), spath.child("rollingUpdate"), errs)
        rpath = spath.child("rollingUpdate")
        errs += _percent_or_int(ru.get("maxUnavailable"), rpath.child("maxUnavailable"))
        errs += _percent_or_int(ru.get("maxSurge"), rpath.child("maxSurge"))
        if "maxUnavailable" in ru and "maxSurge" in ru and _is_zero(ru["maxUnavailable"]) \
                and _is_zero(ru["maxSurge"]):
            errs.append(FieldError.invalid(rpath.child("maxUnavailable"), ru["maxUnavailable"],
                                           "may not be 0 when `maxSurge` is 0"))
    elif stype is not None:
        errs.append(FieldError.not_supported(spath.child("type"), stype,
                                             ["Recreate", "RollingUpdate"]))
    pds = spec.get("progressDeadlineSeconds")
    errs += _nonnegative(pds, path.child("progressDeadlineSeconds"))
    mrs = spec.get("minReadySeconds") or 0
    if _is_int(pds) and _is_int(mrs) and pds <= mrs:
        errs.append(FieldError.invalid(path.child("progressDeadlineSeconds"), pds,
                                       "must be greater than minReadySeconds"))
    return errs


def _validate_replicaset(obj: dict) -> list[FieldError]:
    return _validate_replicated(obj, "deployment")[0]


def _validate_daemonset(obj: dict) -> list[FieldError]:
    path = FieldPath("spec")
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), path, errs)
    errs += _validate_selector(spec, path, "daemonset")
    errs += _validate_template(spec.get("template"), path.child("template"),
                               spec.get("selector"), True, ("Always",))
    errs += _nonnegative(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    errs += _nonnegative(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit"))
    upath = path.child("updateStrategy")
    strategy = _dict(spec.get("updateStrategy"), upath, errs)
    stype = strategy.get("type")
    errs += _enum(stype, upath.child("type"), ("OnDelete", "RollingUpdate"), required=False)
    if stype == "RollingUpdate":
        ru = _dict(strategy.get("rollingUpdate"), upath.child("rollingUpdate"), errs)
        rpath = upath.child("rollingUpdate")
        errs += _percent_or_int(ru.get("maxUnavailable"), rpath.child("maxUnavailable"))
        errs += _percent_or_int(ru.get("maxSurge"), rpath.child("maxSurge"))
        if _is_zero(ru.get("maxUnavailable", 1)) and _is_zero(ru.get("maxSurge", 0)):
            errs.append(FieldError.invalid(rpath.child("maxUnavailable"), ru.get("maxUnavailable"),
                                           "cannot be 0 when maxSurge is 0"))
    return errs


def _validate_statefulset(obj: dict) -> list[FieldError]:
    path = FieldPath("spec")
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), path, errs)
    errs += _nonnegative(spec.get("replicas"), path.child("replicas"))
    errs += _validate_selector(spec, path, "statefulset")
    errs += _validate_template(spec.get("template"), path.child("template"),
                               spec.get("selector"), True, ("Always",))
    errs += _enum(spec.get("podManagementPolicy"), path.child("podManagementPolicy"),
                  ("OrderedReady", "Parallel"), required=False)
    upath = path.child("updateStrategy")
    strategy = _dict(spec.get("updateStrategy"), upath, errs)
    errs += _enum(strategy.get("type"), upath.child("type"), ("OnDelete", "RollingUpdate"),
                  required=False)
    ru = _dict(strategy.get("rollingUpdate"), upath.child("rollingUpdate"), errs)
    if ru and strategy.get("type") == "OnDelete":
        errs.append(FieldError.invalid(upath.child("rollingUpdate"), ru,
                                       "only allowed for updateStrategy 'RollingUpdate'"))
    errs += _nonnegative(ru.get("partition"), upath.child("rollingUpdate", "partition"))
    if "maxUnavailable" in ru:
        errs += _percent_or_int(ru["maxUnavailable"], upath.child("rollingUpdate",
                                                                  "maxUnavailable"))
    if spec.get("serviceName"):
        errs += _name_errors(spec["serviceName"], path.child("serviceName"), is_dns1123_label)
    errs += _nonnegative(spec.get("minReadySeconds"), path.child("minReadySeconds"))
    errs += _nonnegative(spec.get("revisionHistoryLimit"), path.child("revisionHistoryLimit"))
    return errs


def _validate_job_spec(spec: Any, path: FieldPath) -> list[FieldError]:
    from pilothouse.model.selectors import validate_label_selector

    errs: list[FieldError] = []
    spec = _dict(spec, path, errs)
    for fld in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += _nonnegative(spec.get(fld), path.child(fld))
    errs += _positive(spec.get("activeDeadlineSeconds"), path.child("activeDeadlineSeconds"))
    mode = spec.get("completionMode")
    errs += _enum(mode, path.child("completionMode"), ("NonIndexed", "Indexed"), required=False)
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(FieldError.required(path.child("completions"),
                                        "when completion mode is Indexed"))
    if spec.get("selector") is not None:
        errs += validate_label_selector(spec["selector"], path.child("selector"))
    errs += _validate_template(spec.get("template"), path.child("template"),
                               spec.get("selector"), False, ("OnFailure", "Never"))
    return errs


def _validate_job(obj: dict) -> list[FieldError]:
    return _validate_job_spec(obj.get("spec"), FieldPath("spec"))


_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, {m: i + 1 for i, m in enumerate(
                    ("jan feb mar apr may jun jul aug sep oct nov dec").split())}),
                ("day of week", 0, 6, {d: i for i, d in enumerate(
                    "sun mon tue wed thu fri sat".split())}))
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly")


def _cron_errors(schedule: str) -> str | None:
    """Why a standard 5-field cron schedule does not parse, or None."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@"):
        if text in _CRON_DESCRIPTORS or text.startswith("@every "):
            return None
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: {fields}"

    def number(token: str, names: dict) -> int:
        if token.lower() in names:
            return names[token.lower()]
        if not token.isdigit():
            raise ValueError(f"failed to parse int from {token}")
        return int(token)

    for token, (_, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in token.split(","):
            rng, _, step = part.partition("/")
            try:
                if rng in ("*", "?"):
                    lo, hi = low, high
                else:
                    a, dash, b = rng.partition("-")
                    lo = number(a, names)
                    hi = number(b, names) if dash else lo
                if step:
                    if number(step, {}) == 0:
                        return f"step of range should be a positive number: {part}"
            except ValueError as exc:
                return str(exc)
            if lo < low:
                return f"beginning of range ({lo}) below minimum ({low}): {part}"
            if hi > high:
                return f"end of range ({hi}) above maximum ({high}): {part}"
            if lo > hi:
                return f"beginning of range ({lo}) beyond end of range ({hi}): {part}"
    return None


def _validate_cronjob(obj: dict) -> list[FieldError]:
    path = FieldPath("spec")
    errs: list[FieldError] = []
    name = (obj.get("metadata") or {}).get("name") or ""
    if len(name) > 52:
        errs.append(FieldError.invalid(FieldPath("metadata", "name"), name,
                                       "must be no more than 52 characters"))
    spec = _dict(obj.get("spec"), path, errs)
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(FieldError.required(path.child("schedule")))
    elif not isinstance(schedule, str):
        errs.append(FieldError.type_invalid(path.child("schedule"), schedule, "must be a string"))
    else:
        problem = _cron_errors(schedule)
        if problem:
            errs.append(FieldError.invalid(path.child("schedule"), schedule, problem))
    errs += _enum(spec.get("concurrencyPolicy"), path.child("concurrencyPolicy"),
                  ("Allow", "Forbid", "Replace"), required=False)
    for fld in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                "failedJobsHistoryLimit"):
        errs += _nonnegative(spec.get(fld), path.child(fld))
    jt = spec.get("jobTemplate")
    if jt is None:
        errs.append(FieldError.required(path.child("jobTemplate")))
    else:
        jt = _dict(jt, path.child("jobTemplate"), errs)
        jmeta = _dict(jt.get("metadata"), path.child("jobTemplate", "metadata"), errs)
        errs += validate_labels(jmeta.get("labels"), path.child("jobTemplate", "metadata",
                                                                "labels"))
        errs += _validate_job_spec(jt.get("spec"), path.child("jobTemplate", "spec"))
    return errs


# ------------------------------------------------------------------- config and secrets


def _validate_configmap(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    data = _dict(obj.get("data"), FieldPath("data"), errs)
    binary = _dict(obj.get("binaryData"), FieldPath("binaryData"), errs)
    total = 0
    for key, value in data.items():
        kpath = FieldPath("data").key(key)
        errs += [FieldError.invalid(kpath, key, m) for m in is_config_map_key(key)]
        if key in binary:
            errs.append(FieldError.invalid(kpath, key, "duplicate of key present in binaryData"))
        if not isinstance(value, str):
            errs.append(FieldError.type_invalid(kpath, value, "must be a string"))
            continue
        total += len(value.encode())
    for key, value in binary.items():
        kpath = FieldPath("binaryData").key(key)
        errs += [FieldError.invalid(kpath, key, m) for m in is_config_map_key(key)]
        decoded = _b64(value, kpath, errs)
        total += len(decoded) if decoded is not None else 0
    if total > MAX_DATA_SIZE:
        errs.append(FieldError.too_long("", "", MAX_DATA_SIZE))
    return errs


def _b64(value: Any, path: FieldPath, errs: list[FieldError]) -> bytes | None:
    if not isinstance(value, str):
        errs.append(FieldError.type_invalid(path, value, "must be a base64-encoded string"))
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        errs.append(FieldError.invalid(path, "<secret contents redacted>",
                                       "must be base64-encoded"))
        return None


_SECRET_REQUIRED = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    dpath = FieldPath("data")
    data = _dict(obj.get("data"), dpath, errs)
    total = 0
    decoded: dict[str, bytes] = {}
    for key, value in data.items():
        kpath = dpath.key(key)
        errs += [FieldError.invalid(kpath, key, m) for m in is_config_map_key(key)]
        raw = _b64(value, kpath, errs)
        if raw is not None:
            decoded[key] = raw
            total += len(raw)
    for key in _dict(obj.get("stringData"), FieldPath("stringData"), errs):
        errs += [FieldError.invalid(FieldPath("stringData").key(key), key, m)
                 for m in is_config_map_key(key)]
    if total > MAX_DATA_SIZE:
        errs.append(FieldError.too_long(dpath, "", MAX_DATA_SIZE))
    stype = obj.get("type") or "Opaque"
    for key in _SECRET_REQUIRED.get(stype, ()):
        if not decoded.get(key):
            errs.append(FieldError.required(dpath.key(key)))
    if stype == "kubernetes.io/basic-auth" and not decoded.get("username") and \
            not decoded.get("password"):
        errs.append(FieldError.required(dpath.key("username")))
        errs.append(FieldError.required(dpath.key("password")))
    if stype == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(FieldError.required(FieldPath("metadata", "annotations").key(
                "kubernetes.io/service-account.name")))
    if stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = _SECRET_REQUIRED[stype][0]
        if decoded.get(key):
            try:
                json.loads(decoded[key])
            except ValueError as exc:
                errs.append(FieldError.invalid(dpath.key(key), "<secret contents redacted>",
                                               str(exc)))
    return errs


# ---------------------------------------------------------------------- cluster objects


def _validate_namespace(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec", "finalizers")
    spec = _dict(obj.get("spec"), FieldPath("spec"), errs)
    for f in _list(spec.get("finalizers"), path, errs):
        if not isinstance(f, str):
            errs.append(FieldError.type_invalid(path, f, "must be a string"))
            continue
        errs += [FieldError.invalid(path, f, m) for m in is_qualified_name(f)]
        if "/" not in f and f != "kubernetes":
            errs.append(FieldError.invalid(path, f, "name is neither a standard finalizer name "
                                                    "nor is it fully qualified"))
    return errs


def _validate_node(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec")
    spec = _dict(obj.get("spec"), path, errs)
    cidrs = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and not cidrs:
        cidrs = [spec["podCIDR"]]
    for i, cidr in enumerate(cidrs):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except (ValueError, TypeError):
            errs.append(FieldError.invalid(path.child("podCIDRs").index(i), cidr,
                                           "must be a valid CIDR"))
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(_list(spec.get("taints"), path.child("taints"), errs)):
        tpath = path.child("taints").index(i)
        if not isinstance(taint, dict):
            errs.append(FieldError.type_invalid(tpath, taint, "must be an object"))
            continue
        key = taint.get("key") or ""
        if not key:
            errs.append(FieldError.required(tpath.child("key")))
        else:
            errs += [FieldError.invalid(tpath.child("key"), key, m) for m in is_qualified_name(key)]
        errs += [FieldError.invalid(tpath.child("value"), taint.get("value"), m)
                 for m in is_valid_label_value(taint.get("value") or "")]
        errs += _enum(taint.get("effect"), tpath.child("effect"), _TAINT_EFFECTS)
        pair = (key, taint.get("effect") or "")
        if pair in seen:
            errs.append(FieldError.duplicate(tpath, f"{key}:{pair[1]}"))
        seen.add(pair)
    status = _dict(obj.get("status"), FieldPath("status"), errs)
    for part in ("capacity", "allocatable"):
        ppath = FieldPath("status", part)
        for name, value in _dict(status.get(part), ppath, errs).items():
            q = _quantity(value, ppath.key(name), errs)
            if q is not None and q < 0:
                errs.append(FieldError.invalid(ppath.key(name), str(q),
                                               "must be greater than or equal to 0"))
    return errs


def _validate_endpoints(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in enumerate(_list(obj.get("subsets"), FieldPath("subsets"), errs)):
        spath = FieldPath("subsets").index(i)
        subset = _dict(subset, spath, errs)
        for part in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_list(subset.get(part), spath.child(part), errs)):
                apath = spath.child(part).index(j)
                ip = (addr or {}).get("ip") if isinstance(addr, dict) else None
                try:
                    ipaddress.ip_address(ip or "")
                except ValueError:
                    errs.append(FieldError.invalid(apath.child("ip"), ip or "",
                                                   "must be a valid IP address"))
        for j, port in enumerate(_list(subset.get("ports"), spath.child("ports"), errs)):
            ppath = spath.child("ports").index(j)
            port = _dict(port, ppath, errs)
            errs += [FieldError.invalid(ppath.child("port"), port.get("port"), m)
                     for m in is_valid_port_num(port.get("port"))]
            errs += _enum(port.get("protocol"), ppath.child("protocol"), _PROTOCOLS)
    return errs


def _validate_endpointslice(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    family = obj.get("addressType")
    errs += _enum(family, FieldPath("addressType"), ("FQDN", "IPv4", "IPv6"))
    for i, ep in enumerate(_list(obj.get("endpoints"), FieldPath("endpoints"), errs)):
        epath = FieldPath("endpoints").index(i)
        addresses = _list(_dict(ep, epath, errs).get("addresses"), epath.child("addresses"), errs)
        if not 1 <= len(addresses) <= 100:
            errs.append(FieldError.invalid(epath.child("addresses"), len(addresses),
                                           "must contain at least 1 address but no more than "
                                           "100 addresses"))
        for j, address in enumerate(addresses):
            apath = epath.child("addresses").index(j)
            if family in ("IPv4", "IPv6"):
                try:
                    ip = ipaddress.ip_address(address)
                    if ip.version != (4 if family == "IPv4" else 6):
                        raise ValueError
                except ValueError:
                    errs.append(FieldError.invalid(apath, address, f"must be a valid {family} "
                                                                   "address"))
    for i, port in enumerate(_list(obj.get("ports"), FieldPath("ports"), errs)):
        ppath = FieldPath("ports").index(i)
        port = _dict(port, ppath, errs)
        if port.get("port") is not None:
            errs += [FieldError.invalid(ppath.child("port"), port["port"], m)
                     for m in is_valid_port_num(port["port"])]
        errs += _enum(port.get("protocol"), ppath.child("protocol"), _PROTOCOLS, required=False)
    return errs


def _validate_lease(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), FieldPath("spec"), errs)
    errs += _positive(spec.get("leaseDurationSeconds"),
                      FieldPath("spec", "leaseDurationSeconds"))
    errs += _nonnegative(spec.get("leaseTransitions"), FieldPath("spec", "leaseTransitions"))
    return errs


def _validate_rules(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(_list(obj.get("rules"), FieldPath("rules"), errs)):
        rpath = FieldPath("rules").index(i)
        rule = _dict(rule, rpath, errs)
        if not rule.get("verbs"):
            errs.append(FieldError.required(rpath.child("verbs"),
                                            "verbs must contain at least one value"))
        if rule.get("nonResourceURLs"):
            if obj.get("kind") == "Role" or (obj.get("metadata") or {}).get("namespace"):
                errs.append(FieldError.invalid(rpath.child("nonResourceURLs"),
                                               rule["nonResourceURLs"], "namespaced rules cannot "
                                               "apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources"):
                errs.append(FieldError.invalid(rpath.child("nonResourceURLs"),
                                               rule["nonResourceURLs"], "rules cannot apply to "
                                               "both regular resources and non-resource URLs"))
        elif not rule.get("apiGroups"):
            errs.append(FieldError.required(rpath.child("apiGroups"),
                                            "resource rules must supply at least one api group"))
        elif not rule.get("resources"):
            errs.append(FieldError.required(rpath.child("resources"),
                                            "resource rules must supply at least one resource"))
    return errs


def _validate_binding(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    cluster = obj.get("kind") == "ClusterRoleBinding"
    ref = _dict(obj.get("roleRef"), FieldPath("roleRef"), errs)
    rpath = FieldPath("roleRef")
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errs.append(FieldError.not_supported(rpath.child("apiGroup"), ref.get("apiGroup") or "",
                                             ["rbac.authorization.k8s.io"]))
    errs += _enum(ref.get("kind"), rpath.child("kind"),
                  ("ClusterRole",) if cluster else ("Role", "ClusterRole"))
    if not ref.get("name"):
        errs.append(FieldError.required(rpath.child("name")))
    else:
        errs += _name_errors(ref["name"], rpath.child("name"),
                             lambda n: is_valid_path_segment(n))
    for i, subject in enumerate(_list(obj.get("subjects"), FieldPath("subjects"), errs)):
        spath = FieldPath("subjects").index(i)
        subject = _dict(subject, spath, errs)
        kind = subject.get("kind")
        errs += _enum(kind, spath.child("kind"), ("ServiceAccount", "User", "Group"))
        if not subject.get("name"):
            errs.append(FieldError.required(spath.child("name")))
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                errs.append(FieldError.not_supported(spath.child("apiGroup"), subject["apiGroup"],
                                                     [""]))
            if subject.get("name"):
                errs += _name_errors(subject["name"], spath.child("name"), is_dns1123_subdomain)
            if cluster and not subject.get("namespace"):
                errs.append(FieldError.required(spath.child("namespace")))
        elif kind in ("User", "Group") and subject.get("apiGroup") != "rbac.authorization.k8s.io":
            errs.append(FieldError.not_supported(spath.child("apiGroup"),
                                                 subject.get("apiGroup") or "",
                                                 ["rbac.authorization.k8s.io"]))
    return errs


def _validate_priorityclass(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    value = obj.get("value")
    name = (obj.get("metadata") or {}).get("name") or ""
    if not _is_int(value):
        errs.append(FieldError.required(FieldPath("value")) if value is None else
                    FieldError.type_invalid(FieldPath("value"), value, "must be an integer"))
    elif value > 1_000_000_000 and not name.startswith("system-"):
        errs.append(FieldError.forbidden(FieldPath("value"), "maximum allowed value of a user "
                                                             "defined priority is 1000000000"))
    if name.startswith("system-") and name not in ("system-cluster-critical",
                                                   "system-node-critical"):
        errs.append(FieldError.forbidden(FieldPath("metadata", "name"),
                                         "priority class names with 'system-' prefix are "
                                         "reserved for system use only"))
    errs += _enum(obj.get("preemptionPolicy"), FieldPath("preemptionPolicy"),
                  ("Never", "PreemptLowerPriority"), required=False)
    return errs


def _validate_hpa(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec")
    spec = _dict(obj.get("spec"), path, errs)
    ref = _dict(spec.get("scaleTargetRef"), path.child("scaleTargetRef"), errs)
    for fld in ("kind", "name"):
        if not ref.get(fld):
            errs.append(FieldError.required(path.child("scaleTargetRef", fld)))
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if low is not None and (not _is_int(low) or low < 1):
        errs.append(FieldError.invalid(path.child("minReplicas"), low,
                                       "must be greater than or equal to 1"))
    if high is None:
        errs.append(FieldError.required(path.child("maxReplicas")))
    elif not _is_int(high) or high < 1:
        errs.append(FieldError.invalid(path.child("maxReplicas"), high,
                                       "must be greater than 0"))
    elif _is_int(low) and high < low:
        errs.append(FieldError.invalid(path.child("maxReplicas"), high,
                                       "must be greater than or equal to `minReplicas`"))
    return errs


_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")


def _access_modes(spec: dict, path: FieldPath) -> list[FieldError]:
    modes = spec.get("accessModes") or []
    if not modes:
        return [FieldError.required(path.child("accessModes"), "at least 1 access mode is "
                                                               "required")]
    return [e for m in modes for e in _enum(m, path.child("accessModes"), _ACCESS_MODES)]


def _validate_pv(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec")
    spec = _dict(obj.get("spec"), path, errs)
    errs += _access_modes(spec, path)
    capacity = _dict(spec.get("capacity"), path.child("capacity"), errs)
    if "storage" not in capacity:
        errs.append(FieldError.required(path.child("capacity").key("storage")))
    for name, value in capacity.items():
        _quantity(value, path.child("capacity").key(name), errs)
    errs += _enum(spec.get("persistentVolumeReclaimPolicy"),
                  path.child("persistentVolumeReclaimPolicy"), ("Delete", "Recycle", "Retain"),
                  required=False)
    errs += _enum(spec.get("volumeMode"), path.child("volumeMode"), ("Block", "Filesystem"),
                  required=False)
    return errs


def _validate_pvc(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec")
    spec = _dict(obj.get("spec"), path, errs)
    errs += _access_modes(spec, path)
    resources = _dict(spec.get("resources"), path.child("resources"), errs)
    requests = _dict(resources.get("requests"), path.child("resources", "requests"), errs)
    if "storage" not in requests:
        errs.append(FieldError.required(path.child("resources").key("storage")))
    for name, value in requests.items():
        q = _quantity(value, path.child("resources", "requests").key(name), errs)
        if q is not None and name == "storage" and q <= 0:
            errs.append(FieldError.invalid(path.child("resources", "requests").key(name),
                                           str(q), "must be greater than zero"))
    errs += _enum(spec.get("volumeMode"), path.child("volumeMode"), ("Block", "Filesystem"),
                  required=False)
    return errs


def _validate_storageclass(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    provisioner = obj.get("provisioner")
    if not provisioner:
        errs.append(FieldError.required(FieldPath("provisioner")))
    else:
        errs += _name_errors(provisioner, FieldPath("provisioner"), is_qualified_name)
    errs += _enum(obj.get("reclaimPolicy"), FieldPath("reclaimPolicy"), ("Delete", "Retain"),
                  required=False)
    errs += _enum(obj.get("volumeBindingMode"), FieldPath("volumeBindingMode"),
                  ("Immediate", "WaitForFirstConsumer"), required=False)
    return errs


def _validate_quantity_map(value: Any, path: FieldPath, errs: list[FieldError]) -> None:
    for name, q in _dict(value, path, errs).items():
        parsed = _quantity(q, path.key(name), errs)
        if parsed is not None and parsed < 0:
            errs.append(FieldError.invalid(path.key(name), str(parsed),
                                           "must be greater than or equal to 0"))


def _validate_limitrange(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec", "limits")
    spec = _dict(obj.get("spec"), FieldPath("spec"), errs)
    for i, item in enumerate(_list(spec.get("limits"), path, errs)):
        ipath = path.index(i)
        item = _dict(item, ipath, errs)
        errs += _enum(item.get("type"), ipath.child("type"),
                      ("Container", "Pod", "PersistentVolumeClaim"))
        for part in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _validate_quantity_map(item.get(part), ipath.child(part), errs)
    return errs


def _validate_resourcequota(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _dict(obj.get("spec"), FieldPath("spec"), errs)
    _validate_quantity_map(spec.get("hard"), FieldPath("spec", "hard"), errs)
    return errs


def _validate_crd(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    path = FieldPath("spec")
    spec = _dict(obj.get("spec"), path, errs)
    group = spec.get("group") or ""
    if not group:
        errs.append(FieldError.required(path.child("group")))
    else:
        errs += _name_errors(group, path.child("group"), is_dns1123_subdomain)
        if "." not in group:
            errs.append(FieldError.invalid(path.child("group"), group,
                                           "should be a domain with at least one dot"))
    names = _dict(spec.get("names"), path.child("names"), errs)
    for fld, check in (("plural", is_dns1035_label), ("singular", is_dns1035_label),
                       ("kind", None), ("listKind", None)):
        value = names.get(fld)
        if not value:
            if fld in ("plural", "kind"):
                errs.append(FieldError.required(path.child("names", fld)))
        elif check:
            errs += _name_errors(value, path.child("names", fld), check)
    name = (obj.get("metadata") or {}).get("name") or ""
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        errs.append(FieldError.invalid(FieldPath("metadata", "name"), name,
                                       'must be spec.names.plural+"."+spec.group'))
    errs += _enum(spec.get("scope"), path.child("scope"), ("Cluster", "Namespaced"))
    versions = _list(spec.get("versions"), path.child("versions"), errs)
    if not versions:
        errs.append(FieldError.required(path.child("versions"), "must have exactly one version "
                                                                "marked as storage version"))
    else:
        seen: set[str] = set()
        for i, version in enumerate(versions):
            vpath = path.child("versions").index(i)
            version = _dict(version, vpath, errs)
            vname = version.get("name") or ""
            if not vname:
                errs.append(FieldError.required(vpath.child("name")))
            else:
                errs += _name_errors(vname, vpath.child("name"), is_dns1035_label)
                if vname in seen:
                    errs.append(FieldError.invalid(path.child("versions"), versions,
                                                   "must contain unique version names"))
                seen.add(vname)
        if sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
            errs.append(FieldError.invalid(path.child("versions"), versions,
                                           "must have exactly one version marked as storage "
                                           "version"))
    return errs


# ----------------------------------------------------------------------- the registry

Validator = Callable[[dict], list[FieldError]]
_VALIDATORS: dict[tuple[str, str], Validator] = {}
_UPDATE_VALIDATORS: dict[tuple[str, str], Callable[[dict, dict], list[FieldError]]] = {}


def register_validator(group: str, kind: str, validator: Validator, *,
                       on_update: Callable[[dict, dict], list[FieldError]] | None = None) -> None:
    """Register the object rules of ``group``/``kind`` (replacing any earlier ones):
    ``validator(obj)`` returns the field errors of an object beyond its metadata;
    ``on_update(new, old)`` those only an update can have (immutable fields). Registering
    is process-wide; plugins call it from ``pilothouse_register_kinds``."""
    _VALIDATORS[(group, kind)] = validator
    if on_update is not None:
        _UPDATE_VALIDATORS[(group, kind)] = on_update


for _group, _kind, _fn in (
        ("", "Pod", _validate_pod), ("", "Service", _validate_service),
        ("", "ConfigMap", _validate_configmap), ("", "Secret", _validate_secret),
        ("", "Namespace", _validate_namespace), ("", "Node", _validate_node),
        ("", "Endpoints", _validate_endpoints), ("", "PersistentVolume", _validate_pv),
        ("", "PersistentVolumeClaim", _validate_pvc), ("", "LimitRange", _validate_limitrange),
        ("", "ResourceQuota", _validate_resourcequota),
        ("apps", "Deployment", _validate_deployment),
        ("apps", "ReplicaSet", _validate_replicaset),
        ("apps", "DaemonSet", _validate_daemonset),
        ("apps", "StatefulSet", _validate_statefulset),
        ("batch", "Job", _validate_job), ("batch", "CronJob", _validate_cronjob),
        ("discovery.k8s.io", "EndpointSlice", _validate_endpointslice),
        ("coordination.k8s.io", "Lease", _validate_lease),
        ("rbac.authorization.k8s.io", "Role", _validate_rules),
        ("rbac.authorization.k8s.io", "ClusterRole", _validate_rules),
        ("rbac.authorization.k8s.io", "RoleBinding", _validate_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding", _validate_binding),
        ("scheduling.k8s.io", "PriorityClass", _validate_priorityclass),
        ("autoscaling", "HorizontalPodAutoscaler", _validate_hpa),
        ("storage.k8s.io", "StorageClass", _validate_storageclass),
        ("apiextensions.k8s.io", "CustomResourceDefinition", _validate_crd)):
    _VALIDATORS[(_group, _kind)] = _fn


def _resolve(kind: Kind | str | None, obj: dict) -> tuple[str, str, bool]:
    k = _lookup(kind, obj)
    if k is not None:
        return k.group, k.kind, k.namespaced
    name = kind if isinstance(kind, str) else obj.get("kind") or ""
    group = (obj.get("apiVersion") or "").rpartition("/")[0]
    return group, name, True


def validate(kind: Kind | str | None, obj: dict) -> list[FieldError]:
    """Every field error of ``obj`` (metadata first, then the kind's rules), as a create
    would report them. ``kind`` is a :class:`~pilothouse.model.kinds.Kind` (always pass one
    for custom resources, so the scope is known), a built-in kind's name, or None to use the
    object's apiVersion and kind."""
    group, name, namespaced = _resolve(kind, obj)
    errs = validate_object_meta(obj, namespaced,
                                name_fn=_NAME_RULES.get(name, name_is_dns_subdomain))
    rule = _VALIDATORS.get((group, name))
    if rule is not None:
        errs += rule(obj)
    return errs


def _update_workload_selector(new: dict, old: dict) -> list[FieldError]:
    return _immutable((new.get("spec") or {}).get("selector"),
                      (old.get("spec") or {}).get("selector"), FieldPath("spec", "selector"))


def _update_statefulset(new: dict, old: dict) -> list[FieldError]:
    errs = _update_workload_selector(new, old)
    mutable = ("replicas", "ordinals", "template", "updateStrategy",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
    a = {k: v for k, v in (new.get("spec") or {}).items() if k not in mutable}
    b = {k: v for k, v in (old.get("spec") or {}).items() if k not in mutable}
    if a != b:
        errs.append(FieldError.forbidden(FieldPath("spec"), "updates to statefulset spec for "
                                         "fields other than 'replicas', 'ordinals', 'template', "
                                         "'updateStrategy', 'persistentVolumeClaimRetentionPolicy'"
                                         " and 'minReadySeconds' are forbidden"))
    return errs


def _update_job(new: dict, old: dict) -> list[FieldError]:
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    errs = _update_workload_selector(new, old)
    errs += _immutable(ns.get("completions"), os_.get("completions"),
                       FieldPath("spec", "completions"))
    errs += _immutable(ns.get("completionMode"), os_.get("completionMode"),
                       FieldPath("spec", "completionMode"))
    errs += _immutable(ns.get("template"), os_.get("template"), FieldPath("spec", "template"))
    return errs


def _update_service(new: dict, old: dict) -> list[FieldError]:
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if os_.get("clusterIP") and "ExternalName" not in (ns.get("type"), os_.get("type")):
        return _immutable(ns.get("clusterIP"), os_.get("clusterIP"),
                          FieldPath("spec", "clusterIP"))
    return []


def _update_immutable_data(new: dict, old: dict) -> list[FieldError]:
    errs = []
    if old.get("immutable"):
        if not new.get("immutable"):
            errs.append(FieldError.forbidden(FieldPath("immutable"),
                                             "field is immutable when `immutable` is set"))
        for fld in ("data", "binaryData", "stringData"):
            if new.get(fld) != old.get(fld) and not (fld == "stringData" and not new.get(fld)):
                errs.append(FieldError.forbidden(FieldPath(fld),
                                                 "field is immutable when `immutable` is set"))
    return errs


def _update_secret(new: dict, old: dict) -> list[FieldError]:
    return _update_immutable_data(new, old) + _immutable(
        new.get("type") or "Opaque", old.get("type") or "Opaque", FieldPath("type"))


_POD_MUTABLE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)")


def _update_pod(new: dict, old: dict) -> list[FieldError]:
    def masked(spec: dict) -> dict:
        spec = json.loads(json.dumps(spec or {}))
        for part in ("containers", "initContainers"):
            for c in spec.get(part) or []:
                if isinstance(c, dict):
                    c.pop("image", None)
        for fld in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            spec.pop(fld, None)
        return spec

    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    errs = []
    if masked(ns) != masked(os_):
        errs.append(FieldError.forbidden(FieldPath("spec"), _POD_MUTABLE_MESSAGE))
    old_tols = os_.get("tolerations") or []
    if any(t not in (ns.get("tolerations") or []) for t in old_tols):
        errs.append(FieldError.forbidden(FieldPath("spec", "tolerations"),
                                         "existing toleration can not be modified except its "
                                         "tolerationSeconds"))
    return errs


for _group, _kind, _fn in (
        ("apps", "Deployment", _update_workload_selector),
        ("apps", "ReplicaSet", _update_workload_selector),
        ("apps", "DaemonSet", _update_workload_selector),
        ("apps", "StatefulSet", _update_statefulset), ("batch", "Job", _update_job),
        ("", "Service", _update_service), ("", "ConfigMap", _update_immutable_data),
        ("", "Secret", _update_secret), ("", "Pod", _update_pod)):
    _UPDATE_VALIDATORS[(_group, _kind)] = _fn


def validate_update(kind: Kind | str | None, new: dict, old: dict, *,
                    subresource: str = "") -> list[FieldError]:
    """The field errors of replacing ``old`` by ``new``: :func:`validate` of ``new`` plus the
    kind's update rules (selectors of workloads, a Job's template, a Service's clusterIP,
    immutable ConfigMaps and Secrets, a Secret's type, the few mutable fields of a Pod
    spec). Call after :func:`pilothouse.model.meta.prepare_for_update`; metadata
    immutability is :func:`validate_object_meta_update`'s, called before it.

    ``subresource="status"`` skips the update rules (a status write cannot change the spec);
    ``subresource="binding"`` lets a Pod's empty ``spec.nodeName`` be set, which only the
    binding subresource may do."""
    group, name, _ = _resolve(kind, new)
    errs = validate(kind, new)
    if subresource == "status":
        return errs
    rule = _UPDATE_VALIDATORS.get((group, name))
    if rule is not None:
        if subresource == "binding" and (group, name) == ("", "Pod") and \
                not (old.get("spec") or {}).get("nodeName"):
            old = {**old, "spec": {**(old.get("spec") or {}),
                                   "nodeName": (new.get("spec") or {}).get("nodeName")}}
        errs += rule(new, old)
    return errs
