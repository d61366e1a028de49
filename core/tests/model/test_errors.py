"""Tests of pilothouse.model.errors: Status bodies, messages and field errors."""

import pytest

from pilothouse.model import errors as E
from pilothouse.model.errors import FieldError, FieldPath


def test_not_found_status_shape():
    err = E.NotFound("deployments", "web", group="apps")
    assert str(err) == 'deployments.apps "web" not found'
    assert err.to_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "web" not found', "reason": "NotFound",
        "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404}


def test_core_group_resource_is_unqualified():
    assert str(E.NotFound("pods", "p")) == 'pods "p" not found'
    assert "group" not in E.NotFound("pods", "p").to_status()["details"]


def test_already_exists():
    err = E.AlreadyExists("pods", "web")
    assert (err.code, err.reason, str(err)) == (409, "AlreadyExists", 'pods "web" already exists')


def test_conflict_default_message():
    err = E.Conflict("deployments", "web", group="apps")
    assert str(err) == ('Operation cannot be fulfilled on deployments.apps "web": the object '
                        "has been modified; please apply your changes to the latest version "
                        "and try again")
    assert (err.code, err.reason) == (409, "Conflict")


def test_forbidden_with_and_without_name():
    assert str(E.Forbidden("pods", "", 'User "bob" cannot list resource "pods"')) == \
        'pods is forbidden: User "bob" cannot list resource "pods"'
    err = E.Forbidden("secrets", "s", "no")
    assert str(err) == 'secrets "s" is forbidden: no'
    assert err.code == 403


def test_method_not_allowed():
    err = E.MethodNotAllowed("deployments", "watch", group="apps")
    assert str(err) == 'watch is not supported on resources of kind "deployments.apps"'
    assert err.code == 405


@pytest.mark.parametrize("err, code, reason, message", [
    (E.BadRequest("bad"), 400, "BadRequest", "bad"),
    (E.Unauthorized(), 401, "Unauthorized", "not authorized"),
    (E.NotAcceptable(["application/json", "application/yaml"]), 406, "NotAcceptable",
     "only the following media types are accepted: application/json, application/yaml"),
    (E.UnsupportedMediaType(["application/json"]), 415, "UnsupportedMediaType",
     "the body of the request was in an unknown format - accepted media types include: "
     "application/json"),
    (E.Gone("too old resource version: 1 (5)"), 410, "Expired", "too old resource version: 1 (5)"),
    (E.Expired("x"), 410, "Expired", "x"),
    (E.RequestEntityTooLarge("limit is 3145728"), 413, "RequestEntityTooLarge",
     "Request entity too large: limit is 3145728"),
    (E.TooManyRequests("slow down", 3), 429, "TooManyRequests", "slow down"),
    (E.InternalError(RuntimeError("boom")), 500, "InternalError", "Internal error occurred: boom"),
    (E.ServiceUnavailable("store down"), 503, "ServiceUnavailable", "store down"),
    (E.Timeout("request did not complete within 60s", 2), 504, "Timeout",
     "Timeout: request did not complete within 60s"),
])
def test_simple_errors(err, code, reason, message):
    status = err.to_status()
    assert (status["code"], status["reason"], status["message"]) == (code, reason, message)
    assert isinstance(err, E.StatusError) and isinstance(err, Exception)


def test_retry_after_and_internal_cause():
    assert E.TooManyRequests("x", 7).to_status()["details"] == {"retryAfterSeconds": 7}
    assert E.InternalError("boom").to_status()["details"] == {"causes": [{"message": "boom"}]}
    assert "details" not in E.BadRequest("x").to_status()


def test_field_path():
    p = FieldPath("spec").child("template", "spec").child("containers").index(0).child("image")
    assert str(p) == "spec.template.spec.containers[0].image"
    assert str(FieldPath("metadata").child("labels").key("app")) == "metadata.labels[app]"
    assert str(FieldPath()) == ""
    assert str(FieldPath().child("spec")) == "spec"
    assert FieldPath("a", "b") == "a.b"
    root = FieldPath("spec")
    root.child("x")
    assert str(root) == "spec"  # immutable


