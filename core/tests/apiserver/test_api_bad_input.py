"""Bad input gets a Kubernetes Status (4xx, reason, message, field causes) and changes
nothing; a fuzz test checks that no request makes the server answer 500."""

import json
import string

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncio


def request(server, method, path, body=None, content_type="application/json", raw=None):
    async def go():
        async with aiohttp.ClientSession() as s:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                                else None)
            headers = {"Content-Type": content_type} if content_type else {}
            async with s.request(method, server.url + path, data=data, headers=headers) as r:
                text = await r.text()
                try:
                    return r.status, json.loads(text)
                except ValueError:
                    return r.status, text
    return asyncio.run(go())


def revision(server):
    return request(server, "GET", "/api/v1/namespaces/default/configmaps")[1]["metadata"][
        "resourceVersion"]


CM = "/api/v1/namespaces/default/configmaps"

CASES = [
    ("malformed json", "POST", CM, None, "application/json", b'{"metadata": {"name": "x"',
     400, "BadRequest"),
    ("malformed yaml", "POST", CM, None, "application/yaml", b"metadata: [unclosed", 400,
     "BadRequest"),
    ("a list, not an object", "POST", CM, [1, 2], "application/json", None, 400, "BadRequest"),
    ("wrong kind", "POST", CM, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
     "application/json", None, 400, "BadRequest"),
    ("wrong apiVersion", "POST", CM, {"apiVersion": "apps/v1", "kind": "ConfigMap",
                                      "metadata": {"name": "x"}}, "application/json", None, 400,
     "BadRequest"),
    ("invalid name", "POST", CM, {"metadata": {"name": "Not_Valid"}}, "application/json", None,
     422, "Invalid"),
    ("namespace mismatch", "POST", CM, {"metadata": {"name": "x", "namespace": "other"}},
     "application/json", None, 400, "BadRequest"),
    ("unknown field under Strict", "POST", CM + "?fieldValidation=Strict",
     {"metadata": {"name": "x"}, "dta": {}}, "application/json", None, 400, "BadRequest"),
    ("wrong field type", "POST", CM, {"metadata": {"name": "x"}, "data": {"a": 1}},
     "application/json", None, 400, "BadRequest"),
    ("body over 3 MiB", "POST", CM, None, "application/json",
     b'{"metadata":{"name":"big"},"data":{"a":"' + b"x" * (3 * 1024 * 1024) + b'"}}', 413,
     "RequestEntityTooLarge"),
    ("protobuf body", "POST", CM, None, "application/vnd.kubernetes.protobuf", b"k8s\x00\x01",
     415, "UnsupportedMediaType"),
    ("unknown patch type", "PATCH", CM + "/kube-root", {}, "text/plain", None, 415,
     "UnsupportedMediaType"),
    ("bad label selector", "GET", CM + "?labelSelector=a%20in%20(", None, None, None, 400,
     "BadRequest"),
    ("bad limit", "GET", CM + "?limit=ten", None, None, None, 400, "BadRequest"),
    ("bad continue token", "GET", CM + "?continue=garbage", None, None, None, 400, "BadRequest"),
    ("unknown resource", "GET", "/api/v1/namespaces/default/widgets", None, None, None, 404,
     "NotFound"),
    ("bad dryRun", "POST", CM + "?dryRun=Some", {"metadata": {"name": "x"}}, "application/json",
     None, 400, "BadRequest"),
    ("streaming list without NotOlderThan", "GET",
     CM + "?watch=1&sendInitialEvents=true&allowWatchBookmarks=true", None, None, None, 422,
     "Invalid"),
]


@pytest.mark.parametrize("name,method,path,body,ctype,raw,code,reason", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_status_and_stores_nothing(apiserver, name, method, path, body, ctype,
                                                  raw, code, reason):
    before = revision(apiserver)
    status, answer = request(apiserver, method, path, body, ctype, raw)
    assert status == code, answer
    assert isinstance(answer, dict) and answer["kind"] == "Status", answer
    assert answer["reason"] == reason and answer["code"] == code and answer["message"]
    assert revision(apiserver) == before


def test_invalid_fields_carry_field_paths(apiserver):
    status, answer = request(apiserver, "POST", "/apis/apps/v1/namespaces/default/deployments", {
        "metadata": {"name": "d"}, "spec": {"replicas": -2, "selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "c"}},
                                                         "spec": {"containers": [{"name": "x"}]}}}})
    assert status == 422
    fields = {c["field"] for c in answer["details"]["causes"]}
    assert {"spec.replicas", "spec.template.metadata.labels",
            "spec.template.spec.containers[0].image"} <= fields


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4), max_leaves=20)
paths = st.sampled_from([
    "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/pods",
    "/apis/apps/v1/namespaces/default/deployments", "/api/v1/namespaces",
    "/api/v1/namespaces/default/services", "/api/v1/nodes",
    "/apis/batch/v1/namespaces/default/jobs", "/api/v1/namespaces/default/pods/p/binding",
    "/apis/apps/v1/namespaces/default/deployments/d/scale",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"])
names = st.text(alphabet=string.ascii_lowercase + "-.", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=paths, method=st.sampled_from(["POST", "PUT", "PATCH", "GET", "DELETE"]),
       body=json_values, name=names, kind=st.sampled_from(
           ["ConfigMap", "Pod", "Deployment", "Namespace", "Service", None]),
       ctype=st.sampled_from(["application/json", "application/merge-patch+json",
                              "application/json-patch+json",
                              "application/strategic-merge-patch+json",
                              "application/apply-patch+yaml", None]))
def test_fuzz_no_request_gets_a_500(apiserver, path, method, body, name, kind, ctype):
    if method in ("PUT", "PATCH", "DELETE", "GET") and not path.endswith(("binding", "scale")):
        path = f"{path}/{name}"
    if isinstance(body, dict) and kind is not None and method in ("POST", "PUT"):
        body = {**body, "kind": kind, "metadata": {"name": name}}
    query = "?fieldManager=fuzz" if ctype == "application/apply-patch+yaml" else ""
    status, answer = request(apiserver, method, path + query, body, ctype)
    assert status < 500, (status, answer)
    if status >= 400:
        assert isinstance(answer, dict) and answer.get("kind") == "Status", answer
