"""Tests of pilothouse.model.meta: system fields, names, finalizers, owners, deletion."""

import copy
import datetime
import re
import uuid

import pytest

from pilothouse.model import meta as M
from pilothouse.model.kinds import builtin_registry

REG = builtin_registry()
T0 = datetime.datetime(2026, 11, 21, 7, 54, 43, 123456, tzinfo=datetime.timezone.utc)


def _deploy(**spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, **spec}}


def test_accessors_on_missing_metadata():
    obj = {}
    assert (M.name(obj), M.namespace(obj), M.uid(obj), M.resource_version(obj)) == ("",) * 4
    assert M.labels(obj) == {} and M.annotations(obj) == {} and M.generation(obj) == 0
    assert obj == {}  # getters do not create metadata
    M.set_label(obj, "app", "web")
    M.set_annotation(obj, "a", "b")
    assert obj["metadata"] == {"labels": {"app": "web"}, "annotations": {"a": "b"}}


def test_object_key():
    assert M.object_key({"metadata": {"name": "a", "namespace": "ns"}}) == "ns/a"
    assert M.object_key({"metadata": {"name": "node1"}}) == "node1"
    assert M.split_object_key("ns/a") == ("ns", "a")
    assert M.split_object_key("node1") == ("", "node1")
    assert M.api_version("apps", "v1") == "apps/v1" and M.api_version("", "v1") == "v1"


def test_time_formats():
    assert M.now_rfc3339(T0) == "2026-11-21T07:54:43Z"
    assert M.now_rfc3339_micro(T0) == "2026-11-21T07:54:43.123456Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", M.now_rfc3339())
    assert M.parse_rfc3339("2026-11-21T07:54:43Z") == T0.replace(microsecond=0)
    assert M.parse_rfc3339("2026-11-21T08:54:43+01:00") == T0.replace(microsecond=0)
    assert M.parse_rfc3339("2026-11-21T07:54:43.123456Z") == T0
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5)
    assert M.now_rfc3339(naive) == "2026-01-02T03:04:05Z"
    for bad in ("yesterday", "2026-11-21", "2026-11-21T07:54:43"):
        with pytest.raises(ValueError):
            M.parse_rfc3339(bad)


def test_new_uid_is_a_uuid():
    a, b = M.new_uid(), M.new_uid()
    assert a != b and str(uuid.UUID(a)) == a


def test_generate_name():
    name = M.generate_name("web-")
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    long = M.generate_name("x" * 80)
    assert len(long) == 63 and long.startswith("x" * 58)
    assert len({M.generate_name("p-") for _ in range(50)}) > 40


def test_prepare_for_create_sets_system_fields():
    obj = _deploy()
    obj["metadata"].update(uid="client-uid", resourceVersion="7", generation=9,
                           creationTimestamp="1999-01-01T00:00:00Z",
                           deletionTimestamp="1999-01-01T00:00:00Z",
                           deletionGracePeriodSeconds=3, selfLink="/x")
    obj["status"] = {"replicas": 99}
    M.prepare_for_create(obj, REG.resolve("deploy"), now=T0)
    meta = obj["metadata"]
    assert meta["uid"] != "client-uid" and uuid.UUID(meta["uid"])
    assert meta["creationTimestamp"] == "2026-11-21T07:54:43Z"
    assert meta["generation"] == 1
    for gone in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                 "selfLink"):
        assert gone not in meta
    assert obj["status"] == {}  # status subresource: a client cannot create status


def test_prepare_for_create_generate_name_and_scope():
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"generateName": "n-", "namespace": "oops"},
            "status": {"capacity": {"cpu": "4"}}}
    M.prepare_for_create(node)  # kind from apiVersion/kind
    assert node["metadata"]["name"].startswith("n-") and len(node["metadata"]["name"]) == 7
    assert "namespace" not in node["metadata"]  # cluster-scoped
    assert node["status"] == {"capacity": {"cpu": "4"}}  # nodes register with status
    cm = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "b"}, "status": {"x": 1}}
    M.prepare_for_create(cm, "ConfigMap")
    assert cm["status"] == {"x": 1}  # no status subresource: untouched


def test_prepare_for_create_kind_specific_status():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}}
    M.prepare_for_create(pod, "pods")
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    ns = {"metadata": {"name": "n"}, "status": {"phase": "Terminating"}}
    M.prepare_for_create(ns, "Namespace")
    assert ns["status"] == {"phase": "Active"}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"versions": [{"name": "v1", "storage": False},
                                 {"name": "v2", "storage": True}]}}
    M.prepare_for_create(crd)
    assert crd["status"] == {"storedVersions": ["v2"]}


