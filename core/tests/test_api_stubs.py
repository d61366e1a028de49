"""The generated gRPC stubs in core/api are reproducible: regenerating them from the
committed .proto files with the installed grpcio-tools gives the committed files byte for
byte, and they import under ``pilothouse.api``."""

import importlib
import importlib.util
import pathlib

import pytest

API_DIR = pathlib.Path(__file__).resolve().parents[1] / "api"


def _generator():
    spec = importlib.util.spec_from_file_location("_pilothouse_api_generate",
                                                  API_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()
PROTOS = GENERATE.proto_files(API_DIR)


def test_there_are_protos():
    assert "store.proto" in [p.name for p in PROTOS]


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    import grpc_tools.grpc_version
    fresh = GENERATE.generate(tmp_path, API_DIR)
    assert sorted(p.name for p in fresh) == sorted(
        name for proto in PROTOS for name in GENERATE.outputs_of(proto))
    stale = [p.name for p in fresh
             if not (API_DIR / p.name).is_file()
             or (API_DIR / p.name).read_bytes() != p.read_bytes()]
    assert not stale, (
        f"generated files differ from a fresh generation with grpcio-tools "
        f"{grpc_tools.grpc_version.VERSION}: {stale}; run `python core/api/generate.py` "
        f"(see core/api/README.md) and commit the result")


def test_no_orphan_generated_files():
    expected = {name for proto in PROTOS for name in GENERATE.outputs_of(proto)}
    present = {p.name for s in GENERATE.SUFFIXES for p in API_DIR.glob("*" + s)}
    assert present <= expected, f"generated files without a .proto: {present - expected}"


@pytest.mark.parametrize("proto", PROTOS, ids=[p.stem for p in PROTOS])
def test_stubs_import_as_pilothouse_api(proto):
    pb2 = importlib.import_module(f"pilothouse.api.{proto.stem}_pb2")
    grpc_mod = importlib.import_module(f"pilothouse.api.{proto.stem}_pb2_grpc")
    assert pb2.DESCRIPTOR.name == f"pilothouse/api/{proto.name}"
    source = (API_DIR / f"{proto.stem}_pb2_grpc.py").read_text()
    if pb2.DESCRIPTOR.services_by_name:
        assert f"from pilothouse.api import {proto.stem}_pb2" in source
    assert grpc_mod is not None


def test_check_mode_reports_up_to_date(capsys):
    assert GENERATE.main(["--check"]) == 0