def test_field_error_messages():
    assert str(FieldError.required("spec.containers")) == "spec.containers: Required value"
    assert str(FieldError.required("metadata.name", "name or generateName is required")) == \
        "metadata.name: Required value: name or generateName is required"
    assert str(FieldError.invalid("spec.replicas", -1, "must be greater than or equal to 0")) == \
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    assert str(FieldError.invalid("x", "Foo", "bad")) == 'x: Invalid value: "Foo": bad'
    assert str(FieldError.invalid("x", True, "bad")) == "x: Invalid value: true: bad"
    assert str(FieldError.invalid("x", None, "bad")) == "x: Invalid value: null: bad"
    assert str(FieldError.not_supported("spec.restartPolicy", "Sometimes",
                                        ["Always", "OnFailure", "Never"])) == \
        ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
         '"OnFailure", "Never"')
    assert str(FieldError.duplicate("spec.containers[1].name", "a")) == \
        'spec.containers[1].name: Duplicate value: "a"'
    assert str(FieldError.forbidden("metadata.namespace", "not allowed on this type")) == \
        "metadata.namespace: Forbidden: not allowed on this type"
    assert str(FieldError.too_long("metadata.annotations", "", 262144)) == \
        "metadata.annotations: Too long: must have at most 262144 bytes"
    assert str(FieldError.not_found("spec.containers[0].volumeMounts[0].name", "v")) == \
        'spec.containers[0].volumeMounts[0].name: Not found: "v"'
    assert str(FieldError.type_invalid("spec.replicas", "3", "must be an integer")) == \
        'spec.replicas: Invalid value: "3": must be an integer'
    assert FieldError.type_invalid("a", 1, "x").type.value == "FieldValueTypeInvalid"


def test_field_error_go_quoting():
    assert str(FieldError.invalid("x", 'a"b\\c\n', "d")) == 'x: Invalid value: "a\\"b\\\\c\\n": d'
    assert E.go_quote("\x01é") == '"\\x01é"'


def test_field_error_path_accepts_fieldpath_and_cause():
    err = FieldError.invalid(FieldPath("spec").child("replicas"), -1, "must be >= 0")
    assert err.path == "spec.replicas"
    assert err.to_cause() == {"reason": "FieldValueInvalid",
                              "message": "Invalid value: -1: must be >= 0",
                              "field": "spec.replicas"}


def test_invalid_from_errors_summary():
    errs = [FieldError.invalid("spec.replicas", -1, "must be greater than or equal to 0"),
            FieldError.required("spec.selector")]
    err = E.Invalid.from_errors("Deployment", "apps", "web", errs)
    assert str(err) == ('Deployment.apps "web" is invalid: [spec.replicas: Invalid value: -1: '
                        'must be greater than or equal to 0, spec.selector: Required value]')
    status = err.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["details"] == {
        "name": "web", "group": "apps", "kind": "Deployment",
        "causes": [{"reason": "FieldValueInvalid",
                    "message": "Invalid value: -1: must be greater than or equal to 0",
                    "field": "spec.replicas"},
                   {"reason": "FieldValueRequired", "message": "Required value",
                    "field": "spec.selector"}]}
    assert err.errors == errs


def test_invalid_single_and_duplicate_errors_have_no_brackets():
    e = FieldError.required("spec.containers")
    assert str(E.Invalid("Pod", "p", [e, e])) == 'Pod "p" is invalid: spec.containers: Required value'
    assert str(E.Invalid("Pod", "p", [])) == 'Pod "p" is invalid'


@pytest.mark.parametrize("err", [
    E.NotFound("pods", "a"), E.Conflict("deployments", "w", group="apps"),
    E.Invalid("Pod", "p", [FieldError.required("spec.containers")]), E.Gone("old"),
    E.TooManyRequests("x", 5), E.Timeout("t"), E.Unauthorized(), E.InternalError("boom"),
])
def test_from_status_round_trip(err):
    back = E.StatusError.from_status(err.to_status())
    assert type(back) is type(err)
    assert back.to_status() == err.to_status()


def test_from_status_unknown_reason_falls_back_to_code():
    back = E.StatusError.from_status({"kind": "Status", "code": 404, "message": "m"})
    assert isinstance(back, E.NotFound) and back.reason == "NotFound" and str(back) == "m"
    back = E.StatusError.from_status({"code": 418, "reason": "Teapot", "message": "m"})
    assert type(back) is E.StatusError and back.code == 418 and back.reason == "Teapot"
    old = E.StatusError.from_status({"code": 410, "reason": "Gone", "message": "m"})
    assert isinstance(old, E.Gone) and old.reason == "Gone"
