"""The shortcuts of the API server's write path give the answers of the long way round:
JSON copies, memoised FieldsV1 encoding and decoding, the comparison's skipping of
unchanged values, the compiled schema walk, memoised syntax checks; updates that start from
the watch cache's object (and are decided from the store whenever that copy may be stale),
the watch cache taking the object a write decoded, status writes that keep the patched
object's own unchanged values, FieldsV1 trees built in path order."""

from __future__ import annotations

import copy
import datetime
import re

# at import time, not inside a test: pytest rewrites this module when it is first imported,
# and CPython 3.11 can fail to parse it deep in a running event loop ("AST constructor
# recursion depth mismatch")
from aiohttp.test_utils import make_mocked_request

from pilothouse.apiserver import _json
from pilothouse.apiserver import managedfields as mf
from pilothouse.apiserver import patch as patching
from pilothouse.apiserver.patch_strategies import strategy_for
from pilothouse.apiserver.schemas import SchemaSet
from pilothouse.model import defaults, meta, validation
from pilothouse.model.errors import FieldPath
from pilothouse.model.kinds import builtin_registry

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:10Z"


def _lease(renew: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease", "resourceVersion": "7"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renew}}


# ----------------------------------------------------------------------------- JSON copies


def test_json_copy_is_deep_and_equal():
    value = {"a": [1, 2.5, True, None, "x", {"b": [{"c": 1}]}], "d": {}}
    copied = _json.copy(value)
    assert copied == value
    copied["a"][5]["b"][0]["c"] = 2
    assert value["a"][5]["b"][0]["c"] == 1


class _Text(str):
    pass


def test_json_copy_keeps_what_a_round_trip_would_change():
    nan = float("nan")
    for value in ({"a": nan}, {"a": float("inf")}, {"a": (1, 2)}, {"a": 2 ** 70},
                  {1: "x"}, {"a": _Text("x")}, [True, 1, 1.0]):
        copied = _json.copy(value)
        expected = copy.deepcopy(value)
        assert repr(copied) == repr(expected)
        assert [type(v) for v in (copied.values() if isinstance(copied, dict) else copied)] \
            == [type(v) for v in (expected.values() if isinstance(expected, dict)
                                  else expected)]


def test_merge_patch_copies_once_and_leaves_its_inputs_alone():
    target = {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]},
              "spec": {"nodeName": "n1"}, "x": 1}
    body = {"status": {"phase": "Running", "podIP": None, "new": {"a": {"b": None, "c": 1}}},
            "x": {"y": None, "z": [1]}}
    before_target, before_body = copy.deepcopy(target), copy.deepcopy(body)
    result = patching.apply_merge_patch(target, body)
    assert result == {"status": {"phase": "Running",
                                 "conditions": [{"type": "PodScheduled"}],
                                 "new": {"a": {"c": 1}}},
                      "spec": {"nodeName": "n1"}, "x": {"z": [1]}}
    assert target == before_target and body == before_body
    result["status"]["conditions"][0]["type"] = "changed"
    result["x"]["z"].append(2)
    assert target == before_target and body == before_body


# ----------------------------------------------------------------------------- managedFields


def test_renewal_changes_only_the_time_of_the_renewers_entry():
    strategy = strategy_for("coordination.k8s.io", "Lease")
    created = mf.update_managed_fields(None, _lease(T0), "kubelet", time=T0,
                                       strategy=strategy)
    renewed_body = {**created, "spec": {**created["spec"], "renewTime": T1}}
    renewed = mf.update_managed_fields(created, renewed_body, "kubelet", time=T1,
                                       strategy=strategy)
    [before] = created["metadata"]["managedFields"]
    [after] = renewed["metadata"]["managedFields"]
    assert after == {**before, "time": T1}
    # the same answer as from a fresh decoding of the entries (no memo involved)
    fresh = mf.FieldSet(mf.FieldSet.from_fields_v1(before["fieldsV1"]).paths)
    assert after["fieldsV1"] == fresh.to_fields_v1()


def test_a_non_canonical_fields_v1_is_written_back_canonical():
    strategy = strategy_for("coordination.k8s.io", "Lease")
    body = _lease(T0)
    body["metadata"]["managedFields"] = [{
        "manager": "kubelet", "operation": "Update", "apiVersion": "coordination.k8s.io/v1",
        "time": T0, "fieldsType": "FieldsV1",
        # keys out of order and a map without its "." marker
        "fieldsV1": {"f:spec": {"f:renewTime": {}, "f:holderIdentity": {}}}}]
    old = copy.deepcopy(body)
    out = mf.update_managed_fields(old, body, "other", time=T1, strategy=strategy)
    [entry] = out["metadata"]["managedFields"]
    assert list(entry["fieldsV1"]["f:spec"]) == ["f:holderIdentity", "f:renewTime"]
    # decoding twice (the second time from the memo) gives the same set
    tree = body["metadata"]["managedFields"][0]["fieldsV1"]
    assert mf.FieldSet.from_fields_v1(tree) == mf.FieldSet.from_fields_v1(copy.deepcopy(tree))


