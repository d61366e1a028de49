"""CustomResourceDefinitions: a created CRD is served (CRUD, watch, discovery, OpenAPI,
schema validation, status subresource) and deleting it removes its objects."""

import json
import time

import pytest

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          description: A widget is a thing for tests.
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1, maximum: 10, description: How big.}
                colour: {type: string, enum: [red, blue], default: red}
            status:
              type: object
              properties:
                ready: {type: boolean}
"""

WIDGET = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
"""


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_for(fn, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = fn()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def served(apiserver):
    ok(apiserver.kubectl("apply", "-f", "-", input=CRD))
    ok(apiserver.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com",
                         "--timeout=20s"))
    return apiserver


def test_crd_is_discovered_and_explained(served):
    resources = ok(served.kubectl("api-resources", "--api-group=example.com"))
    assert "widgets" in resources and "wd" in resources and "Widget" in resources
    explained = ok(served.kubectl("explain", "widgets.spec.size"))
    assert "How big." in explained


def test_crud_with_defaults_and_validation(served):
    assert "widget.example.com/w1 created" in ok(served.kubectl("apply", "-f", "-", input=WIDGET))
    obj = json.loads(ok(served.kubectl("get", "wd", "w1", "-o", "json")))
    assert obj["spec"] == {"size": 3, "colour": "red"}  # defaulted from the schema
    bad = served.kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 30")
                         .replace("w1", "w2"))
    assert bad.returncode != 0 and "spec.size" in bad.stderr and "less than or equal to 10" in bad.stderr
    missing = served.kubectl("apply", "-f", "-", input=WIDGET.replace("spec: {size: 3}",
                                                                      "spec: {}").replace("w1", "w3"))
    assert missing.returncode != 0 and "spec.size: Required value" in missing.stderr
    unknown = served.kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 3, shape: x")
                             .replace("w1", "w4"))
    assert unknown.returncode != 0 and 'unknown field "spec.shape"' in unknown.stderr
    ok(served.kubectl("patch", "wd", "w1", "--type=merge", "-p", '{"spec":{"size":4}}'))
    assert ok(served.kubectl("get", "wd", "w1", "-o", "jsonpath={.spec.size}")) == "4"
    smp = served.kubectl("patch", "wd", "w1", "-p", '{"spec":{"size":5}}')
    assert smp.returncode != 0 and "not supported for custom resources" in smp.stderr
    assert "w1" in ok(served.kubectl("get", "all"))


def test_status_subresource_and_watch(served):
    client = served.k8s_client()
    import kubernetes
    api = kubernetes.client.CustomObjectsApi(client)
    api.create_namespaced_custom_object("example.com", "v1", "default", "widgets", {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "s1"},
        "spec": {"size": 2}, "status": {"ready": True}})
    got = api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "s1")
    assert "status" not in got  # status is set only through /status
    api.patch_namespaced_custom_object_status("example.com", "v1", "default", "widgets", "s1",
                                              {"status": {"ready": True}})
    got = api.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "s1")
    assert got["status"] == {"ready": True} and got["spec"]["size"] == 2
    w = kubernetes.watch.Watch()
    seen = []
    for ev in w.stream(api.list_namespaced_custom_object, "example.com", "v1", "default",
                       "widgets", timeout_seconds=2):
        seen.append((ev["type"], ev["object"]["metadata"]["name"]))
    assert ("ADDED", "s1") in seen


def test_deleting_the_crd_removes_kind_and_objects(served):
    ok(served.kubectl("delete", "crd", "widgets.example.com", "--timeout=30s"))
    wait_for(lambda: served.kubectl("get", "crd", "widgets.example.com").returncode != 0)
    gone = served.kubectl("get", "--raw", "/apis/example.com/v1/namespaces/default/widgets")
    assert gone.returncode != 0
    assert served.server.store  # the server is still serving
    ok(served.kubectl("apply", "-f", "-", input=CRD))
    ok(served.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com",
                      "--timeout=20s"))
    listed = wait_for(lambda: served.kubectl("get", "widgets", "-o", "json"))
    assert json.loads(ok(listed))["items"] == []  # old objects did not come back
