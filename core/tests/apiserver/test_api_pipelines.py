"""The request path calls the configured authentication, authorization and admission plugins
in configured order (mutating, then validating), and the observation hooks."""

import json

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

PLUGINS = '''
from pilothouse.hooks import hookimpl
from pilothouse.interfaces.admission import AdmissionPlugin, Denied
from pilothouse.interfaces.auth import Authenticator, Authorizer, Decision, UserInfo

CALLS = []

class HeaderUser(Authenticator):
    async def authenticate(self, headers, peer_certificate):
        name = headers.get("X-Test-User")
        return UserInfo(name, groups=("testers",)) if name else None

class NoSecretsForBob(Authorizer):
    async def authorize(self, user, attributes):
        if user.username == "bob" and attributes.resource == "secrets":
            return Decision.DENY, "bob may not touch secrets"
        return Decision.NO_OPINION, ""

class AddLabel(AdmissionPlugin):
    async def mutate(self, request):
        CALLS.append(("mutate-add", request.operation, request.kind))
        if request.object is not None:
            request.object["metadata"].setdefault("labels", {})["added-by"] = "admission"

class Stamp(AdmissionPlugin):
    """Counts the updates of ConfigMaps named "stamped" in a label it changes in place."""
    async def mutate(self, request):
        obj = request.object
        if request.operation == "UPDATE" and obj["metadata"].get("name") == "stamped":
            labels = obj["metadata"]["labels"]
            labels["updates"] = str(int(labels.get("updates", "0")) + 1)

class Second(AdmissionPlugin):
    async def mutate(self, request):
        CALLS.append(("mutate-second", request.operation, request.kind))
    async def validate(self, request):
        CALLS.append(("validate-second", request.operation, request.kind))
        if request.object is not None and request.object["metadata"]["name"] == "forbidden":
            return Denied("the name 'forbidden' is reserved", causes=(("metadata.name", "reserved"),))

class Observer:
    @hookimpl
    def pilothouse_admission_decided(self, request, plugin_name, phase, allowed, message):
        CALLS.append(("hook", plugin_name, phase, allowed))

    @hookimpl
    def pilothouse_request_authenticated(self, user, method, path):
        CALLS.append(("authenticated", user.username, method, path))

    @hookimpl
    def pilothouse_authorization_decided(self, user, attributes, allowed, reason):
        CALLS.append(("authorized", user.username, attributes.verb, attributes.resource,
                      allowed, reason))
'''


@pytest.fixture
def server(fake_dist, start_apiserver):
    fake_dist("pilothouse-test-pipelines", {
        "pilothouse.authn": {"header-user": "testpipes:HeaderUser"},
        "pilothouse.authz": {"no-secrets-for-bob": "testpipes:NoSecretsForBob"},
        "pilothouse.admission": {"add-label": "testpipes:AddLabel", "second": "testpipes:Second",
                                 "stamp": "testpipes:Stamp"},
        "pilothouse.plugins": {"observer": "testpipes:Observer"},
    }, {"testpipes.py": PLUGINS})
    import testpipes
    testpipes.CALLS.clear()
    srv = start_apiserver({
        "store": {"plugin": "memory"},
        "authentication": {"plugins": [{"name": "header-user"}]},
        "authorization": {"plugins": [{"name": "no-secrets-for-bob"}, {"name": "always-allow"}]},
        "admission": {"plugins": [{"name": "add-label"}, {"name": "second"},
                                  {"name": "stamp"}]}})
    return srv, testpipes


def api(server, user=None):
    client = server.k8s_client()
    if user:
        client.default_headers["X-Test-User"] = user
    return kubernetes.client.CoreV1Api(client)


def test_admission_runs_mutating_then_validating_in_order(server):
    srv, mod = server
    cm = api(srv).create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert cm.metadata.labels == {"added-by": "admission"}
    ours = [c for c in mod.CALLS if c[0] != "hook" and c[2] == "ConfigMap"]
    assert ours == [("mutate-add", "CREATE", "ConfigMap"), ("mutate-second", "CREATE", "ConfigMap"),
                    ("validate-second", "CREATE", "ConfigMap")]
    assert ("hook", "add-label", "mutate", True) in mod.CALLS


def test_a_mutating_plugin_changing_values_a_patch_left_alone_is_stored(server):
    """The old object an update starts from is not changed with the new one, however a
    mutating plugin changes the new one (here: in place, in labels the patch leaves alone)."""
    srv, _ = server
    core = api(srv)
    core.create_namespaced_config_map("default", {"metadata": {"name": "stamped",
                                                               "labels": {"x": "1"}}})
    for n in (1, 2, 3):
        cm = core.patch_namespaced_config_map("stamped", "default", {},
                                              _content_type="application/merge-patch+json")
        assert cm.metadata.labels["updates"] == str(n)
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    core.create_namespaced_pod("default", pod)
    core.create_namespaced_binding("default", {"metadata": {"name": "p"},
                                               "target": {"name": "n1"}},
                                   _preload_content=False)
    assert core.read_namespaced_pod("p", "default").spec.node_name == "n1"


def test_admission_denial_is_a_status_and_stores_nothing(server):
    srv, _ = server
    with pytest.raises(ApiException) as info:
        api(srv).create_namespaced_config_map("default", {"metadata": {"name": "forbidden"}})
    body = json.loads(info.value.body)
    assert info.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == "the name 'forbidden' is reserved"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as missing:
        api(srv).read_namespaced_config_map("forbidden", "default")
    assert missing.value.status == 404


def test_authorizers_run_in_order_and_deny_with_reason(server):
    srv, _ = server
    api(srv, "alice").list_namespaced_secret("default")  # no opinion, then always-allow
    with pytest.raises(ApiException) as info:
        api(srv, "bob").list_namespaced_secret("default")
    body = json.loads(info.value.body)
    assert info.value.status == 403
    assert 'User "bob" cannot list resource "secrets"' in body["message"]
    assert "bob may not touch secrets" in body["message"]
    api(srv, "bob").list_namespaced_config_map("default")


def test_authentication_and_authorization_hooks_see_every_request(server):
    srv, mod = server
    with pytest.raises(ApiException):
        api(srv, "carol").read_namespaced_config_map("a-missing-one", "default")
    with pytest.raises(ApiException):
        api(srv, "bob").read_namespaced_secret("s", "default")
    path = "/api/v1/namespaces/default/configmaps/a-missing-one"
    assert ("authenticated", "carol", "GET", path) in mod.CALLS
    assert ("authorized", "carol", "get", "configmaps", True, "always-allow authorizer") \
        in mod.CALLS
    assert ("authorized", "bob", "get", "secrets", False, "bob may not touch secrets") \
        in mod.CALLS


def test_streaming_list_sends_initial_events_then_the_end_bookmark(server):
    srv, _ = server
    core = api(srv)
    for i in range(3):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"s{i}"}})
    import urllib.request
    url = (f"{srv.url}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
           f"&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2")
    lines = [json.loads(x) for x in urllib.request.urlopen(url, timeout=10).read().splitlines()]
    added = [e["object"]["metadata"]["name"] for e in lines if e["type"] == "ADDED"]
    assert {"s0", "s1", "s2"} <= set(added)
    ends = [i for i, e in enumerate(lines) if e["type"] == "BOOKMARK" and e["object"][
        "metadata"].get("annotations", {}).get("k8s.io/initial-events-end") == "true"]
    assert ends and all(lines[i]["type"] == "ADDED" for i in range(ends[0]))
