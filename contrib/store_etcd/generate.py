"""Regenerate ``pilothouse_store_etcd/etcd_rpc_pb2.py`` (and ``.pyi``) from ``etcd_rpc.proto``.

Usage (needs ``grpcio-tools``)::

    python contrib/store_etcd/generate.py           # rewrite the generated files
    python contrib/store_etcd/generate.py --check   # exit 1 if they are stale; write nothing

Only messages are generated (the driver calls etcd's methods by name), so no ``_grpc`` module
is needed. The output depends only on the .proto and the grpcio-tools version;
``tests/test_generated.py`` checks that the committed files are current.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = "pilothouse_store_etcd"
PROTO = HERE / PACKAGE / "etcd_rpc.proto"
OUTPUTS = ("etcd_rpc_pb2.py", "etcd_rpc_pb2.pyi")


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write the generated modules into ``out_dir`` and return their paths."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="pilothouse-etcd-protoc-") as tmp:
        root = pathlib.Path(tmp) / "include"
        (root / PACKAGE).mkdir(parents=True)
        shutil.copyfile(PROTO, root / PACKAGE / PROTO.name)
        gen = pathlib.Path(tmp) / "out"
        gen.mkdir()
        args = ["grpc_tools.protoc", f"-I{root}", f"--python_out={gen}", f"--pyi_out={gen}",
                f"{PACKAGE}/{PROTO.name}"]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            shutil.copyfile(gen / PACKAGE / name, out_dir / name)
            written.append(out_dir / name)
        return written


def stale() -> list[str]:
    """Names of committed generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(pathlib.Path(tmp))
        return [p.name for p in fresh
                if not (HERE / PACKAGE / p.name).is_file()
                or (HERE / PACKAGE / p.name).read_bytes() != p.read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {PACKAGE}/{name}")
        return 1 if names else 0
    for path in generate(HERE / PACKAGE):
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