def test_prepare_for_create_generates_job_selector():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "d"},
           "spec": {"template": {"spec": {"containers": []}}}}
    M.prepare_for_create(job)
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "job-name": "pi", "batch.kubernetes.io/job-name": "pi", "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid}
    manual = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "m", "namespace": "d"},
              "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}}}}}
    M.prepare_for_create(manual)
    assert manual["spec"]["selector"] == {"matchLabels": {"a": "b"}}


def _stored():
    old = _deploy()
    M.prepare_for_create(old, "Deployment", now=T0)
    old["metadata"]["resourceVersion"] = "5"
    old["status"] = {"replicas": 1}
    return old


def test_prepare_for_update_keeps_immutables_and_status():
    old = _stored()
    new = _deploy()
    new["metadata"].update(uid="forged", creationTimestamp="2000-01-01T00:00:00Z",
                           resourceVersion="5", name="other", namespace="elsewhere",
                           deletionTimestamp="2000-01-01T00:00:00Z", generation=40)
    new["status"] = {"replicas": 100}
    M.prepare_for_update(new, old, "Deployment")
    for key in ("uid", "creationTimestamp", "name", "namespace"):
        assert new["metadata"][key] == old["metadata"][key]
    assert "deletionTimestamp" not in new["metadata"]
    assert new["metadata"]["resourceVersion"] == "5"  # the client's precondition
    assert new["metadata"]["generation"] == 1          # spec unchanged
    assert new["status"] == {"replicas": 1}            # status only via /status


def test_prepare_for_update_bumps_generation_on_spec_change_only():
    old = _stored()
    new = _deploy(replicas=3)
    M.prepare_for_update(new, old, "Deployment")
    assert new["metadata"]["generation"] == 2
    old2 = _stored()
    relabel = _deploy()
    relabel["metadata"]["labels"] = {"x": "y"}
    M.prepare_for_update(relabel, old2, "Deployment")
    assert relabel["metadata"]["generation"] == 1
    assert relabel["metadata"]["labels"] == {"x": "y"}  # metadata changes are kept


def test_prepare_for_update_status_subresource():
    old = _stored()
    new = _deploy(replicas=50)
    new["metadata"]["labels"] = {"sneaky": "yes"}
    new["metadata"]["resourceVersion"] = "4"
    new["status"] = {"replicas": 3, "readyReplicas": 2}
    M.prepare_for_update(new, old, "Deployment", subresource="status")
    assert new["spec"] == old["spec"]
    assert "labels" not in new["metadata"]
    assert new["status"] == {"replicas": 3, "readyReplicas": 2}
    assert new["metadata"]["resourceVersion"] == "4"
    assert new["metadata"]["generation"] == old["metadata"]["generation"]
    cleared = _deploy()
    M.prepare_for_update(cleared, _stored(), "Deployment", subresource="status")
    assert "status" not in cleared


def test_prepare_for_update_keeps_deletion_fields():
    old = _stored()
    M.mark_for_deletion(old, 30, now=T0)
    new = _deploy()
    M.prepare_for_update(new, old, "Deployment")
    assert new["metadata"]["deletionTimestamp"] == old["metadata"]["deletionTimestamp"]
    assert new["metadata"]["deletionGracePeriodSeconds"] == 30


def test_update_without_status_subresource_keeps_client_fields():
    old = {"metadata": {"name": "c", "namespace": "d", "uid": "u", "generation": 1},
           "data": {"a": "1"}}
    new = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}}
    M.prepare_for_update(new, old, "ConfigMap")
    assert new["data"] == {"a": "2"} and new["metadata"]["generation"] == 2
    assert new["metadata"]["uid"] == "u"


def test_finalizers():
    obj = {"metadata": {}}
    assert M.add_finalizer(obj, "example.com/x") is True
    assert M.add_finalizer(obj, "example.com/x") is False
    assert M.has_finalizer(obj, "example.com/x") and M.finalizers(obj) == ["example.com/x"]
    assert M.remove_finalizer(obj, "example.com/y") is False
    assert M.remove_finalizer(obj, "example.com/x") is True
    assert "finalizers" not in obj["metadata"] and not M.has_finalizer(obj, "example.com/x")


def test_owner_references():
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web-1", "uid": "rs-uid"}}
    ref = M.owner_reference(owner)
    assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                   "uid": "rs-uid", "controller": True, "blockOwnerDeletion": True}
    pod = {"metadata": {"name": "p"}}
    assert M.controller_ref(pod) is None and not M.is_owned_by(pod, owner)
    M.add_owner_reference(pod, ref)
    M.add_owner_reference(pod, dict(ref, name="renamed"))  # same uid: replaced
    other = {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "node-uid"}
    M.add_owner_reference(pod, other)
    assert len(M.owner_references(pod)) == 2
    assert M.controller_ref(pod)["name"] == "renamed"
    assert M.is_owned_by(pod, owner) and M.is_owned_by(pod, "node-uid")
    assert M.is_controlled_by(pod, owner) and not M.is_controlled_by(pod, "node-uid")
    assert not M.is_owned_by(pod, {"metadata": {}})  # no uid never matches
    assert M.remove_owner_reference(pod, owner) is True
    assert M.remove_owner_reference(pod, owner) is False
    assert M.remove_owner_reference(pod, "node-uid") is True
    assert "ownerReferences" not in pod["metadata"]


