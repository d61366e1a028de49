"""Tests of pilothouse.model.kinds: the built-in kinds and name resolution."""

import pytest

from pilothouse.model.kinds import Kind, KindRegistry, Subresource, builtin_registry, \
    split_api_version

# kind, group, version, plural, namespaced, short names, categories
BUILTINS = [
    ("Namespace", "", "v1", "namespaces", False, ("ns",), ()),
    ("Pod", "", "v1", "pods", True, ("po",), ("all",)),
    ("Node", "", "v1", "nodes", False, ("no",), ()),
    ("Service", "", "v1", "services", True, ("svc",), ("all",)),
    ("Endpoints", "", "v1", "endpoints", True, ("ep",), ()),
    ("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", True, (), ()),
    ("ConfigMap", "", "v1", "configmaps", True, ("cm",), ()),
    ("Secret", "", "v1", "secrets", True, (), ()),
    ("ServiceAccount", "", "v1", "serviceaccounts", True, ("sa",), ()),
    ("Event", "", "v1", "events", True, ("ev",), ()),
    ("Event", "events.k8s.io", "v1", "events", True, ("ev",), ()),
    ("ReplicaSet", "apps", "v1", "replicasets", True, ("rs",), ("all",)),
    ("Deployment", "apps", "v1", "deployments", True, ("deploy",), ("all",)),
    ("DaemonSet", "apps", "v1", "daemonsets", True, ("ds",), ("all",)),
    ("StatefulSet", "apps", "v1", "statefulsets", True, ("sts",), ("all",)),
    ("Job", "batch", "v1", "jobs", True, (), ("all",)),
    ("CronJob", "batch", "v1", "cronjobs", True, ("cj",), ("all",)),
    ("Lease", "coordination.k8s.io", "v1", "leases", True, (), ()),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles", True, (), ()),
    ("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", False, (), ()),
    ("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", True, (), ()),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False,
     (), ()),
    ("PriorityClass", "scheduling.k8s.io", "v1", "priorityclasses", False, ("pc",), ()),
    ("LimitRange", "", "v1", "limitranges", True, ("limits",), ()),
    ("ResourceQuota", "", "v1", "resourcequotas", True, ("quota",), ()),
    ("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers", True,
     ("hpa",), ("all",)),
    ("PersistentVolume", "", "v1", "persistentvolumes", False, ("pv",), ()),
    ("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", True, ("pvc",), ()),
    ("StorageClass", "storage.k8s.io", "v1", "storageclasses", False, ("sc",), ()),
    ("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions",
     False, ("crd", "crds"), ("api-extensions",)),
]


@pytest.fixture(scope="module")
def reg():
    return builtin_registry()


@pytest.mark.parametrize("kind, group, version, plural, namespaced, shorts, cats", BUILTINS)
def test_builtin_kind(reg, kind, group, version, plural, namespaced, shorts, cats):
    k = reg.get(group, version, kind)
    assert k is not None
    assert reg.get_resource(group, version, plural) is k
    assert (k.plural, k.namespaced, k.short_names, k.categories) == \
        (plural, namespaced, shorts, cats)
    assert k.list_kind == kind + "List"
    assert k.api_version == (f"{group}/{version}" if group else version)


@pytest.mark.parametrize("kind, group, version, plural, namespaced, shorts, cats", BUILTINS)
def test_every_name_resolves(reg, kind, group, version, plural, namespaced, shorts, cats):
    names = [plural, kind.lower(), kind, *shorts]
    if group:
        names += [f"{plural}.{group}", f"{plural}.{version}.{group}"]
    for name in names:
        k = reg.resolve(name)
        if kind == "Event" and "." not in name:
            assert k.group == ""  # the core group is preferred
        else:
            assert (k.group, k.kind) == (group, kind), name


def test_registry_counts(reg):
    assert len(reg) == len(BUILTINS)
    assert list(reg.groups())[0] == ""
    assert "apps" in reg.groups() and reg.groups()["autoscaling"] == ["v2"]