def test_to_fields_v1_gives_a_new_tree_each_time():
    fields = mf.FieldSet([("f:spec", "f:a"), ("f:spec", "f:b")])
    first = fields.to_fields_v1()
    first["f:spec"]["f:c"] = {}
    assert fields.to_fields_v1() == {"f:spec": {"f:a": {}, "f:b": {}}}


def test_comparison_sees_true_against_one_inside_equal_looking_values():
    old = {"spec": {"a": [1], "b": {"c": 1}, "d": {"e": 0}}}
    new = {"spec": {"a": [True], "b": {"c": True}, "d": {"e": 0}}}
    assert old == new  # Python's equality cannot tell them apart
    diff = mf.compare_objects(old, new)
    assert diff.modified.paths == {("f:spec", "f:a"), ("f:spec", "f:b", "f:c")}
    assert not diff.added and not diff.removed


def test_comparison_skips_nothing_that_changed():
    strategy = strategy_for("", "Pod")
    old = {"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}],
                    "nodeName": "n1"}}
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 81
    new["spec"]["containers"].append({"name": "b", "image": "y"})
    del new["spec"]["nodeName"]
    diff = mf.compare_objects(old, new, strategy)
    c = 'k:{"name":"a"}'
    assert ("f:spec", "f:containers", c, "f:ports") in diff.modified.paths \
        or any(p[:3] == ("f:spec", "f:containers", c) for p in diff.added.paths)
    assert ("f:spec", "f:nodeName") in diff.removed.paths
    assert ("f:spec", "f:containers", 'k:{"name":"b"}', "f:image") in diff.added.paths
    assert mf.compare_objects(old, copy.deepcopy(old), strategy) == mf.Comparison(
        mf.FieldSet(), mf.FieldSet(), mf.FieldSet())


def test_default_manager_is_the_same_from_the_memo():
    agent = "kubectl/v1.32.5 (linux/amd64) kubernetes/abc"
    assert mf.default_manager(agent) == mf.default_manager(agent) == "kubectl"
    assert mf.default_manager(None) == mf.default_manager("") == ""


# ----------------------------------------------------------------------------- schemas


def test_schema_walk_follows_a_replaced_custom_schema():
    schemas = SchemaSet()
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": {"size": 3}}

    def widget(size_type: str) -> dict:
        return {"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "size": {"type": size_type}}}}}
    schemas.add_custom("example.com", "v1", "Widget", widget("string"))
    unknown, problems = schemas.check("example.com", "v1", "Widget", obj, ignore=())
    assert [p.path for p in problems] == ["spec.size"] and not unknown
    schemas.add_custom("example.com", "v1", "Widget", widget("integer"))
    assert schemas.check("example.com", "v1", "Widget", obj, ignore=()) == ([], [])
    schemas.remove_custom("example.com", "v1", "Widget")
    assert schemas.check("example.com", "v1", "Widget", obj, ignore=()) == ([], [])


def test_schema_walk_reports_leaves_and_unknown_fields_with_their_paths():
    schemas = SchemaSet()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1}},
           "spec": {"containers": [{"name": "c", "image": 5, "bogus": True,
                                    "ports": [{"containerPort": "80"}]}]},
           "status": {"phase": 3}}
    unknown, problems = schemas.check("", "v1", "Pod", pod, ignore=("status",))
    assert unknown == [("spec.containers[0].bogus", ("spec", "containers", 0, "bogus"))]
    assert sorted(p.path for p in problems) == [
        "metadata.labels.a", "spec.containers[0].image",
        "spec.containers[0].ports[0].containerPort"]


def _status_patched(pod: dict) -> dict:
    patched = copy.deepcopy(pod)
    patched["status"] = {"phase": "Running", "podIP": "10.0.0.1", "bogus": 1}
    return patched


def test_schema_walk_skips_only_subtrees_that_are_the_stored_json():
    schemas = SchemaSet()
    stored = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
              "spec": {"containers": [{"name": "c", "image": "i", "stale": 1}]}}
    patched = _status_patched(stored)
    full = schemas.check("", "v1", "Pod", patched, ignore=())
    assert [u[0] for u in full[0]] == ["spec.containers[0].stale", "status.bogus"]
    # the stored spec is not walked again: only what the write changes is reported
    skipped = schemas.check("", "v1", "Pod", patched, ignore=(), unchanged=stored)
    assert [u[0] for u in skipped[0]] == ["status.bogus"] and skipped[1] == []
    # a value equal in Python but not the same JSON (1 == True) is walked
    changed = copy.deepcopy(patched)
    changed["metadata"]["labels"] = {"a": True}
    unknown, problems = schemas.check("", "v1", "Pod", changed, ignore=(),
                                      unchanged={**stored, "metadata": {
                                          "name": "p", "labels": {"a": 1}}})
    assert [p.path for p in problems] == ["metadata.labels.a"]
    # a clean stored object: the same answer as the full walk, for several changes
    clean = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
             "spec": {"containers": [{"name": "c", "image": "i"}]}}
    for edit in ({"spec": {"containers": [{"name": "c", "image": 5, "x": 1}]}},
                 {"metadata": {"name": "p", "labels": {"a": 2}}}, {"status": {"phase": 3}},
                 {"spec": clean["spec"]}):
        new = {**copy.deepcopy(clean), **copy.deepcopy(edit)}
        assert schemas.check("", "v1", "Pod", new, ignore=(), unchanged=clean) == \
            schemas.check("", "v1", "Pod", new, ignore=())