def test_mark_for_deletion_first_time_and_shortening():
    obj = {"metadata": {"name": "p", "generation": 2}}
    assert not M.is_being_deleted(obj) and M.deletion_timestamp(obj) is None
    assert M.mark_for_deletion(obj, 30, now=T0) is True
    meta = obj["metadata"]
    assert meta["deletionTimestamp"] == "2026-11-21T07:55:13Z"
    assert meta["deletionGracePeriodSeconds"] == 30 and meta["generation"] == 3
    assert M.is_being_deleted(obj)
    assert M.deletion_timestamp(obj) == datetime.datetime(2026, 11, 21, 7, 55, 13,
                                                          tzinfo=datetime.timezone.utc)
    assert M.mark_for_deletion(obj, 60, now=T0) is False   # cannot lengthen
    assert M.mark_for_deletion(obj, 30, now=T0) is False
    assert M.mark_for_deletion(obj, 10, now=T0) is True    # shorten by 20 s
    assert meta["deletionTimestamp"] == "2026-11-21T07:54:53Z"
    assert meta["deletionGracePeriodSeconds"] == 10 and meta["generation"] == 3
    assert M.mark_for_deletion(obj, 0) is True
    assert M.mark_for_deletion(obj, 0) is False            # already immediate


def test_mark_for_deletion_without_generation():
    obj = {"metadata": {"name": "p"}}
    M.mark_for_deletion(obj, now=T0)
    assert obj["metadata"] == {"name": "p", "deletionTimestamp": "2026-11-21T07:54:43Z",
                               "deletionGracePeriodSeconds": 0}


def _pod(*resources):
    return {"spec": {"containers": [{"name": f"c{i}", "resources": r}
                                    for i, r in enumerate(resources)]}}


def test_pod_qos_class():
    full = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert M.pod_qos_class(_pod({})) == "BestEffort"
    assert M.pod_qos_class(_pod(full, full)) == "Guaranteed"
    assert M.pod_qos_class(_pod(full, {})) == "Burstable"
    assert M.pod_qos_class(_pod({"requests": {"cpu": "100m"}})) == "Burstable"
    assert M.pod_qos_class(_pod({"limits": {"cpu": "1", "memory": "1Gi"},
                                 "requests": {"cpu": "1000m", "memory": "1024Mi"}})) == \
        "Guaranteed"
    assert M.pod_qos_class(_pod({"requests": {"cpu": "0"}})) == "BestEffort"
    assert M.pod_qos_class(_pod({"limits": {"cpu": "2", "memory": "1Gi"},
                                 "requests": {"cpu": "1", "memory": "1Gi"}})) == "Burstable"


def test_pod_qos_class_before_defaults():
    # limits alone imply equal requests, whether or not defaulting has copied them yet
    assert M.pod_qos_class(_pod({"limits": {"cpu": "1", "memory": "1Gi"}})) == "Guaranteed"
    assert M.pod_qos_class(_pod({"limits": {"cpu": "1"}})) == "Burstable"


def test_pod_qos_class_from_the_memo_is_the_computed_one():
    cases = [{}, {"requests": {"cpu": "1"}}, {"limits": {"cpu": 1, "memory": "1Gi"}},
             {"limits": {"cpu": "1", "memory": "1Gi"}}, {"requests": {"memory": "0"}},
             {"limits": {"cpu": True}}, {"limits": {"cpu": 1.0, "memory": "1Gi"}}]
    for first in cases:
        for second in cases:
            pod = _pod(first, second)
            pod["spec"]["initContainers"] = [{"name": "i", "resources": second}]
            want = M._qos_class(pod["spec"]["containers"] + pod["spec"]["initContainers"])
            assert M.pod_qos_class(pod) == want == M.pod_qos_class(copy.deepcopy(pod))


def test_object_reference():
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "d", "uid": "u", "resourceVersion": "4"}}
    assert M.object_reference(pod) == {"apiVersion": "v1", "kind": "Pod", "namespace": "d",
                                       "name": "p", "uid": "u", "resourceVersion": "4"}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}
    assert M.object_reference(node, "spec") == {"apiVersion": "v1", "kind": "Node", "name": "n",
                                                "fieldPath": "spec"}
