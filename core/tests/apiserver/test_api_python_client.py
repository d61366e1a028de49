"""The API server through the official ``kubernetes`` Python client: CRUD, optimistic
concurrency, selectors, pagination, watch, subresources, dry-run, Status errors."""

import json
import threading

import kubernetes
import pytest
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def core(apiserver):
    return kubernetes.client.CoreV1Api(apiserver.k8s_client())


@pytest.fixture(scope="module")
def apps(apiserver):
    return kubernetes.client.AppsV1Api(apiserver.k8s_client())


def deployment(name, replicas=2, image="busybox:1", labels=None):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}}


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_version_and_system_namespaces(apiserver, core):
    version = kubernetes.client.VersionApi(apiserver.k8s_client()).get_code()
    assert version.major == "1" and version.minor == "32"
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    svc = core.read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip.startswith("10.")


def test_create_get_replace_conflict_delete(apps):
    created = apps.create_namespaced_deployment("default", deployment("web"))
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.metadata.creation_timestamp is not None
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted
    rv = created.metadata.resource_version
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment("default", deployment("web"))
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "AlreadyExists"
    assert status_of(info.value)["message"] == 'deployments.apps "web" already exists'
    created.spec.replicas = 3
    updated = apps.replace_namespaced_deployment("web", "default", created)
    assert updated.metadata.generation == 2 and updated.metadata.resource_version != rv
    created.metadata.resource_version = rv  # stale
    with pytest.raises(ApiException) as info:
        apps.replace_namespaced_deployment("web", "default", created)
    assert info.value.status == 409 and status_of(info.value)["reason"] == "Conflict"
    assert "the object has been modified" in status_of(info.value)["message"]
    apps.delete_namespaced_deployment("web", "default")
    with pytest.raises(ApiException) as info:
        apps.read_namespaced_deployment("web", "default")
    assert info.value.status == 404
    assert status_of(info.value)["message"] == 'deployments.apps "web" not found'


def test_patches_and_scale(apps):
    apps.create_namespaced_deployment("default", deployment("patched"))
    apps.patch_namespaced_deployment("patched", "default",
                                     {"metadata": {"labels": {"tier": "web"}}})
    got = apps.read_namespaced_deployment("patched", "default")
    assert got.metadata.labels == {"app": "patched", "tier": "web"}
    apps.patch_namespaced_deployment("patched", "default", [
        {"op": "replace", "path": "/spec/replicas", "value": 5}])
    assert apps.read_namespaced_deployment("patched", "default").spec.replicas == 5
    scale = apps.patch_namespaced_deployment_scale("patched", "default",
                                                   {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1 and scale.status.selector == "app=patched"
    assert apps.read_namespaced_deployment_scale("patched", "default").spec.replicas == 1


def test_status_subresource_is_separate(apps):
    apps.create_namespaced_deployment("default", deployment("st"))
    obj = apps.read_namespaced_deployment("st", "default")
    body = obj.to_dict()
    apps.patch_namespaced_deployment_status(
        "st", "default", {"status": {"replicas": 7}, "spec": {"replicas": 9}})
    after = apps.read_namespaced_deployment("st", "default")
    assert after.status.replicas == 7 and after.spec.replicas == body["spec"]["replicas"]
    apps.patch_namespaced_deployment("st", "default", {"status": {"replicas": 1}})
    assert apps.read_namespaced_deployment("st", "default").status.replicas == 7


def test_selectors_and_pagination(core):
    for i in range(7):
        core.create_namespaced_config_map("default", {
            "metadata": {"name": f"cm{i}", "labels": {"parity": "even" if i % 2 == 0 else "odd",
                                                      "set": "page"}}, "data": {"i": str(i)}})
    even = core.list_namespaced_config_map("default", label_selector="parity=even,set=page")
    assert sorted(c.metadata.name for c in even.items) == ["cm0", "cm2", "cm4", "cm6"]
    not_even = core.list_namespaced_config_map("default", label_selector="set=page,parity!=even")
    assert len(not_even.items) == 3
    named = core.list_namespaced_config_map("default", field_selector="metadata.name=cm3")
    assert [c.metadata.name for c in named.items] == ["cm3"]
    seen, token = [], None
    while True:
        page = core.list_namespaced_config_map("default", label_selector="set=page", limit=3,
                                               _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"cm{i}" for i in range(7)]
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod("default", field_selector="spec.colour=red")
    assert info.value.status == 400 and "field label not supported" in status_of(info.value)["message"]


def test_watch_sees_changes_in_order(core):
    w = kubernetes.watch.Watch()
    initial = core.list_namespaced_config_map("default")
    events = []

    def consume():
        for ev in w.stream(core.list_namespaced_config_map, "default",
                           resource_version=initial.metadata.resource_version,
                           timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 3:
                w.stop()
    t = threading.Thread(target=consume)
    t.start()
    import time
    time.sleep(0.5)
    core.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    core.patch_namespaced_config_map("w1", "default", {"data": {"a": "b"}})
    core.delete_namespaced_config_map("w1", "default")
    t.join(15)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_older_than_the_cache_window_is_410(start_apiserver):
    small = start_apiserver({"store": {"plugin": "memory"},
                             "components": {"apiserver": {"watchCacheSize": 5}}})
    core = kubernetes.client.CoreV1Api(small.k8s_client())
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "c0"}})
    for i in range(1, 12):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    w = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as info:
        for _ in w.stream(core.list_namespaced_config_map, "default",
                          resource_version=first.metadata.resource_version, timeout_seconds=3):
            pass
    assert info.value.status == 410
    events = []
    for ev in w.stream(core.list_namespaced_config_map, "default",
                       resource_version=core.list_namespaced_config_map(
                           "default").metadata.resource_version, timeout_seconds=1):
        events.append(ev)
    assert events == []  # a fresh resourceVersion watches fine


def test_dry_run_persists_nothing(core):
    before = core.list_namespaced_config_map("default").metadata.resource_version
    out = core.create_namespaced_config_map("default", {"metadata": {"name": "dry"}},
                                            dry_run="All")
    assert out.metadata.name == "dry" and out.metadata.uid
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", "default")
    assert core.list_namespaced_config_map("default").metadata.resource_version == before


def test_invalid_objects_get_field_paths_and_store_nothing(apps):
    bad = deployment("bad", replicas=-1)
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment("default", bad)
    status = status_of(info.value)
    assert info.value.status == 422 and status["reason"] == "Invalid"
    assert any(c["field"] == "spec.replicas" for c in status["details"]["causes"])
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("bad", "default")


def test_binding_assigns_a_node_once(core):
    core.create_namespaced_pod("default", {"metadata": {"name": "p1"}, "spec": {
        "containers": [{"name": "c", "image": "busybox:1"}]}})
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    core.create_namespaced_binding("default", binding, _preload_content=False)
    pod = core.read_namespaced_pod("p1", "default")
    assert pod.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    with pytest.raises(ApiException) as info:
        core.create_namespaced_binding("default", binding, _preload_content=False)
    assert info.value.status == 409


def test_finalizers_hold_deletion(core):
    core.create_namespaced_config_map("default", {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("held", "default")
    assert info.value.status == 404
