"""The fast path of update_managed_fields (entries kept as the canonical trees they are)
against the general path (every entry decoded into a set and encoded again), and the
cheaper compare_objects against a plain reference diff: same managedFields, byte for byte."""

from __future__ import annotations

import copy
import json
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilothouse.apiserver import managedfields as mf
from pilothouse.apiserver.managedfields import (
    FieldSet,
    compare_objects,
    server_side_apply,
    update_managed_fields,
)
from pilothouse.apiserver.patch import apply_merge_patch, json_equal
from pilothouse.apiserver.patch_strategies import EMPTY, strategy_for

SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
T0, T1, T2, T3 = (f"2024-05-01T10:0{i}:00Z" for i in range(4))
POD = strategy_for("", "Pod")
LEASE = strategy_for("coordination.k8s.io", "Lease")


def general(*args, **kwargs):
    saved = mf._FAST_PATH
    mf._FAST_PATH = False
    try:
        return update_managed_fields(*args, **kwargs)
    finally:
        mf._FAST_PATH = saved


def took_fast_path(*args, **kwargs) -> bool:
    """Whether update_managed_fields answers this call without the general path."""
    calls = []
    original = mf._fast_update

    def spy(*a, **kw):
        out = original(*a, **kw)
        calls.append(out is not None)
        return out

    mf._fast_update = spy
    try:
        update_managed_fields(*args, **kwargs)
    finally:
        mf._fast_update = original
    return calls == [True]


def same(old, new, manager, *, fast: bool | None = True, **kwargs):
    """update_managed_fields on both paths: byte-identical objects (managedFields and the
    rest); ``fast``: the fast path must (True) or must not (False) have answered."""
    kwargs.setdefault("time", T3)
    old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)
    try:
        want = general(old, new, manager, **kwargs)
    except Exception as exc:  # the same failure both ways (a time that is not a string)
        with pytest.raises(type(exc)):
            update_managed_fields(old, new, manager, **kwargs)
        return None
    got = update_managed_fields(old, new, manager, **kwargs)
    assert orjson.dumps(got) == orjson.dumps(want)
    assert old == old_copy and new == new_copy  # neither input changed
    if fast is not None:
        assert took_fast_path(old, new, manager, **kwargs) is fast
    return got


def pod(i: int = 0) -> dict:
    res = {"cpu": "100m", "memory": "500Mi"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i}", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "pause", "image": "pause:3.10",
                                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                     "resources": {"requests": res, "limits": res}}],
                     "restartPolicy": "Always"}}


def status(ip: str, conditions=("Initialized", "Ready", "PodScheduled")) -> dict:
    return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "172.16.0.2",
            "hostIPs": [{"ip": "172.16.0.2"}],
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": T1} for t in conditions]}


def lease(i: int, renew: str | None = None) -> dict:
    obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": f"n{i}", "namespace": "kube-node-lease",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": f"n{i}",
                                             "uid": f"uid-{i}"}]},
           "spec": {"holderIdentity": f"n{i}", "leaseDurationSeconds": 40}}
    if renew:
        obj["spec"]["renewTime"] = renew
    return obj


