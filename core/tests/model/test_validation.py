"""Tests of pilothouse.model.validation: syntax checks, metadata, per-kind rules, updates."""

import base64
import copy

import pytest

from pilothouse.model import validation as V
from pilothouse.model.defaults import apply_defaults
from pilothouse.model.errors import FieldError, Invalid, go_quote
from pilothouse.model.kinds import Kind

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric "
                 "character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
             "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
             "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
               "start with an alphabetic character, and end with an alphanumeric character "
               "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
               "'[a-z]([-a-z0-9]*[a-z0-9])?')")


def texts(errs):
    return [str(e) for e in errs]


def paths(errs):
    return [e.path for e in errs]


# ------------------------------------------------------------------------ syntax checks


@pytest.mark.parametrize("value, ok", [
    ("a", True), ("abc-123", True), ("1abc", True), ("a" * 63, True), ("a" * 64, False),
    ("A", False), ("-a", False), ("a-", False), ("a.b", False), ("", False), ("a_b", False),
    ("a\n", False),
])
def test_dns1123_label(value, ok):
    assert (V.is_dns1123_label(value) == []) is ok


def test_dns1123_label_messages():
    assert V.is_dns1123_label("A") == [LABEL_MSG]
    assert V.is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize("value, ok", [
    ("example.com", True), ("a", True), ("a.b-c.d", True), ("a" * 253, True),
    ("a" * 254, False), ("a..b", False), (".a", False), ("a.", False), ("Foo", False),
    ("a_b.c", False),
])
def test_dns1123_subdomain(value, ok):
    assert (V.is_dns1123_subdomain(value) == []) is ok


def test_dns1123_subdomain_message():
    assert V.is_dns1123_subdomain("Foo") == [SUBDOMAIN_MSG]


@pytest.mark.parametrize("value, ok", [
    ("abc", True), ("a-1", True), ("1abc", False), ("-a", False), ("a" * 64, False),
])
def test_dns1035_label(value, ok):
    assert (V.is_dns1035_label(value) == []) is ok


def test_dns1035_message():
    assert V.is_dns1035_label("1a") == [DNS1035_MSG]


@pytest.mark.parametrize("value, ok", [
    ("app", True), ("App.Name_1-x", True), ("example.com/app", True),
    ("kubernetes.io/hostname", True), ("a" * 63, True), ("a" * 64, False),
    ("/app", False), ("example.com/", False), ("a/b/c", False), ("_app", False),
    ("Example.com/app", False), ("", False), ("app name", False),
])
def test_qualified_name(value, ok):
    assert (V.is_qualified_name(value) == []) is ok


