"""API kinds and the registry that maps every name a client may use onto them.

A :class:`Kind` is one resource as discovery describes it: its group, version, kind, plural
(the *resource*, which is what URLs and RBAC use), scope, short names, categories, verbs and
subresources. The :class:`KindRegistry` answers the questions the API server, discovery,
kubectl-style name resolution and RBAC ask:

* by group/version/kind (decoding a body: ``apps/v1, Deployment``);
* by group/version/resource (routing a URL: ``/apis/apps/v1/deployments``);
* by any name kubectl accepts (``deploy``, ``deployment``, ``deployments``,
  ``deployments.apps``, ``deployments.v1.apps``) through :meth:`KindRegistry.resolve`;
* what a group version serves (discovery documents), and in which order groups are preferred.

:func:`builtin_registry` returns a fresh registry holding the Kubernetes kinds Pilothouse
serves. It is mutable: the API server adds the kinds plugins contribute through the
``pilothouse_register_kinds`` hook and those CustomResourceDefinitions define, at runtime.

Since 0.1.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator

__all__ = ["ALL_VERBS", "Kind", "KindRegistry", "Subresource", "UnknownKind",
           "builtin_registry", "split_api_version"]

#: The verbs of an ordinary resource, in discovery's (alphabetical) order.
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_STATUS_VERBS = ("get", "patch", "update")


class UnknownKind(KeyError):
    """No registered kind answers to a name; ``str()`` is kubectl's wording."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` → ``("apps", "v1")``; ``"v1"`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclasses.dataclass(frozen=True)
class Subresource:
    """A subresource such as ``deployments/scale``. ``kind``/``group``/``version`` say what it
    accepts and returns (``Scale`` in ``autoscaling/v1`` for scale); an empty ``group`` and
    ``version`` with a ``kind`` mean the parent's group version. ``verbs`` as in discovery."""

    name: str
    kind: str = ""
    group: str | None = None
    version: str | None = None
    verbs: tuple[str, ...] = _STATUS_VERBS


@dataclasses.dataclass(frozen=True)
class Kind:
    """One resource in one group version.

    ``plural`` is the resource name in URLs; ``singular`` defaults to the kind lowercased and
    ``list_kind`` to ``<Kind>List``. ``subresources`` may be given as names: ``"status"``
    becomes a status subresource of the parent's own kind, ``"scale"`` one answering with
    ``autoscaling/v1`` ``Scale``; pass :class:`Subresource` objects for anything else.
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str = ""
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())
        if not self.list_kind:
            object.__setattr__(self, "list_kind", self.kind + "List")
        for name in ("short_names", "categories", "verbs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        subs = []
        for sub in self.subresources:
            if isinstance(sub, str):
                sub = _named_subresource(sub, self)
            if sub.group is None:
                sub = dataclasses.replace(sub, group=self.group, version=self.version,
                                          kind=sub.kind or self.kind)
            subs.append(sub)
        object.__setattr__(self, "subresources", tuple(subs))

    @property
    def resource(self) -> str:
        """Same as :attr:`plural`."""
        return self.plural

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return self.group, self.version

    @property
    def qualified_resource(self) -> str:
        """``deployments.apps`` (``pods`` in the core group), as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps`` (``Pod`` in the core group)."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def subresource(self, name: str) -> Subresource | None:
        """The subresource called ``name``, or None."""
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def has_status(self) -> bool:
        """True when writes to the main resource ignore ``status`` (it has ``/status``)."""
        return self.subresource("status") is not None

    def names(self) -> tuple[str, ...]:
        """Every bare name kubectl resolves to this kind: plural, singular, short names and
        the kind lowercased."""
        seen: list[str] = []
        for n in (self.plural, self.singular, *self.short_names, self.kind.lower()):
            if n and n not in seen:
                seen.append(n)
        return tuple(seen)


def _named_subresource(name: str, parent: Kind) -> Subresource:
    if name == "scale":
        return Subresource("scale", "Scale", "autoscaling", "v1")
    if name == "status":
        return Subresource("status")
    return Subresource(name, verbs=("get",))