def test_schema_walk_of_a_custom_resource_walks_unchanged_subtrees_too():
    schemas = SchemaSet()
    schemas.add_custom("example.com", "v1", "Widget", {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}})
    stored = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": "3"}}  # written before the schema said integer
    new = {**stored, "status": {}}
    unknown, problems = schemas.check("example.com", "v1", "Widget", new, ignore=(),
                                      unchanged=stored)
    assert [p.path for p in problems] == ["spec.size"]


# ----------------------------------------------------------------------------- validation


def test_memoised_syntax_checks_answer_fresh_lists():
    first = validation.is_dns1123_subdomain("Bad_Name")
    assert first
    first.append("changed")
    assert "changed" not in validation.is_dns1123_subdomain("Bad_Name")
    assert validation.is_qualified_name("app") == [] == validation.is_qualified_name("app")


def test_invalid_quantity_is_reported_each_time():
    kind = builtin_registry().get("", "v1", "Pod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "i", "resources": {
               "limits": {"cpu": "1x"}, "requests": {"cpu": "100m"}}}]}}
    first = [str(e) for e in validation.validate(kind, pod)]
    assert any("resources.limits[cpu]" in e for e in first)
    assert [str(e) for e in validation.validate(kind, pod)] == first


def test_now_rfc3339_is_the_current_second():
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    text = meta.now_rfc3339()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert before <= meta.parse_rfc3339(text) <= after


def test_field_path_child_skips_empty_names():
    assert str(FieldPath("spec").child("", "containers").index(0).child("image")) == \
        "spec.containers[0].image"
    assert str(FieldPath().child("metadata")) == "metadata"


def test_a_remembered_valid_pod_spec_does_not_hide_a_lookalike():
    kind = builtin_registry().get("", "v1", "Pod")

    def pod(grace):
        return defaults.apply_defaults(kind, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "terminationGracePeriodSeconds": grace}})
    assert validation.validate(kind, pod(1)) == [] == validation.validate(kind, pod(1))
    assert pod(1) == pod(True)  # equal to Python, not to JSON
    assert any("terminationGracePeriodSeconds" in str(e)
               for e in validation.validate(kind, pod(True)))
    assert any("terminationGracePeriodSeconds" in str(e)
               for e in validation.validate(kind, pod(float("nan"))))


def test_a_bound_pods_spec_is_remembered_without_its_node_and_the_node_still_checked():
    kind = builtin_registry().get("", "v1", "Pod")

    def pod(node, image="i"):
        spec = {"containers": [{"name": "c", "image": image}]}
        if node is not None:
            spec["nodeName"] = node
        return defaults.apply_defaults(kind, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
            "spec": spec})

    def fresh(obj):  # what validation says without any remembered spec
        validation._VALID_POD_SPECS.clear()
        return validation.validate(kind, obj)
    for node in ("n-1", "n-2", "Bad_Node", "", None):
        for image in ("i", ""):
            obj = pod(node, image)
            want = [str(e) for e in fresh(obj)]
            validation.validate(kind, pod("n-0", image))  # a lookalike remembered first
            validation.validate(kind, pod(None, image))
            assert [str(e) for e in validation.validate(kind, obj)] == want, (node, image)
    assert any("nodeName" in e for e in [str(x) for x in fresh(pod("Bad_Node"))])