def test_qualified_name_messages():
    assert V.is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert V.is_qualified_name("x.com/")[0] == "name part must be non-empty"
    assert V.is_qualified_name("Bad_.com/x")[0].startswith("prefix part a lowercase RFC 1123 "
                                                           "subdomain")
    assert V.is_qualified_name("a/b/c")[0].startswith("a qualified name must consist of")
    assert V.is_qualified_name("a/b/c")[0].endswith(
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")


@pytest.mark.parametrize("value, ok", [
    ("", True), ("v1", True), ("My_Value.1", True), ("a" * 63, True), ("a" * 64, False),
    ("-v", False), ("v v", False), ("v/v", False),
])
def test_label_value(value, ok):
    assert (V.is_valid_label_value(value) == []) is ok


def test_ports_and_port_names():
    assert V.is_valid_port_num(1) == [] and V.is_valid_port_num(65535) == []
    for bad in (0, 65536, -1, "80", True, None):
        assert V.is_valid_port_num(bad) == ["must be between 1 and 65535, inclusive"]
    assert V.is_valid_port_name("http") == []
    assert V.is_valid_port_name("http-metrics") == []
    assert V.is_valid_port_name("123") == ["must contain at least one letter (a-z)"]
    assert V.is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert V.is_valid_port_name("-ab") == ["must not begin or end with a hyphen"]
    assert V.is_valid_port_name("a" * 16) == ["must be no more than 15 characters"]
    assert "must contain only alpha-numeric" in V.is_valid_port_name("HTTP")[0]


def test_config_keys_and_path_segments():
    assert V.is_config_map_key("app.properties") == []
    assert V.is_config_map_key(".") == ["must not be '.'"]
    assert V.is_config_map_key("..") == ["must not be '..'"]
    assert V.is_config_map_key("..a") == ["must not start with '..'"]
    assert V.is_config_map_key("a b")[0].startswith("a valid config key must consist of")
    assert V.is_valid_path_segment("system:admin") == []
    assert V.is_valid_path_segment("..") == ["may not be '..'"]
    assert V.is_valid_path_segment("a/b%") == ["may not contain '/'", "may not contain '%'"]


# ----------------------------------------------------------------------------- metadata


def test_object_meta_name_message():
    errs = V.validate_object_meta({"metadata": {"name": "Foo", "namespace": "d"}}, True)
    assert texts(errs) == [f'metadata.name: Invalid value: "Foo": {SUBDOMAIN_MSG}']


def test_object_meta_required_fields_and_scope():
    errs = V.validate_object_meta({"metadata": {}}, True)
    assert texts(errs) == ["metadata.name: Required value: name or generateName is required",
                           "metadata.namespace: Required value"]
    errs = V.validate_object_meta({"metadata": {"name": "n", "namespace": "x"}}, False)
    assert texts(errs) == ["metadata.namespace: Forbidden: not allowed on this type"]
    errs = V.validate_object_meta({"metadata": {"name": "n", "namespace": "Bad"}}, True)
    assert paths(errs) == ["metadata.namespace"]


def test_object_meta_generate_name():
    assert V.validate_object_meta({"metadata": {"generateName": "web-", "namespace": "d"}},
                                  True) == []
    errs = V.validate_object_meta({"metadata": {"generateName": "Web-", "namespace": "d"}},
                                  True)
    assert paths(errs) == ["metadata.generateName"]


def test_object_meta_labels_annotations():
    meta = {"name": "n", "namespace": "d",
            "labels": {"ok": "fine", "bad key": "v", "k": "bad value"},
            "annotations": {"example.com/Ann": "x", "bad/key/x": "y"}}
    errs = V.validate_object_meta({"metadata": meta}, True)
    assert paths(errs) == ["metadata.labels", "metadata.labels", "metadata.annotations"]
    assert str(errs[0]).startswith('metadata.labels: Invalid value: "bad key": name part must')
    assert str(errs[1]).startswith('metadata.labels: Invalid value: "bad value": a valid label '
                                   "must be an empty string")
    big = {"metadata": {"name": "n", "annotations": {"a": "x" * (256 * 1024)}}}
    assert texts(V.validate_object_meta(big, False)) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"]
    ok = {"metadata": {"name": "n", "annotations": {"a": "x" * (256 * 1024 - 1)}}}
    assert V.validate_object_meta(ok, False) == []


def test_object_meta_owner_references_and_finalizers():
    meta = {"name": "n", "namespace": "d", "generation": -1,
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1",
                 "controller": True},
                {"apiVersion": "apps/", "kind": "", "name": "", "uid": "", "controller": True}],
            "finalizers": ["kubernetes.io/pv-protection", "bad finalizer", "orphan",
                           "foregroundDeletion"]}
    errs = V.validate_object_meta({"metadata": meta}, True)
    assert texts(errs) == [
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
        'metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": kind must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": name must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty',
        errs[5].__str__(),
        errs[6].__str__(),
        errs[7].__str__()]
    assert "Only one reference can have Controller set to true. Found \"true\" in references " \
           "for ReplicaSet/a and /" in str(errs[5])
    assert str(errs[6]).startswith('metadata.finalizers: Invalid value: "bad finalizer"')
    assert str(errs[7]).endswith("finalizer orphan and foregroundDeletion cannot be both set")