class KindRegistry:
    """A mutable, thread-safe set of kinds with the lookups described in the module
    docstring. Groups are preferred in the order their first kind was registered (the core
    group first in :func:`builtin_registry`), which settles names two groups share
    (``events``)."""

    def __init__(self, kinds: Iterable[Kind] = ()):
        self._lock = threading.RLock()
        self._by_gvr: dict[tuple[str, str, str], Kind] = {}
        self._by_gvk: dict[tuple[str, str, str], Kind] = {}
        self._group_order: list[str] = []
        self._version_order: dict[str, list[str]] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: Kind) -> Kind:
        """Add ``kind``. Raises ``ValueError`` when its group/version/resource or
        group/version/kind is already registered. Returns ``kind``."""
        gvr = (kind.group, kind.version, kind.plural)
        gvk = (kind.group, kind.version, kind.kind)
        with self._lock:
            if gvr in self._by_gvr:
                raise ValueError(f"resource {kind.plural!r} of group version "
                                 f"{kind.api_version!r} is already registered")
            if gvk in self._by_gvk:
                raise ValueError(f"kind {kind.kind!r} of group version {kind.api_version!r} "
                                 "is already registered")
            self._by_gvr[gvr] = kind
            self._by_gvk[gvk] = kind
            if kind.group not in self._group_order:
                self._group_order.append(kind.group)
            versions = self._version_order.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        return kind

    def unregister(self, group: str, version: str, plural: str) -> Kind:
        """Remove a kind (a deleted CRD's). Raises ``KeyError`` when absent."""
        with self._lock:
            kind = self._by_gvr.pop((group, version, plural))
            del self._by_gvk[(group, version, kind.kind)]
            if not any(k.group == group and k.version == version for k in self._by_gvr.values()):
                self._version_order[group].remove(version)
                if not self._version_order[group]:
                    del self._version_order[group]
                    self._group_order.remove(group)
            return kind

    def get(self, group: str, version: str, kind: str) -> Kind | None:
        """By group/version/kind (``"apps", "v1", "Deployment"``), or None."""
        return self._by_gvk.get((group, version, kind))

    def get_resource(self, group: str, version: str, plural: str) -> Kind | None:
        """By group/version/resource (``"apps", "v1", "deployments"``), or None."""
        return self._by_gvr.get((group, version, plural))

    def for_object(self, obj: dict) -> Kind | None:
        """The kind of an object by its ``apiVersion`` and ``kind``, or None."""
        group, version = split_api_version(obj.get("apiVersion") or "")
        return self.get(group, version, obj.get("kind") or "")

    def resolve(self, name: str) -> Kind:
        """Resolve a name as kubectl does: ``po``, ``pod``, ``pods``, ``Pod``,
        ``deployments.apps``, ``deploy.apps``, ``deployments.v1.apps``. Matching is
        case-insensitive. Among several matches the preferred group, then the preferred
        version, wins. Raises :class:`UnknownKind` (a ``KeyError``) when nothing matches."""
        found = self.resolve_all(name)
        if not found:
            raise UnknownKind(f'the server doesn\'t have a resource type "{name}"')
        return found[0]

    def resolve_all(self, name: str) -> list[Kind]:
        """Every kind :meth:`resolve` could mean, preferred first."""
        lowered = name.lower()
        candidates: list[tuple[str, str | None, str | None]] = [(lowered, None, None)]
        head, dot, rest = lowered.partition(".")
        if dot:
            candidates.append((head, None, rest))
            ver, dot2, grp = rest.partition(".")
            if dot2:
                candidates.append((head, ver, grp))
        with self._lock:
            kinds = self.ordered()
        out: list[Kind] = []
        for bare, version, group in candidates:
            for kind in kinds:
                if group is not None and kind.group != group:
                    continue
                if version is not None and kind.version != version:
                    continue
                if bare in kind.names() and kind not in out:
                    out.append(kind)
            if out:
                break
        return out

    def by_category(self, category: str) -> list[Kind]:
        """Kinds in a category (``all``), preferred version of each resource only."""
        seen: set[tuple[str, str]] = set()
        out = []
        for kind in self.ordered():
            if category in kind.categories and (kind.group, kind.plural) not in seen:
                seen.add((kind.group, kind.plural))
                out.append(kind)
        return out

    def ordered(self) -> list[Kind]:
        """All kinds, by preferred group, then preferred version, then registration."""
        with self._lock:
            rank = {(g, v): (gi, vi) for gi, g in enumerate(self._group_order)
                    for vi, v in enumerate(self._version_order[g])}
            kinds = list(self._by_gvr.values())
        return sorted(kinds, key=lambda k: rank[(k.group, k.version)])

    def groups(self) -> dict[str, list[str]]:
        """group → its versions, preferred first; groups in preference order (``""`` is
        the core group)."""
        with self._lock:
            return {g: list(self._version_order[g]) for g in self._group_order}

    def group_version(self, group: str, version: str) -> list[Kind]:
        """The kinds a group version serves, in registration order (a discovery document)."""
        with self._lock:
            return [k for k in self._by_gvr.values() if k.group == group and k.version == version]

    def __iter__(self) -> Iterator[Kind]:
        return iter(self.ordered())

    def __len__(self) -> int:
        return len(self._by_gvr)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Kind):
            return self._by_gvr.get((item.group, item.version, item.plural)) == item
        return False


# ------------------------------------------------------------------------- built-in kinds

_NS_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
_CONNECT = ("create", "delete", "get", "patch", "update")


