"""Tests of pilothouse.model.defaults: Kubernetes' defaults per kind."""

import base64
import copy

import pytest

from pilothouse.model.defaults import (apply_defaults, default_pod_spec, image_pull_policy,
                                       register_defaulter)
from pilothouse.model.kinds import Kind


def test_pod_defaults():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                                    "ports": [{"containerPort": 80}],
                                    "livenessProbe": {"httpGet": {"port": 80}},
                                    "readinessProbe": {"exec": {"command": ["true"]},
                                                       "periodSeconds": 3},
                                    "env": [{"name": "NODE", "valueFrom": {
                                        "fieldRef": {"fieldPath": "spec.nodeName"}}}],
                                    "resources": {"limits": {"cpu": "1"},
                                                  "requests": {"memory": "1Gi"}}}]}}
    apply_defaults("Pod", pod)
    spec = pod["spec"]
    assert {k: spec[k] for k in ("restartPolicy", "dnsPolicy", "schedulerName",
                                 "terminationGracePeriodSeconds", "securityContext",
                                 "enableServiceLinks")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
        "securityContext": {}, "enableServiceLinks": True}
    assert "serviceAccountName" not in spec and "tolerations" not in spec
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3}
    assert c["readinessProbe"]["periodSeconds"] == 3  # given values are kept
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert c["resources"]["requests"] == {"memory": "1Gi", "cpu": "1"}  # from limits


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.25", "IfNotPresent"),
    ("registry:5000/nginx", "Always"), ("registry:5000/nginx:v1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"), ("", "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy


def test_pod_defaults_keep_given_values_and_are_idempotent():
    pod = {"spec": {"restartPolicy": "Never", "dnsPolicy": "None", "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 0, "securityContext": {"runAsUser": 1},
                    "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}
    apply_defaults("Pod", pod)
    once = copy.deepcopy(pod)
    apply_defaults("Pod", pod)
    assert pod == once
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["enableServiceLinks"] is False
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_pod_host_network_service_account_and_volumes():
    pod = {"spec": {"hostNetwork": True, "serviceAccountName": "builder",
                    "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53}]}],
                    "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}},
                                {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
                                {"name": "h", "hostPath": {"path": "/var"}}]}}
    apply_defaults("Pod", pod)
    spec = pod["spec"]
    assert spec["containers"][0]["ports"][0]["hostPort"] == 53
    assert spec["serviceAccount"] == "builder"
    assert spec["volumes"][0] == {"name": "scratch", "emptyDir": {}}
    assert spec["volumes"][1]["configMap"]["defaultMode"] == 420
    assert spec["volumes"][2]["secret"]["defaultMode"] == 256
    assert spec["volumes"][3]["hostPath"]["type"] == ""
    legacy = {"spec": {"serviceAccount": "old", "containers": []}}
    apply_defaults("Pod", legacy)
    assert legacy["spec"]["serviceAccountName"] == "old"


def test_deployment_defaults():
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
         "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1",
                                                        "resources": {"limits": {"cpu": "1"}}}]}}}}
    apply_defaults(None, d)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    assert "enableServiceLinks" not in tspec                    # pods only
    assert "requests" not in tspec["containers"][0]["resources"]  # pods only
    recreate = {"spec": {"strategy": {"type": "Recreate"}, "replicas": 0}}
    apply_defaults("Deployment", recreate)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}
    assert recreate["spec"]["replicas"] == 0


