"""Tests of pilothouse.model.selectors: label and field selector parsing and matching."""

import pytest

from pilothouse.model.errors import BadRequest
from pilothouse.model.selectors import (EVERYTHING, NOTHING, FieldSelector, LabelSelector,
                                        Requirement, SelectorError, field_set,
                                        parse_field_selector, parse_label_selector,
                                        selector_from_set, supported_fields,
                                        validate_label_selector)

P = LabelSelector.parse


@pytest.mark.parametrize("text, canonical", [
    ("", ""),
    ("app=web", "app=web"),
    ("app==web", "app==web"),
    ("app!=web", "app!=web"),
    ("  app = web ,tier=db", "app=web,tier=db"),
    ("tier=db,app=web", "app=web,tier=db"),               # sorted by key
    ("env in (prod, staging)", "env in (prod,staging)"),
    ("env in (staging,prod,prod)", "env in (prod,staging)"),
    ("env notin (a)", "env notin (a)"),
    ("gpu", "gpu"),
    ("!legacy", "!legacy"),
    ("rev>3,rev<10", "rev>3,rev<10"),
    ("example.com/app=web", "example.com/app=web"),
    ("app=", "app="),                                     # empty value
    ("app in ()", "app in ()"),
    ("in=notin", "in=notin"),                             # keywords are keys and values
    ("a in (in,notin)", "a in (in,notin)"),
    ("x=1,!y,z in (a,b),w notin (c)", "w notin (c),x=1,!y,z in (a,b)"),
])
def test_parse_and_canonical_string(text, canonical):
    sel = P(text)
    assert sel.to_string() == canonical == str(sel)
    assert P(sel.to_string()) == sel


@pytest.mark.parametrize("text, labels, expected", [
    ("", {}, True),
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app==web", {"app": "web"}, True),
    ("app!=web", {}, True),                    # absent label satisfies !=
    ("app!=web", {"app": "web"}, False),
    ("env in (a,b)", {"env": "b"}, True),
    ("env in (a,b)", {}, False),
    ("env notin (a,b)", {}, True),
    ("env notin (a,b)", {"env": "a"}, False),
    ("gpu", {"gpu": ""}, True),
    ("gpu", {}, False),
    ("!gpu", {}, True),
    ("!gpu", {"gpu": "x"}, False),
    ("rev>3", {"rev": "4"}, True),
    ("rev>3", {"rev": "3"}, False),
    ("rev>3", {"rev": "x"}, False),
    ("rev<3", {"rev": "-1"}, True),
    ("rev<3", {}, False),
    ("app=web,tier=db", {"app": "web", "tier": "db"}, True),
    ("app=web,tier=db", {"app": "web"}, False),
    ("app=", {"app": ""}, True),
    ("app in ()", {"app": ""}, True),
])
def test_matches(text, labels, expected):
    assert P(text).matches(labels) is expected


@pytest.mark.parametrize("text, message", [
    ("app=web,", "found '', expected: identifier after ','"),
    (",app", "found ',', expected: !, identifier, or 'end of string'"),
    ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, "
                "gt, lt"),
    ("app in a", "unable to parse requirement: found 'a' expected: '('"),
    ("app in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("app in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("app=(x)", "unable to parse requirement: found '(', expected: identifier"),
    ("app=!x", "unable to parse requirement: found '!', expected: identifier"),
    ("!app=x", "found '=', expected: ',' or 'end of string'"),
    ("app=a b", "found 'b', expected: ',' or 'end of string'"),
    ("=x", "found '=', expected: !, identifier, or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a$=b", "unable to parse requirement: Invalid value: \"a$\": name part must consist of "
             "alphanumeric characters"),
    ("app=b$d", 'values[0][app]: Invalid value: "b$d": a valid label must be an empty string'),
    ("app>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("app=" + "v" * 64, "must be no more than 63 characters"),
    ("a/b/c=d", "a qualified name must consist of"),
])
def test_parse_errors(text, message):
    with pytest.raises(SelectorError) as info:
        P(text)
    assert message in str(info.value)
    assert isinstance(info.value, BadRequest) and isinstance(info.value, ValueError)
    assert info.value.code == 400


def test_key_error_mentions_quirky_example_text():
    with pytest.raises(SelectorError) as info:
        P("-bad")
    assert "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is " \
           "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')" in str(info.value)


def test_from_dict():
    sel = LabelSelector.from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                             {"key": "canary", "operator": "DoesNotExist"},
                             {"key": "zone", "operator": "Exists"},
                             {"key": "env", "operator": "NotIn", "values": ["dev"]}]})
    assert sel.to_string() == "app=web,!canary,env notin (dev),tier in (be,fe),zone"
    assert sel.matches({"app": "web", "tier": "fe", "zone": "a"})
    assert not sel.matches({"app": "web", "tier": "fe", "zone": "a", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "fe"})


