"""``pilothouse image ...``: build image tars, inspect them, and manage the runtime's images.

``build`` and ``inspect`` work on files only (:mod:`pilothouse.images`). ``import``,
``list`` and ``rm`` load the runtime driver named by the config's ``runtime`` slot in this
process and call it (:class:`pilothouse.interfaces.runtime.Runtime`), so run them on the node
whose runtime should hold the images. Exit codes: 0 success, 1 the operation failed (the
message says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import inspect
import json
import os
import sys
import time
from typing import Any

from pilothouse import images
from pilothouse.config import ConfigError, load_config, parse_config
from pilothouse.plugins import load_plugins

__all__ = ["add_image_commands"]


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class _ProgressBar:
    """``(done, total)`` callback drawing a bar on stderr when it is a terminal; otherwise
    silent until :meth:`finish` prints one summary line."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_draw = 0.0
        self.done = self.total = 0
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if not self.tty or (now - self.last_draw < 0.1 and done < total):
            return
        self.last_draw = now
        width = 30
        frac = done / total if total else 1.0
        bar = "#" * int(width * frac)
        self.stream.write(f"\r{self.label} [{bar:<{width}}] {frac:4.0%} "
                          f"{_human(done)}/{_human(total)}\033[K")
        self.stream.flush()

    def finish(self) -> None:
        took = time.monotonic() - self.start
        if self.tty:
            self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {_human(self.total)} in {took:.1f}s\n")
        self.stream.flush()


# ------------------------------------------------------------------------------------------
# build and inspect (files only)


def _split_name_tag(text: str) -> tuple[str, str]:
    name, tag = text, "latest"
    if text.rfind(":") > text.rfind("/"):
        name, _, tag = text.rpartition(":")
    return name, tag


def _command_arg(text: str | None) -> str | list[str] | None:
    """``--entrypoint``/``--cmd``: a JSON array (``'["/bin/sh", "-c"]'``) or a string split
    like a shell would."""
    if text is None or not text.lstrip().startswith("["):
        return text
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise images.ImageError(f"{text!r}: a JSON form must be an array of strings")
    return value


def cmd_image_build(args) -> int:
    name, tag = _split_name_tag(args.tag)
    output = args.output or f"{name.rsplit('/', 1)[-1]}_{tag}.tar"
    try:
        ref = images.normalize_ref(f"{name}:{tag}")
        bar = _ProgressBar(f"building {ref}")
        digest = images.build_image(
            args.directory, name, tag, output, entrypoint=_command_arg(args.entrypoint),
            cmd=_command_arg(args.cmd), env=args.env or None, workdir=args.workdir,
            progress=bar)
    except (images.ImageError, json.JSONDecodeError) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"{exc.filename or args.directory}: {exc.strerror or exc}")
    bar.finish()
    print(f"{ref} {digest} {os.path.abspath(output)}")
    if args.load:
        return _import_files([output], args)
    return 0


def cmd_image_inspect(args) -> int:
    try:
        info = images.read_image_tar(args.file, verify_layers=not args.quick)
    except (images.ImageError, OSError) as exc:
        return _error(str(exc))
    doc = {"format": info.format, "path": os.path.abspath(info.path), "images": [
        {"refs": list(i.refs), "id": i.id, "manifest_digest": i.manifest_digest,
         "platform": i.platform, "config": i.config.get("config", {}),
         "layers": [{"digest": la.digest, "diff_id": la.diff_id, "size": la.size,
                     "compression": la.compression} for la in i.layers]}
        for i in info.images]}
    print(json.dumps(doc, indent=2))
    return 0


# ------------------------------------------------------------------------------------------
# the runtime's images


def _load_runtime(args) -> Any:
    """The configured runtime driver, constructed (not opened); only the runtime slot of
    the config is loaded, so a store or proxy that is not installed here does not matter."""
    config = load_config(args.config)
    ref = config.driver("runtime")
    doc: dict[str, Any] = {"base": "none"}
    if ref is not None:
        doc["runtime"] = {"plugin": ref.name, "options": dict(ref.options)}
    return load_plugins(parse_config(doc, config.source)).driver("runtime")


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def _with_runtime(args, work) -> int:
    """Load, open, run ``await work(runtime)``, close; map every failure to exit code 1."""
    from pilothouse.interfaces.runtime import ContainerRuntimeError

    try:
        runtime = _load_runtime(args)
    except ConfigError as exc:
        return _error(str(exc))

    async def main() -> int:
        await _maybe_await(runtime.open())
        try:
            return await work(runtime) or 0
        finally:
            await _maybe_await(runtime.close())

    try:
        return asyncio.run(main())
    except (ContainerRuntimeError, images.ImageError, OSError) as exc:
        return _error(str(exc))