def test_new_uid_is_a_random_version_4_uuid():
    import uuid
    uids = {meta.new_uid() for _ in range(1000)}
    assert len(uids) == 1000
    for uid in uids:
        parsed = uuid.UUID(uid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == uid


def test_new_uids_of_a_forked_child_are_not_its_parents():
    import os
    meta.new_uid()  # random bytes buffered in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next UIDs and leave at once
        try:
            os.write(write, ",".join(meta.new_uid() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split(","))
    os.close(read)
    assert len(child) == 4 and not child & {meta.new_uid() for _ in range(4)}


def _walk_both(schemas: SchemaSet, group: str, version: str, kind: str, obj: dict,
               ignore: tuple = ()) -> tuple:
    """The fast walk's answer and the general walk's (display paths built as it goes)."""
    fast = schemas.check(group, version, kind, obj, ignore=ignore)
    unknown: list = []
    problems: list = []
    node = schemas._node(schemas.schema_for(group, version, kind))
    schemas._walk_slow(node, obj, "", (), unknown, problems, ignore)
    return fast, (unknown, problems)


def test_schema_walk_gives_the_general_walks_answer():
    import random
    schemas = SchemaSet()
    rng = random.Random(7)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"},
                        "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]},
           "spec": {"containers": [{"name": "c", "image": "i", "ports": [
               {"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}}],
               "tolerations": [{"key": "k", "tolerationSeconds": 300}], "nodeName": "n"},
           "status": {"phase": "Running", "conditions": [
               {"type": "Ready", "status": "True", "lastProbeTime": None}],
               "containerStatuses": [{"name": "c", "state": {"running": {}}}]}}
    oddities = [None, 1, 1.5, 2.0, True, "x", [], {}, [1, "a", None], {"bogus": 1},
                {"name": 3}, [{"containerPort": "80", "extra": [1]}], float("nan")]

    def paths(value, parts=()):
        yield parts
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, parts + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, parts + (i,))
    all_paths = [p for p in paths(pod) if p]
    for trial in range(300):
        obj = copy.deepcopy(pod)
        for _ in range(rng.randint(1, 4)):
            parts = rng.choice(all_paths)
            target = obj
            try:
                for part in parts[:-1]:
                    target = target[part]
                if isinstance(target, dict) and rng.random() < 0.3:
                    target[f"unknown{trial}"] = rng.choice(oddities)
                else:
                    target[parts[-1]] = copy.deepcopy(rng.choice(oddities))
            except (KeyError, IndexError, TypeError):
                continue
        for ignore in ((), ("status",)):
            fast, slow = _walk_both(schemas, "", "v1", "Pod", obj, ignore)
            assert fast[0] == slow[0]
            assert [(p.type, p.path, repr(p.value), p.detail) for p in fast[1]] == \
                [(p.type, p.path, repr(p.value), p.detail) for p in slow[1]]
    # the memo of child nodes follows a replaced custom schema (see above) and keeps
    # reporting on every walk
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["bogus"] = 1
    for _ in range(2):
        assert schemas.check("", "v1", "Pod", bad, ignore=())[0] == [
            ("spec.containers[0].bogus", ("spec", "containers", 0, "bogus"))]


# ----------------------------------------------------------------------------- write path
# An APIServer on the memory store, driven through APIServer.handle with in-memory requests.


def _run(coro):
    import asyncio
    return asyncio.run(asyncio.wait_for(coro, 30))


class _API:
    """An API server on a memory store for one test: ``await call(method, path, body)``
    returns (status, decoded body)."""

    async def __aenter__(self):
        from pilothouse.apiserver.server import APIServer
        from pilothouse.testing.memory_store import MemoryStore
        self.store = MemoryStore()
        await self.store.open()
        self.api = APIServer(self.store)
        await self.api.start()
        return self

    async def __aexit__(self, *exc):
        await self.api.stop()
        await self.store.close()

    async def call(self, method: str, path: str, body=None,
                   content_type: str = "application/json") -> tuple[int, dict]:
        import json
        data = b"" if body is None else json.dumps(body).encode()
        req = make_mocked_request(method, path, headers={
            "Content-Type": content_type, "Content-Length": str(len(data)),
            "User-Agent": "test/1.0"})
        req._read_bytes = data
        resp = await self.api.handle(req)
        return resp.status, json.loads(resp.body)

    def cache_of(self, group: str, plural: str):
        return self.api._caches[(group, plural)]

    async def settle(self, group: str, plural: str) -> None:
        """Until the watch cache has applied every write."""
        import asyncio
        cache = self.cache_of(group, plural)
        await cache.wait_for(await self.store.current_revision())
        await asyncio.sleep(0)


_PODS = "/api/v1/namespaces/default/pods"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def _pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


def _stored(api: _API, key: str) -> dict:
    async def get():
        from pilothouse.apiserver.storage import decode
        return decode(await api.store.get(key))
    return get()


def test_the_watch_cache_keeps_the_object_the_write_decoded_and_it_is_the_stores():
    async def main():
        async with _API() as api:
            status, created = await api.call("POST", _PODS, _pod("p"))
            assert status == 201
            await api.call("PATCH", f"{_PODS}/p/status", {"status": {"phase": "Running"}},
                           "application/merge-patch+json")
            await api.settle("", "pods")
            key = "/registry/core/pods/default/p"
            cached = api.cache_of("", "pods").objects[key]
            assert cached == await _stored(api, key)
            assert cached["status"]["phase"] == "Running"
            storage = api.api.storage(api.api.registry.get("", "v1", "Pod"))
            assert not storage._written  # handed over, not kept
            # a write the cache did not see decoded (another API server's) is decoded there
            raw = await api.store.get(key)
            from pilothouse.apiserver import _json
            other = _json.loads(raw.value)
            other["metadata"]["labels"] = {"by": "other"}
            await api.store.update(key, _json.dumps(other), expected_revision=raw.mod_revision)
            await api.settle("", "pods")
            assert api.cache_of("", "pods").objects[key] == await _stored(api, key)
    _run(main())


def test_written_objects_are_the_stores_and_their_json_is_what_the_api_sends():
    """A write hands its own object to the watch cache and encodes it once: the cached
    object is what decoding the stored value gives (types included), and the response and
    every watch line carry exactly the JSON of that object."""
    from pilothouse.apiserver import _json
    from pilothouse.apiserver.storage import api_json
    from pilothouse.model._jsoncopy import same_json

    async def main():
        async with _API() as api:
            cache = api.cache_of("", "pods")
            watcher = cache.watch(await api.store.current_revision(), "default", None)
            pod = _pod("p")
            pod["metadata"]["labels"] = {"resourceVersion": "1"}
            pod["metadata"]["annotations"] = {"x": "caf\u00e9 \u2603",
                                              "n": "\x00rv-not-the-marker\x00"}
            pod["spec"]["containers"][0]["env"] = [
                {"name": "resourceVersion", "value": '"resourceVersion":"1"'}]
            status, created = await api.call("POST", _PODS, pod)
            assert status == 201
            for body, kind in (({"metadata": {"labels": {"b": "2"}}}, "merge"),
                               ({"status": {"phase": "Running", "podIP": "10.0.0.1"}},
                                "status")):
                path = f"{_PODS}/p/status" if kind == "status" else f"{_PODS}/p"
                status, answer = await api.call("PATCH", path, body,
                                                "application/merge-patch+json")
                assert status == 200
            await api.settle("", "pods")
            key = "/registry/core/pods/default/p"
            cached = cache.objects[key]
            stored = await _stored(api, key)
            assert same_json(cached, stored) and list(cached["metadata"]) == \
                list(stored["metadata"])
            assert cached["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
            assert answer == stored  # the response of the last write
            assert api_json(cached) == _json.dumps(stored)
            lines = []
            while not watcher.queue.empty():
                lines.append(watcher.queue.get_nowait().json_line())
            assert [_json.loads(line)["type"] for line in lines] == \
                ["ADDED", "MODIFIED", "MODIFIED"]
            assert lines[-1] == _json.dumps({"type": "MODIFIED", "object": stored}) + b"\n"
            raw = await api.store.get(key)  # the stored value has no resourceVersion
            assert "resourceVersion" not in _json.loads(raw.value)["metadata"]
            watcher.close()
    _run(main())


def test_an_owned_write_that_fails_leaves_the_object_as_it_was():
    from pilothouse.apiserver.storage import ResourceStorage, encode

    async def main():
        async with _API() as api:
            kind = api.api.registry.get("", "v1", "ConfigMap")
            storage = ResourceStorage(api.store, kind)
            first = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}}
            created = await storage.create(first, owned=True)
            assert created is first and created["metadata"]["resourceVersion"]
            again = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c", "namespace": "default", "resourceVersion": "5",
                                  "uid": "u"}}
            before = copy.deepcopy(again)
            try:
                await storage.create(again, owned=True)
            except Exception as exc:
                assert type(exc).__name__ == "AlreadyExists"
            assert again == before
            stale = copy.deepcopy(created)
            stale["data"] = {"a": "2"}
            stale_before = copy.deepcopy(stale)
            try:
                await storage.update(stale, int(created["metadata"]["resourceVersion"]) + 7,
                                     owned=True)
            except Exception as exc:
                assert type(exc).__name__ == "Conflict"
            assert stale == stale_before
            # metadata with nothing but a resourceVersion: stored the usual way, same value
            bare = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
            from pilothouse.apiserver.storage import _encode_marked
            assert _encode_marked(bare) is None and bare == {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
            value, marked = storage._value(copy.deepcopy(stale_before), True)
            assert value == encode(stale_before) and marked is not None
    _run(main())


def _stale(api: _API, group: str, plural: str, key: str, old: dict) -> None:
    """Make the watch cache hold ``old`` for ``key`` (as if it had not seen later writes)."""
    api.cache_of(group, plural).objects[key] = old


def test_an_update_from_a_stale_watch_cache_copy_is_decided_from_the_store():
    async def main():
        async with _API() as api:
            key = "/registry/core/pods/default/p"
            await api.call("POST", _PODS, _pod("p"))
            await api.settle("", "pods")
            old = api.cache_of("", "pods").objects[key]
            _, v2 = await api.call("PATCH", f"{_PODS}/p", {"metadata": {"labels": {"a": "1"}}},
                                   "application/merge-patch+json")
            await api.settle("", "pods")
            _stale(api, "", "pods", key, old)
            # a merge patch: applied to the store's object, not the stale copy
            status, v3 = await api.call("PATCH", f"{_PODS}/p", {"metadata": {"labels": {
                "b": "2"}}}, "application/merge-patch+json")
            assert status == 200 and v3["metadata"]["labels"] == {"a": "1", "b": "2"}
            assert int(v3["metadata"]["resourceVersion"]) > int(v2["metadata"]["resourceVersion"])
            await api.settle("", "pods")
            # a precondition that only the stale copy fails is not a conflict
            _stale(api, "", "pods", key, old)
            status, v4 = await api.call("PATCH", f"{_PODS}/p", {"metadata": {
                "resourceVersion": v3["metadata"]["resourceVersion"], "labels": {"c": "3"}}},
                "application/merge-patch+json")
            assert status == 200 and v4["metadata"]["labels"] == {"a": "1", "b": "2", "c": "3"}
            await api.settle("", "pods")
            # one the stale copy passes and the store's object fails is the client's 409
            _stale(api, "", "pods", key, old)
            body = {**v4, "metadata": {**v4["metadata"],
                                       "resourceVersion": old["metadata"]["resourceVersion"]}}
            status, err = await api.call("PUT", f"{_PODS}/p", body)
            assert status == 409 and err["reason"] == "Conflict"
            assert err["message"] == ('Operation cannot be fulfilled on pods "p": the object '
                                      'has been modified; please apply your changes to the '
                                      'latest version and try again')
            # a write that changes nothing answers the store's object, not the stale copy
            _stale(api, "", "pods", key, old)
            status, same = await api.call("PATCH", f"{_PODS}/p", {"metadata": {"labels": {
                "c": "3"}}}, "application/merge-patch+json")
            assert status == 200 and same == v4
            # a write that changes nothing on the stale copy but does on the store's object
            _stale(api, "", "pods", key, old)
            status, v5 = await api.call("PATCH", f"{_PODS}/p", {"metadata": {"labels": None}},
                                        "application/merge-patch+json")
            assert status == 200 and "labels" not in v5["metadata"]
            assert int(v5["metadata"]["resourceVersion"]) > int(v4["metadata"]["resourceVersion"])
            await api.settle("", "pods")
            # deleted meanwhile: 404 from the store, not a write from the stale copy
            _stale(api, "", "pods", key, old)
            await api.store.delete(key)
            status, err = await api.call("PATCH", f"{_PODS}/p", {"metadata": {"labels": {
                "d": "4"}}}, "application/merge-patch+json")
            assert status == 404
    _run(main())


def test_a_conflict_on_a_current_copy_still_names_the_object():
    async def main():
        async with _API() as api:
            status, lease = await api.call("POST", _LEASES, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})
            assert status == 201
            renewed = {**lease, "spec": {**lease["spec"], "renewTime": T0.replace(
                "Z", ".000000Z")}}
            status, after = await api.call("PUT", f"{_LEASES}/n1", renewed)
            assert status == 200
            await api.settle("coordination.k8s.io", "leases")
            status, err = await api.call("PUT", f"{_LEASES}/n1", renewed)  # the old rv again
            assert status == 409
            assert err["message"] == ('Operation cannot be fulfilled on leases.coordination.'
                                      'k8s.io "n1": the object has been modified; please apply '
                                      'your changes to the latest version and try again')
            assert err["details"] == {"name": "n1", "group": "coordination.k8s.io",
                                      "kind": "leases"}
    _run(main())


def test_a_binding_from_a_stale_watch_cache_copy_is_decided_from_the_store():
    async def main():
        async with _API() as api:
            key = "/registry/core/pods/default/p"
            binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                       "target": {"apiVersion": "v1", "kind": "Node", "name": "n2"}}
            await api.call("POST", _PODS, _pod("p"))
            await api.settle("", "pods")
            fresh = api.cache_of("", "pods").objects[key]
            # the cache still shows an earlier pod of that name, already bound
            bound = {**fresh, "spec": {**fresh["spec"], "nodeName": "n1"}}
            _stale(api, "", "pods", key, bound)
            status, _ = await api.call("POST", f"{_PODS}/p/binding", binding)
            assert status == 201
            stored = await _stored(api, key)
            assert stored["spec"]["nodeName"] == "n2"
            # the cache shows it unbound, the store bound: the second bind is the 409
            await api.settle("", "pods")
            _stale(api, "", "pods", key, fresh)
            status, err = await api.call("POST", f"{_PODS}/p/binding", binding)
            assert status == 409
            assert err["message"] == ("Operation cannot be fulfilled on pods/binding \"p\": "
                                      "pod p is already assigned to node 'n2'")
    _run(main())


