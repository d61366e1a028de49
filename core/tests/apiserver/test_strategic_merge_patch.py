"""Strategic merge patch: the bodies kubectl's client-side apply, edit and patch send."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.apiserver.patch import PatchError, apply_merge_patch, apply_strategic_merge_patch
from pilothouse.apiserver.patch_strategies import (
    BUILTIN_STRATEGIES,
    Field,
    strategy_for,
    strategy_from_openapi,
)

SLOW_OK = [HealthCheck.too_slow]  # CI machines are shared; generation time is not the subject

DEPLOY = strategy_for("apps", "Deployment")
POD = strategy_for("", "Pod")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def deployment(containers=None, **spec):
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {LAST_APPLIED: "{}"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": containers if containers is not None else [
                        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "imagePullPolicy": "IfNotPresent"},
                        {"name": "sidecar", "image": "busybox", "imagePullPolicy": "Always"},
                    ],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                },
            },
        },
    }
    obj["spec"].update(spec)
    return obj


def containers_of(obj):
    return obj["spec"]["template"]["spec"]["containers"]


# ------------------------------------------------------------- kubectl apply (CSA) bodies


def test_change_image_with_set_element_order_keeps_everything_else():
    live = deployment()
    before = copy.deepcopy(live)
    patch = {
        "metadata": {"annotations": {LAST_APPLIED: '{"new":1}'}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}],
        }}},
    }
    out = apply_strategic_merge_patch(live, patch, DEPLOY)
    assert live == before
    nginx, sidecar = containers_of(out)
    assert nginx["image"] == "nginx:1.26"
    assert nginx["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert nginx["env"] == before["spec"]["template"]["spec"]["containers"][0]["env"]
    assert sidecar == before["spec"]["template"]["spec"]["containers"][1]
    assert out["metadata"]["annotations"][LAST_APPLIED] == '{"new":1}'
    assert "$setElementOrder/containers" not in json.dumps(out)


def test_delete_container_with_patch_delete():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}],
    }}}}, DEPLOY)
    assert [c["name"] for c in containers_of(out)] == ["nginx"]


def test_add_container_in_set_element_order_position():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "metrics"}, {"name": "sidecar"}],
        "containers": [{"name": "metrics", "image": "prom"}],
    }}}}, DEPLOY)
    assert [c["name"] for c in containers_of(out)] == ["nginx", "metrics", "sidecar"]
    assert containers_of(out)[1] == {"name": "metrics", "image": "prom"}


def test_reorder_only_with_set_element_order():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
    }}}}, DEPLOY)
    assert [c["name"] for c in containers_of(out)] == ["sidecar", "nginx"]


def test_server_only_items_keep_their_live_position():
    live = deployment(containers=[{"name": "a"}, {"name": "injected"}, {"name": "b"}])
    out = apply_strategic_merge_patch(live, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "containers": [{"name": "c", "image": "c"}],
    }}}}, DEPLOY)
    assert [c["name"] for c in containers_of(out)] == ["a", "injected", "b", "c"]


def test_new_item_without_order_directive_goes_first_like_kubernetes():
    live = deployment(containers=[{"name": "a"}, {"name": "b"}])
    out = apply_strategic_merge_patch(live, {"spec": {"template": {"spec": {
        "containers": [{"name": "c"}],
    }}}}, DEPLOY)
    assert [c["name"] for c in containers_of(out)] == ["c", "a", "b"]


def test_remove_env_var_nested_in_container():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}],
            "env": [{"$patch": "delete", "name": "B"}],
            "name": "nginx",
        }],
    }}}}, DEPLOY)
    assert containers_of(out)[0]["env"] == [{"name": "A", "value": "1"}]
    assert containers_of(out)[0]["image"] == "nginx:1.25"


def test_change_env_value_and_add_env_var():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
            "env": [{"name": "A", "value": "one"}, {"name": "C", "value": "3"}],
            "name": "nginx",
        }],
    }}}}, DEPLOY)
    assert containers_of(out)[0]["env"] == [
        {"name": "A", "value": "one"}, {"name": "C", "value": "3"}, {"name": "B", "value": "2"}]


def test_env_value_to_value_from_with_null():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{
        "name": "nginx",
        "env": [{"name": "A", "value": None, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }]}}}}, DEPLOY)
    assert containers_of(out)[0]["env"][0] == {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def test_retain_keys_rolling_update_to_recreate():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"strategy": {
        "$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate",
    }}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_clears_server_defaulted_fields_even_without_null():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"strategy": {
        "$retainKeys": ["type"], "type": "Recreate",
    }}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_rejects_patch_fields_outside_the_list():
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(deployment(), {"spec": {"strategy": {
            "$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1},
        }}}, DEPLOY)
    assert "retainKeys" in info.value.message
    assert info.value.field == "spec.strategy.rollingUpdate"


def test_retain_keys_on_volume_source_change():
    live = {"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "keep", "emptyDir": {}}]}}
    out = apply_strategic_merge_patch(live, {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "keep"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"},
                     "emptyDir": None, "name": "data"}],
    }}, POD)
    assert out["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}, {"name": "keep", "emptyDir": {}}]


def test_null_deletes_label_and_unmatched_null_is_ignored():
    out = apply_strategic_merge_patch(deployment(), {"metadata": {"labels": {"app": None, "gone": None, "tier": "fe"}}}, DEPLOY)
    assert out["metadata"]["labels"] == {"tier": "fe"}


def test_container_ports_merge_by_container_port():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{
        "name": "nginx",
        "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
        "ports": [{"containerPort": 443, "name": "https"}],
    }]}}}}, DEPLOY)
    assert containers_of(out)[0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}]


def test_tolerations_are_replaced_not_merged():
    live = {"spec": {"tolerations": [{"key": "a", "operator": "Exists"}], "containers": [{"name": "c"}]}}
    out = apply_strategic_merge_patch(live, {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}, POD)
    assert out["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_command_args_and_env_from_are_replaced():
    live = {"spec": {"containers": [{"name": "c", "command": ["a", "b"], "envFrom": [{"configMapRef": {"name": "x"}}]}]}}
    out = apply_strategic_merge_patch(live, {"spec": {"containers": [{"name": "c", "command": ["z"],
                                                                      "envFrom": [{"secretRef": {"name": "s"}}]}]}}, POD)
    assert out["spec"]["containers"][0]["command"] == ["z"]
    assert out["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s"}}]


def test_finalizers_set_like_merge_and_delete_from_primitive_list():
    live = {"metadata": {"finalizers": ["a", "b", "c"]}}
    out = apply_strategic_merge_patch(live, {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["a"],
        "$setElementOrder/finalizers": ["b", "c", "d"],
        "finalizers": ["d"],
    }}, POD)
    assert out["metadata"]["finalizers"] == ["b", "c", "d"]
    out = apply_strategic_merge_patch(live, {"metadata": {"finalizers": ["b", "e"]}}, POD)
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c", "e"]
    assert len(out["metadata"]["finalizers"]) == 4


def test_delete_from_primitive_list_of_missing_list_is_a_no_op():
    out = apply_strategic_merge_patch({"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD)
    assert out == {"metadata": {}}


def test_owner_references_merge_by_uid():
    live = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "ReplicaSet"}]}}
    out = apply_strategic_merge_patch(live, {"metadata": {"ownerReferences": [
        {"uid": "2", "name": "b", "kind": "ReplicaSet"}, {"uid": "1", "controller": True}]}}, POD)
    refs = {r["uid"]: r for r in out["metadata"]["ownerReferences"]}
    assert refs["1"] == {"uid": "1", "name": "a", "kind": "ReplicaSet", "controller": True}
    assert refs["2"]["name"] == "b"


def test_list_patch_replace_directive():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}, DEPLOY)
    assert containers_of(out) == [{"name": "only", "image": "x"}]


def test_map_patch_replace_directive():
    out = apply_strategic_merge_patch(deployment(), {"metadata": {"labels": {"$patch": "replace", "new": "1"}}}, DEPLOY)
    assert out["metadata"]["labels"] == {"new": "1"}


def test_map_patch_delete_directive_removes_the_field():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, DEPLOY)
    assert "strategy" not in out["spec"]
    assert apply_strategic_merge_patch({"a": 1}, {"$patch": "delete"}) == {}


def test_map_patch_merge_directive_is_the_default():
    out = apply_strategic_merge_patch({"m": {"a": 1}}, {"m": {"$patch": "merge", "b": 2}})
    assert out == {"m": {"a": 1, "b": 2}}


def test_new_subtree_is_cleaned_of_directives_and_nulls():
    out = apply_strategic_merge_patch({"spec": {}}, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "x", "command": None}, {"name": "gone", "$patch": "delete"}],
    }}}}, DEPLOY)
    assert out == {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}


def test_type_change_takes_patch_value():
    assert apply_strategic_merge_patch({"a": [1]}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert apply_strategic_merge_patch({"a": {"b": 1}}, {"a": "s"}) == {"a": "s"}


def test_scale_body_from_python_client():
    out = apply_strategic_merge_patch(deployment(), {"spec": {"replicas": 5}}, DEPLOY)
    assert out["spec"]["replicas"] == 5


def test_cronjob_job_template_containers_merge_by_name():
    cj = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}}}}
    out = apply_strategic_merge_patch(cj, {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "b", "image": "3"}]}}}}}}, strategy_for("batch", "CronJob"))
    containers = out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {c["name"]: c["image"] for c in containers} == {"a": "1", "b": "3"}


def test_service_ports_merge_by_port():
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"app": "web"}}}
    out = apply_strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}},
                                      strategy_for("", "Service"))
    assert sorted(out["spec"]["ports"], key=lambda p: p["port"]) == [
        {"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443}]


def test_merge_key_numbers_compare_as_json_numbers():
    live = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}
    out = apply_strategic_merge_patch(live, {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0, "name": "http"}]}]}}, POD)
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "name": "http"}]


def test_rbac_rules_are_atomic():
    role = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    out = apply_strategic_merge_patch(role, {"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]},
                                      strategy_for("rbac.authorization.k8s.io", "Role"))
    assert out["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]


def test_unknown_kind_lists_are_replaced_but_metadata_merges():
    cr = {"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x"}]}}
    out = apply_strategic_merge_patch(cr, {"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}]}},
                                      strategy_for("example.com", "Widget"))
    assert out["spec"]["items"] == [{"name": "y"}]
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b"]


def test_schema_as_plain_mapping():
    schema = {"things": Field(patch_strategy=frozenset({"merge"}), patch_merge_key="id")}
    out = apply_strategic_merge_patch({"things": [{"id": 1, "v": 1}]}, {"things": [{"id": 1, "v": 2}]}, schema)
    assert out == {"things": [{"id": 1, "v": 2}]}


# ------------------------------------------------------------- errors


def test_error_missing_merge_key():
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, DEPLOY)
    assert "merge key" in info.value.message
    assert info.value.field == "spec.template.spec.containers"


def test_error_delete_directive_without_merge_key():
    with pytest.raises(PatchError):
        apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}, DEPLOY)


def test_error_unknown_directive():
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch({"a": {}}, {"a": {"$patch": "explode"}})
    assert info.value.code == 400
    with pytest.raises(PatchError):
        apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "x"}]}}}}, DEPLOY)


def test_error_set_element_order_mismatch():
    with pytest.raises(PatchError) as info:
        apply_strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}],
            "containers": [{"name": "nginx", "image": "x"}],
        }}}}, DEPLOY)
    assert info.value.code == 400


def test_error_merge_list_without_merge_key():
    schema = {"things": Field(patch_strategy=frozenset({"merge"}))}
    with pytest.raises(PatchError):
        apply_strategic_merge_patch({"things": [{"a": 1}]}, {"things": [{"a": 2}]}, schema)


def test_error_patch_not_object_and_list_of_lists():
    with pytest.raises(PatchError):
        apply_strategic_merge_patch({}, [1])
    schema = {"x": Field(patch_strategy=frozenset({"merge"}))}
    with pytest.raises(PatchError):
        apply_strategic_merge_patch({"x": [[1]]}, {"x": [[2]]}, schema)


# ------------------------------------------------------------- properties

scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
no_lists = st.recursive(
    scalars, lambda c: st.dictionaries(st.text(alphabet="abc", max_size=2), c, max_size=3), max_leaves=10)
patches = st.recursive(
    st.one_of(scalars, st.none()),
    lambda c: st.dictionaries(st.text(alphabet="abc", max_size=2), c, max_size=3), max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(st.dictionaries(st.text(alphabet="abc", max_size=2), no_lists, max_size=4),
       st.dictionaries(st.text(alphabet="abc", max_size=2), patches, max_size=4))
def test_property_without_lists_smp_equals_json_merge_patch(obj, patch):
    assert apply_strategic_merge_patch(obj, patch, DEPLOY) == apply_merge_patch(obj, patch)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(st.sampled_from("abcdef"), unique=True, max_size=5),
       st.lists(st.sampled_from("abcdef"), unique=True, max_size=5))
def test_property_merge_by_name_is_idempotent_and_keeps_every_name(live_names, patch_names):
    live = {"spec": {"containers": [{"name": n, "image": "old"} for n in live_names]}}
    patch = {"spec": {"containers": [{"name": n, "image": "new"} for n in patch_names]}}
    once = apply_strategic_merge_patch(live, patch, POD)
    names = [c["name"] for c in once["spec"]["containers"]]
    assert sorted(names) == sorted(set(live_names) | set(patch_names))
    assert apply_strategic_merge_patch(once, patch, POD) == once
    for c in once["spec"]["containers"]:
        assert c["image"] == ("new" if c["name"] in patch_names else "old")


# ------------------------------------------------------------- the table itself


def test_table_covers_the_templated_kinds():
    for group, kind in [("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "DaemonSet"),
                        ("apps", "StatefulSet"), ("batch", "Job"), ("", "ReplicationController")]:
        containers = strategy_for(group, kind).child("spec").child("template").child("spec").child("containers")
        assert containers.patch_merge_key == "name" and containers.merges_list, kind
        ports = containers.child("ports")
        assert ports.patch_merge_key == "containerPort"
        assert ports.ssa_keys == ("containerPort", "protocol")
        assert containers.child("env").patch_merge_key == "name"
        assert containers.child("envFrom").ssa_list_type == "atomic"
        assert containers.child("volumeMounts").patch_merge_key == "mountPath"
        assert containers.child("volumeDevices").patch_merge_key == "devicePath"
    spec = strategy_for("", "Pod").child("spec")
    assert spec.child("volumes").patch_strategy == frozenset({"merge", "retainKeys"})
    assert spec.child("hostAliases").patch_merge_key == "ip"
    assert spec.child("tolerations").ssa_list_type == "atomic" and not spec.child("tolerations").merges_list
    assert spec.child("topologySpreadConstraints").ssa_keys == ("topologyKey", "whenUnsatisfiable")
    assert spec.child("imagePullSecrets").patch_merge_key == "name"
    meta = strategy_for("", "Pod").child("metadata")
    assert meta.child("ownerReferences").ssa_keys == ("uid",)
    assert meta.child("finalizers").ssa_list_type == "set"
    assert meta.child("managedFields").ssa_list_type == "atomic"
    assert strategy_for("core", "Service") is BUILTIN_STRATEGIES[("", "Service")]
    assert strategy_for("", "Node").child("status").child("addresses").ssa_keys == ("type",)
    assert strategy_for("discovery.k8s.io", "EndpointSlice").child("endpoints").ssa_list_type == "atomic"
    assert strategy_for("rbac.authorization.k8s.io", "ClusterRole").child("rules").ssa_list_type == "atomic"


def test_strategy_from_crd_schema():
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "workers": {
                    "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "proto": {"type": "string", "default": "TCP"},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    }},
                },
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "legacy": {"type": "array", "x-kubernetes-patch-strategy": "merge",
                           "x-kubernetes-patch-merge-key": "id", "items": {"type": "object"}},
            }},
        },
    }
    node = strategy_from_openapi(schema)
    spec = node.child("spec")
    assert spec.child("workers").ssa_list_type == "map" and spec.child("workers").ssa_keys == ("name",)
    assert spec.child("workers").child("tags").ssa_list_type == "set"
    assert spec.child("args").ssa_list_type == "atomic"
    assert spec.child("selector").atomic
    assert spec.child("legacy").patch_merge_key == "id" and spec.child("legacy").ssa_keys == ("id",)
    assert node.child("metadata").child("finalizers").ssa_list_type == "set"


# ------------------------------------------------------------- kubectl-shaped patches, generated


def two_way_patch(live_items, desired_items):
    """The containers part of the patch kubectl computes when the live list is exactly
    what was last applied (a minimal re-implementation for the test)."""
    live = {c["name"]: c for c in live_items}
    desired_names = [c["name"] for c in desired_items]
    changes = [c if c["name"] not in live else {"name": c["name"], "image": c["image"]}
               for c in desired_items if live.get(c["name"]) != c]
    deletes = [{"$patch": "delete", "name": n} for n in live if n not in desired_names]
    return {"$setElementOrder/containers": [{"name": n} for n in desired_names],
            "containers": changes + deletes}


container_lists = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from("abcdefg"), "image": st.sampled_from(["1", "2"])}),
    max_size=6, unique_by=lambda c: c["name"])


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(container_lists, container_lists)
def test_property_kubectl_two_way_patch_reaches_the_desired_list(live_items, desired_items):
    patch = {"spec": two_way_patch(live_items, desired_items)}
    out = apply_strategic_merge_patch({"spec": {"containers": live_items}}, patch, POD)
    assert out["spec"].get("containers", []) == desired_items


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(container_lists, container_lists, st.lists(st.sampled_from("xyz"), unique=True, max_size=3), st.randoms())
def test_property_server_only_items_survive_and_desired_order_holds(live_items, desired_items, extra, rnd):
    injected = [{"name": n, "image": "sidecar"} for n in extra]
    mixed = list(live_items)
    for item in injected:
        mixed.insert(rnd.randint(0, len(mixed)), item)
    out = apply_strategic_merge_patch({"spec": {"containers": mixed}},
                                      {"spec": two_way_patch(live_items, desired_items)}, POD)
    result = out["spec"].get("containers", [])
    assert [c for c in result if c["name"] not in extra] == desired_items
    assert [c for c in result if c["name"] in extra] == [c for c in mixed if c["name"] in extra]


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(st.sampled_from("abcdef"), unique=True, max_size=5),
       st.lists(st.sampled_from("abcdef"), unique=True, max_size=5))
def test_property_primitive_list_patch_with_order_and_deletes(live, desired):
    patch = {"metadata": {
        "$setElementOrder/finalizers": desired,
        "$deleteFromPrimitiveList/finalizers": [f for f in live if f not in desired],
        "finalizers": [f for f in desired if f not in live],
    }}
    out = apply_strategic_merge_patch({"metadata": {"finalizers": live}}, patch, POD)
    assert out["metadata"].get("finalizers", []) == desired


def test_set_element_order_with_explicit_empty_list_creates_it():
    out = apply_strategic_merge_patch({"spec": {}}, {"spec": {"$setElementOrder/volumes": [], "volumes": []}}, POD)
    assert out == {"spec": {"volumes": []}}