def test_object_meta_update():
    old = {"metadata": {"name": "a", "namespace": "d", "uid": "u1",
                        "creationTimestamp": "2026-01-01T00:00:00Z"}}
    assert V.validate_object_meta_update({"metadata": {"name": "a", "namespace": "d"}}, old) == []
    new = {"metadata": {"name": "b", "namespace": "e", "uid": "u2",
                        "creationTimestamp": "2026-01-02T00:00:00Z"}}
    assert texts(V.validate_object_meta_update(new, old)) == [
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.namespace: Invalid value: "e": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        'metadata.creationTimestamp: Invalid value: "2026-01-02T00:00:00Z": field is immutable']
    deleting = {"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z",
                             "finalizers": ["a/x"]}}
    adding = {"metadata": {"name": "a", "finalizers": ["a/x", "b/y"]}}
    assert texts(V.validate_object_meta_update(adding, deleting)) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being '
        'deleted, found new finalizers []string{"b/y"}']


# ---------------------------------------------------------------------------------- pods


def pod(**spec):
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}], **spec}}
    return apply_defaults("Pod", obj)


def test_valid_pod():
    assert V.validate("Pod", pod()) == []
    assert V.validate(None, pod()) == []


def test_pod_requires_containers():
    assert texts(V.validate("Pod", pod(containers=[]))) == ["spec.containers: Required value"]


def test_pod_container_errors_have_exact_paths():
    p = pod(containers=[
        {"name": "web", "image": "nginx", "ports": [
            {"containerPort": 80, "name": "http"},
            {"containerPort": 70000, "protocol": "ICMP", "name": "http"},
            {"hostPort": 0}]},
        {"name": "web", "image": " nginx"},
        {"name": "Bad_Name"},
    ])
    errs = V.validate("Pod", p)
    assert texts(errs) == [
        "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and "
        "65535, inclusive",
        'spec.containers[0].ports[1].protocol: Unsupported value: "ICMP": supported values: '
        '"SCTP", "TCP", "UDP"',
        "spec.containers[0].ports[2].containerPort: Required value",
        'spec.containers[1].name: Duplicate value: "web"',
        'spec.containers[1].image: Invalid value: " nginx": must not have leading or trailing '
        "whitespace",
        f'spec.containers[2].name: Invalid value: "Bad_Name": {LABEL_MSG}',
        "spec.containers[2].image: Required value",
    ]


def test_pod_restart_policy_and_dns_policy():
    errs = V.validate("Pod", pod(restartPolicy="Sometimes", dnsPolicy="Weird"))
    assert texts(errs) == [
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Weird": supported values: "ClusterFirstWithHostNet",'
        ' "ClusterFirst", "Default", "None"']


def test_pod_resources():
    c = {"name": "c", "image": "i", "resources": {
        "requests": {"cpu": "2", "memory": "1Gi", "example.com/gpu": "1"},
        "limits": {"cpu": "1", "memory": "2Gi", "example.com/gpu": "1", "gpu": "1",
                   "ephemeral-storage": "-1", "hugepages-2Mi": "10Mi"}}}
    errs = V.validate("Pod", pod(containers=[c]))
    assert texts(errs) == [
        'spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard '
        "resource for containers",
        'spec.containers[0].resources.limits[ephemeral-storage]: Invalid value: "-1": must be '
        "greater than or equal to 0",
        # defaulting copied the limits without requests into requests, as Kubernetes does
        'spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard '
        "resource for containers",
        'spec.containers[0].resources.requests[ephemeral-storage]: Invalid value: "-1": must be '
        "greater than or equal to 0",
        'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to '
        "cpu limit of 1",
    ]
    bad = {"name": "c", "image": "i", "resources": {"limits": {"cpu": "lots"}}}
    errs = V.validate("Pod", pod(containers=[bad]))
    assert paths(errs) == ["spec.containers[0].resources.limits[cpu]",
                           "spec.containers[0].resources.requests[cpu]"]  # copied by defaults
    assert "quantities must match the regular expression" in str(errs[0])