def without_managed_fields(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("managedFields", None)
    return obj


# ------------------------------------------------------------------ a corpus of writes


def test_lease_renewals_keep_the_stored_tree_and_take_the_new_time():
    stored = same(None, lease(7), "kubelet", strategy=LEASE, time=T0)
    for n, when in enumerate((T1, T2, T3)):
        body = without_managed_fields(stored)
        body["spec"]["renewTime"] = f"2024-05-01T10:00:0{n}.000000Z"
        renewed = same(stored, body, "kubelet", strategy=LEASE, time=when)
        (entry,) = renewed["metadata"]["managedFields"]
        assert entry["time"] == when
        if n:  # renewTime was owned already: the very same tree, not decoded and encoded
            assert entry["fieldsV1"] is stored["metadata"]["managedFields"][0]["fieldsV1"]
        stored = renewed
    # a renewal that changes nothing the kubelet does not own keeps the entry's time
    again = same(stored, without_managed_fields(stored), "kubelet", strategy=LEASE, time=T0)
    assert again["metadata"]["managedFields"] == stored["metadata"]["managedFields"]


def test_pod_lifecycle_create_bind_status_patches():
    created = same(None, pod(), "kube-controller-manager", strategy=POD, time=T0)
    bound = copy.deepcopy(created)
    bound["spec"]["nodeName"] = "node-1"
    bound["status"] = {"conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastTransitionTime": T0}]}
    bound = same(created, bound, "kube-scheduler", strategy=POD, time=T1)
    first = apply_merge_patch(bound, {"status": status("10.0.0.2")})
    first = same(bound, first, "kubelet", strategy=POD, subresource="status", time=T1)
    # a new pod IP, a condition dropped, a new one added: list elements come and go
    second = apply_merge_patch(first, {"status": status("10.0.0.3", ("Ready", "ContainersReady"))})
    second = same(first, second, "kubelet", strategy=POD, subresource="status", time=T2)
    owners = {e["manager"] for e in second["metadata"]["managedFields"]}
    assert owners == {"kube-controller-manager", "kube-scheduler", "kubelet"}
    # the scheduler's PodScheduled condition went with the kubelet's list: its entry lost it
    third = apply_merge_patch(second, {"status": {"phase": "Succeeded", "podIPs": None}})
    same(second, third, "kubelet", strategy=POD, subresource="status", time=T3)
    # and a label change by someone else takes the label from the controller's entry
    relabel = apply_merge_patch(third, {"metadata": {"labels": {"app": "db", "new": "x"}}})
    same(third, relabel, "kubectl", strategy=POD, time=T3)


def test_removing_fields_owned_by_other_managers():
    obj = same(None, pod(), "a", strategy=POD, time=T0)
    obj = same(obj, apply_merge_patch(obj, {"metadata": {"labels": {"b": "1", "c": "2"}}}),
               "b", strategy=POD, time=T1)
    obj = same(obj, apply_merge_patch(obj, {"metadata": {"annotations": {"x": "y"}}}),
               "c", strategy=POD, time=T2)
    # "c" removes what "a" and "b" own, down to emptying "b"'s entry
    gone = apply_merge_patch(obj, {"metadata": {"labels": None}})
    gone = same(obj, gone, "c", strategy=POD, time=T3)
    assert {e["manager"] for e in gone["metadata"]["managedFields"]} == {"a", "c"}
    # removing the only field an entry has, with the writer changing nothing: no new entry
    none = apply_merge_patch(gone, {"metadata": {"annotations": None}})
    same(gone, none, "d", strategy=POD, time=T3)
    # the writer removing what it owns itself, changing nothing else
    same(gone, none, "c", strategy=POD, time=T3)
    # containers list replaced: items and their children go from "a"
    other = apply_merge_patch(gone, {"spec": {"containers": [{"name": "other", "image": "x"}]}})
    same(gone, other, "e", strategy=POD, time=T3)


def test_subresource_and_ignored_paths():
    obj = same(None, pod(), "a", strategy=POD, time=T0, ignore=["status"])
    obj["status"] = {"phase": "Pending"}
    scaled = apply_merge_patch(obj, {"status": {"phase": "Running"}, "spec": {"x": 1}})
    same(obj, scaled, "a", strategy=POD, time=T1, subresource="status")
    same(obj, scaled, "a", strategy=POD, time=T1, subresource="scale", ignore=["status"])
    same(obj, scaled, "a", strategy=POD, time=T1, ignore=["spec.x", "status"])
    same(obj, scaled, "b", strategy=POD, time=T1, api_version="v2")