def test_replicaset_daemonset_statefulset_defaults():
    rs = apply_defaults("ReplicaSet", {"spec": {}})
    assert rs["spec"] == {"replicas": 1}
    ds = apply_defaults("DaemonSet", {"spec": {"template": {"spec": {"containers": []}}}})
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert ds["spec"]["template"]["spec"]["schedulerName"] == "default-scheduler"
    sts = apply_defaults("StatefulSet", {"spec": {}})
    assert sts["spec"] == {
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "replicas": 1, "revisionHistoryLimit": 10}
    on_delete = apply_defaults("StatefulSet", {"spec": {"updateStrategy": {"type": "OnDelete"}}})
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_job_and_cronjob_defaults():
    job = {"metadata": {"name": "j"},
           "spec": {"template": {"metadata": {"labels": {"app": "batch"}},
                                 "spec": {"containers": [{"name": "c", "image": "x"}],
                                          "restartPolicy": "Never"}}}}
    apply_defaults("Job", job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"],
            spec["completionMode"], spec["suspend"], spec["podReplacementPolicy"]) == \
        (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    assert job["metadata"]["labels"] == {"app": "batch"}
    parallel = apply_defaults("Job", {"spec": {"parallelism": 4}})
    assert parallel["spec"]["parallelism"] == 4 and "completions" not in parallel["spec"]
    per_index = apply_defaults("Job", {"spec": {"backoffLimitPerIndex": 1,
                                                "podFailurePolicy": {"rules": []}}})
    assert per_index["spec"]["backoffLimit"] == 2**31 - 1
    assert per_index["spec"]["podReplacementPolicy"] == "Failed"
    cj = apply_defaults("CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}})
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
            spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    tpl = spec["jobTemplate"]["spec"]
    assert tpl["template"]["spec"]["restartPolicy"] == "Always"  # pod template defaults only
    assert "backoffLimit" not in tpl


def test_service_defaults():
    svc = apply_defaults("Service", {"spec": {"ports": [{"port": 80}, {"port": 53,
                                                                       "protocol": "UDP",
                                                                       "targetPort": "dns"}]}})
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80},
                             {"port": 53, "protocol": "UDP", "targetPort": "dns"}]
    lb = apply_defaults("Service", {"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                                             "ports": [{"port": 443}]}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    ext = apply_defaults("Service", {"spec": {"type": "ExternalName", "externalName": "x.y"}})
    assert "internalTrafficPolicy" not in ext["spec"]


def test_namespace_secret_node_defaults():
    ns = apply_defaults("Namespace", {"metadata": {"name": "n"}})
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    secret = apply_defaults("Secret", {"data": {"a": "eA=="}, "stringData": {"b": "hello"}})
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"a": "eA==", "b": base64.b64encode(b"hello").decode()}
    assert "stringData" not in secret
    tls = apply_defaults("Secret", {"type": "kubernetes.io/tls"})
    assert tls["type"] == "kubernetes.io/tls"
    node = apply_defaults("Node", {"status": {"capacity": {"cpu": "4"}}})
    assert node["status"]["allocatable"] == {"cpu": "4"}


def test_other_builtin_defaults():
    pv = apply_defaults("PersistentVolume", {"spec": {}})
    assert pv["spec"] == {"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}
    assert pv["status"] == {"phase": "Pending"}
    pvc = apply_defaults("PersistentVolumeClaim", {"spec": {}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"]["phase"] == "Pending"
    sc = apply_defaults("StorageClass", {"provisioner": "x"})
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    pc = apply_defaults("PriorityClass", {"value": 5})
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    hpa = apply_defaults("HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}})
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                               "averageUtilization": 80}
    rb = apply_defaults("RoleBinding", {"roleRef": {"kind": "Role", "name": "r"},
                                        "subjects": [{"kind": "ServiceAccount", "name": "a"},
                                                     {"kind": "User", "name": "u"}]})
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s["apiGroup"] for s in rb["subjects"]] == ["", "rbac.authorization.k8s.io"]
    ep = apply_defaults("Endpoints", {"subsets": [{"ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    eps = apply_defaults("EndpointSlice", {"ports": [{"port": 80}]})
    assert eps["ports"] == [{"port": 80, "protocol": "TCP", "name": ""}]
    lr = apply_defaults("LimitRange", {"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"ephemeral-storage": "1Gi"},
         "default": {"memory": "512Mi"}},
        {"type": "Pod", "max": {"cpu": "4"}}]}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"memory": "512Mi", "cpu": "2"}
    assert item["defaultRequest"] == {"memory": "512Mi", "cpu": "2", "ephemeral-storage": "1Gi"}
    assert "default" not in lr["spec"]["limits"][1]
    crd = apply_defaults("CustomResourceDefinition", {"spec": {"names": {"kind": "Widget"}}})
    assert crd["spec"]["names"] == {"kind": "Widget", "singular": "widget",
                                    "listKind": "WidgetList"}
    assert crd["spec"]["conversion"] == {"strategy": "None"}


def test_kinds_without_defaults_and_custom_defaulters():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}
    assert apply_defaults(None, cm) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}}
    assert apply_defaults(None, unknown) == {"apiVersion": "example.com/v1", "kind": "Widget",
                                             "spec": {}}
    register_defaulter("example.com", "Widget", lambda o: o["spec"].setdefault("size", 1))
    widget = Kind("example.com", "v1", "Widget", "widgets")
    assert apply_defaults(widget, {"spec": {}})["spec"] == {"size": 1}
    assert apply_defaults(None, unknown)["spec"] == {"size": 1}


def test_default_pod_spec_directly():
    spec = default_pod_spec({"containers": [{"name": "c", "image": "x"}]})
    assert spec["restartPolicy"] == "Always" and "enableServiceLinks" not in spec


# A defaulted object must come out of its defaulter untouched below its top level: updates
# run the defaulter on new objects that hold the stored object's own values (apiserver
# rest._may_share).

class _Writes(Exception):
    pass


class _WatchedDict(dict):
    def __setitem__(self, key, value):
        raise _Writes(f"set {key!r}")

    def setdefault(self, key, default=None):
        if key not in self:
            raise _Writes(f"setdefault {key!r}")
        return self[key]

    def _refuse(self, *args, **kwargs):
        raise _Writes("changed")

    __delitem__ = pop = popitem = update = clear = _refuse


class _WatchedList(list):
    def _refuse(self, *args, **kwargs):
        raise _Writes("changed")

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = sort = _refuse


def _watched(value):
    if isinstance(value, dict):
        return _WatchedDict((k, _watched(v)) for k, v in value.items())
    if isinstance(value, list):
        return _WatchedList(_watched(v) for v in value)
    return value


_POD_SPEC = {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                             "resources": {"limits": {"cpu": "1"}},
                             "livenessProbe": {"httpGet": {"path": "/", "port": 80}}}],
             "initContainers": [{"name": "i", "image": "busybox:1"}],
             "volumes": [{"name": "v", "secret": {"secretName": "s"}},
                         {"name": "w", "configMap": {"name": "c"}}]}