def test_pod_volumes_mounts_env_probes():
    c = {"name": "c", "image": "i",
         "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": "/d"},
                          {"name": "data"}],
         "env": [{"name": "GOOD_1"}, {"name": "1BAD"}, {"value": "x"}],
         "livenessProbe": {"successThreshold": 2, "httpGet": {"port": "web-port-too-long-x"}},
         "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}
    p = pod(containers=[c], volumes=[{"name": "data", "emptyDir": {}},
                                     {"name": "data", "configMap": {"name": "x"}},
                                     {"name": "two", "emptyDir": {}, "hostPath": {"path": "/"}}])
    errs = V.validate("Pod", p)
    assert paths(errs) == [
        "spec.volumes[1].name",
        "spec.volumes[2].emptyDir",
        "spec.containers[0].env[1].name",
        "spec.containers[0].env[2].name",
        "spec.containers[0].volumeMounts[1].name",
        "spec.containers[0].volumeMounts[1].mountPath",
        "spec.containers[0].volumeMounts[2].mountPath",
        "spec.containers[0].livenessProbe.httpGet.port",
        "spec.containers[0].livenessProbe.successThreshold",
        "spec.containers[0].readinessProbe.tcpSocket",
    ]
    assert str(errs[4]) == 'spec.containers[0].volumeMounts[1].name: Not found: "nope"'
    assert str(errs[8]) == ("spec.containers[0].livenessProbe.successThreshold: Invalid value: "
                            "2: must be 1")


def test_pod_spec_scalars_and_tolerations():
    p = pod(activeDeadlineSeconds=0, nodeSelector={"disk": "s s"}, hostname="Host",
            tolerations=[{"key": "k", "operator": "Exists", "value": "v"},
                         {"operator": "Equal", "value": "v"},
                         {"key": "k", "effect": "Sometimes"},
                         {"key": "k", "operator": "Less"},
                         {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"}])
    errs = V.validate("Pod", p)
    assert paths(errs) == [
        "spec.nodeSelector", "spec.hostname", "spec.activeDeadlineSeconds",
        "spec.tolerations[0].operator", "spec.tolerations[1].operator",
        "spec.tolerations[2].effect", "spec.tolerations[3].operator",
        "spec.tolerations[4].effect"]
    assert str(errs[2]) == ("spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and "
                            "2147483647, inclusive")


def test_pod_host_network_ports_and_init_containers():
    p = pod(hostNetwork=True, containers=[{"name": "c", "image": "i",
                                           "ports": [{"containerPort": 80, "hostPort": 81}]}],
            initContainers=[{"name": "c", "image": "i", "livenessProbe": {"exec": {}}},
                            {"name": "side", "image": "i", "restartPolicy": "Always",
                             "readinessProbe": {"exec": {"command": ["x"]}}}])
    errs = V.validate("Pod", p)
    assert texts(errs) == [
        "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers "
        "without restartPolicy=Always",
        'spec.containers[0].name: Duplicate value: "c"',
        "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` "
        "when `hostNetwork` is true"]


def test_wrong_types_are_reported_not_raised():
    p = {"metadata": {"name": "p", "namespace": "d"},
         "spec": {"containers": "nginx", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}
    errs = V.validate("Pod", p)
    assert texts(errs)[0] == 'spec.containers: Invalid value: "nginx": must be a list'
    assert V.validate("Pod", {"metadata": "x"})[0].path == "metadata"


# ------------------------------------------------------------------------------ services


def svc(**spec):
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "d"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}
    return apply_defaults("Service", obj)


def test_valid_services():
    assert V.validate("Service", svc()) == []
    assert V.validate("Service", svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}])) \
        == []
    assert V.validate("Service", svc(clusterIP="None", ports=[])) == []
    assert V.validate("Service", svc(type="ExternalName", externalName="db.example.com",
                                     ports=[])) == []


def test_service_name_is_dns1035():
    obj = svc()
    obj["metadata"]["name"] = "1web"
    assert texts(V.validate("Service", obj)) == [
        f'metadata.name: Invalid value: "1web": {DNS1035_MSG}']


