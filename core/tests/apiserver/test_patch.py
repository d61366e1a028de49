"""Tests for JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.apiserver.patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    create_merge_patch,
    json_equal,
    parse_json_pointer,
)

SLOW_OK = [HealthCheck.too_slow]  # CI machines are shared; generation time is not the subject

# ------------------------------------------------------------------ merge patch


@pytest.mark.parametrize(
    "target, patch, expected",
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        (None, {"x": 1}, {"x": 1}),
    ],
)
def test_merge_patch_rfc_style_cases(target, patch, expected):
    before = copy.deepcopy(target)
    assert apply_merge_patch(target, patch) == expected
    assert target == before, "the input must not be mutated"


def test_merge_patch_scale_body_like_kubectl_scale():
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
    }
    out = apply_merge_patch(deploy, {"spec": {"replicas": 3}})
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"] == deploy["spec"]["template"]


def test_merge_patch_label_add_and_remove_like_kubectl_label():
    obj = {"metadata": {"name": "p", "labels": {"app": "web", "tier": "fe"}}}
    out = apply_merge_patch(obj, {"metadata": {"labels": {"tier": None, "env": "prod"}}})
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}


def test_merge_patch_result_does_not_share_structure_with_the_patch():
    patch = {"a": {"b": [1, 2]}}
    out = apply_merge_patch({}, patch)
    out["a"]["b"].append(3)
    assert patch == {"a": {"b": [1, 2]}}


json_scalars = st.one_of(
    st.booleans(), st.integers(-1000, 1000), st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_no_null = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=3), children, max_size=4),
    ),
    max_leaves=20,
)
json_objects_no_null = st.dictionaries(st.text(max_size=3), json_no_null, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(json_objects_no_null, json_objects_no_null)
def test_property_merge_patch_from_diff_turns_a_into_b(a, b):
    patch = create_merge_patch(a, b)
    assert json_equal(apply_merge_patch(a, patch), b)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(json_objects_no_null, json_objects_no_null)
def test_property_merge_patch_is_idempotent(a, patch):
    once = apply_merge_patch(a, patch)
    assert json_equal(apply_merge_patch(once, patch), once)


json_patches = st.dictionaries(st.text(max_size=3), st.one_of(st.none(), json_no_null),
                               max_size=5)


def _walk(value, seen: set) -> None:
    """The ids of every object and list in ``value``."""
    if isinstance(value, (dict, list)):
        seen.add(id(value))
        for child in value.values() if isinstance(value, dict) else value:
            _walk(child, seen)


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW_OK)
@given(json_objects_no_null, json_patches)
def test_property_a_sharing_merge_patch_gives_the_copying_answer_and_changes_nothing_shared(
        a, patch):
    before, patch_before = copy.deepcopy(a), copy.deepcopy(patch)
    shared = apply_merge_patch(a, patch, share=True)
    assert shared == apply_merge_patch(a, patch)
    assert a == before and patch == patch_before
    # every container the result shares with ``a`` is one the patch did not go into:
    # changing the result where the patch went leaves ``a`` alone
    mine: set = set()
    _walk(a, mine)
    assert id(shared) not in mine
    for key, value in patch.items():
        if isinstance(value, dict) and key in shared:
            assert id(shared[key]) not in mine
    from_patch: set = set()
    _walk(patch, from_patch)
    seen: set = set()
    _walk(shared, seen)
    assert not seen & from_patch  # the patch's values are copied


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(json_objects_no_null)
def test_property_empty_patch_is_identity_and_self_patch_is_identity(a):
    assert json_equal(apply_merge_patch(a, {}), a)
    assert json_equal(apply_merge_patch(a, a), a)


# ------------------------------------------------------------------ JSON pointer


@pytest.mark.parametrize(
    "pointer, tokens",
    [
        ("", []),
        ("/", [""]),
        ("/foo", ["foo"]),
        ("/foo/0", ["foo", "0"]),
        ("/a~1b", ["a/b"]),
        ("/m~0n", ["m~n"]),
        ("/~01", ["~1"]),
        ("/~10", ["/0"]),
        ("/ ", [" "]),
        ("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
         ["metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"]),
    ],
)
def test_parse_json_pointer(pointer, tokens):
    assert parse_json_pointer(pointer) == tokens


@pytest.mark.parametrize("pointer", ["foo", "/a~2", "/a~", 5])
def test_parse_json_pointer_rejects_bad_pointers(pointer):
    with pytest.raises(ValueError):
        parse_json_pointer(pointer)


# ------------------------------------------------------------------ JSON patch


def test_json_patch_add_to_object_and_array():
    doc = {"foo": "bar", "list": ["a", "c"]}
    out = apply_json_patch(doc, [
        {"op": "add", "path": "/baz", "value": "qux"},
        {"op": "add", "path": "/list/1", "value": "b"},
        {"op": "add", "path": "/list/-", "value": "d"},
        {"op": "add", "path": "/list/4", "value": "e"},
    ])
    assert out == {"foo": "bar", "baz": "qux", "list": ["a", "b", "c", "d", "e"]}
    assert doc == {"foo": "bar", "list": ["a", "c"]}


def test_json_patch_add_replaces_existing_member_and_nested_object():
    out = apply_json_patch({"foo": "bar"}, [
        {"op": "add", "path": "/foo", "value": {"child": {"grandchild": {}}}},
        {"op": "add", "path": "/foo/child/grandchild/x", "value": [1]},
    ])
    assert out == {"foo": {"child": {"grandchild": {"x": [1]}}}}


def test_json_patch_add_whole_document():
    assert apply_json_patch({"a": 1}, [{"op": "add", "path": "", "value": [1]}]) == [1]


def test_json_patch_remove():
    doc = {"baz": "qux", "foo": "bar", "arr": [1, 2, 3]}
    out = apply_json_patch(doc, [
        {"op": "remove", "path": "/baz"},
        {"op": "remove", "path": "/arr/1"},
    ])
    assert out == {"foo": "bar", "arr": [1, 3]}


def test_json_patch_replace():
    out = apply_json_patch({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}])
    assert out == {"baz": "boo", "foo": "bar"}
    assert apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}]) == {"b": 2}


def test_json_patch_move_between_objects_and_within_array():
    doc = {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}
    out = apply_json_patch(doc, [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
    assert out == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    out = apply_json_patch({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}])
    assert out == {"foo": ["all", "cows", "eat", "grass"]}


def test_json_patch_move_to_itself_is_a_no_op_but_source_must_exist():
    assert apply_json_patch({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}]) == {"a": 1}
    with pytest.raises(PatchError):
        apply_json_patch({"a": 1}, [{"op": "move", "from": "/b", "path": "/b"}])


def test_json_patch_move_into_own_child_fails():
    with pytest.raises(PatchError) as info:
        apply_json_patch({"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}])
    assert info.value.field == "/a/b/c"
    assert info.value.code == 422


def test_json_patch_copy_is_deep():
    out = apply_json_patch({"a": {"x": [1]}}, [
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "add", "path": "/b/x/-", "value": 2},
    ])
    assert out == {"a": {"x": [1]}, "b": {"x": [1, 2]}}


def test_json_patch_test_success_with_json_equality():
    doc = {"baz": "qux", "foo": ["a", 2, "c"], "n": 1, "obj": {"x": 1, "y": 2}}
    ops = [
        {"op": "test", "path": "/baz", "value": "qux"},
        {"op": "test", "path": "/foo/1", "value": 2},
        {"op": "test", "path": "/n", "value": 1.0},
        {"op": "test", "path": "/obj", "value": {"y": 2, "x": 1}},
    ]
    assert apply_json_patch(doc, ops) == doc


@pytest.mark.parametrize(
    "doc, value",
    [({"baz": "qux"}, "bar"), ({"baz": True}, 1), ({"baz": 0}, False), ({"baz": [1]}, [1, 2]), ({"baz": None}, 0)],
)
def test_json_patch_test_failure(doc, value):
    with pytest.raises(PatchError) as info:
        apply_json_patch(doc, [{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/baz", "value": value}])
    err = info.value
    assert err.field == "/baz"
    assert "operation 1" in err.message and "test" in err.message
    assert err.code == 422


def test_json_patch_escaped_pointers():
    doc = {"a/b": 1, "m~n": 2, "": 3, "c%d": 4}
    out = apply_json_patch(doc, [
        {"op": "replace", "path": "/a~1b", "value": 10},
        {"op": "replace", "path": "/m~0n", "value": 20},
        {"op": "replace", "path": "/", "value": 30},
        {"op": "test", "path": "/c%d", "value": 4},
    ])
    assert out == {"a/b": 10, "m~n": 20, "": 30, "c%d": 4}


def test_json_patch_replace_annotation_with_slash_in_key():
    doc = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}}
    out = apply_json_patch(doc, [{
        "op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    }])
    assert out == {"metadata": {"annotations": {}}}


def test_json_patch_csa_to_ssa_upgrade_shape():
    """kubectl apply --server-side on a CSA object replaces managedFields and sets the RV."""
    doc = {"metadata": {"name": "web", "resourceVersion": "7",
                        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}]}}
    new_mf = [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    out = apply_json_patch(doc, [
        {"op": "replace", "path": "/metadata/managedFields", "value": new_mf},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
    ])
    assert out["metadata"]["managedFields"] == new_mf


@pytest.mark.parametrize(
    "doc, op, field",
    [
        ({"a": 1}, {"op": "remove", "path": "/b"}, "/b"),
        ({"a": 1}, {"op": "replace", "path": "/b", "value": 1}, "/b"),
        ({"a": 1}, {"op": "add", "path": "/b/c", "value": 1}, "/b/c"),
        ({"a": [1]}, {"op": "add", "path": "/a/2", "value": 1}, "/a/2"),
        ({"a": [1]}, {"op": "add", "path": "/a/01", "value": 1}, "/a/01"),
        ({"a": [1]}, {"op": "add", "path": "/a/x", "value": 1}, "/a/x"),
        ({"a": [1]}, {"op": "remove", "path": "/a/-"}, "/a/-"),
        ({"a": [1]}, {"op": "replace", "path": "/a/1", "value": 0}, "/a/1"),
        ({"a": 1}, {"op": "add", "path": "/a/b", "value": 1}, "/a/b"),
        ({"a": 1}, {"op": "remove", "path": ""}, ""),
        ({"a": 1}, {"op": "copy", "from": "/x", "path": "/b"}, "/b"),
        ({"a": 1}, {"op": "test", "path": "/x", "value": 1}, "/x"),
    ],
)
def test_json_patch_apply_failures_are_422_with_path(doc, op, field):
    with pytest.raises(PatchError) as info:
        apply_json_patch(doc, [{"op": "test", "path": "", "value": doc}, op])
    assert info.value.field == field
    assert info.value.code == 422
    assert "operation 1" in info.value.message


@pytest.mark.parametrize(
    "ops, field",
    [
        ({"op": "add"}, None),
        (["add"], "[0]"),
        ([{"path": "/a", "value": 1}], "[0].op"),
        ([{"op": "frobnicate", "path": "/a"}], "[0].op"),
        ([{"op": "add", "value": 1}], "[0].path"),
        ([{"op": "add", "path": "/a"}], "[0].value"),
        ([{"op": "move", "path": "/a"}], "[0].from"),
        ([{"op": "add", "path": "a", "value": 1}], "a"),
        ([{"op": "add", "path": "/a~9", "value": 1}], "/a~9"),
    ],
)
def test_json_patch_malformed_documents_are_400(ops, field):
    with pytest.raises(PatchError) as info:
        apply_json_patch({}, ops)
    assert info.value.code == 400
    assert info.value.field == field


def test_json_patch_is_atomic():
    doc = {"a": 1}
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zzz"}])
    assert doc == {"a": 1}


def test_json_patch_operation_limit():
    with pytest.raises(PatchError) as info:
        apply_json_patch({}, [{"op": "test", "path": "", "value": {}}] * 3, max_operations=2)
    assert info.value.code == 400


def test_json_patch_empty_patch_returns_copy():
    doc = {"a": [1]}
    out = apply_json_patch(doc, [])
    assert out == doc and out is not doc and out["a"] is not doc["a"]