_TEMPLATE = {"metadata": {"labels": {"a": "b"}}, "spec": _POD_SPEC}


@pytest.mark.parametrize("group,kind,obj", [
    ("", "Pod", {"spec": _POD_SPEC}),
    ("", "Service", {"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}),
    ("", "Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    ("", "Namespace", {"metadata": {"name": "n"}}),
    ("", "Secret", {"data": {}}),
    ("", "Node", {"spec": {}}),
    ("", "Endpoints", {"subsets": [{"ports": [{"port": 80}]}]}),
    ("", "PersistentVolume", {"spec": {}}),
    ("", "PersistentVolumeClaim", {"spec": {}}),
    ("", "LimitRange", {"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}),
    ("apps", "Deployment", {"spec": {"template": _TEMPLATE}}),
    ("apps", "ReplicaSet", {"spec": {"template": _TEMPLATE}}),
    ("apps", "DaemonSet", {"spec": {"template": _TEMPLATE}}),
    ("apps", "StatefulSet", {"spec": {"template": _TEMPLATE}}),
    ("batch", "Job", {"spec": {"template": _TEMPLATE}}),
    ("batch", "CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": _TEMPLATE}}}}),
    ("discovery.k8s.io", "EndpointSlice", {"endpoints": [{"addresses": ["1.2.3.4"]}],
                                           "ports": [{"port": 80}]}),
    ("rbac.authorization.k8s.io", "RoleBinding", {"subjects": [{"kind": "User", "name": "u"}],
                                                  "roleRef": {"kind": "Role", "name": "r"}}),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", {
        "subjects": [{"kind": "Group", "name": "g"}], "roleRef": {"name": "r"}}),
    ("scheduling.k8s.io", "PriorityClass", {"value": 10}),
    ("autoscaling", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 3}}),
    ("storage.k8s.io", "StorageClass", {"provisioner": "p"}),
    ("apiextensions.k8s.io", "CustomResourceDefinition", {"spec": {"names": {"kind": "W"}}}),
])
def test_a_defaulted_object_is_left_alone_by_its_defaulter(group, kind, obj):
    api_version = f"{group}/v1" if group else "v1"
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"},
           **copy.deepcopy(obj)}
    defaulted = apply_defaults(None, obj)
    top = {key: _watched(value) for key, value in defaulted.items()}
    apply_defaults(None, top)  # raises _Writes on any change below the top level
    assert top == defaulted
