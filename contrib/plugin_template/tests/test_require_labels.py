"""Unit tests of the require-labels admission plugin, constructed without entry points."""

import asyncio

import pytest

from pilothouse.config import ConfigError
from pilothouse.interfaces.admission import AdmissionRequest
from pilothouse.testing import build_driver
from pilothouse_plugin_template.admission import RequireLabels


def request(obj, kind="Deployment", operation="CREATE"):
    return AdmissionRequest(operation=operation, group="apps", version="v1", kind=kind,
                            resource="deployments", namespace="default",
                            name=obj["metadata"]["name"], object=obj)


def test_denies_missing_labels_with_field_causes():
    plugin = build_driver("admission", RequireLabels, {"labels": ["team", "app"]})
    denied = asyncio.run(plugin.validate(request({"metadata": {"name": "web",
                                                                "labels": {"app": "x"}}})))
    assert denied.code == 422 and denied.reason == "Invalid"
    assert denied.message == "Deployment 'web' is missing required label(s): team"
    assert denied.causes == (("metadata.labels[team]", "Required value"),)


def test_allows_labelled_objects_other_kinds_and_deletes():
    plugin = build_driver("admission", RequireLabels, {"kinds": ["Deployment"]})
    ok = {"metadata": {"name": "web", "labels": {"team": "a"}}}
    bare = {"metadata": {"name": "web"}}
    assert asyncio.run(plugin.validate(request(ok))) is None
    assert asyncio.run(plugin.validate(request(bare, kind="ConfigMap"))) is None
    assert asyncio.run(plugin.validate(request(bare, operation="DELETE"))) is None
    assert asyncio.run(plugin.validate(request(bare))) is not None


def test_options_are_checked():
    with pytest.raises(ConfigError, match="must name at least one label key"):
        build_driver("admission", RequireLabels, {"labels": []})
    with pytest.raises(ConfigError, match="option 'labels' must be list of string"):
        build_driver("admission", RequireLabels, {"labels": "team"})