def test_service_errors():
    obj = svc(type="Bogus", sessionAffinity="Sticky", clusterIP="300.1.1.1",
              ports=[{"port": 80, "name": "http"}, {"port": 0, "protocol": "ICMP"},
                     {"port": 80, "name": "http", "targetPort": "Bad--Name"}],
              selector={"app": "bad value"})
    errs = V.validate("Service", obj)
    assert texts(errs) == [
        'spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"',
        "spec.ports[1].name: Required value",
        "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", '
        '"UDP"',
        # targetPort was defaulted to the (invalid) port, as in Kubernetes
        "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
        'spec.ports[2].name: Duplicate value: "http"',
        'spec.ports[2].targetPort: Invalid value: "Bad--Name": must contain only alpha-numeric '
        "characters (a-z, 0-9), and hyphens (-)",
        'spec.ports[2].targetPort: Invalid value: "Bad--Name": must not contain consecutive '
        "hyphens",
        'spec.ports[2]: Duplicate value: {"port":80,"protocol":"TCP"}',
        'spec.selector: Invalid value: "bad value": a valid label must be an empty string or '
        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
        "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        'spec.clusterIP: Invalid value: "300.1.1.1": must be a valid IP address, (e.g. 10.9.8.7 '
        "or 2001:db8::ffff)",
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"',
    ]


def test_service_required_ports_and_external_name():
    assert texts(V.validate("Service", svc(ports=[]))) == ["spec.ports: Required value"]
    assert texts(V.validate("Service", svc(type="ExternalName", ports=[]))) == [
        "spec.externalName: Required value"]
    errs = V.validate("Service", svc(ports=[{"port": 80, "nodePort": 30000}]))
    assert texts(errs) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is "
                           "'ClusterIP'"]
    errs = V.validate("Service", svc(externalTrafficPolicy="Local"))
    assert paths(errs) == ["spec.externalTrafficPolicy"]


# ----------------------------------------------------------------------------- workloads


def deploy(**spec):
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "d"},
           "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}},
                    **spec}}
    return apply_defaults("Deployment", obj)


def test_valid_deployment():
    assert V.validate("Deployment", deploy()) == []


def test_deployment_errors_and_summary():
    obj = deploy(replicas=-1)
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    errs = V.validate("Deployment", obj)
    assert texts(errs) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not '
        "match template `labels`",
        "spec.template.spec.containers[0].image: Required value"]
    err = Invalid.from_errors("Deployment", "apps", "web", errs)
    assert str(err).startswith('Deployment.apps "web" is invalid: [spec.replicas: Invalid '
                               "value: -1: must be greater than or equal to 0, ")


def test_deployment_selector_and_strategy():
    obj = deploy(selector=None)
    assert texts(V.validate("Deployment", obj)) == ["spec.selector: Required value"]
    obj = deploy(selector={})
    assert texts(V.validate("Deployment", obj)) == [
        "spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    obj = deploy(strategy={"type": "Recreate", "rollingUpdate": {}})
    assert texts(V.validate("Deployment", obj)) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
        "'Recreate'"]
    obj = deploy(strategy={"type": "Blue"})
    assert paths(V.validate("Deployment", obj)) == ["spec.strategy.type"]
    obj = deploy(strategy={"type": "RollingUpdate",
                           "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    assert texts(V.validate("Deployment", obj)) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when '
        "`maxSurge` is 0"]
    obj = deploy(strategy={"type": "RollingUpdate",
                           "rollingUpdate": {"maxSurge": "150%", "maxUnavailable": "x"}})
    assert paths(V.validate("Deployment", obj)) == ["spec.strategy.rollingUpdate.maxUnavailable",
                                                     "spec.strategy.rollingUpdate.maxSurge"]
    obj = deploy(minReadySeconds=700)
    assert texts(V.validate("Deployment", obj)) == [
        "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"]


def test_deployment_template_restart_policy():
    obj = deploy()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert texts(V.validate("Deployment", obj)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: '
        '"Always"']


def test_replicaset_daemonset_statefulset():
    rs = deploy()
    rs["kind"] = "ReplicaSet"
    rs["spec"] = {k: v for k, v in rs["spec"].items()
                  if k in ("selector", "template", "replicas")}
    assert V.validate("ReplicaSet", rs) == []
    rs["spec"]["selector"] = {"matchLabels": {"app": "x"}}
    assert paths(V.validate("ReplicaSet", rs)) == ["spec.template.metadata.labels"]

    ds = apply_defaults("DaemonSet", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "namespace": "d"},
        "spec": {"selector": {}, "template": copy.deepcopy(deploy()["spec"]["template"])}})
    assert texts(V.validate("DaemonSet", ds)) == [
        "spec.selector: Invalid value: {}: empty selector is invalid for daemonset"]
    ds["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    ds["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}
    assert texts(V.validate("DaemonSet", ds)) == [
        "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0 when "
        "maxSurge is 0"]

    sts = apply_defaults("StatefulSet", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "d"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                 "template": copy.deepcopy(deploy()["spec"]["template"])}})
    assert V.validate("StatefulSet", sts) == []
    sts["spec"].update(podManagementPolicy="Random", replicas=-2)
    sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = -1
    assert paths(V.validate("StatefulSet", sts)) == [
        "spec.replicas", "spec.podManagementPolicy",
        "spec.updateStrategy.rollingUpdate.partition"]