def test_updates_start_from_the_watch_cache_and_leave_its_objects_alone():
    async def main():
        async with _API() as api:
            await api.call("POST", _PODS, _pod("p"))
            cache = api.cache_of("", "pods")
            key = "/registry/core/pods/default/p"
            storage = api.api.storage(api.api.registry.get("", "v1", "Pod"))
            reads = []
            real_get = storage.get

            async def counting_get(namespace, name):
                reads.append(name)
                return await real_get(namespace, name)
            storage.get = counting_get
            writes = [("POST", f"{_PODS}/p/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                "target": {"name": "n1"}}, "application/json"),
                ("PATCH", f"{_PODS}/p/status", {"status": {"phase": "Running"}},
                 "application/merge-patch+json"),
                ("PATCH", f"{_PODS}/p", {"metadata": {"labels": {"x": "y"}}},
                 "application/merge-patch+json")]
            for method, path, body, content_type in writes:
                await api.settle("", "pods")
                before = cache.objects[key]
                snapshot = copy.deepcopy(before)
                status, _ = await api.call(method, path, body, content_type)
                assert status in (200, 201)
                assert before == snapshot
            assert reads == []  # every write started from the cache's current copy
    _run(main())


def test_patches_and_bindings_that_share_the_stored_values_change_no_stored_object():
    """Merge patches of built-in kinds and bindings keep the stored object's own values
    where they leave them unchanged: every object the watch cache held stays as it was, and
    what each write stores is what the store decodes."""
    from pilothouse.model._jsoncopy import same_json
    deployments = "/apis/apps/v1/namespaces/default/deployments"

    async def main():
        async with _API() as api:
            pod = _pod("p")
            pod["spec"]["containers"][0].update({
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "livenessProbe": {"httpGet": {"path": "/", "port": 80}}})
            pod["spec"]["initContainers"] = [{"name": "i", "image": "busybox"}]
            await api.call("POST", _PODS, pod)
            await api.call("POST", deployments, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                    "metadata": {"labels": {"a": "b"}}, "spec": pod["spec"]}}})
            merge = "application/merge-patch+json"
            writes = [
                ("", "pods", "p", "POST", f"{_PODS}/p/binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                    "target": {"name": "n1"}}, "application/json"),
                ("", "pods", "p", "PATCH", f"{_PODS}/p/status", {"status": {
                    "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0,
                                           "image": "i", "imageID": "", "state": {
                                               "running": {"startedAt": T0}}}]}}, merge),
                ("", "pods", "p", "PATCH", f"{_PODS}/p/status", {"status": {
                    "containerStatuses": None, "podIP": "10.0.0.9"}}, merge),
                ("", "pods", "p", "PATCH", f"{_PODS}/p?fieldValidation=Warn", {
                    "metadata": {"labels": {"x": "y"}, "bogus": 1},
                    "spec": {"activeDeadlineSeconds": 30}}, merge),
                ("apps", "deployments", "d", "PATCH", f"{deployments}/d", {
                    "spec": {"replicas": 3, "template": {"metadata": {
                        "annotations": {"n": "1"}}}}}, merge),
                ("apps", "deployments", "d", "PATCH", f"{deployments}/d/status", {
                    "status": {"replicas": 3}}, merge),
            ]
            for group, plural, name, method, path, body, content_type in writes:
                await api.settle(group, plural)
                cache = api.cache_of(group, plural)
                key = next(k for k in cache.objects if k.endswith("/" + name))
                before = cache.objects[key]
                snapshot = copy.deepcopy(before)
                status, answer = await api.call(method, path, body, content_type)
                assert status in (200, 201), answer
                assert same_json(before, snapshot), path
                await api.settle(group, plural)
                assert same_json(cache.objects[key], await _stored(api, key)), path
            stored = await _stored(api, "/registry/core/pods/default/p")
            assert "bogus" not in stored["metadata"] and stored["spec"]["nodeName"] == "n1"
            assert stored["status"]["podIP"] == "10.0.0.9"
            assert "containerStatuses" not in stored["status"]
    _run(main())