def test_empty_and_null_selectors():
    assert LabelSelector.from_dict({}) == EVERYTHING
    assert LabelSelector.from_dict({"matchLabels": {}}).matches({"any": "thing"})
    assert LabelSelector.from_dict(None) is NOTHING
    assert not NOTHING.matches({}) and not NOTHING.matches({"a": "b"})
    assert EVERYTHING.matches(None) and EVERYTHING.empty() and not NOTHING.empty()
    assert P("").empty()


def test_from_dict_errors():
    with pytest.raises(SelectorError, match='"Foo" is not a valid label selector operator'):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
    with pytest.raises(SelectorError, match="values set can't be empty"):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "In"}]})
    with pytest.raises(SelectorError, match="values set must be empty for exists"):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "Exists",
                                                       "values": ["x"]}]})
    with pytest.raises(SelectorError, match="name part must consist"):
        LabelSelector.from_dict({"matchLabels": {"bad key": "x"}})


def test_requirement_validation():
    with pytest.raises(SelectorError, match="exact-match compatibility requires one single "
                                            "value"):
        Requirement.new("a", "=", ["x", "y"])
    with pytest.raises(SelectorError, match="supported values"):
        Requirement.new("a", "~", ["x"])
    assert Requirement.new("a", "in", ["y", "x", "x"]).values == ("x", "y")


def test_matches_object_and_helpers():
    sel = selector_from_set({"b": "2", "a": "1"})
    assert sel.to_string() == "a=1,b=2"
    assert sel.matches_object({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}}})
    assert not sel.matches_object({})
    assert selector_from_set({}) == EVERYTHING
    assert parse_label_selector("a in (x)").requires_exact("a") == "x"
    assert P("a!=x").requires_exact("a") is None


def test_validate_label_selector_paths():
    errs = validate_label_selector({
        "matchLabels": {"ok": "bad value"},
        "matchExpressions": [{"key": "a", "operator": "In"},
                             {"key": "b", "operator": "Exists", "values": ["x"]},
                             {"key": "c", "operator": "Nope", "values": ["y"]},
                             {"key": "d", "operator": "In", "values": ["bad value"]}]},
        "spec.selector")
    assert [str(e).split(":")[0] for e in errs] == [
        "spec.selector.matchLabels", "spec.selector.matchExpressions[0].values",
        "spec.selector.matchExpressions[1].values", "spec.selector.matchExpressions[2].operator",
        "spec.selector.matchExpressions[3].values[0]"]
    assert str(errs[1]) == ("spec.selector.matchExpressions[0].values: Required value: must be "
                            "specified when `operator` is 'In' or 'NotIn'")
    assert str(errs[3]) == ('spec.selector.matchExpressions[2].operator: Invalid value: "Nope": '
                            "not a valid selector operator")
    assert validate_label_selector(None, "x") == []


# ------------------------------------------------------------------------ field selectors


def _pod(**kw):
    pod = {"kind": "Pod", "metadata": {"name": "p1", "namespace": "default"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "s",
                    "serviceAccountName": "sa", "hostNetwork": True},
           "status": {"phase": "Running", "podIP": "10.0.0.5", "nominatedNodeName": "n2"}}
    pod.update(kw)
    return pod


def test_field_selector_parse():
    sel = FieldSelector.parse("spec.nodeName=n1,status.phase!=Failed,metadata.name==p1")
    assert sel.to_string() == "metadata.name=p1,spec.nodeName=n1,status.phase!=Failed"
    assert parse_field_selector("").empty() and FieldSelector.parse(",").empty()
    assert FieldSelector.parse(r"metadata.name=a\,b\=c\\d").terms[0].value == "a,b=c\\d"
    assert FieldSelector.parse(r"metadata.name=a\,b").to_string() == r"metadata.name=a\,b"
    assert sel.requires_exact("spec.nodeName") == "n1"
    assert sel.requires_exact("status.phase") is None