def job(**spec):
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "d"},
           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl"}],
                                          "restartPolicy": "Never"}}, **spec}}
    return apply_defaults("Job", obj)


def test_job():
    assert V.validate("Job", job()) == []
    obj = job()
    del obj["spec"]["template"]["spec"]["restartPolicy"]
    obj = apply_defaults("Job", obj)  # defaults to Always, which a Job refuses
    assert texts(V.validate("Job", obj)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"']
    obj = job(parallelism=-1, backoffLimit=-1, activeDeadlineSeconds=0,
              completionMode="Indexed", completions=None)
    obj["spec"]["completions"] = None
    assert texts(V.validate("Job", obj)) == [
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than zero",
        "spec.completions: Required value: when completion mode is Indexed"]
    obj = job(selector={"matchLabels": {"a": "b"}})
    assert paths(V.validate("Job", obj)) == ["spec.template.metadata.labels"]


def cronjob(**spec):
    obj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "d"},
           "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job()["spec"]}, **spec}}
    return apply_defaults("CronJob", obj)


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 0 1 jan mon", "0-30/10 1,2 * * 1-5",
                                      "@hourly", "@every 1h", "0 0 ? * SUN"])
def test_cron_schedules_valid(schedule):
    assert V.validate("CronJob", cronjob(schedule=schedule)) == []