# ----------------------------------------------------------------------------- status writes


def test_same_json_tells_apart_what_equality_does_not():
    from pilothouse.model._jsoncopy import same_json
    assert same_json({"a": [1, "x", None]}, {"a": [1, "x", None]})
    assert not same_json({"a": 1}, {"a": True})
    assert not same_json({"a": 1}, {"a": 1.0})
    assert not same_json([1], (1,))
    assert not same_json({"a": _Text("x")}, {"a": "x"})
    assert not same_json({"a": 1}, {"a": 2})
    nan = float("nan")
    assert same_json([nan], [nan])  # the same object: what a copy would hold too


def test_a_private_status_write_keeps_its_own_values_and_gives_the_copying_answer():
    import json
    kind = builtin_registry().get("", "v1", "Pod")
    old = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "d", "resourceVersion": "5", "uid": "u",
                        "labels": {"a": "1"}},
           "spec": {"containers": [{"name": "c", "image": "i"}], "priority": 1,
                    "x": [1.0, True]},
           "status": {"phase": "Pending"}}
    patches = [
        {"status": {"phase": "Running"}},
        {"status": {"phase": "Running"}, "spec": {"priority": True}},  # 1 -> True
        {"spec": {"x": [1, 1]}, "metadata": {"labels": {"a": "2"}}},   # 1.0 -> 1, True -> 1
        {"metadata": {"resourceVersion": "5"}, "status": None},
        {"spec": None, "status": {"phase": "Failed"}},
        {"extra": {"y": 1}, "status": {"phase": "Running"}},
    ]
    for body in patches:
        copied = meta.prepare_for_update(patching.apply_merge_patch(old, body), old, kind,
                                         subresource="status")
        before = copy.deepcopy(old)
        private = patching.apply_merge_patch(old, body)
        spec_object = private.get("spec")
        kept = meta.prepare_for_update(private, old, kind, subresource="status",
                                       new_is_private=True)
        assert json.dumps(kept) == json.dumps(copied)  # values, types and key order
        assert old == before
        if spec_object is not None and spec_object == old["spec"] and \
                json.dumps(spec_object) == json.dumps(old["spec"]):
            assert kept["spec"] is spec_object  # left alone by the patch: not copied again
        for key in kept:
            if key != "status":
                assert kept[key] is not old.get(key) or not isinstance(kept[key], (dict, list))