@pytest.mark.parametrize("text, message", [
    ("spec.nodeName", "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
    ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
    ("a=b=c", "invalid field selector: unescaped character in value: ="),
])
def test_field_selector_parse_errors(text, message):
    with pytest.raises(SelectorError) as info:
        FieldSelector.parse(text)
    assert str(info.value) == message


def test_field_selector_matches_pods():
    pod = _pod()
    for text in ("spec.nodeName=n1", "status.phase=Running", "spec.restartPolicy=Always",
                 "spec.schedulerName=s", "spec.serviceAccountName=sa", "status.podIP=10.0.0.5",
                 "status.nominatedNodeName=n2", "spec.hostNetwork=true",
                 "metadata.name=p1,metadata.namespace=default", "spec.nodeName!=n2"):
        assert FieldSelector.parse(text).matches(pod), text
    assert not FieldSelector.parse("spec.nodeName=n2").matches(pod)
    unscheduled = _pod(spec={})
    assert FieldSelector.parse("spec.nodeName=").matches(unscheduled)
    assert FieldSelector.parse("spec.hostNetwork=false").matches(unscheduled)
    dual = _pod(status={"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.9"}], "podIP": "10.0.0.9"})
    assert field_set("Pod", dual)["status.podIP"] == "fd00::1"


def test_field_selector_unsupported_field():
    with pytest.raises(BadRequest, match="^field label not supported: spec.foo$"):
        FieldSelector.parse("spec.foo=x").matches(_pod())
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        FieldSelector.parse("spec.nodeName=x").check("ConfigMap")
    FieldSelector.parse("metadata.name=x,metadata.namespace=y").check("ConfigMap")


def test_supported_fields_per_kind():
    assert set(supported_fields("Secret")) == {"metadata.name", "metadata.namespace", "type"}
    assert "spec.unschedulable" in supported_fields("Node")
    assert "status.phase" in supported_fields("Namespace")
    assert "status.replicas" in supported_fields("ReplicaSet")
    assert "status.successful" in supported_fields("Job")
    assert len(supported_fields("Event")) == 13
    assert len(supported_fields("Pod")) == 10


def test_field_sets_of_other_kinds():
    assert FieldSelector.parse("type=kubernetes.io/tls").matches(
        {"kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls"})
    node = {"kind": "Node", "metadata": {"name": "n"}, "spec": {"unschedulable": True}}
    assert FieldSelector.parse("spec.unschedulable=true").matches(node)
    assert FieldSelector.parse("spec.unschedulable=false").matches(
        {"kind": "Node", "metadata": {"name": "n"}})
    assert FieldSelector.parse("status.phase=Active").matches(
        {"kind": "Namespace", "metadata": {"name": "n"}, "status": {"phase": "Active"}})
    assert FieldSelector.parse("status.replicas=0").matches(
        {"kind": "ReplicaSet", "metadata": {"name": "r"}})
    assert FieldSelector.parse("status.successful=2").matches(
        {"kind": "Job", "metadata": {"name": "j"}, "status": {"succeeded": 2}})


def test_event_fields_core_and_events_api():
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u",
                               "apiVersion": "v1", "resourceVersion": "3",
                               "fieldPath": "spec.containers{c}"},
            "reason": "Scheduled", "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler", "type": "Normal"}
    fields = field_set("Event", core)
    assert fields["involvedObject.fieldPath"] == "spec.containers{c}"
    assert fields["source"] == "default-scheduler" and fields["type"] == "Normal"
    sel = FieldSelector.parse("involvedObject.kind=Pod,involvedObject.name=p,reason=Scheduled")
    assert sel.matches(core)
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": "e", "namespace": "d"},
           "regarding": {"kind": "Pod", "name": "p"}, "reason": "Scheduled",
           "reportingController": "sched", "deprecatedSource": {"component": "old"}}
    assert sel.matches(new)
    assert field_set("Event", new)["reportingComponent"] == "sched"
    assert field_set("Event", new)["source"] == "old"


# ------------------------------------------------------------------------ property tests

from hypothesis import given, settings, strategies as st  # noqa: E402

_names = st.sampled_from(["a", "app", "tier", "x1", "in", "notin"])
_keys = st.one_of(_names, st.builds(lambda p, n: f"{p}.io/{n}", st.sampled_from(["k8s", "ex"]),
                                    _names))
_values = st.sampled_from(["", "a", "web", "db", "in", "v1.2", "My_Value", "0", "12"])


@st.composite
def requirements(draw):
    key = draw(_keys)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if op in ("exists", "!"):
        values = []
    elif op in ("gt", "lt"):
        values = [str(draw(st.integers(0, 99)))]  # "-1" is not a label value, as in Kubernetes
    elif op in ("in", "notin"):
        values = draw(st.lists(_values, min_size=1, max_size=3))
    else:
        values = [draw(_values)]
    return Requirement.new(key, op, values)


@settings(database=None)
@given(st.lists(requirements(), max_size=4),
       st.dictionaries(_keys, _values, max_size=4))
def test_string_form_round_trips_and_matches_the_same(reqs, labels):
    sel = LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))
    parsed = LabelSelector.parse(sel.to_string())
    assert parsed.to_string() == sel.to_string()
    assert parsed.matches(labels) == sel.matches(labels) == all(r.matches(labels) for r in reqs)