@pytest.mark.parametrize("schedule, message", [
    ("* * * *", "expected exactly 5 fields, found 4: ['*', '*', '*', '*']"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("x * * * *", "failed to parse int from x"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("@sometimes", "unrecognized descriptor: @sometimes"),
    ("TZ=UTC * * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
])
def test_cron_schedules_invalid(schedule, message):
    errs = V.validate("CronJob", cronjob(schedule=schedule))
    assert texts(errs) == [f"spec.schedule: Invalid value: {go_quote(schedule)}: {message}"]


def test_cronjob_other_rules():
    obj = cronjob(concurrencyPolicy="Sometimes", successfulJobsHistoryLimit=-1)
    obj["metadata"]["name"] = "c" * 53
    obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert paths(V.validate("CronJob", obj)) == [
        "metadata.name", "spec.concurrencyPolicy", "spec.successfulJobsHistoryLimit",
        "spec.jobTemplate.spec.template.spec.restartPolicy"]
    assert texts(V.validate("CronJob", cronjob(schedule=None))) == ["spec.schedule: Required value"]


# ---------------------------------------------------------------------- config and secrets


def test_configmap():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"},
          "data": {"good.key": "v", "bad key": "v", "dup": "x"},
          "binaryData": {"dup": base64.b64encode(b"x").decode()}}
    assert texts(V.validate("ConfigMap", cm))[:1] == [
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of '
        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
    assert paths(V.validate("ConfigMap", cm)) == ["data[bad key]", "data[dup]"]
    big = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x" * (1024 * 1024 + 1)}}
    assert texts(V.validate("ConfigMap", big)) == ["Too long: must have at most 1048576 bytes"]


def secret(type_=None, **data):
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
           "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    if type_:
        obj["type"] = type_
    return apply_defaults("Secret", obj)


def test_secret():
    assert V.validate("Secret", secret(password="x")) == []
    obj = secret()
    obj["data"] = {"a": "not base64!", "b c": "eA=="}
    assert texts(V.validate("Secret", obj)) == [
        'data[a]: Invalid value: "<secret contents redacted>": must be base64-encoded',
        V.validate("Secret", obj)[1].__str__()]
    assert paths(V.validate("Secret", obj)) == ["data[a]", "data[b c]"]
    assert texts(V.validate("Secret", secret("kubernetes.io/tls", **{"tls.crt": "c"}))) == [
        "data[tls.key]: Required value"]
    assert paths(V.validate("Secret", secret("kubernetes.io/basic-auth"))) == [
        "data[username]", "data[password]"]
    assert V.validate("Secret", secret("kubernetes.io/basic-auth", username="u")) == []
    assert paths(V.validate("Secret", secret("kubernetes.io/service-account-token"))) == [
        "metadata.annotations[kubernetes.io/service-account.name]"]
    assert paths(V.validate("Secret", secret("kubernetes.io/dockerconfigjson",
                                             **{".dockerconfigjson": "{nope"}))) == [
        "data[.dockerconfigjson]"]
    big = secret(a="x" * (1024 * 1024 + 1))
    assert texts(V.validate("Secret", big)) == ["data: Too long: must have at most 1048576 "
                                                "bytes"]


# ---------------------------------------------------------------------- cluster objects


def test_namespace():
    ns = apply_defaults("Namespace", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "team-a"}})
    assert V.validate("Namespace", ns) == []
    ns["metadata"]["name"] = "team.a"  # a subdomain is not a label
    ns["spec"]["finalizers"] = ["kubernetes", "custom", "example.com/x"]
    assert texts(V.validate("Namespace", ns)) == [
        f'metadata.name: Invalid value: "team.a": {LABEL_MSG}',
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name '
        "nor is it fully qualified"]
    ns["metadata"]["namespace"] = "x"
    assert "metadata.namespace" in paths(V.validate("Namespace", ns))


def test_node():
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example"},
            "spec": {"podCIDR": "10.244.1.0/24",
                     "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    assert V.validate("Node", node) == []
    node["spec"] = {"podCIDRs": ["nonsense"],
                    "taints": [{"key": "a", "effect": "Never"}, {"effect": "NoSchedule"},
                               {"key": "b", "effect": "NoSchedule"},
                               {"key": "b", "effect": "NoSchedule"}]}
    node["status"]["capacity"]["cpu"] = "-1"
    assert paths(V.validate("Node", node)) == [
        "spec.podCIDRs[0]", "spec.taints[0].effect", "spec.taints[1].key", "spec.taints[3]",
        "status.capacity[cpu]"]


def test_other_kinds():
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}}
    assert paths(V.validate(None, lease)) == ["spec.leaseDurationSeconds"]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                      {"apiGroups": [""], "resources": ["pods"]},
                      {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}
    assert paths(V.validate(None, role)) == ["rules[1].verbs"]
    binding = apply_defaults(None, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "d"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"},
                     {"kind": "User", "name": "alice"}, {"kind": "Robot", "name": "r2"}]})
    assert paths(V.validate(None, binding)) == ["subjects[2].kind"]
    pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
          "metadata": {"name": "high"}, "value": 2_000_000_000}
    assert texts(V.validate(None, pc)) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "h", "namespace": "d"},
           "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": 5, "maxReplicas": 2}}
    assert paths(V.validate(None, hpa)) == ["spec.scaleTargetRef.name", "spec.maxReplicas"]
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "c", "namespace": "d"}, "spec": {}}
    assert texts(V.validate(None, pvc)) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value"]
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"}}
    assert texts(V.validate(None, sc)) == ["provisioner: Required value"]
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["fd00::1"]}],
           "ports": [{"port": 80, "protocol": "TCP"}]}
    assert paths(V.validate(None, eps)) == ["endpoints[1].addresses[0]"]
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": "d"},
          "subsets": [{"addresses": [{"ip": "x"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}
    assert paths(V.validate(None, ep)) == ["subsets[0].addresses[0].ip"]
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "l", "namespace": "d"},
          "spec": {"limits": [{"type": "Container", "max": {"cpu": "x"}}]}}
    assert paths(V.validate(None, lr)) == ["spec.limits[0].max[cpu]"]
    rq = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "d"},
          "spec": {"hard": {"pods": "-1"}}}
    assert paths(V.validate(None, rq)) == ["spec.hard[pods]"]