def test_short_name_spelling(reg):
    assert reg.resolve("deploy").plural == "deployments"
    assert reg.resolve("PO").plural == "pods"
    assert reg.resolve("endpoints").singular == "endpoints"
    assert reg.resolve("deploy.apps").kind == "Deployment"
    assert reg.resolve("events.events.k8s.io").group == "events.k8s.io"
    assert [k.group for k in reg.resolve_all("ev")] == ["", "events.k8s.io"]


def test_unknown_name(reg):
    with pytest.raises(KeyError, match="doesn't have a resource type \"nope\""):
        reg.resolve("nope")
    assert reg.get("apps", "v1", "Nope") is None
    assert reg.resolve_all("deployments.batch") == []


def test_subresources(reg):
    deploy = reg.resolve("deploy")
    scale = deploy.subresource("scale")
    assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    assert scale.verbs == ("get", "patch", "update")
    for name in ("replicasets", "statefulsets"):
        s = reg.resolve(name).subresource("scale")
        assert (s.group, s.version, s.kind) == ("autoscaling", "v1", "Scale")
    status = deploy.subresource("status")
    assert (status.group, status.version, status.kind) == ("apps", "v1", "Deployment")
    pod = reg.resolve("pods")
    for name in ("status", "log", "exec", "attach", "portforward", "binding", "eviction"):
        assert pod.subresource(name) is not None, name
    assert pod.subresource("eviction").group == "policy"
    assert pod.subresource("binding").kind == "Binding"
    assert pod.subresource("exec").verbs == ("create", "get")
    assert pod.has_status() and not reg.resolve("cm").has_status()
    assert reg.resolve("ns").subresource("finalize").verbs == ("update",)
    assert reg.resolve("ns").verbs == ("create", "delete", "get", "list", "patch", "update",
                                       "watch")


def test_qualified_names(reg):
    assert reg.resolve("deploy").qualified_resource == "deployments.apps"
    assert reg.resolve("deploy").qualified_kind == "Deployment.apps"
    assert reg.resolve("po").qualified_resource == "pods"


def test_category_all(reg):
    plurals = {k.plural for k in reg.by_category("all")}
    assert plurals == {"pods", "services", "deployments", "replicasets", "daemonsets",
                       "statefulsets", "jobs", "cronjobs", "horizontalpodautoscalers"}


def test_group_version_listing(reg):
    assert [k.kind for k in reg.group_version("batch", "v1")] == ["Job", "CronJob"]
    assert reg.group_version("nope", "v1") == []


def test_runtime_kinds_crd():
    reg = builtin_registry()
    crd = Kind("example.com", "v1", "Widget", "widgets", short_names=("wd",),
               categories=("all",), subresources=("status", "scale"))
    reg.register(crd)
    assert reg.resolve("wd") is crd
    assert reg.resolve("widgets.example.com") is crd
    assert crd.singular == "widget" and crd.list_kind == "WidgetList"
    assert crd.subresource("status").kind == "Widget"
    assert crd.subresource("scale").group == "autoscaling"
    assert crd in reg
    assert reg.for_object({"apiVersion": "example.com/v1", "kind": "Widget"}) is crd
    v2 = Kind("example.com", "v2", "Widget", "widgets")
    reg.register(v2)
    assert reg.resolve("widgets") is crd  # first registered version preferred
    assert reg.groups()["example.com"] == ["v1", "v2"]
    reg.unregister("example.com", "v1", "widgets")
    reg.unregister("example.com", "v2", "widgets")
    assert "example.com" not in reg.groups()
    with pytest.raises(KeyError):
        reg.resolve("wd")
    # a fresh builtin registry is independent
    assert builtin_registry().get("example.com", "v1", "Widget") is None


def test_duplicate_registration_raises():
    reg = builtin_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Kind("apps", "v1", "Deployment2", "deployments"))
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Kind("apps", "v1", "Deployment", "deployments2"))


def test_split_api_version():
    assert split_api_version("apps/v1") == ("apps", "v1")
    assert split_api_version("v1") == ("", "v1")
    assert split_api_version("rbac.authorization.k8s.io/v1") == ("rbac.authorization.k8s.io", "v1")


def test_explicit_subresource_object():
    k = Kind("g.io", "v1", "Thing", "things",
             subresources=(Subresource("logs", "Thing", verbs=("get",)),))
    assert k.subresource("logs").group == "g.io"