def test_apply_entries_then_updates():
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 2, "template": {"spec": {"containers": [
                  {"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}}}}
    live, conflicts = server_side_apply(None, deploy, "kubectl", time=T0)
    assert not conflicts
    scaled = apply_merge_patch(live, {"spec": {"replicas": 5}})
    scaled = same(live, scaled, "hpa", subresource="scale", time=T1)
    image = copy.deepcopy(scaled)
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    same(scaled, image, "kubectl-edit", time=T2)


def test_client_sent_managed_fields():
    stored = same(None, pod(), "a", strategy=POD, time=T0)
    stored = same(stored, apply_merge_patch(stored, {"metadata": {"labels": {"b": "1"}}}), "b",
                  strategy=POD, time=T1)
    changed = apply_merge_patch(stored, {"spec": {"restartPolicy": "Never"}})
    # sent back as they were (GET, change, PUT): canonical, taken as they are
    same(stored, changed, "c", strategy=POD, time=T2)
    # cleared with [{}], or an empty list (the stored ones then)
    for sent in ([{}], [], None):
        body = copy.deepcopy(changed)
        body["metadata"]["managedFields"] = sent
        same(stored, body, "c", strategy=POD, time=T2, fast=None)
    entry = stored["metadata"]["managedFields"][0]
    tree = entry["fieldsV1"]
    non_canonical = [
        {**entry, "fieldsV1": dict(reversed(list(tree.items())))},            # key order
        {**entry, "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {".": {}}}}}},  # "." alone
        {**entry, "fieldsV1": {"f:spec": {"f:a": {}, ".": {}}}},              # "." not first
        {**entry, "fieldsV1": {"f:spec": {".": {"f:x": {}}, "f:a": {}}}},     # "." not empty
        {**entry, "fieldsV1": {"f:ports": {'k:{"protocol":"TCP","containerPort":80}': {}}}},
        {**entry, "fieldsV1": {"f:ports": {'k:{"containerPort":80.0}': {}}}},
        {**entry, "fieldsV1": {"f:ports": {'k:{"containerPort": 80}': {}}}},
        {**entry, "fieldsV1": {"f:x": {"i:03": {}}}},
        {**entry, "fieldsV1": {"f:x": {"i:3": {}, "k:{\"a\":1}": {}}}},
        {**entry, "fieldsV1": {"f:x": {'v:"\\u0041"': {}}}},
        {**entry, "fieldsV1": {"f:x": {'v:1.0': {}}}},
        {**entry, "fieldsV1": {}},
        {**entry, "fieldsV1": None},
        {k: v for k, v in entry.items() if k not in ("time", "fieldsType", "apiVersion")},
        {**entry, "subresource": None},
        {**entry, "extra": "dropped"},
        {**entry, "manager": "c"},  # the writer's own identity
    ]
    malformed = [
        {**entry, "fieldsV1": {"f:x": 1}},
        {**entry, "fieldsV1": {".": {}}},
        {**entry, "fieldsV1": {"x:y": {}}},
        {**entry, "fieldsV1": []},
        {**entry, "operation": "Patch"},
        {**entry, "fieldsType": "FieldsV2"},
        {**entry, "manager": 5},
        {**entry, "time": 5},
        "not an entry",
    ]
    for sent in non_canonical + malformed:
        body = copy.deepcopy(changed)
        body["metadata"]["managedFields"] = [sent, stored["metadata"]["managedFields"][1]]
        same(stored, body, "c", strategy=POD, time=T2, fast=None)
        # the same entries stored (written by something that did not go through here)
        old = copy.deepcopy(stored)
        old["metadata"]["managedFields"] = body["metadata"]["managedFields"]
        same(old, changed, "c", strategy=POD, time=T2, fast=None)


def test_non_canonical_trees_go_the_general_way_and_canonical_ones_do_not():
    stored = same(None, pod(), "a", strategy=POD, time=T0)
    assert took_fast_path(stored, apply_merge_patch(stored, {"spec": {"x": 1}}), "b",
                          strategy=POD)
    old = copy.deepcopy(stored)
    tree = old["metadata"]["managedFields"][0]["fieldsV1"]
    tree["f:spec"] = dict(reversed(list(tree["f:spec"].items())))
    assert not took_fast_path(old, apply_merge_patch(old, {"spec": {"x": 1}}), "b",
                              strategy=POD)


def test_odd_entry_lists():
    obj = same(None, pod(), "a", strategy=POD, time=T0)
    entry = obj["metadata"]["managedFields"][0]
    change = apply_merge_patch(obj, {"spec": {"restartPolicy": "Never"}})
    for entries in (
        [entry, entry],                                          # the same identity twice
        [entry, {**entry, "time": T1}, {**entry, "manager": "b"}],
        [{**entry, "time": None}, {**entry, "manager": "b", "time": None}],
        [{**entry, "operation": "Apply"}, entry],                # an applier and an updater
        [{**entry, "manager": f"m{i}", "time": f"2024-05-01T10:{i:02d}:00Z"}
         for i in range(12)],                                    # more than 10 updaters
        [{**entry, "manager": f"m{i}", "apiVersion": f"v{i % 3}"} for i in range(11)],
        [{**entry, "manager": "a", "apiVersion": "v0"}, {**entry, "subresource": "status"}],
        "not a list",
        {"not": "a list"},
    ):
        old = copy.deepcopy(obj)
        old["metadata"]["managedFields"] = copy.deepcopy(entries)
        for manager in ("a", "b", "m3"):
            same(old, change, manager, strategy=POD, time=T2, fast=None)
            same(old, without_managed_fields(old), manager, strategy=POD, time=T2, fast=None)
    for meta in (None, {}, {"name": "x"}):
        old = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {}}
        same(old, pod(), "a", strategy=POD, time=T2)


# ------------------------------------------------------------------ random objects and writers


keys = st.sampled_from(["a", "b", "c", "name", "port"])
scalars = st.one_of(st.integers(-2, 2), st.booleans(), st.none(), st.sampled_from(["x", "y", ""]),
                    st.sampled_from([1.0, 0.5]))
items = st.fixed_dictionaries({"name": st.sampled_from(["n1", "n2", "n3"])},
                              optional={"v": scalars, "sub": st.dictionaries(keys, scalars, max_size=2)})
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.dictionaries(keys, inner, max_size=3),
                            st.lists(inner, max_size=3)),
    max_leaves=8)
bodies = st.fixed_dictionaries({}, optional={
    "spec": st.fixed_dictionaries({}, optional={
        "containers": st.lists(items, max_size=3),
        "finalizers": st.lists(st.sampled_from(["f1", "f2", "f3"]), max_size=3),
        "selector": st.dictionaries(keys, scalars, max_size=2),
        "x": values, "y": values}),
    "status": st.fixed_dictionaries({}, optional={
        "podIPs": st.lists(st.fixed_dictionaries({"ip": st.sampled_from(["1", "2", "3"])}), max_size=3),
        "phase": scalars, "z": values}),
    "metadata": st.fixed_dictionaries({}, optional={
        "labels": st.dictionaries(keys, st.sampled_from(["1", "2"]), max_size=3),
        "finalizers": st.lists(st.sampled_from(["f1", "f2"]), max_size=2)}),
})
writes = st.lists(st.tuples(bodies, st.sampled_from(["a", "b", "c"]),
                            st.sampled_from(["", "", "status"]),
                            st.sampled_from([(), ("status",), ("spec.x",)]),
                            st.sampled_from(["v1", "v1", "v2"]),
                            st.sampled_from(["", "resend", "clear", "shuffle"])),
                  min_size=1, max_size=6)


def _object(body: dict) -> dict:
    obj = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(body)}
    meta = obj.setdefault("metadata", {})
    meta["name"] = "p"
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(writes, st.randoms(use_true_random=False))
def test_random_write_sequences_give_the_same_managed_fields(writes, rnd):
    stored = None
    for n, (body, manager, subresource, ignore, version, send) in enumerate(writes):
        new = _object(body)
        if send == "resend" and stored is not None and stored["metadata"].get("managedFields"):
            new["metadata"]["managedFields"] = copy.deepcopy(stored["metadata"]["managedFields"])
        elif send == "clear":
            new["metadata"]["managedFields"] = [{}]
        elif send == "shuffle" and stored is not None and stored["metadata"].get("managedFields"):
            entries = copy.deepcopy(stored["metadata"]["managedFields"])
            for entry in entries:
                tree = entry["fieldsV1"]
                entry["fieldsV1"] = dict(rnd.sample(list(tree.items()), len(tree)))
            new["metadata"]["managedFields"] = entries
        stored = same(stored, new, manager, strategy=POD, subresource=subresource,
                      ignore=ignore, api_version=version, time=f"2024-05-01T10:00:{n:02d}Z",
                      fast=None)
        # what was stored is canonical: the next write takes the fast path
        assert all(mf._canonical_tree(e["fieldsV1"], True)
                   for e in stored["metadata"].get("managedFields", []))


# ------------------------------------------------------------------ canonical trees


elements = st.one_of(
    st.sampled_from(["f:a", "f:b", "f:c", "f:", "f:a.b", 'f:"q"', "f:é"]),
    st.sampled_from(['k:{"name":"x"}', 'k:{"name":"y"}', 'k:{"containerPort":80,"protocol":"TCP"}',
                     'k:{"a":1}', 'k:{"a":true}', 'k:{"a":null}', 'k:{}', 'k:{"a":{"b":1}}',
                     'k:{"a":"q\\"x"}', 'k:{"a":1.5}']),
    st.sampled_from(['v:"x"', 'v:1', "v:-3", "v:null", "v:false", 'v:"a\\\\b"', "v:[1]", "v:1.5"]),
    st.sampled_from(["i:0", "i:3", "i:12"]),
)
path_sets = st.frozensets(st.lists(elements, min_size=1, max_size=4).map(tuple), max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(path_sets, path_sets)
def test_tree_algebra_matches_the_set_algebra(a, b):
    fa, fb = FieldSet(a), FieldSet(b)
    ta, tb = fa.to_fields_v1(), fb.to_fields_v1()
    has_index = any(e.startswith("i:") for p in a for e in p)
    assert mf._canonical_tree(ta, True) is not has_index  # i: keys: left to the general way
    union = mf._tree_union(ta, tb, True)
    assert json.dumps(union) == json.dumps((fa | fb).to_fields_v1())
    assert json.dumps(mf._tree_without(ta, tb)) == json.dumps((fa - fb).to_fields_v1())
    if fa - fb == fa:
        assert mf._tree_without(ta, tb) is ta  # owning none of them: the same tree
    if fb.paths <= fa.paths:
        assert union is ta
    for path in fb.paths | fa.paths:
        assert mf._owns(ta, path) is (path in fa.paths)


def _shuffled(tree: dict, rnd: random.Random) -> dict:
    items = list(tree.items())
    rnd.shuffle(items)
    return {k: _shuffled(v, rnd) if isinstance(v, dict) else v for k, v in items}


def _dot_last(tree: dict) -> dict:
    out = {k: _dot_last(v) for k, v in tree.items() if k != "."}
    if "." in tree:
        out["."] = {}
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(path_sets, st.randoms(use_true_random=False), st.sampled_from(["shuffle", "dot", "leafdot", "none"]))
def test_canonical_check_is_exactly_the_encoding(paths, rnd, damage):
    tree = FieldSet(paths).to_fields_v1()
    if damage == "shuffle":
        tree = _shuffled(tree, rnd)
    elif damage == "dot":  # "." moved after the other keys of every member
        tree = _dot_last(tree)
    elif damage == "leafdot" and tree:
        tree[next(iter(tree))] = {".": {}}
    try:
        decoded = FieldSet.from_fields_v1(tree)
    except ValueError:
        assert not mf._canonical_tree(tree, True)
        return
    canonical = json.dumps(decoded.to_fields_v1()) == json.dumps(tree)
    if mf._canonical_tree(tree, True):
        assert canonical
    else:
        assert not canonical or any(e.startswith("i:") for p in decoded.paths for e in p)


@pytest.mark.parametrize("key, ok", [
    ('k:{"name":"x"}', True), ('k:{"a":1,"b":"2"}', True), ('k:{"b":1,"a":2}', False),
    ('k:{"a":1,"a":2}', False), ('k:{"a":01}', False), ('k:{"a":-0}', False),
    ('k:{"a":1.0}', False), ('k:{"a":1.5}', True), ('k:{"a":"\\u00e9"}', False),
    ('k:{"a":"é"}', True), ('k:{"a":"x\\"y"}', True), ('k:{ "a":1}', False), ("k:[1]", False),
    ("k:{}", True), ('k:{"a":{"c":1,"b":2}}', False), ('k:{"a":{"b":2,"c":1}}', True),
    ('v:"x"', True), ("v:1", True), ("v:1e2", False), ("v:[1,2]", True), ("v:[1, 2]", False),
    ("i:3", False), ("x:1", False), ("v:", False), ("k:", False),
])
def test_canonical_keys(key, ok):
    assert mf._canonical_kv(key) is ok
    if ok:
        assert mf._normalize_element(key) == key


# ------------------------------------------------------------------ compare_objects


def reference_diff(old, new, node=EMPTY):
    """Kubernetes' typed Compare spelt out with no shortcut: every pair of values walked."""
    added, modified, removed = set(), set(), set()

    def walk(lhs, rhs, node, path):
        if lhs is mf._MISSING:
            mf._all_nodes(rhs, node, path, added)
            return
        if rhs is mf._MISSING:
            mf._all_nodes(lhs, node, path, removed)
            return
        ls, rs = mf._shape(lhs, node), mf._shape(rhs, node)
        if ls == "leaf" and rs == "leaf":
            if path and not json_equal(lhs, rhs):
                modified.add(path)
            return
        if ls != rs:
            below_l, below_r = set(), set()
            mf._all_nodes(lhs, node, path, below_l)
            mf._all_nodes(rhs, node, path, below_r)
            removed.update(below_l - {path})
            added.update(below_r - {path})
            if path:
                modified.add(path)
            return
        if ls == "map":
            for key in list(lhs) + [k for k in rhs if k not in lhs]:
                walk(lhs.get(key, mf._MISSING), rhs.get(key, mf._MISSING), node.child(key),
                     path + ("f:" + key,))
            return
        le = mf._list_elements(lhs, node, strict=False)
        re_ = mf._list_elements(rhs, node, strict=False)
        if le is None or re_ is None:
            if path and not json_equal(lhs, rhs):
                modified.add(path)
            return
        left, right = dict(le), dict(re_)
        for element in list(left) + [e for e in right if e not in left]:
            walk(left.get(element, mf._MISSING), right.get(element, mf._MISSING),
                 mf._item_node(node), path + (element,))

    walk(old, new, node, ())
    return added, modified, removed


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(bodies, bodies, st.booleans())
def test_compare_objects_matches_the_reference(a, b, share):
    old, new = _object(a), _object(b)
    if share:  # unchanged parts shared, as after a patch
        for key in old:
            if key in new and old[key] == new[key]:
                new[key] = old[key]
    got = compare_objects(old, new, POD)
    assert (set(got.added.paths), set(got.modified.paths), set(got.removed.paths)) == \
        reference_diff(old, new, POD)


def _mutated(value, rnd: random.Random):
    """``value`` with some scalars changed, keys dropped or added: a likely next version."""
    if isinstance(value, dict):
        out = {k: _mutated(v, rnd) for k, v in value.items() if rnd.random() > 0.1}
        if rnd.random() < 0.1:
            out[rnd.choice(["a", "b", "name"])] = rnd.choice([1, True, "x", None, [], {}])
        return out
    if isinstance(value, list):
        return [_mutated(v, rnd) for v in value if rnd.random() > 0.1]
    if rnd.random() < 0.3:
        return rnd.choice([0, 1, 1.0, True, False, None, "x", "y", 0.5, [], {}])
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_OK)
@given(bodies, st.randoms(use_true_random=False))
def test_compare_objects_matches_the_reference_on_next_versions(a, rnd):
    old = _object(a)
    new = _mutated(old, rnd)
    got = compare_objects(old, new, POD)
    assert (set(got.added.paths), set(got.modified.paths), set(got.removed.paths)) == \
        reference_diff(old, new, POD)
    updated = same(None, old, "a", strategy=POD, time=T0)
    new.setdefault("metadata", {})
    same(updated, new, "b", strategy=POD, time=T1)


@pytest.mark.parametrize("old, new", [
    ({"a": True}, {"a": False}), ({"a": {"b": True}}, {"a": {"b": False}}),
    ({"a": True}, {"a": 1}), ({"a": [True]}, {"a": [1]}), ({"a": {"b": 1}}, {"a": {"b": 1.0}}),
    ({"a": {"b": 0.0}}, {"a": {"b": -0.0}}), ({"a": {"b": 1, "c": 2}}, {"a": {"c": 2, "b": 1}}),
    ({"a": 1}, {"a": "1"}), ({"a": None}, {"a": {}}), ({"a": []}, {"a": {}}),
    ({"spec": {"containers": [{"name": "x", "v": True}]}},
     {"spec": {"containers": [{"name": "x", "v": 1}]}}),
])
def test_compare_objects_type_edges(old, new):
    got = compare_objects(old, new, POD)
    assert (set(got.added.paths), set(got.modified.paths), set(got.removed.paths)) == \
        reference_diff(old, new, POD)
