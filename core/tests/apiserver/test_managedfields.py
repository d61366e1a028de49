"""managedFields, Update ownership and server-side apply."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.apiserver.managedfields import (
    ANCIENT_CHANGES,
    ApplyConflictError,
    FieldSet,
    compare_objects,
    conflict_causes,
    conflict_message,
    decode_managed_fields,
    default_manager,
    fieldset_from_object,
    path_to_string,
    server_side_apply,
    update_managed_fields,
)
from pilothouse.apiserver.patch import PatchError, apply_merge_patch
from pilothouse.apiserver.patch_strategies import strategy_for, strategy_from_openapi

SLOW_OK = [HealthCheck.too_slow]  # CI machines are shared; generation time is not the subject

T0, T1, T2, T3 = (f"2024-05-01T10:0{i}:00Z" for i in range(4))
DEPLOY = strategy_for("apps", "Deployment")
NGINX = 'k:{"name":"nginx"}'


def config(replicas=2, image="nginx:1.25", env=None, labels=None, containers=None):
    container = {"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers if containers is not None else [container]},
            },
        },
    }


def entries(obj):
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def owned(obj, manager, operation):
    entry = entries(obj)[(manager, operation)]
    return set(FieldSet.from_fields_v1(entry["fieldsV1"]).strings())


def apply_ok(live, cfg, manager="kubectl", **kw):
    obj, conflicts = server_side_apply(live, cfg, manager, **kw)
    assert conflicts == []
    return obj


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


# ------------------------------------------------------------------ FieldsV1


def test_fieldsv1_round_trip_and_dot_for_members_with_children():
    fs = FieldSet([
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:replicas"),
        ("f:spec", "f:template", "f:spec", "f:containers", NGINX),
        ("f:spec", "f:template", "f:spec", "f:containers", NGINX, "f:image"),
        ("f:metadata", "f:finalizers", 'v:"example.com/x"'),
    ])
    tree = fs.to_fields_v1()
    assert tree == {
        "f:metadata": {"f:finalizers": {'v:"example.com/x"': {}}, "f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {NGINX: {".": {}, "f:image": {}}}}},
        },
    }
    assert FieldSet.from_fields_v1(tree) == fs
    assert list(tree["f:spec"]["f:template"]["f:spec"]["f:containers"][NGINX]) == [".", "f:image"]


def test_fieldsv1_keys_are_canonicalised_on_decode():
    fs = FieldSet.from_fields_v1({"f:ports": {'k:{"protocol": "TCP", "containerPort": 80.0}': {}}, "f:i": {"i:03": {}}})
    assert ("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}') in fs
    assert ("f:i", "i:3") in fs


@pytest.mark.parametrize("bad", [[], {"x": {}}, {"f:a": 1}, {".": {}}, {"k:[1]": {}}, {"k:{bad": {}}, {"i:x": {}}])
def test_fieldsv1_rejects_malformed_trees(bad):
    with pytest.raises(ValueError):
        FieldSet.from_fields_v1(bad)


def test_fieldset_algebra():
    a = FieldSet([("f:a",), ("f:b",)])
    b = FieldSet([("f:b",), ("f:c",)])
    assert (a | b).strings() == [".a", ".b", ".c"]
    assert (a & b).strings() == [".b"]
    assert (a - b).strings() == [".a"]
    assert FieldSet([("f:s", "f:x"), ("f:t",)]).without_prefixes([("f:s",)]).strings() == [".t"]
    assert ("f:a",) in a and len(a) == 2 and bool(FieldSet()) is False


@pytest.mark.parametrize("path, text", [
    (("f:spec", "f:replicas"), ".spec.replicas"),
    (("f:spec", "f:containers", NGINX, "f:image"), '.spec.containers[name="nginx"].image'),
    (("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'), '.ports[containerPort=80,protocol="TCP"]'),
    (("f:metadata", "f:finalizers", 'v:"a"'), '.metadata.finalizers[="a"]'),
    (("f:x", "i:3"), ".x[3]"),
])
def test_path_to_string_matches_kubernetes(path, text):
    assert path_to_string(path) == text


def test_fieldset_from_applied_object():
    fs = fieldset_from_object(config(), DEPLOY)
    strings = set(fs.strings())
    assert ".spec.replicas" in strings
    assert ".spec.selector" in strings  # LabelSelector is atomic
    assert ".spec.selector.matchLabels.app" not in strings
    assert '.spec.template.spec.containers[name="nginx"]' in strings
    assert '.spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].containerPort' in strings
    assert ".spec.template.spec" not in strings


# ------------------------------------------------------------------ default manager


@pytest.mark.parametrize("ua, manager", [
    ("kubectl/v1.32.5 (linux/amd64) kubernetes/4f4ebf8", "kubectl"),
    ("kubectl.1.32/v1.32.5 (linux/amd64) kubernetes/abc", "kubectl.1.32"),
    ("OpenAPI-Generator/37.0.2/python", "OpenAPI-Generator"),
    ("kube-controller-manager/v1.30.0 (linux/amd64) kubernetes/x/system:serviceaccount:kube-system:deployment-controller",
     "kube-controller-manager"),
    ("no-slash-at-all", "no-slash-at-all"),
    ("", ""),
    (None, ""),
    ("bad\x00\nname/1", "badname"),
    ("x" * 300 + "/1", "x" * 128),
    ("é" * 100, "é" * 64),
])
def test_default_manager_from_user_agent(ua, manager):
    assert default_manager(ua) == manager


# ------------------------------------------------------------------ server-side apply


def test_create_via_apply_records_an_apply_entry():
    obj = apply_ok(None, config(), time=T0)
    assert obj["spec"]["replicas"] == 2
    (entry,) = obj["metadata"]["managedFields"]
    assert list(entry) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["apiVersion"] == "apps/v1" and entry["time"] == T0 and entry["fieldsType"] == "FieldsV1"
    fields = entry["fieldsV1"]
    assert "f:name" not in fields["f:metadata"] and "f:apiVersion" not in fields
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"][NGINX] == {
        ".": {}, "f:image": {}, "f:name": {},
        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
    }


def test_time_accepts_datetime_and_defaults_to_now():
    obj = apply_ok(None, config(), time=dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc))
    assert obj["metadata"]["managedFields"][0]["time"] == "2024-05-01T12:00:00Z"
    obj = apply_ok(None, config())
    assert obj["metadata"]["managedFields"][0]["time"].endswith("Z")


def test_reapply_with_field_removed_removes_it():
    live = apply_ok(None, config(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                 labels={"app": "web", "tier": "fe"}), time=T0)
    out = apply_ok(live, config(env=[{"name": "A", "value": "1"}], labels={"app": "web"}), time=T1)
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}]
    assert out["metadata"]["labels"] == {"app": "web"}
    assert '.spec.template.spec.containers[name="nginx"].env[name="B"]' not in owned(out, "kubectl", "Apply")
    assert entries(out)[("kubectl", "Apply")]["time"] == T1
    # Emptied lists and maps go too, unless the configuration still mentions them.
    gone = apply_ok(out, {**config(), "metadata": {"name": "web"}}, time=T2)
    assert "env" not in containers(gone)[0]
    assert "labels" not in gone["metadata"]
    kept = apply_ok(out, config(labels={}, env=[]), time=T2)
    assert containers(kept)[0]["env"] == [] and kept["metadata"]["labels"] == {}


def test_reapply_without_a_container_removes_it_and_drops_emptied_lists_keys():
    two = config(containers=[{"name": "nginx", "image": "n"}, {"name": "sidecar", "image": "s"}])
    live = apply_ok(None, two)
    out = apply_ok(live, config(containers=[{"name": "nginx", "image": "n"}]))
    assert [c["name"] for c in containers(out)] == ["nginx"]
    no_replicas = config()
    del no_replicas["spec"]["replicas"]
    out = apply_ok(out, no_replicas)
    assert "replicas" not in out["spec"]


def test_removed_field_owned_by_another_manager_is_kept():
    live = apply_ok(None, config(labels={"app": "web", "team": "a"}))
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "a"}}}
    live = apply_ok(live, other, manager="team-tool")
    out = apply_ok(live, config(labels={"app": "web"}))
    assert out["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert ".metadata.labels.team" in owned(out, "team-tool", "Apply")
    assert ".metadata.labels.team" not in owned(out, "kubectl", "Apply")


def test_removed_item_with_a_field_owned_elsewhere_keeps_that_field_and_its_key():
    live = apply_ok(None, config(containers=[{"name": "nginx", "image": "n"}, {"name": "side", "image": "s"}]))
    edited = copy.deepcopy(live)
    containers(edited)[1]["image"] = "s2"
    live = update_managed_fields(live, edited, "kubectl-edit")
    out = apply_ok(live, config(containers=[{"name": "nginx", "image": "n"}]))
    assert containers(out)[1] == {"name": "side", "image": "s2"}


def test_second_applier_conflicts_and_same_value_is_shared():
    live = apply_ok(None, config(replicas=2))
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    obj, conflicts = server_side_apply(live, other, "autoscaler")
    assert obj is None
    assert conflict_message(conflicts) == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert conflict_causes(conflicts) == [
        {"type": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"}]
    same = dict(other, spec={"replicas": 2})
    shared = apply_ok(live, same, manager="autoscaler")
    assert ".spec.replicas" in owned(shared, "autoscaler", "Apply")
    assert ".spec.replicas" in owned(shared, "kubectl", "Apply")


def test_force_takes_ownership():
    live = apply_ok(None, config(replicas=2), time=T0)
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}
    out = apply_ok(live, other, manager="autoscaler", force=True, time=T1)
    assert out["spec"]["replicas"] == 5
    assert owned(out, "autoscaler", "Apply") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(out, "kubectl", "Apply")
    assert containers(out)[0]["image"] == "nginx:1.25"
    # kubectl re-applying its config without replicas now leaves the autoscaler's value alone.
    cfg = config()
    del cfg["spec"]["replicas"]
    out = apply_ok(out, cfg, time=T2)
    assert out["spec"]["replicas"] == 5


def test_update_operations_shift_ownership_and_cause_conflicts_with_update_wording():
    created = update_managed_fields(None, config(replicas=2), "kubectl-client-side-apply", time=T0)
    (entry,) = created["metadata"]["managedFields"]
    assert entry["operation"] == "Update" and entry["manager"] == "kubectl-client-side-apply"
    assert ".spec.replicas" in owned(created, "kubectl-client-side-apply", "Update")

    scaled = apply_merge_patch(created, {"spec": {"replicas": 4}})
    scaled = update_managed_fields(created, scaled, default_manager("kubectl/v1.32.5 (linux/amd64) kubernetes/x"),
                                   time=T1, subresource="scale")
    assert owned(scaled, "kubectl", "Update") == {".spec.replicas"}
    assert entries(scaled)[("kubectl", "Update")]["subresource"] == "scale"
    assert ".spec.replicas" not in owned(scaled, "kubectl-client-side-apply", "Update")
    assert entries(scaled)[("kubectl-client-side-apply", "Update")]["time"] == T0

    obj, conflicts = server_side_apply(scaled, config(replicas=3, image="nginx:1.26"), "kubectl")
    assert obj is None
    assert conflict_message(conflicts) == (
        "Apply failed with 2 conflicts: conflicts with \"kubectl\" with subresource \"scale\" using apps/v1:\n"
        "- .spec.replicas\n"
        "conflicts with \"kubectl-client-side-apply\" using apps/v1:\n"
        "- .spec.template.spec.containers[name=\"nginx\"].image"
    )
    with pytest.raises(ApplyConflictError) as info:
        raise ApplyConflictError(conflicts)
    assert info.value.code == 409 and len(info.value.causes) == 2


def test_single_update_conflict_wording():
    created = update_managed_fields(None, config(replicas=2), "kubectl-client-side-apply", time=T0)
    _, conflicts = server_side_apply(created, config(replicas=3), "kubectl")
    assert conflict_message(conflicts) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas')


def test_update_without_changes_adds_no_entry_and_keeps_time():
    created = update_managed_fields(None, config(), "creator", time=T0)
    same = update_managed_fields(created, copy.deepcopy(created), "noop", time=T1)
    assert list(entries(same)) == [("creator", "Update")]
    assert entries(same)[("creator", "Update")]["time"] == T0


def test_update_removing_fields_drops_them_and_empty_entries():
    created = update_managed_fields(None, config(labels={"app": "web", "x": "1"}), "creator", time=T0)
    labeled = apply_merge_patch(created, {"metadata": {"labels": {"x": "2"}}})
    labeled = update_managed_fields(created, labeled, "kubectl-label", time=T1)
    assert owned(labeled, "kubectl-label", "Update") == {".metadata.labels.x"}
    unlabeled = apply_merge_patch(labeled, {"metadata": {"labels": {"x": None}}})
    unlabeled = update_managed_fields(labeled, unlabeled, "other", time=T2)
    assert ("kubectl-label", "Update") not in entries(unlabeled)
    assert ".metadata.labels.x" not in owned(unlabeled, "creator", "Update")


def test_update_merges_with_the_managers_previous_fields():
    created = update_managed_fields(None, config(), "creator", time=T0)
    a = apply_merge_patch(created, {"metadata": {"annotations": {"a": "1"}}})
    a = update_managed_fields(created, a, "tool", time=T1)
    b = apply_merge_patch(a, {"metadata": {"annotations": {"b": "1"}}})
    b = update_managed_fields(a, b, "tool", time=T2)
    assert {".metadata.annotations.a", ".metadata.annotations.b"} <= owned(b, "tool", "Update")
    assert entries(b)[("tool", "Update")]["time"] == T2


def test_update_entries_are_per_api_version_apply_entries_are_not():
    created = update_managed_fields(None, config(), "tool", time=T0)
    changed = apply_merge_patch(created, {"spec": {"replicas": 7}})
    changed = update_managed_fields(created, changed, "tool", api_version="apps/v1beta2", time=T1)
    versions = sorted(e["apiVersion"] for e in changed["metadata"]["managedFields"])
    assert versions == ["apps/v1", "apps/v1beta2"]


def test_incoming_managed_fields_replace_the_stored_ones_csa_to_ssa_upgrade():
    created = update_managed_fields(None, config(), "kubectl-client-side-apply", time=T0)
    csa = entries(created)[("kubectl-client-side-apply", "Update")]
    upgraded = copy.deepcopy(created)
    upgraded["metadata"]["managedFields"] = [dict(csa, manager="kubectl", operation="Apply")]
    stored = update_managed_fields(created, upgraded, "kubectl", time=T1)
    assert list(entries(stored)) == [("kubectl", "Apply")]
    # Now kubectl apply --server-side without replicas removes what CSA used to own.
    cfg = config()
    del cfg["spec"]["replicas"]
    out = apply_ok(stored, cfg)
    assert "replicas" not in out["spec"]


def test_incoming_managed_fields_reset_and_fallback():
    created = update_managed_fields(None, config(), "creator", time=T0)
    reset = copy.deepcopy(created)
    reset["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in update_managed_fields(created, reset, "x")["metadata"]
    dropped = copy.deepcopy(created)
    del dropped["metadata"]["managedFields"]
    assert list(entries(update_managed_fields(created, dropped, "x"))) == [("creator", "Update")]
    garbage = copy.deepcopy(created)
    garbage["metadata"]["managedFields"] = [{"operation": "Nope"}]
    assert list(entries(update_managed_fields(created, garbage, "x"))) == [("creator", "Update")]


def test_update_ignores_paths_such_as_status_on_the_main_resource():
    created = update_managed_fields(None, config(), "creator", time=T0)
    with_status = copy.deepcopy(created)
    with_status["status"] = {"replicas": 2}
    out = update_managed_fields(created, with_status, "controller", ignore=["status"])
    assert ("controller", "Update") not in entries(out)
    out = update_managed_fields(created, with_status, "controller", subresource="status")
    assert owned(out, "controller", "Update") == {".status", ".status.replicas"}


def test_update_manager_cap_folds_oldest_into_ancient_changes():
    obj = update_managed_fields(None, config(), "creator", time="2024-05-01T09:00:00Z")
    for i in range(12):
        changed = apply_merge_patch(obj, {"metadata": {"annotations": {f"a{i}": "x"}}})
        obj = update_managed_fields(obj, changed, f"tool-{i:02d}", time=f"2024-05-01T10:{i:02d}:00Z")
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10
    assert ANCIENT_CHANGES in managers and "creator" not in managers and "tool-11" in managers
    ancient = owned(obj, ANCIENT_CHANGES, "Update")
    assert ".metadata.annotations.a0" in ancient and ".spec.replicas" in ancient


def test_entries_sorted_apply_first_then_time():
    obj = update_managed_fields(None, config(), "b-updater", time=T0)
    obj = apply_ok(obj, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                         "annotations": {"z": "1"}}}, manager="z-applier", time=T2)
    changed = apply_merge_patch(obj, {"metadata": {"annotations": {"y": "1"}}})
    obj = update_managed_fields(obj, changed, "a-updater", time=T1)
    assert [(e["operation"], e["manager"]) for e in obj["metadata"]["managedFields"]] == [
        ("Apply", "z-applier"), ("Update", "b-updater"), ("Update", "a-updater")]


def test_apply_merges_lists_by_key_and_keeps_live_only_items_in_place():
    live = apply_ok(None, config(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))
    injected = copy.deepcopy(live)
    containers(injected)[0]["env"].insert(1, {"name": "INJECTED", "value": "x"})
    containers(injected).append({"name": "proxy", "image": "envoy"})
    live = update_managed_fields(live, injected, "webhook")
    out = apply_ok(live, config(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]))
    assert [e["name"] for e in containers(out)[0]["env"]] == ["A", "INJECTED", "B", "C"]
    assert containers(out)[0]["env"][2] == {"name": "B", "value": "3"}
    assert [c["name"] for c in containers(out)] == ["nginx", "proxy"]


def test_apply_ports_use_protocol_default_as_key():
    live = apply_ok(None, config())
    containers(live)[0]["ports"][0]["protocol"] = "TCP"  # the server defaulted it
    out = apply_ok(live, config())
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_apply_set_list_and_atomic_fields():
    cfg = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a", "b"]}, "data": {"k": "v"}}
    live = apply_ok(None, cfg)
    assert '.metadata.finalizers[="a"]' in owned(live, "kubectl", "Apply")
    cfg2 = copy.deepcopy(cfg)
    cfg2["metadata"]["finalizers"] = ["b"]
    assert apply_ok(live, cfg2)["metadata"]["finalizers"] == ["b"]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "a", "tier": "x"}, "ports": [{"port": 80}]}}
    live = apply_ok(None, svc)
    assert ".spec.selector" in owned(live, "kubectl", "Apply")
    svc2 = copy.deepcopy(svc)
    svc2["spec"]["selector"] = {"app": "b"}
    assert apply_ok(live, svc2)["spec"]["selector"] == {"app": "b"}


def test_apply_custom_resource_with_crd_list_map_keys():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "workers": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object"}},
        "args": {"type": "array", "items": {"type": "string"}},
    }}}}
    strategy = strategy_from_openapi(schema)
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"workers": [{"name": "a", "size": 1}], "args": ["x"]}}
    live = apply_ok(None, cr, strategies=strategy)
    other = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
             "spec": {"workers": [{"name": "b", "size": 2}]}}
    live = apply_ok(live, other, manager="other", strategies=strategy)
    assert [w["name"] for w in live["spec"]["workers"]] == ["a", "b"]
    assert live["spec"]["args"] == ["x"]
    assert ".spec.args" in owned(live, "kubectl", "Apply")
    # Without the CRD schema the list is atomic: the second applier conflicts on it.
    _, conflicts = server_side_apply(apply_ok(None, cr), other, "other")
    assert [c.path for c in conflicts] == [".spec.workers"]


def test_apply_no_change_keeps_object_and_updates_time():
    live = apply_ok(None, config(), time=T0)
    out = apply_ok(live, config(), time=T1)
    assert {k: v for k, v in out.items() if k != "metadata"} == {k: v for k, v in live.items() if k != "metadata"}
    assert entries(out)[("kubectl", "Apply")]["time"] == T1


def test_apply_null_in_config_removes_the_value():
    live = apply_ok(None, config(labels={"app": "web", "x": "1"}))
    cfg = config(labels={"app": "web", "x": None})
    out = apply_ok(live, cfg)
    assert out["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize("cfg, manager, field", [
    (config(), "", "fieldManager"),
    (config(), "m" * 129, "fieldManager"),
    ({**config(), "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}}, "kubectl", "metadata.managedFields"),
    ({"kind": "Deployment", "metadata": {"name": "web"}}, "kubectl", "apiVersion"),
    (config(containers=[{"image": "x"}]), "kubectl", ".spec.template.spec.containers"),
    (config(containers=[{"name": "a"}, {"name": "a"}]), "kubectl", ".spec.template.spec.containers"),
])
def test_apply_bad_requests(cfg, manager, field):
    with pytest.raises(PatchError) as info:
        server_side_apply(None, cfg, manager)
    assert info.value.field == field


def test_decode_managed_fields_rejects_garbage():
    with pytest.raises(ValueError):
        decode_managed_fields({"a": 1})
    with pytest.raises(ValueError):
        decode_managed_fields([{"operation": "Apply", "fieldsType": "FieldsV2", "fieldsV1": {}}])
    assert decode_managed_fields(None) == []


def test_compare_objects_reports_added_modified_removed():
    old = {"spec": {"a": 1, "b": {"c": 2}, "l": [1]}}
    new = {"spec": {"a": 2, "d": {"e": 3}, "l": [1, 2]}}
    diff = compare_objects(old, new)
    assert diff.modified.strings() == [".spec.a", ".spec.l"]
    assert diff.added.strings() == [".spec.d", ".spec.d.e"]
    assert diff.removed.strings() == [".spec.b", ".spec.b.c"]


def test_subresource_status_update_wording():
    live = apply_ok(None, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}})
    with_status = copy.deepcopy(live)
    with_status["status"] = {"phase": "Running"}
    live = update_managed_fields(live, with_status, "kubelet", subresource="status", time=T1)
    _, conflicts = server_side_apply(live, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                            "status": {"phase": "Failed"}}, "me")
    assert conflicts[0].describe_manager() == '"kubelet" with subresource "status" using v1'


# ------------------------------------------------------------------ properties

names = st.sampled_from(["a", "b", "c", "d"])
env_lists = st.lists(st.fixed_dictionaries({"name": names, "value": st.sampled_from(["1", "2"])}),
                     max_size=4, unique_by=lambda e: e["name"])
label_maps = st.dictionaries(names, st.sampled_from(["x", "y"]), max_size=3)


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(env_lists, label_maps, st.integers(0, 5), env_lists, label_maps)
def test_property_apply_is_idempotent_and_converges_to_the_config(env1, labels1, replicas, env2, labels2):
    first = config(replicas=replicas, env=env1, labels=labels1)
    live = apply_ok(None, first, time=T0)
    again = apply_ok(live, first, time=T0)
    assert again == live
    second = config(replicas=replicas, env=env2, labels=labels2)
    out = apply_ok(live, second, time=T1)
    # A sole applier's object ends up exactly as its latest configuration says.
    fresh = apply_ok(None, second, time=T1)
    strip = lambda o: json.dumps({k: v for k, v in o.items() if k != "metadata"} | {
        "labels": o["metadata"].get("labels")}, sort_keys=True)
    assert strip(out) == strip(fresh)
    assert owned(out, "kubectl", "Apply") == owned(fresh, "kubectl", "Apply")


def test_apply_crd_map_of_lists_through_additional_properties():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "pools": {"type": "object", "additionalProperties": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}}},
    }}}}
    strategy = strategy_from_openapi(schema)
    base = {"apiVersion": "example.com/v1", "kind": "Cluster", "metadata": {"name": "c"}}
    live = apply_ok(None, {**base, "spec": {"pools": {"east": [{"name": "a", "n": 1}]}}}, strategies=strategy)
    live = apply_ok(live, {**base, "spec": {"pools": {"east": [{"name": "b", "n": 2}]}}}, manager="m2",
                    strategies=strategy)
    assert live["spec"]["pools"]["east"] == [{"name": "a", "n": 1}, {"name": "b", "n": 2}]
    assert '.spec.pools.east[name="b"].n' in owned(live, "m2", "Apply")
