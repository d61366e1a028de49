"""Per-field list and map semantics of the built-in kinds, as data.

Two Kubernetes mechanisms read the same facts about a field:

- strategic merge patch (``application/strategic-merge-patch+json``) reads the Go struct
  tags ``patchStrategy`` (merge, replace, retainKeys) and ``patchMergeKey``;
- server-side apply and managedFields read ``+listType`` (atomic, set, map),
  ``+listMapKey`` and ``+mapType``/``+structType`` (atomic or granular).

A :class:`Field` carries both. A strategy *tree* is a ``Field`` whose ``fields`` map field
names to child ``Field`` s; for a list, ``fields`` describes the fields of each item. A
field missing from the tree gets the defaults: maps merge key by key, lists are replaced
whole (SMP) and atomic (SSA) - the same defaults Kubernetes applies to an untagged field.

Facts come from the ``+patchStrategy``/``+patchMergeKey``/``+listType``/``+listMapKey``
markers of the upstream API types (k8s.io/api, around v1.30). :func:`strategy_for`
returns the tree for a (group, kind); :func:`strategy_from_openapi` derives one from an
OpenAPI v3 schema such as a CRD's ``openAPIV3Schema``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field as dc_field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = [
    "Field",
    "EMPTY",
    "BUILTIN_STRATEGIES",
    "strategy_for",
    "strategy_from_openapi",
]

_NO_FIELDS: Mapping[str, "Field"] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Field:
    """What Kubernetes knows about one field (and, for lists, about its items).

    ``patch_strategy``: the SMP strategies ("merge", "replace", "retainKeys");
    ``patch_merge_key``: the SMP merge key of a list of maps;
    ``list_type``: the SSA list type ("atomic", "set", "map"); None derives it from the
    patch strategy the way Kubernetes' OpenAPI-to-SSA conversion does (merge with a key
    -> map keyed by it, merge without a key -> set, otherwise atomic);
    ``list_map_keys``: the SSA keys of a ``map`` list; ``key_defaults``: values used for a
    key field an item leaves out (ports' ``protocol`` defaults to TCP);
    ``atomic``: a map or struct owned and replaced as a whole by SSA (``+mapType=atomic``,
    ``+structType=atomic``); ``fields``: children (for a list: the fields of its items);
    ``additional``: the strategy of every value of a map with free-form keys (for a list:
    of its items' values).
    """

    patch_strategy: frozenset[str] = frozenset()
    patch_merge_key: str | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] = ()
    key_defaults: Mapping[str, Any] = dc_field(default_factory=lambda: _NO_FIELDS)
    atomic: bool = False
    fields: Mapping[str, "Field"] = dc_field(default_factory=lambda: _NO_FIELDS)
    additional: "Field | None" = None

    def child(self, name: str) -> "Field":
        """The strategy of field ``name`` (of this map, or of this list's items); for a
        map with free-form keys, ``additional`` describes every value."""
        found = self.fields.get(name)
        if found is not None:
            return found
        return self.additional if self.additional is not None else EMPTY

    @property
    def merges_list(self) -> bool:
        return "merge" in self.patch_strategy

    @property
    def replaces(self) -> bool:
        return "replace" in self.patch_strategy

    @property
    def retains_keys(self) -> bool:
        return "retainKeys" in self.patch_strategy

    @functools.cached_property  # a field never changes (frozen): worked out once
    def ssa_list_type(self) -> str:
        """The list type SSA uses: explicit, else derived from the patch strategy."""
        if self.list_type:
            return self.list_type
        if self.merges_list:
            return "map" if self.patch_merge_key else "set"
        return "atomic"

    @functools.cached_property
    def ssa_keys(self) -> tuple[str, ...]:
        if self.list_map_keys:
            return self.list_map_keys
        if self.ssa_list_type == "map" and self.patch_merge_key:
            return (self.patch_merge_key,)
        return ()


EMPTY = Field()


# ---------------------------------------------------------------- constructors


def struct(fields: Mapping[str, Field] | None = None, *, atomic: bool = False,
           retain_keys: bool = False) -> Field:
    """A map/struct field with the given children."""
    strategy = frozenset({"retainKeys"}) if retain_keys else frozenset()
    return Field(patch_strategy=strategy, atomic=atomic,
                 fields=MappingProxyType(dict(fields or {})))


def map_list(patch_key: str | None, keys: tuple[str, ...] | None = None,
             item: Mapping[str, Field] | None = None, *, retain_keys: bool = False,
             patch: bool = True, key_defaults: Mapping[str, Any] | None = None) -> Field:
    """A list of maps merged by key: SMP merge key ``patch_key`` (when ``patch``),
    SSA ``listType=map`` keyed by ``keys`` (default: ``(patch_key,)``)."""
    strategy: set[str] = set()
    if patch:
        strategy.add("merge")
        if retain_keys:
            strategy.add("retainKeys")
    return Field(
        patch_strategy=frozenset(strategy),
        patch_merge_key=patch_key if patch else None,
        list_type="map",
        list_map_keys=tuple(keys or (patch_key,)),
        key_defaults=MappingProxyType(dict(key_defaults or {})),
        fields=MappingProxyType(dict(item or {})),
    )


def set_list(*, patch: bool = True) -> Field:
    """A list of scalars kept as a set: SMP merge (union) when ``patch``, SSA set."""
    return Field(patch_strategy=frozenset({"merge"}) if patch else frozenset(), list_type="set")


def atomic_list(item: Mapping[str, Field] | None = None) -> Field:
    """A list replaced as a whole by SMP and owned as a whole by SSA."""
    return Field(list_type="atomic", fields=MappingProxyType(dict(item or {})))


def conditions(*, ssa_atomic: bool = False) -> Field:
    """``status.conditions``: SMP merge by ``type``; SSA map by type (or atomic)."""
    if ssa_atomic:
        return Field(patch_strategy=frozenset({"merge"}), patch_merge_key="type", list_type="atomic")
    return map_list("type")


ATOMIC = Field(list_type="atomic", atomic=True)

# ---------------------------------------------------------------- meta/v1

LABEL_SELECTOR = struct({"matchExpressions": atomic_list()}, atomic=True)

OBJECT_META = struct({
    "ownerReferences": map_list("uid"),
    "finalizers": set_list(),
    "managedFields": atomic_list(),
})

# ---------------------------------------------------------------- core/v1 Pod

_PROBE = struct({
    "exec": struct({"command": atomic_list()}),
    "httpGet": struct({"httpHeaders": atomic_list()}),
})
_LIFECYCLE_HANDLER = struct({
    "exec": struct({"command": atomic_list()}),
    "httpGet": struct({"httpHeaders": atomic_list()}),
})

CONTAINER_FIELDS: dict[str, Field] = {
    "command": atomic_list(),
    "args": atomic_list(),
    # SMP merges ports by containerPort alone; SSA keys them by (containerPort, protocol).
    "ports": map_list("containerPort", ("containerPort", "protocol"), key_defaults={"protocol": "TCP"}),
    "envFrom": atomic_list(),
    "env": map_list("name"),
    "resources": struct({"claims": map_list("name", patch=False)}),
    "resizePolicy": atomic_list(),
    "volumeMounts": map_list("mountPath"),
    "volumeDevices": map_list("devicePath"),
    "livenessProbe": _PROBE,
    "readinessProbe": _PROBE,
    "startupProbe": _PROBE,
    "lifecycle": struct({"postStart": _LIFECYCLE_HANDLER, "preStop": _LIFECYCLE_HANDLER}),
    "securityContext": struct({
        "capabilities": struct({"add": atomic_list(), "drop": atomic_list()}),
    }),
}

_NODE_SELECTOR = struct({"nodeSelectorTerms": atomic_list()}, atomic=True)
_POD_AFFINITY_TERMS = {
    "requiredDuringSchedulingIgnoredDuringExecution": atomic_list(),
    "preferredDuringSchedulingIgnoredDuringExecution": atomic_list(),
}

_VOLUME_ITEM: dict[str, Field] = {
    "configMap": struct({"items": atomic_list()}),
    "secret": struct({"items": atomic_list()}),
    "downwardAPI": struct({"items": atomic_list()}),
    "projected": struct({"sources": atomic_list()}),
}

POD_SPEC_FIELDS: dict[str, Field] = {
    "volumes": map_list("name", item=_VOLUME_ITEM, retain_keys=True),
    "initContainers": map_list("name", item=CONTAINER_FIELDS),
    "containers": map_list("name", item=CONTAINER_FIELDS),
    "ephemeralContainers": map_list("name", item=CONTAINER_FIELDS),
    "imagePullSecrets": map_list("name"),
    "hostAliases": map_list("ip", item={"hostnames": atomic_list()}),
    "tolerations": atomic_list(),
    "topologySpreadConstraints": map_list(
        "topologyKey", ("topologyKey", "whenUnsatisfiable"),
        item={"labelSelector": LABEL_SELECTOR, "matchLabelKeys": atomic_list()},
    ),
    "readinessGates": atomic_list(),
    "schedulingGates": map_list("name"),
    "resourceClaims": map_list("name", retain_keys=True),
    "nodeSelector": struct(atomic=True),
    "affinity": struct({
        "nodeAffinity": struct({
            "requiredDuringSchedulingIgnoredDuringExecution": _NODE_SELECTOR,
            "preferredDuringSchedulingIgnoredDuringExecution": atomic_list(),
        }),
        "podAffinity": struct(_POD_AFFINITY_TERMS),
        "podAntiAffinity": struct(_POD_AFFINITY_TERMS),
    }),
    "securityContext": struct({"supplementalGroups": atomic_list(), "sysctls": atomic_list()}),
    "dnsConfig": struct({"nameservers": atomic_list(), "searches": atomic_list(), "options": atomic_list()}),
}

POD_SPEC = struct(POD_SPEC_FIELDS)

POD_STATUS = struct({
    "conditions": conditions(),
    "podIPs": map_list("ip"),
    "hostIPs": map_list("ip"),
    "initContainerStatuses": atomic_list(),
    "containerStatuses": atomic_list(),
    "ephemeralContainerStatuses": atomic_list(),
    "resourceClaimStatuses": map_list("name"),
})

POD_TEMPLATE_SPEC = struct({"metadata": OBJECT_META, "spec": POD_SPEC})


def _workload(spec_fields: Mapping[str, Field], *, ssa_atomic_conditions: bool = False) -> dict[str, Field]:
    return {
        "spec": struct(spec_fields),
        "status": struct({"conditions": conditions(ssa_atomic=ssa_atomic_conditions)}),
    }


_TEMPLATED = {"selector": LABEL_SELECTOR, "template": POD_TEMPLATE_SPEC}

JOB_SPEC_FIELDS: dict[str, Field] = {
    **_TEMPLATED,
    "podFailurePolicy": struct({"rules": atomic_list()}),
    "successPolicy": struct({"rules": atomic_list()}),
}

# ---------------------------------------------------------------- the table

_KINDS: dict[tuple[str, str], dict[str, Field]] = {
    ("", "Pod"): {"spec": POD_SPEC, "status": POD_STATUS},
    ("", "PodTemplate"): {"template": POD_TEMPLATE_SPEC},
    ("", "ReplicationController"): {
        "spec": struct({"template": POD_TEMPLATE_SPEC}),
        "status": struct({"conditions": conditions()}),
    },
    ("apps", "Deployment"): _workload({
        **_TEMPLATED,
        # retainKeys: switching RollingUpdate -> Recreate drops rollingUpdate.
        "strategy": struct(retain_keys=True),
    }),
    ("apps", "ReplicaSet"): _workload(_TEMPLATED),
    ("apps", "DaemonSet"): _workload(_TEMPLATED),
    ("apps", "StatefulSet"): _workload({**_TEMPLATED, "volumeClaimTemplates": atomic_list()}),
    ("batch", "Job"): _workload(JOB_SPEC_FIELDS, ssa_atomic_conditions=True),
    ("batch", "CronJob"): {
        "spec": struct({"jobTemplate": struct({"metadata": OBJECT_META, "spec": struct(JOB_SPEC_FIELDS)})}),
        "status": struct({"active": atomic_list()}),
    },
    ("", "Service"): {
        "spec": struct({
            # SMP merges ports by port alone; SSA keys them by (port, protocol).
            "ports": map_list("port", ("port", "protocol"), key_defaults={"protocol": "TCP"}),
            "selector": struct(atomic=True),
            "clusterIPs": atomic_list(),
            "externalIPs": atomic_list(),
            "ipFamilies": atomic_list(),
            "loadBalancerSourceRanges": atomic_list(),
        }),
        "status": struct({
            "conditions": conditions(),
            "loadBalancer": struct({"ingress": atomic_list()}),
        }),
    },
    ("", "Endpoints"): {"subsets": atomic_list()},
    ("discovery.k8s.io", "EndpointSlice"): {
        "endpoints": atomic_list({"addresses": set_list(patch=False)}),
        "ports": atomic_list(),
    },
    ("", "Node"): {
        "spec": struct({"podCIDRs": set_list(), "taints": atomic_list()}),
        "status": struct({
            "conditions": conditions(),
            # Merge key "type" is not unique (several InternalIP); Kubernetes keeps it anyway.
            "addresses": map_list("type"),
            "images": atomic_list(),
            "volumesInUse": atomic_list(),
            "volumesAttached": atomic_list(),
        }),
    },
    ("", "Namespace"): {
        "spec": struct({"finalizers": atomic_list()}),
        "status": struct({"conditions": conditions()}),
    },
    ("", "PersistentVolumeClaim"): {
        "spec": struct({"accessModes": atomic_list(), "selector": LABEL_SELECTOR}),
        "status": struct({"conditions": conditions(), "accessModes": atomic_list()}),
    },
    ("", "PersistentVolume"): {
        "spec": struct({"accessModes": atomic_list(), "mountOptions": atomic_list()}),
    },
    ("", "ServiceAccount"): {
        "secrets": map_list("name"),
        "imagePullSecrets": atomic_list(),
    },
    ("rbac.authorization.k8s.io", "Role"): {"rules": atomic_list()},
    ("rbac.authorization.k8s.io", "ClusterRole"): {
        "rules": atomic_list(),
        "aggregationRule": struct({"clusterRoleSelectors": atomic_list()}),
    },
    ("rbac.authorization.k8s.io", "RoleBinding"): {"subjects": atomic_list(), "roleRef": struct(atomic=True)},
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): {"subjects": atomic_list(), "roleRef": struct(atomic=True)},
    ("policy", "PodDisruptionBudget"): {
        "spec": struct({"selector": LABEL_SELECTOR}),
        "status": struct({"conditions": map_list("type")}),
    },
    ("networking.k8s.io", "Ingress"): {
        "spec": struct({"rules": atomic_list(), "tls": atomic_list()}),
    },
    ("networking.k8s.io", "NetworkPolicy"): {
        "spec": struct({
            "podSelector": LABEL_SELECTOR,
            "ingress": atomic_list(),
            "egress": atomic_list(),
            "policyTypes": atomic_list(),
        }),
    },
}


def _root(kind_fields: Mapping[str, Field]) -> Field:
    return struct({"metadata": OBJECT_META, **kind_fields})


#: (group, kind) -> strategy tree of the whole object (metadata included).
BUILTIN_STRATEGIES: Mapping[tuple[str, str], Field] = MappingProxyType(
    {key: _root(fields) for key, fields in _KINDS.items()}
)

#: The tree for kinds the table does not know: only ObjectMeta's semantics.
UNKNOWN_KIND = _root({})


def strategy_for(group: str, kind: str) -> Field:
    """The strategy tree for a kind; group "" (or "core") is the core group.

    Unknown kinds (custom resources) get ObjectMeta's semantics only: every other list is
    atomic. Use :func:`strategy_from_openapi` to honour a CRD's list-type markers.
    """
    if group == "core":
        group = ""
    return BUILTIN_STRATEGIES.get((group, kind), UNKNOWN_KIND)


# ---------------------------------------------------------------- OpenAPI / CRD schemas


def strategy_from_openapi(schema: Mapping[str, Any] | None, *, with_metadata: bool = True) -> Field:
    """Derive a strategy tree from an OpenAPI v3 schema (e.g. a CRD's openAPIV3Schema).

    Reads ``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys``,
    ``x-kubernetes-map-type``, ``x-kubernetes-patch-strategy`` and
    ``x-kubernetes-patch-merge-key`` at every level, through ``properties``, ``items``,
    ``additionalProperties`` and ``allOf``. With ``with_metadata`` the top level's
    ``metadata`` uses ObjectMeta's semantics, as Kubernetes does for custom resources.
    """
    node = _from_openapi(schema or {})
    if with_metadata:
        fields = dict(node.fields)
        fields["metadata"] = OBJECT_META
        node = Field(
            patch_strategy=node.patch_strategy, patch_merge_key=node.patch_merge_key,
            list_type=node.list_type, list_map_keys=node.list_map_keys, atomic=node.atomic,
            fields=MappingProxyType(fields), additional=node.additional,
        )
    return node


def _from_openapi(schema: Mapping[str, Any]) -> Field:
    merged: dict[str, Any] = dict(schema)
    for sub in schema.get("allOf") or ():
        if isinstance(sub, Mapping):
            for key, value in sub.items():
                merged.setdefault(key, value)
    children: dict[str, Field] = {}
    additional: Field | None = None
    if merged.get("type") == "array" or "items" in merged:
        items = merged.get("items")
        if isinstance(items, Mapping):
            item = _from_openapi(items)
            children, additional = dict(item.fields), item.additional
    if isinstance(merged.get("additionalProperties"), Mapping):
        additional = _from_openapi(merged["additionalProperties"])
    for name, sub in (merged.get("properties") or {}).items():
        if isinstance(sub, Mapping):
            children[name] = _from_openapi(sub)
    strategies = frozenset(
        s for s in str(merged.get("x-kubernetes-patch-strategy") or "").split(",") if s
    )
    list_type = merged.get("x-kubernetes-list-type")
    keys = tuple(merged.get("x-kubernetes-list-map-keys") or ())
    map_type = merged.get("x-kubernetes-map-type")
    key_defaults: dict[str, Any] = {}
    if keys and isinstance(merged.get("items"), Mapping):
        props = merged["items"].get("properties") or {}
        for key in keys:
            if isinstance(props.get(key), Mapping) and "default" in props[key]:
                key_defaults[key] = props[key]["default"]
    return Field(
        patch_strategy=strategies,
        patch_merge_key=merged.get("x-kubernetes-patch-merge-key"),
        list_type=list_type,
        list_map_keys=keys,
        key_defaults=MappingProxyType(key_defaults),
        atomic=map_type == "atomic",
        fields=MappingProxyType(children),
        additional=additional,
    )