def _builtin_kinds() -> list[Kind]:
    core, apps = "", "apps"
    status = Subresource("status")
    scale = Subresource("scale", "Scale", "autoscaling", "v1")
    return [
        # core/v1
        Kind(core, "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
             verbs=_NS_VERBS,
             subresources=(status, Subresource("finalize", verbs=("update",)))),
        Kind(core, "v1", "Pod", "pods", short_names=("po",), categories=("all",),
             subresources=(
                 status,
                 Subresource("log", "Pod", verbs=("get",)),
                 Subresource("exec", "PodExecOptions", verbs=("create", "get")),
                 Subresource("attach", "PodAttachOptions", verbs=("create", "get")),
                 Subresource("portforward", "PodPortForwardOptions", verbs=("create", "get")),
                 Subresource("proxy", "PodProxyOptions", verbs=_CONNECT),
                 Subresource("binding", "Binding", "", "v1", verbs=("create",)),
                 Subresource("eviction", "Eviction", "policy", "v1", verbs=("create",)),
                 Subresource("ephemeralcontainers"),
             )),
        Kind(core, "v1", "Node", "nodes", namespaced=False, short_names=("no",),
             subresources=(status, Subresource("proxy", "NodeProxyOptions", verbs=_CONNECT))),
        Kind(core, "v1", "Service", "services", short_names=("svc",), categories=("all",),
             subresources=(status,
                           Subresource("proxy", "ServiceProxyOptions", verbs=_CONNECT))),
        Kind(core, "v1", "Endpoints", "endpoints", singular="endpoints", short_names=("ep",)),
        Kind(core, "v1", "ConfigMap", "configmaps", short_names=("cm",)),
        Kind(core, "v1", "Secret", "secrets"),
        Kind(core, "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",),
             subresources=(Subresource("token", "TokenRequest", "authentication.k8s.io", "v1",
                                       verbs=("create",)),)),
        Kind(core, "v1", "Event", "events", short_names=("ev",)),
        Kind(core, "v1", "LimitRange", "limitranges", short_names=("limits",)),
        Kind(core, "v1", "ResourceQuota", "resourcequotas", short_names=("quota",),
             subresources=(status,)),
        Kind(core, "v1", "PersistentVolume", "persistentvolumes", namespaced=False,
             short_names=("pv",), subresources=(status,)),
        Kind(core, "v1", "PersistentVolumeClaim", "persistentvolumeclaims",
             short_names=("pvc",), subresources=(status,)),
        # apps/v1
        Kind(apps, "v1", "Deployment", "deployments", short_names=("deploy",),
             categories=("all",), subresources=(status, scale)),
        Kind(apps, "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
             subresources=(status, scale)),
        Kind(apps, "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",),
             subresources=(status,)),
        Kind(apps, "v1", "StatefulSet", "statefulsets", short_names=("sts",),
             categories=("all",), subresources=(status, scale)),
        # batch/v1
        Kind("batch", "v1", "Job", "jobs", categories=("all",), subresources=(status,)),
        Kind("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=("all",),
             subresources=(status,)),
        # autoscaling/v2
        Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
             short_names=("hpa",), categories=("all",), subresources=(status,)),
        # others
        Kind("coordination.k8s.io", "v1", "Lease", "leases"),
        Kind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
        Kind("events.k8s.io", "v1", "Event", "events", short_names=("ev",)),
        Kind("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles",
             namespaced=False),
        Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
             namespaced=False),
        Kind("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False,
             short_names=("pc",)),
        Kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False,
             short_names=("sc",)),
        Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
             "customresourcedefinitions", namespaced=False, short_names=("crd", "crds"),
             categories=("api-extensions",), subresources=(status,)),
    ]


def builtin_registry() -> KindRegistry:
    """A fresh registry of the built-in Kubernetes kinds, core group preferred first. The
    caller owns it and may register more kinds."""
    return KindRegistry(_builtin_kinds())


_SHARED: KindRegistry | None = None


def _builtin() -> KindRegistry:
    """A shared read-only built-in registry for lookups inside the model package."""
    global _SHARED
    if _SHARED is None:
        _SHARED = builtin_registry()
    return _SHARED


def _lookup(kind: Kind | str | None, obj: dict | None = None) -> Kind | None:
    """The kind meant by ``kind`` for ``obj``: a :class:`Kind` as is; a name (``"Pod"``,
    ``"deployments"``) resolved in the built-in registry, preferring the group of the
    object's ``apiVersion``; None with an object: by its apiVersion and kind."""
    if isinstance(kind, Kind):
        return kind
    reg = _builtin()
    if obj is not None:
        group, version = split_api_version(obj.get("apiVersion") or "")
        found = reg.get(group, version, kind or obj.get("kind") or "")
        if found:
            return found
        if kind:
            for k in reg.resolve_all(kind):
                if k.group == group:
                    return k
    if not kind:
        return None
    found_all = reg.resolve_all(kind)
    return found_all[0] if found_all else None
