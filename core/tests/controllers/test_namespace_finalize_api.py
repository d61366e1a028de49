"""The API server side of namespace deletion that the namespace controller relies on:
spec.finalizers change only through namespaces/{name}/finalize (as in Kubernetes), and a
terminating namespace whose spec.finalizers and metadata.finalizers are both empty is gone.

Before the fix, defaulting put ``kubernetes`` back into spec.finalizers on every write, so a
terminating namespace could never be removed."""

import json
import urllib.error
import urllib.request

import pytest

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n"


def _call(api, method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(api.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def terminating(apiserver):
    def make(name):
        assert apiserver.kubectl("apply", "-f", "-", input=NS % name).returncode == 0
        status, _ = _call(apiserver, "DELETE", f"/api/v1/namespaces/{name}")
        assert status in (200, 202)
        status, ns = _call(apiserver, "GET", f"/api/v1/namespaces/{name}")
        assert status == 200 and ns["status"]["phase"] == "Terminating"
        assert ns["spec"]["finalizers"] == ["kubernetes"]
        return ns
    return make


def test_finalize_with_no_finalizers_left_removes_a_terminating_namespace(apiserver, terminating):
    ns = terminating("fin-a")
    ns["spec"]["finalizers"] = []
    status, _ = _call(apiserver, "PUT", "/api/v1/namespaces/fin-a/finalize", ns)
    assert status == 200
    assert _call(apiserver, "GET", "/api/v1/namespaces/fin-a")[0] == 404


def test_main_resource_writes_do_not_change_spec_finalizers(apiserver, terminating):
    terminating("fin-b")
    status, out = _call(apiserver, "PATCH", "/api/v1/namespaces/fin-b",
                        {"spec": {"finalizers": []}}, "application/merge-patch+json")
    assert status == 200 and out["spec"]["finalizers"] == ["kubernetes"]
    out["spec"]["finalizers"] = []
    status, out = _call(apiserver, "PUT", "/api/v1/namespaces/fin-b", out)
    assert status == 200 and out["spec"]["finalizers"] == ["kubernetes"]
    assert _call(apiserver, "GET", "/api/v1/namespaces/fin-b")[0] == 200


def test_metadata_finalizers_still_hold_a_finalized_namespace(apiserver, terminating):
    assert apiserver.kubectl("apply", "-f", "-", input=(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: fin-c, finalizers: [example.com/x]}\n"
    )).returncode == 0
    _call(apiserver, "DELETE", "/api/v1/namespaces/fin-c")
    ns = _call(apiserver, "GET", "/api/v1/namespaces/fin-c")[1]
    ns["spec"]["finalizers"] = []
    status, out = _call(apiserver, "PUT", "/api/v1/namespaces/fin-c/finalize", ns)
    assert status == 200 and out["spec"]["finalizers"] == []
    ns = _call(apiserver, "GET", "/api/v1/namespaces/fin-c")[1]
    ns["metadata"]["finalizers"] = []
    assert _call(apiserver, "PUT", "/api/v1/namespaces/fin-c", ns)[0] == 200
    assert _call(apiserver, "GET", "/api/v1/namespaces/fin-c")[0] == 404


def test_a_new_namespace_gets_the_kubernetes_finalizer_and_finalize_keeps_it_alive(apiserver):
    assert apiserver.kubectl("apply", "-f", "-", input=NS % "fin-d").returncode == 0
    ns = _call(apiserver, "GET", "/api/v1/namespaces/fin-d")[1]
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    ns["spec"]["finalizers"] = []
    status, out = _call(apiserver, "PUT", "/api/v1/namespaces/fin-d/finalize", ns)
    assert status == 200 and out["spec"]["finalizers"] == []
    assert _call(apiserver, "GET", "/api/v1/namespaces/fin-d")[1]["status"]["phase"] == "Active"
