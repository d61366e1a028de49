"""Regenerate the Python stubs of every ``.proto`` file in ``core/api``.

Usage (from anywhere; needs ``grpcio-tools``, which the ``test`` extra installs)::

    python core/api/generate.py           # rewrite the *_pb2.py, *_pb2.pyi, *_pb2_grpc.py
    python core/api/generate.py --check   # exit 1 and name the stale files; write nothing

Each ``X.proto`` here gives ``X_pb2.py`` (messages), ``X_pb2.pyi`` (their types) and
``X_pb2_grpc.py`` (service stubs; for a file without services it holds only imports).
protoc runs on a temporary include root in which the files sit at ``pilothouse/api/X.proto``,
so the generated modules import each other as ``pilothouse.api.X_pb2`` and a ``.proto``
here imports another one as ``import "pilothouse/api/other.proto";``. The well-known types
(``google/protobuf/*.proto``) come from grpcio-tools' bundled include directory.

The output depends only on the ``.proto`` files and the grpcio-tools version (which fixes
the protoc version), so regenerating with the same version reproduces the committed files
byte for byte; ``core/tests/test_api_stubs.py`` checks that.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

API_DIR = pathlib.Path(__file__).resolve().parent
PACKAGE_PATH = ("pilothouse", "api")  # where the files live in the import namespace
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(api_dir: pathlib.Path = API_DIR) -> list[pathlib.Path]:
    """Every ``.proto`` file of ``api_dir``, sorted by name."""
    return sorted(api_dir.glob("*.proto"))


def outputs_of(proto: pathlib.Path) -> list[str]:
    """The names of the files generated from ``proto``."""
    return [proto.stem + suffix for suffix in SUFFIXES]


def generate(out_dir: pathlib.Path, api_dir: pathlib.Path = API_DIR) -> list[pathlib.Path]:
    """Generate the stubs of every ``.proto`` in ``api_dir`` into ``out_dir`` (flat, as they
    sit in ``core/api``) and return their paths. Raises RuntimeError when protoc fails."""
    import grpc_tools
    from grpc_tools import protoc

    protos = proto_files(api_dir)
    if not protos:
        return []
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="pilothouse-protoc-") as tmp:
        root = pathlib.Path(tmp) / "include"
        package_dir = root.joinpath(*PACKAGE_PATH)
        package_dir.mkdir(parents=True)
        for proto in protos:
            shutil.copyfile(proto, package_dir / proto.name)
        gen = pathlib.Path(tmp) / "out"
        gen.mkdir()
        relative = ["/".join((*PACKAGE_PATH, p.name)) for p in protos]
        args = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={gen}",
                f"--pyi_out={gen}", f"--grpc_python_out={gen}", *relative]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for proto in protos:
            for name in outputs_of(proto):
                target = out_dir / name
                shutil.copyfile(gen.joinpath(*PACKAGE_PATH, name), target)
                written.append(target)
        return written


def stale_files(api_dir: pathlib.Path = API_DIR) -> list[str]:
    """Names of the committed stubs in ``api_dir`` that differ from a fresh generation
    (or are missing)."""
    with tempfile.TemporaryDirectory(prefix="pilothouse-stubs-") as tmp:
        fresh = generate(pathlib.Path(tmp), api_dir)
        stale = []
        for path in fresh:
            committed = api_dir / path.name
            if not committed.is_file() or committed.read_bytes() != path.read_bytes():
                stale.append(path.name)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the committed stubs are up to date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated files in {API_DIR}: {', '.join(stale)}; "
                  f"run: python {API_DIR / 'generate.py'}", file=sys.stderr)
            return 1
        print(f"{API_DIR}: generated files are up to date")
        return 0
    for path in generate(API_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
