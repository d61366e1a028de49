"""Discovery documents (aggregated and old-style), /version, and the OpenAPI v3 index."""

from __future__ import annotations

from pilothouse import __version__
from pilothouse.model.kinds import Kind, KindRegistry

from pilothouse.apiserver.schemas import KUBE_MINOR, SchemaSet, document_hash

AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version_info() -> dict:
    return {"major": "1", "minor": str(KUBE_MINOR), "gitVersion": f"v1.{KUBE_MINOR}.0-pilothouse.{__version__}",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
            "compiler": "python", "platform": "linux/amd64"}


def _verbs(kind: Kind) -> list[str]:
    return list(kind.verbs)


def _resource_entry(kind: Kind) -> dict:
    entry = {"name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
             "kind": kind.kind, "verbs": _verbs(kind)}
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    if kind.categories:
        entry["categories"] = list(kind.categories)
    return entry


def resource_list(registry: KindRegistry, group: str, version: str) -> dict:
    """``APIResourceList`` for ``/api/v1`` or ``/apis/<g>/<v>``."""
    resources = []
    for kind in registry.group_version(group, version):
        resources.append(_resource_entry(kind))
        for sub in kind.subresources:
            entry = {"name": f"{kind.plural}/{sub.name}", "singularName": "",
                     "namespaced": kind.namespaced, "kind": sub.kind, "verbs": list(sub.verbs)}
            if sub.group != kind.group or sub.version != kind.version:
                entry["group"], entry["version"] = sub.group, sub.version
            resources.append(entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def api_versions(host: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}


def _group_versions(registry: KindRegistry) -> dict[str, list[str]]:
    return {g: vs for g, vs in registry.groups().items() if g}


def api_group_list(registry: KindRegistry) -> dict:
    groups = []
    for group, versions in sorted(_group_versions(registry).items()):
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: KindRegistry, group: str) -> dict | None:
    versions = registry.groups().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
            "preferredVersion": gvs[0]}


def aggregated(registry: KindRegistry, core: bool) -> dict:
    """``APIGroupDiscoveryList`` for ``/api`` (``core``) or ``/apis``."""
    items = []
    groups = registry.groups()
    names = [""] if core else sorted(g for g in groups if g)
    for group in names:
        versions = []
        for version in groups.get(group, []):
            resources = []
            for kind in registry.group_version(group, version):
                entry = {"resource": kind.plural,
                         "responseKind": {"group": group, "version": version, "kind": kind.kind},
                         "scope": "Namespaced" if kind.namespaced else "Cluster",
                         "singularResource": kind.singular, "verbs": _verbs(kind)}
                if kind.short_names:
                    entry["shortNames"] = list(kind.short_names)
                if kind.categories:
                    entry["categories"] = list(kind.categories)
                if kind.subresources:
                    entry["subresources"] = [
                        {"subresource": s.name,
                         "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                         "verbs": list(s.verbs)} for s in kind.subresources]
                resources.append(entry)
            versions.append({"version": version, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}


class OpenAPI:
    """OpenAPI v3 documents per group version, rebuilt when the registry changes."""

    def __init__(self, registry: KindRegistry, schemas: SchemaSet):
        self.registry, self.schemas = registry, schemas
        self._docs: dict[str, tuple[dict, str]] = {}

    def invalidate(self) -> None:
        self._docs.clear()

    def _path(self, group: str, version: str) -> str:
        return f"apis/{group}/{version}" if group else f"api/{version}"

    def document(self, path: str) -> tuple[dict, str] | None:
        if path not in self._docs:
            for group, versions in self.registry.groups().items():
                for version in versions:
                    if self._path(group, version) == path:
                        doc = self.schemas.openapi_document(
                            group, version, self.registry.group_version(group, version))
                        self._docs[path] = (doc, document_hash(doc))
        return self._docs.get(path)

    def index(self) -> dict:
        paths = {}
        for group, versions in self.registry.groups().items():
            for version in versions:
                path = self._path(group, version)
                found = self.document(path)
                if found:
                    paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={found[1]}"}
        return {"paths": paths}