def test_crd():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    assert V.validate(None, crd) == []
    crd["metadata"]["name"] = "gadgets.example.com"
    crd["spec"]["versions"].append({"name": "v2", "storage": True})
    crd["spec"]["scope"] = "Global"
    assert paths(V.validate(None, crd)) == ["metadata.name", "spec.scope", "spec.versions"]


def test_custom_resource_gets_metadata_validation_only():
    widget_kind = Kind("example.com", "v1", "Widget", "widgets", namespaced=False)
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
           "spec": {"anything": -1}}
    assert V.validate(widget_kind, obj) == []
    obj["metadata"]["namespace"] = "d"
    assert paths(V.validate(widget_kind, obj)) == ["metadata.namespace"]
    assert paths(V.validate("Widget", {"apiVersion": "example.com/v1", "kind": "Widget",
                                       "metadata": {"name": "w"}})) == ["metadata.namespace"]


def test_register_validator():
    def rule(obj):
        return [FieldError.required("spec.size")] if "size" not in obj.get("spec", {}) else []

    V.register_validator("example.com", "Gizmo", rule,
                         on_update=lambda new, old: [FieldError.forbidden("spec", "frozen")])
    gizmo = Kind("example.com", "v1", "Gizmo", "gizmos")
    obj = {"metadata": {"name": "g", "namespace": "d"}, "spec": {}}
    assert texts(V.validate(gizmo, obj)) == ["spec.size: Required value"]
    assert texts(V.validate_update(gizmo, obj, obj)) == ["spec.size: Required value",
                                                         "spec: Forbidden: frozen"]


# -------------------------------------------------------------------------------- updates


def test_update_rules():
    old = deploy()
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert texts(V.validate_update("Deployment", new, old)) == [
        'spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable']
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    assert V.validate_update("Deployment", scaled, old) == []

    cm_old = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": True}
    cm_new = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}}
    assert texts(V.validate_update("ConfigMap", cm_new, cm_old)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set"]

    s_old = secret(a="x")
    s_new = copy.deepcopy(s_old)
    s_new["type"] = "kubernetes.io/basic-auth"
    s_new["data"]["username"] = "dQ=="
    assert texts(V.validate_update("Secret", s_new, s_old)) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable']

    svc_old = svc(clusterIP="10.96.0.10")
    svc_new = svc(clusterIP="10.96.0.11")
    assert paths(V.validate_update("Service", svc_new, svc_old)) == ["spec.clusterIP"]

    j_old = job()
    j_new = copy.deepcopy(j_old)
    j_new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:2"
    assert paths(V.validate_update("Job", j_new, j_old)) == ["spec.template"]

    p_old = pod()
    p_new = copy.deepcopy(p_old)
    p_new["spec"]["containers"][0]["image"] = "nginx:1.26"
    p_new["spec"]["activeDeadlineSeconds"] = 60
    assert V.validate_update("Pod", p_new, p_old) == []
    p_new["spec"]["containers"][0]["name"] = "renamed"
    errs = V.validate_update("Pod", p_new, p_old)
    assert texts(errs) == ["spec: Forbidden: pod updates may not change fields other than "
                           "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                           "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                           "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it "
                           "to be set to 1 if it was previously negative)"]

    sts_old = apply_defaults("StatefulSet", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "d"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                 "template": copy.deepcopy(deploy()["spec"]["template"])}})
    sts_new = copy.deepcopy(sts_old)
    sts_new["spec"]["serviceName"] = "other"
    assert paths(V.validate_update("StatefulSet", sts_new, sts_old)) == ["spec"]


def test_update_subresources():
    p_old = pod()
    bound = copy.deepcopy(p_old)
    bound["spec"]["nodeName"] = "n1"
    assert paths(V.validate_update("Pod", bound, p_old)) == ["spec"]   # a plain PUT may not
    assert V.validate_update("Pod", bound, p_old, subresource="binding") == []
    moved = copy.deepcopy(bound)
    moved["spec"]["nodeName"] = "n2"
    assert paths(V.validate_update("Pod", moved, bound, subresource="binding")) == ["spec"]
    d_old = deploy()
    d_new = copy.deepcopy(d_old)
    d_new["status"] = {"replicas": 3}
    assert V.validate_update("Deployment", d_new, d_old, subresource="status") == []