def test_keyed_list_elements_of_one_string_key_are_those_of_the_general_encoding():
    strategy = strategy_for("", "Pod")
    conditions = strategy.child("status").child("conditions")
    items = [{"type": "Ready"}, {"type": 'odd "quoted" \u00e9'}, {"type": "Ready", "x": 1},
             {"type": 7}, {"other": 1}]
    fast = mf._list_elements(items[:3], conditions, strict=False)
    assert [e for e, _ in fast] == ['k:' + mf._dumps({"type": "Ready"}),
                                    'k:' + mf._dumps({"type": 'odd "quoted" \u00e9'})]
    assert fast[0][1] is items[0]  # the first of duplicates stays
    assert [e for e, _ in mf._list_elements(items[3:4], conditions, strict=False)] == \
        ['k:{"type":7}']
    assert mf._list_elements(items[4:], conditions, strict=False) is None
    import pytest
    with pytest.raises(patching.PatchError, match="duplicate entries for key"):
        mf._list_elements(items[:3], conditions, strict=True)


def test_fields_v1_built_in_path_order_is_the_level_by_level_tree():
    import json
    import random
    rng = random.Random(3)
    elements = ["f:a", "f:b", "f:spec", 'k:{"name":"x"}', 'k:{"name":"y"}', 'v:"s"', "v:1",
                "f:z"]
    for trial in range(400):
        paths = set()
        for _ in range(rng.randint(0, 25)):
            paths.add(tuple(rng.choice(elements) for _ in range(rng.randint(1, 4))))
        fields = mf.FieldSet(paths)
        fast = mf._tree_in_order(fields.paths)
        assert json.dumps(fast) == json.dumps(fields._tree_general())  # keys in order too
        assert mf.FieldSet.from_fields_v1(fast) == fields
    odd = mf.FieldSet([("f:a", "i:0"), ("f:a", "f:b"), ("f:c",)])
    assert mf._tree_in_order(odd.paths) is None  # index elements: the general tree
    assert odd.to_fields_v1() == {"f:a": {"f:b": {}, "i:0": {}}, "f:c": {}}