def _import_files(files: list[str], args) -> int:
    async def work(runtime) -> int:
        for path in files:
            if not os.path.isfile(path):
                return _error(f"{path}: no such file")
            bar = _ProgressBar(f"importing {os.path.basename(path)}")
            refs = await runtime.import_image(os.path.abspath(path), bar)
            bar.finish()
            for ref in refs:
                print(f"imported {ref}")
        return 0

    return _with_runtime(args, work)


def cmd_image_import(args) -> int:
    return _import_files(args.files, args)


def _image_row(image) -> dict:
    out = dataclasses.asdict(image) if dataclasses.is_dataclass(image) else dict(vars(image))
    return {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple)
                else v) for k, v in out.items()}


def cmd_image_list(args) -> int:
    async def work(runtime) -> int:
        found = sorted(await runtime.list_images(),
                       key=lambda i: (i.repo_tags[:1] or ("~",), i.id))
        if args.output == "json":
            print(json.dumps({"images": [_image_row(i) for i in found]}, indent=2))
            return 0
        rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
        for image in found:
            short_id = image.id.removeprefix("sha256:")[:12]
            size = _human(image.size) if image.size else "-"
            for ref in image.repo_tags or ("<none>:<none>",):
                repo, _, tag = ref.rpartition(":")
                rows.append((repo, tag, short_id, size))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
        return 0

    return _with_runtime(args, work)


def cmd_image_rm(args) -> int:
    async def work(runtime) -> int:
        missing = 0
        for ref in args.refs:
            if await runtime.image_status(ref) is None:
                print(f"error: no image {ref!r}", file=sys.stderr)
                missing += 1
                continue
            await runtime.remove_image(ref)
            print(f"removed {ref}")
        return 1 if missing else 0

    return _with_runtime(args, work)


# ------------------------------------------------------------------------------------------


def add_image_commands(subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``pilothouse image {build,inspect,import,list,rm}`` to the CLI's sub-parsers;
    ``common`` is the parent parser carrying ``--config``."""
    image = subparsers.add_parser(
        "image", help="build, inspect and import container images (no registry needed)"
    ).add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    build = image.add_parser(
        "build", parents=[common], help="turn a directory into an image tar (OCI layout, "
        "also loadable by docker load)",
        description="Build a one-layer image whose root filesystem is DIR. The tar is an "
        "OCI image layout with docker's manifest.json, so ctr/containerd, docker, podman "
        "and 'pilothouse image import' all load it. Builds are reproducible.")
    build.add_argument("directory", metavar="DIR", help="the image's root filesystem")
    build.add_argument("-t", "--tag", required=True, metavar="NAME[:TAG]",
                       help="image name and tag (tag defaults to latest)")
    build.add_argument("-o", "--output", metavar="FILE",
                       help="the tar to write (default: NAME_TAG.tar here)")
    build.add_argument("--entrypoint", metavar="CMD",
                       help="image entrypoint: a shell-like string or a JSON array")
    build.add_argument("--cmd", metavar="CMD",
                       help="image default arguments: a shell-like string or a JSON array")
    build.add_argument("--env", "-e", action="append", metavar="NAME=VALUE",
                       help="environment variable (repeatable)")
    build.add_argument("--workdir", "-w", metavar="PATH", help="working directory (default /)")
    build.add_argument("--load", action="store_true",
                       help="also import the image into the configured runtime")
    build.set_defaults(handler=cmd_image_build)

    inspect_ = image.add_parser("inspect", parents=[common],
                                help="check an image tar and print what it holds (JSON)")
    inspect_.add_argument("file", metavar="FILE.tar")
    inspect_.add_argument("--quick", action="store_true",
                          help="skip reading layers (check manifests and configs only)")
    inspect_.set_defaults(handler=cmd_image_inspect)

    imp = image.add_parser(
        "import", parents=[common], aliases=["load"],
        help="load OCI or docker-archive tars into the configured runtime")
    imp.add_argument("files", nargs="+", metavar="FILE.tar")
    imp.set_defaults(handler=cmd_image_import)

    lister = image.add_parser("list", parents=[common], aliases=["ls"],
                              help="list the images in the configured runtime")
    lister.add_argument("--output", "-o", choices=("table", "json"), default="table")
    lister.set_defaults(handler=cmd_image_list)

    rm = image.add_parser("rm", parents=[common],
                          help="remove images (by reference or id) from the runtime")
    rm.add_argument("refs", nargs="+", metavar="REF")
    rm.set_defaults(handler=cmd_image_rm)