def test_object_meta_checks_skip_absent_fields_and_report_present_ones():
    for field, value, wanted in [
            ("generation", -1, "metadata.generation"), ("labels", {"a b": "x"}, "metadata.labels"),
            ("annotations", {"a b": "x"}, "metadata.annotations"),
            ("ownerReferences", "x", "metadata.ownerReferences"),
            ("finalizers", ["orphan", "foregroundDeletion"], "metadata.finalizers")]:
        obj = {"metadata": {"name": "n", "namespace": "d", field: value}}
        errs = validation.validate_object_meta(obj, True)
        assert errs and all(str(e).startswith(wanted) for e in errs)
        for absent in (None, ...):
            meta_ = {"name": "n", "namespace": "d"}
            if absent is None:
                meta_[field] = None
            assert validation.validate_object_meta({"metadata": meta_}, True) == []


def test_tracked_fields_are_those_of_the_plain_filter():
    paths = [("f:apiVersion",), ("f:metadata",), ("f:metadata", "f:name"),
             ("f:metadata", "f:labels", "f:a"), ("f:metadata", "f:managedFields"),
             ("f:metadata", "f:managedFields", "i:0"), ("f:spec", "f:x"), ("f:status",),
             ("f:status", "f:phase"), ("f:spec",)]
    for n in range(len(paths) + 1):
        for ignore in ((), (("f:status",),), (("f:spec", "f:x"),)):
            fields = mf.FieldSet(paths[:n] + paths[n + 1:])
            plain = mf.FieldSet(p for p in fields.paths if p not in mf._STRIP_EXACT
                                and p[:2] != mf._STRIP_PREFIX).without_prefixes(ignore)
            assert mf._tracked(fields, ignore) == plain


def test_a_created_objects_top_level_paths_from_the_memo_are_the_walks():
    strategy = strategy_for("", "Pod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "image": "i", "ports": [
               {"containerPort": 80, "protocol": "TCP"}]}], "nodeSelector": {"x": "y"}},
           "status": {"phase": "Pending"}}

    def walked(obj, node):
        out: set = set()
        mf._all_nodes(obj, node, (), out)
        return out
    for obj, node in ((pod, strategy), (pod, mf.EMPTY),
                      ({**pod, "spec": {"containers": ({"name": "c"},)}}, strategy)):
        for _ in range(2):  # the second time from the memo
            diff = mf.compare_objects({}, obj, node)
            assert diff.added.paths == frozenset(walked(obj, node)) and not diff.removed
            gone = mf.compare_objects(obj, {}, node)
            assert gone.removed.paths == diff.added.paths and not gone.added
