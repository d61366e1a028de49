"""Container images without a registry: build, read and unpack image tars.

No public registry is reachable where Pilothouse runs (ARCHITECTURE.md §5), so images travel
as files. This module is the one place that knows their formats:

* :func:`build_image` turns a directory into an image tar that both importers accept: an
  **OCI image layout** (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that *also*
  carries docker's ``manifest.json`` and ``repositories``, the same hybrid ``docker save``
  writes since Docker 25. ``ctr images import``, ``docker load``, ``podman load`` and
  :func:`read_image_tar` all read it.
* :func:`read_image_tar` parses an OCI layout tar or a docker-archive tar (``docker save``,
  old and new) into an :class:`ImageInfo`, checking every digest it can.
* :class:`ImageStore` (and its shortcut :func:`import_image_to_dir`) is a small local image
  store for runtime drivers that have no containerd: content-addressed blobs and an index in
  OCI layout form, plus each image's root filesystem unpacked once per layer chain.

**References.** Image names are stored fully qualified, the way containerd's CRI and the
kubelet see them: ``busybox`` is ``docker.io/library/busybox:latest``, ``example.com/a/b:1``
stays as it is. :func:`normalize_ref` does this; pass it whatever a pod spec says.

**Digests.** Every blob is addressed by ``sha256:<64 hex>``. A layer has two: its *digest*
(of the blob as stored, usually gzip-compressed) and its *diff ID* (of the uncompressed tar,
listed in the config's ``rootfs.diff_ids``). The *image ID* is the config's digest, as in
docker and containerd. A *chain ID* names a stack of layers (OCI image spec, config.md).

**Errors.** Every malformed, truncated or tampered input raises :class:`ImageError` with a
message that names the file inside the tar and, for a digest mismatch, both digests. Nothing
here raises for a well-formed image in a supported format; ``zstd`` layers are reported as
unsupported because the standard library cannot decompress them.

**Progress.** Long operations take ``progress``, a callable ``(done_bytes, total_bytes)``
called from the working thread after each chunk and once at the end with
``done_bytes == total_bytes``. It must be cheap and must not raise (an exception aborts the
operation). What the bytes count is documented per function.

All functions block (disk I/O); call them from a worker thread when on an event loop.

Version history: appeared in 0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

__all__ = [
    "ImageError",
    "ImageInfo",
    "ImageStore",
    "Layer",
    "ReadImage",
    "StoredImage",
    "build_image",
    "chain_id",
    "familiar_ref",
    "host_platform",
    "import_image_to_dir",
    "normalize_ref",
    "read_image_tar",
]

Progress = Callable[[int, int], None]

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEX_TYPES = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST}
_MANIFEST_TYPES = {MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
_ANNOTATION_ROOTFS = "io.pilothouse.image.rootfs"

_EPOCH_TEXT = "1970-01-01T00:00:00Z"
_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1 << 20
_MAX_JSON = 32 << 20  # manifests, configs and indexes are small; refuse to slurp giants
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])"
                        r"(?::[0-9]+)?$")


class ImageError(ValueError):
    """An image tar, image directory or image reference is invalid, corrupt or unsupported.

    The message names the offending file inside the tar (or the reference) and, for a digest
    mismatch, the expected and the actual digest."""


# --------------------------------------------------------------------------------------------
# references and platforms


def normalize_ref(ref: str) -> str:
    """Return the fully qualified form of an image reference, as containerd's CRI stores it.

    ``busybox`` → ``docker.io/library/busybox:latest``; ``me/app:1`` →
    ``docker.io/me/app:1``; ``example.com:5000/app`` → ``example.com:5000/app:latest``;
    ``app@sha256:<hex>`` keeps its digest and gets no tag. ``index.docker.io`` becomes
    ``docker.io``. Raises :class:`ImageError` for a malformed reference (upper-case
    repository, bad tag, bad digest)."""
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise ImageError(f"invalid image reference {ref!r}")
    name, digest = ref, ""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        if not _DIGEST_RE.match(digest):
            raise ImageError(f"invalid image reference {ref!r}: bad digest {digest!r}")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise ImageError(f"invalid image reference {ref!r}: bad tag {tag!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
        if not _DOMAIN_RE.match(domain):
            raise ImageError(f"invalid image reference {ref!r}: bad registry {domain!r}")
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.match(component):
            raise ImageError(f"invalid image reference {ref!r}: repository path component "
                             f"{component!r} must be lower-case letters, digits and "
                             f"separators")
    out = f"{domain}/{path}"
    if tag or not digest:
        out += f":{tag or 'latest'}"
    if digest:
        out += f"@{digest}"
    return out


def familiar_ref(ref: str) -> str:
    """The short form docker prints: ``docker.io/library/busybox:latest`` → ``busybox:latest``,
    ``docker.io/me/app:1`` → ``me/app:1``; other registries are left as they are."""
    full = normalize_ref(ref)
    for prefix in ("docker.io/library/", "docker.io/"):
        if full.startswith(prefix):
            return full[len(prefix):]
    return full


_ARCHES = {"x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
           "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
           "i386": ("386", ""), "i686": ("386", ""), "ppc64le": ("ppc64le", ""),
           "s390x": ("s390x", ""), "riscv64": ("riscv64", ""), "mips64": ("mips64", "")}


def host_platform() -> dict[str, str]:
    """This machine's platform in OCI terms: ``{"os": "linux", "architecture": "amd64"}``
    (plus ``"variant"`` for 32-bit ARM). Unknown machines keep their ``uname -m`` name."""
    arch, variant = _ARCHES.get(platform.machine().lower(), (platform.machine().lower(), ""))
    out = {"architecture": arch, "os": "linux"}
    if variant:
        out["variant"] = variant
    return out


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain ID of a stack of layers (OCI image spec): the first layer's diff ID, then
    ``sha256(previous_chain_id + " " + diff_id)`` for each next layer. Raises
    :class:`ImageError` for an empty stack."""
    if not diff_ids:
        raise ImageError("an image needs at least one layer")
    current = diff_ids[0]
    for diff_id in diff_ids[1:]:
        current = "sha256:" + hashlib.sha256(f"{current} {diff_id}".encode()).hexdigest()
    return current


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


# --------------------------------------------------------------------------------------------
# build


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: IO[bytes] | None):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.raw is not None:
            self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if not all(isinstance(v, str) for v in value):
        raise ImageError(f"{what} must be a string or a list of strings, got {value!r}")
    return list(value)


def _env_list(env: Mapping[str, str] | Sequence[str] | None) -> list[str]:
    if env is None:
        items: list[str] = []
    elif isinstance(env, Mapping):
        items = [f"{k}={v}" for k, v in env.items()]
    else:
        items = list(env)
    for item in items:
        if not isinstance(item, str) or "=" not in item or item.startswith("="):
            raise ImageError(f"environment entry {item!r} is not NAME=VALUE")
    if not any(item.startswith("PATH=") for item in items):
        items.insert(0, _DEFAULT_PATH)
    return items


def _walk_sorted(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for everything under ``root`` except ``root`` itself,
    depth first in byte order of names, so a parent always precedes its children."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        yield entry.name, st
        if stat.S_ISDIR(st.st_mode):
            for sub, sub_st in _walk_sorted(entry.path):
                yield f"{entry.name}/{sub}", sub_st


def _write_layer(directory: str, raw: IO[bytes], progress: Progress | None,
                 exclude: str | None = None) -> tuple[str, str, int]:
    """Write ``directory`` as a deterministic gzip layer to ``raw``; return
    (digest, diff_id, size). ``exclude`` is a path relative to ``directory`` to leave out
    (the output tar, when it is written inside the directory)."""
    items = [(rel, st) for rel, st in _walk_sorted(directory) if rel != exclude]
    inodes = {(st.st_dev, st.st_ino): st.st_size for _, st in items if stat.S_ISREG(st.st_mode)}
    total = sum(inodes.values())
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        _report(progress, done[0], total)

    _report(progress, 0, total)
    compressed = _HashingWriter(raw)
    # mtime=0 and an empty file name keep the gzip header free of build-time data.
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6)
    plain = _HashingWriter(gz)
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in items:
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            path = os.path.join(directory, rel)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[key]
                else:
                    seen_inodes[key] = rel
                    info.size = st.st_size
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            else:
                continue  # sockets and the like have no place in an image
            if info.type == tarfile.DIRTYPE:
                info.name = rel + "/" if not rel.endswith("/") else rel
            if info.isreg():
                with open(path, "rb") as src:
                    try:
                        tar.addfile(info, _ProgressReader(src, advance))
                    except OSError as exc:
                        if os.fstat(src.fileno()).st_size != st.st_size:
                            raise ImageError(f"{path} changed size while the image was "
                                             f"built") from None
                        raise
            else:
                tar.addfile(info)
    gz.close()
    _report(progress, total, total)
    return compressed.digest, plain.digest, compressed.size


class _ProgressReader:
    """A read-only file object that counts bytes read and reports each chunk."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]):
        self.raw = raw
        self.on_read = on_read
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if data:
            self.on_read(len(data))
        return data


def _tar_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _tar_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def build_image(directory: str | os.PathLike, name: str, tag: str,
                output_tar: str | os.PathLike, *,
                entrypoint: str | Sequence[str] | None = None,
                cmd: str | Sequence[str] | None = None,
                env: Mapping[str, str] | Sequence[str] | None = None,
                workdir: str | None = None,
                progress: Progress | None = None) -> str:
    """Build a one-layer image whose root filesystem is ``directory`` and write it to
    ``output_tar``; return the manifest digest (``sha256:<hex>``).

    :param directory: the future root filesystem (``directory/bin/sh`` becomes ``/bin/sh``).
        Regular files, directories, symlinks (stored as they are, never followed), hard
        links, FIFOs and device nodes are kept; sockets are skipped. Every entry is owned by
        uid/gid 0 with mtime 0, and keeps its permission bits (set-uid included).
    :param name: repository name, e.g. ``busybox`` or ``example.com/team/app``.
    :param tag: the tag; the image's reference is ``normalize_ref(f"{name}:{tag}")``.
    :param output_tar: the file to write; replaced atomically (a temporary file in the same
        directory is renamed over it), so a failed build never leaves a half-written tar.
        When it lies inside ``directory`` it is not part of the image.
    :param entrypoint: the image's ``Entrypoint``: a list of strings, or one string split
        like a POSIX shell would (:func:`shlex.split`). None leaves it unset.
    :param cmd: the image's ``Cmd``, same forms as ``entrypoint``.
    :param env: ``{"NAME": "value"}`` or ``["NAME=value", ...]``; a default ``PATH`` is added
        when none is given.
    :param workdir: the image's ``WorkingDir`` (absolute path), default ``/``.
    :param progress: called with ``(done, total)`` bytes of regular-file content read from
        ``directory``.

    The tar is an OCI image layout (``oci-layout``, ``index.json`` whose one manifest carries
    the ``org.opencontainers.image.ref.name`` and ``io.containerd.image.name`` annotations
    with the full reference) plus docker's ``manifest.json`` and ``repositories``. It holds
    one gzip layer, its config (``os`` linux, ``architecture`` of this machine,
    ``rootfs.diff_ids``) and the manifest. The build is deterministic: the same directory
    contents and arguments give byte-identical tars and the same digest on the same machine
    (the gzip stream depends on the zlib version). Raises :class:`ImageError` for a bad
    name, tag or argument, or a directory that changes during the build; ``OSError`` for I/O
    failures."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ImageError(f"{directory}: not a directory")
    ref = normalize_ref(f"{name}:{tag}")
    if "@" in ref:
        raise ImageError(f"image name {name!r} must not contain a digest")
    if workdir is not None and not workdir.startswith("/"):
        raise ImageError(f"working directory {workdir!r} must be an absolute path")
    entrypoint_list = _as_list(entrypoint, "entrypoint")
    cmd_list = _as_list(cmd, "cmd")
    env_list = _env_list(env)
    output_tar = os.path.abspath(os.fspath(output_tar))
    out_dir = os.path.dirname(output_tar)
    inside = os.path.relpath(output_tar, os.path.realpath(directory))
    exclude = None if inside.startswith("..") else inside
    with tempfile.TemporaryFile(dir=out_dir) as layer_file:
        layer_digest, diff_id, layer_size = _write_layer(directory, layer_file, progress,
                                                         exclude)
        runtime_config: dict[str, Any] = {"Env": env_list, "WorkingDir": workdir or "/"}
        if entrypoint_list is not None:
            runtime_config["Entrypoint"] = entrypoint_list
        if cmd_list is not None:
            runtime_config["Cmd"] = cmd_list
        config = {**host_platform(), "created": _EPOCH_TEXT, "config": runtime_config,
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": _EPOCH_TEXT,
                               "created_by": "pilothouse image build"}]}
        config_bytes = _canonical_json(config)
        config_digest = _sha256(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                    "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest,
                               "size": len(config_bytes)},
                    "layers": [{"mediaType": MEDIA_OCI_LAYER_GZIP, "digest": layer_digest,
                                "size": layer_size}]}
        manifest_bytes = _canonical_json(manifest)
        manifest_digest = _sha256(manifest_bytes)
        index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
                 "manifests": [{"mediaType": MEDIA_OCI_MANIFEST, "digest": manifest_digest,
                                "size": len(manifest_bytes), "platform": host_platform(),
                                "annotations": {ANNOTATION_REF_NAME: ref,
                                                ANNOTATION_CONTAINERD_NAME: ref}}]}
        blob = "blobs/sha256/"
        docker_manifest = [{"Config": blob + config_digest[7:],
                            "RepoTags": [familiar_ref(ref)],
                            "Layers": [blob + layer_digest[7:]]}]
        repo, _, short_tag = familiar_ref(ref).rpartition(":")
        repositories = {repo: {short_tag: diff_id[7:]}}
        fd, tmp_path = tempfile.mkstemp(dir=out_dir, prefix=".image-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(
                    fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _tar_bytes(tar, "oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"}))
                _tar_bytes(tar, "index.json", _canonical_json(index))
                _tar_bytes(tar, "manifest.json", _canonical_json(docker_manifest))
                _tar_bytes(tar, "repositories", _canonical_json(repositories))
                _tar_dir(tar, "blobs/")
                _tar_dir(tar, "blobs/sha256/")
                _tar_bytes(tar, blob + manifest_digest[7:], manifest_bytes)
                _tar_bytes(tar, blob + config_digest[7:], config_bytes)
                layer_file.seek(0)
                info = tarfile.TarInfo(blob + layer_digest[7:])
                info.size, info.mode, info.mtime = layer_size, 0o644, 0
                tar.addfile(info, layer_file)
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, output_tar)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise
    return manifest_digest


# --------------------------------------------------------------------------------------------
# read


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of an image as found in a tar.

    ``member`` is its path inside the tar (open it with :meth:`ImageInfo.open_blob`);
    ``digest`` and ``size`` describe the blob as stored; ``diff_id`` is the digest of the
    uncompressed tar (from the config); ``compression`` is ``"gzip"``, ``"zstd"`` or
    ``"none"``; ``media_type`` as the manifest says (synthesized for docker-archive)."""

    member: str
    media_type: str
    digest: str
    size: int
    diff_id: str
    compression: str


@dataclasses.dataclass(frozen=True)
class ReadImage:
    """One image (one manifest for one platform) found in a tar.

    ``refs`` are its fully qualified references (may be empty: an image saved by ID);
    ``manifest`` the manifest document and ``manifest_digest`` its digest (for a
    docker-archive, which has no manifest blob, an equivalent OCI manifest is synthesized
    and ``manifest_member`` is None); ``config``/``config_digest``/``config_member`` likewise
    for the config; ``layers`` bottom first; ``platform`` like ``"linux/amd64"``."""

    refs: tuple[str, ...]
    manifest_digest: str
    manifest: dict
    manifest_member: str | None
    config_digest: str
    config: dict
    config_member: str
    layers: tuple[Layer, ...]
    platform: str

    @property
    def id(self) -> str:
        """The image ID: the config's digest."""
        return self.config_digest

    @property
    def chain_id(self) -> str:
        """The chain ID of the image's layer stack."""
        return chain_id([layer.diff_id for layer in self.layers])


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image_tar` found: ``format`` (``"oci"`` for an OCI image layout,
    including docker's own since Docker 25; ``"docker-archive"`` for the legacy ``docker
    save`` layout), the tar's ``path``, and its ``images`` in index order."""

    format: str
    path: str
    images: tuple[ReadImage, ...]

    @property
    def refs(self) -> tuple[str, ...]:
        """Every reference in the tar, in order, without duplicates."""
        return tuple(dict.fromkeys(r for image in self.images for r in image.refs))

    def image(self, ref: str | None = None) -> ReadImage:
        """The image named ``ref`` (normalized before matching; an image ID or manifest
        digest also matches), or the only image when ``ref`` is None. Raises
        :class:`ImageError` when there is no such image or ``ref`` is None and the tar holds
        several."""
        if ref is None:
            if len(self.images) != 1:
                raise ImageError(f"{self.path}: holds {len(self.images)} images; name one")
            return self.images[0]
        for image in self.images:
            if ref in (image.config_digest, image.manifest_digest):
                return image
        full = normalize_ref(ref)
        for image in self.images:
            if full in image.refs:
                return image
        held = ", ".join(self.refs) or "unnamed images"
        raise ImageError(f"{self.path}: no image {ref!r} (holds {held})")

    @contextlib.contextmanager
    def open_blob(self, member: str) -> Iterator[IO[bytes]]:
        """Open a member of the tar (a layer's ``member``, say) for reading."""
        with tarfile.open(self.path, "r:*") as tar:
            yield _open_member(tar, _index_members(tar), member, self.path)


def _clean_member(name: str) -> str:
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def _index_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {_clean_member(m.name): m for m in tar.getmembers()}


def _open_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str,
                 path: str) -> IO[bytes]:
    info = members.get(_clean_member(name))
    if info is None:
        raise ImageError(f"{path}: {name} is missing from the tar")
    try:
        f = tar.extractfile(info)
    except KeyError as exc:  # a link to a member that does not exist
        raise ImageError(f"{path}: {name} links to a missing member ({exc})") from None
    if f is None:
        raise ImageError(f"{path}: {name} is not a regular file")
    return f


def _read_json(tar, members, name, path, digest: str | None = None) -> tuple[Any, bytes]:
    info = members.get(_clean_member(name))
    if info is not None and info.isfile() and info.size > _MAX_JSON:
        raise ImageError(f"{path}: {name} is {info.size} bytes, too large for a JSON document")
    try:
        data = _open_member(tar, members, name, path).read(_MAX_JSON + 1)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ImageError(f"{path}: cannot read {name}: {exc}") from None
    if digest is not None and _sha256(data) != digest:
        raise ImageError(f"{path}: {name} is corrupt: digest {_sha256(data)}, "
                         f"expected {digest}")
    try:
        return json.loads(data), data
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageError(f"{path}: {name} is not valid JSON: {exc}") from None


def _check_descriptor(desc: Any, where: str) -> tuple[str, int]:
    if not isinstance(desc, dict):
        raise ImageError(f"{where}: descriptor is not an object")
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImageError(f"{where}: unsupported or malformed digest {digest!r} "
                         f"(only sha256 is supported)")
    if not isinstance(size, int) or size < 0:
        raise ImageError(f"{where}: malformed size {size!r}")
    return digest, size


def _sniff_compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


class _Decompressor:
    """Streams the uncompressed bytes of a gzip (possibly multi-member) or plain source."""

    def __init__(self, raw: IO[bytes], compression: str, where: str):
        if compression == "zstd":
            raise ImageError(f"{where}: zstd-compressed layers are not supported "
                             f"(re-export the image with gzip layers)")
        self.raw = raw
        self.where = where
        self.gzip = compression == "gzip"
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16) if self.gzip else None
        self._buf = b""
        self._eof = False

    def _fill(self) -> bool:
        while not self._buf:
            if self._eof:
                return False
            chunk = self.raw.read(_CHUNK)
            if not self.gzip:
                if not chunk:
                    self._eof = True
                    return False
                self._buf = chunk
                return True
            try:
                if not chunk:
                    self._eof = True
                    if not self._z.eof:
                        raise ImageError(f"{self.where}: truncated gzip stream")
                    return False
                out = self._z.decompress(chunk)
                while self._z.eof and self._z.unused_data:
                    rest = self._z.unused_data
                    self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    out += self._z.decompress(rest)
            except zlib.error as exc:
                raise ImageError(f"{self.where}: corrupt gzip stream: {exc}") from None
            self._buf = out
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(self._buf)
                self._buf = b""
            return b"".join(parts)
        if not self._fill():
            return b""
        out, self._buf = self._buf[:size], self._buf[size:]
        return out


class _HashingReader:
    """A read-only file object hashing what is read from ``raw`` (optionally teeing it)."""

    def __init__(self, raw: Any, tee: IO[bytes] | None = None,
                 on_read: Callable[[int], None] | None = None):
        self.raw = raw
        self.tee = tee
        self.on_read = on_read
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.hash.update(data)
            self.size += len(data)
            if self.tee is not None:
                self.tee.write(data)
            if self.on_read is not None:
                self.on_read(len(data))
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _verify_layer(tar, members, layer: Layer, path: str) -> None:
    f = _open_member(tar, members, layer.member, path)
    where = f"{path}: layer {layer.member}"
    try:
        compressed = _HashingReader(f)
        plain = _HashingReader(_Decompressor(compressed, layer.compression, where))
        plain.drain()
        compressed.drain()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ImageError(f"{where}: cannot read: {exc}") from None
    if compressed.size != layer.size:
        raise ImageError(f"{where} is corrupt: {compressed.size} bytes, expected {layer.size}")
    if compressed.digest != layer.digest:
        raise ImageError(f"{where} is corrupt: digest {compressed.digest}, "
                         f"expected {layer.digest}{_diff_id_note(layer)}")
    if plain.digest != layer.diff_id:
        raise ImageError(f"{where} is corrupt: uncompressed digest {plain.digest} does not "
                         f"match the config's diff ID {layer.diff_id}")


def _diff_id_note(layer: Layer) -> str:
    return " (the config's diff ID)" if layer.digest == layer.diff_id else ""


def _platform_text(config: dict) -> str:
    text = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
    return text + (f"/{config['variant']}" if config.get("variant") else "")


def _diff_ids(config: Any, where: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and _DIGEST_RE.match(i)
                                            for i in ids):
        raise ImageError(f"{where}: config has no valid rootfs.diff_ids")
    return ids


def _read_oci(tar, members, path: str) -> list[ReadImage]:
    layout, _ = _read_json(tar, members, "oci-layout", path)
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise ImageError(f"{path}: oci-layout has unsupported imageLayoutVersion {version!r}")
    index, _ = _read_json(tar, members, "index.json", path)
    images: list[ReadImage] = []
    _walk_index(tar, members, path, index, "index.json", (), images, depth=0)
    return images


def _blob_member(digest: str) -> str:
    return f"blobs/sha256/{digest[7:]}"


def _refs_of(desc: dict) -> tuple[str, ...]:
    annotations = desc.get("annotations") or {}
    ref = annotations.get(ANNOTATION_CONTAINERD_NAME) or annotations.get(ANNOTATION_REF_NAME)
    if not ref:
        return ()
    try:
        return (normalize_ref(ref),)
    except ImageError:
        return ()  # a bare tag ("v1") names nothing on its own; the image stays unnamed


def _walk_index(tar, members, path, index, where, refs, images, depth) -> None:
    if depth > 4:
        raise ImageError(f"{path}: {where}: indexes nested too deeply")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise ImageError(f"{path}: {where} has no manifests list")
    for i, desc in enumerate(manifests):
        dwhere = f"{path}: {where} manifests[{i}]"
        digest, size = _check_descriptor(desc, dwhere)
        media = desc.get("mediaType")
        member = _blob_member(digest)
        doc, data = _read_json(tar, members, member, path, digest)
        if len(data) != size:
            raise ImageError(f"{dwhere}: {member} is {len(data)} bytes, expected {size}")
        if not isinstance(doc, dict):
            raise ImageError(f"{path}: {member} is not a JSON object")
        media = media or doc.get("mediaType")
        desc_refs = _refs_of(desc) or refs
        if media in _INDEX_TYPES or (media is None and "manifests" in doc):
            _walk_index(tar, members, path, doc, member, desc_refs, images, depth + 1)
        elif media in _MANIFEST_TYPES or (media is None and "config" in doc):
            images.append(_read_manifest(tar, members, path, doc, digest, member, desc_refs))
        # other artifacts (attestations, signatures) are not images: skipped


def _read_manifest(tar, members, path, manifest, digest, member, refs) -> ReadImage:
    where = f"{path}: manifest {member}"
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise ImageError(f"{where}: not a schemaVersion 2 image manifest")
    config_digest, config_size = _check_descriptor(manifest.get("config"), f"{where} config")
    config_member = _blob_member(config_digest)
    config, data = _read_json(tar, members, config_member, path, config_digest)
    if len(data) != config_size:
        raise ImageError(f"{where}: config {config_member} is {len(data)} bytes, "
                         f"expected {config_size}")
    diff_ids = _diff_ids(config, f"{path}: {config_member}")
    descs = manifest.get("layers")
    if not isinstance(descs, list) or len(descs) != len(diff_ids):
        raise ImageError(f"{where}: {len(descs) if isinstance(descs, list) else 'no'} layers "
                         f"but the config lists {len(diff_ids)} diff IDs")
    layers = []
    for i, (desc, diff_id) in enumerate(zip(descs, diff_ids)):
        layer_digest, layer_size = _check_descriptor(desc, f"{where} layers[{i}]")
        media = str(desc.get("mediaType", ""))
        layer_member = _blob_member(layer_digest)
        if "zstd" in media:
            compression = "zstd"
        elif "gzip" in media:
            compression = "gzip"
        else:
            compression = "none"
        if "foreign" in media or "nondistributable" in media:
            if _clean_member(layer_member) not in members:
                raise ImageError(f"{where}: layer {layer_digest} is a foreign layer that is "
                                 f"not in the tar")
        layers.append(Layer(layer_member, media, layer_digest, layer_size, diff_id,
                            compression))
    return ReadImage(refs, digest, manifest, member, config_digest, config, config_member,
                     tuple(layers), _platform_text(config))


def _read_docker_archive(tar, members, path: str) -> list[ReadImage]:
    entries, _ = _read_json(tar, members, "manifest.json", path)
    if not isinstance(entries, list):
        raise ImageError(f"{path}: manifest.json is not a list")
    images = []
    for i, entry in enumerate(entries):
        where = f"{path}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{where}: needs Config and Layers")
        config_member = entry["Config"]
        config, data = _read_json(tar, members, config_member, path)
        config_digest = _sha256(data)
        named = re.search(r"([0-9a-f]{64})(?:\.json)?$", config_member)
        if named and named.group(1) != config_digest[7:]:
            raise ImageError(f"{path}: {config_member} is corrupt: digest {config_digest}, "
                             f"its name says sha256:{named.group(1)}")
        diff_ids = _diff_ids(config, f"{path}: {config_member}")
        if len(entry["Layers"]) != len(diff_ids):
            raise ImageError(f"{where}: {len(entry['Layers'])} layers but the config lists "
                             f"{len(diff_ids)} diff IDs")
        layers = []
        for layer_member, diff_id in zip(entry["Layers"], diff_ids):
            f = _open_member(tar, members, layer_member, path)
            compression = _sniff_compression(f.read(4))
            if compression == "none":
                size = f.seek(0, io.SEEK_END)
                digest = diff_id  # an uncompressed layer's digest is its diff ID
            else:  # docker load accepts compressed layers; their digest must be computed
                f.seek(0)
                hashed = _HashingReader(f)
                hashed.drain()
                digest, size = hashed.digest, hashed.size
            media = MEDIA_OCI_LAYER_GZIP if compression == "gzip" else (
                MEDIA_OCI_LAYER if compression == "none" else MEDIA_OCI_LAYER + "+zstd")
            layers.append(Layer(_clean_member(layer_member), media, digest, size, diff_id,
                                compression))
        refs = []
        for tag in entry.get("RepoTags") or ():
            try:
                refs.append(normalize_ref(tag))
            except ImageError as exc:
                raise ImageError(f"{where}: RepoTags: {exc}") from None
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                    "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_digest,
                               "size": len(data)},
                    "layers": [{"mediaType": la.media_type, "digest": la.digest,
                                "size": la.size} for la in layers]}
        images.append(ReadImage(tuple(refs), _sha256(_canonical_json(manifest)), manifest,
                                None, config_digest, config, _clean_member(config_member),
                                tuple(layers), _platform_text(config)))
    return images


def read_image_tar(path: str | os.PathLike, *, verify_layers: bool = True) -> ImageInfo:
    """Parse an image tar and return what it holds, checking digests.

    :param path: an OCI image layout tar (``oci-layout`` + ``index.json``; nested indexes
        and multi-platform images are followed, non-image artifacts skipped) or a
        docker-archive tar (``manifest.json`` with ``Config``/``Layers``/``RepoTags``, as
        ``docker save`` writes it, old layout or new). The tar itself may be gzip- or
        xz-compressed. When both ``index.json`` and ``manifest.json`` are present the OCI
        index wins.
    :param verify_layers: also read every layer to check its digest, size and diff ID (the
        default). With False only manifests, configs and indexes are checked (and layer
        presence is not); :class:`ImageStore` uses this and checks layers while unpacking.

    References come from ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name``
    annotations (a bare tag like ``v1`` is not a name and leaves the image unnamed) or from
    ``RepoTags``, all normalized by :func:`normalize_ref`.

    Raises :class:`ImageError` when the file is not a tar, is truncated, misses a member, or a
    blob does not match its digest; the message names the member."""
    path = os.fspath(path)
    try:
        tar = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ImageError(f"{path}: not a readable tar: {exc}") from None
    with tar:
        try:
            members = _index_members(tar)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ImageError(f"{path}: truncated or corrupt tar: {exc}") from None
        if "index.json" in members:
            fmt, images = "oci", _read_oci(tar, members, path)
        elif "manifest.json" in members:
            fmt, images = "docker-archive", _read_docker_archive(tar, members, path)
        else:
            raise ImageError(f"{path}: neither an OCI image layout (no index.json) nor a "
                             f"docker archive (no manifest.json)")
        if not images:
            raise ImageError(f"{path}: holds no image manifest")
        if verify_layers:
            checked = set()
            for image in images:
                for layer in image.layers:
                    if layer.digest not in checked:
                        _verify_layer(tar, members, layer, path)
                        checked.add(layer.digest)
    return ImageInfo(fmt, path, tuple(images))


# --------------------------------------------------------------------------------------------
# unpacking layers


class _Unpacker:
    """Applies layer tars to a root filesystem directory: whiteouts, opaque directories,
    links resolved inside the root (never on the host), ownership only when root."""

    def __init__(self, root: str):
        self.root = root
        self.is_root = os.geteuid() == 0

    def _join(self, rel: str, follow_last: bool = False) -> str:
        """``root``/``rel`` with every symlink on the way resolved as if ``root`` were ``/``,
        so no entry can reach outside the root (absolute links, ``..``)."""
        resolved: list[str] = []
        pending = [p for p in rel.split("/") if p]
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            full = os.path.join(self.root, *resolved, part)
            if (pending or follow_last) and os.path.islink(full):
                hops += 1
                if hops > 64:
                    raise ImageError(f"too many levels of symbolic links in {rel!r}")
                target = os.readlink(full)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p] + pending
                continue
            resolved.append(part)
        return os.path.join(self.root, *resolved)

    def _remove(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def apply(self, source: IO[bytes], where: str) -> None:
        created: set[str] = set()
        dirs: list[tuple[str, tarfile.TarInfo]] = []
        try:
            tar = tarfile.open(fileobj=source, mode="r|")
            for info in tar:
                name = posixpath.normpath("/" + _clean_member(info.name)).lstrip("/")
                if not name or name == ".":
                    continue
                parent_rel, base = posixpath.split(name)
                parent = self._join(parent_rel, follow_last=True)
                if base == ".wh..wh..opq":
                    if os.path.isdir(parent):
                        for child in os.listdir(parent):
                            path = os.path.join(parent, child)
                            if path not in created:
                                self._remove(path)
                    continue
                if base.startswith(".wh."):
                    self._remove(os.path.join(parent, base[4:]))
                    continue
                os.makedirs(parent, exist_ok=True)
                path = os.path.join(parent, base)
                created.add(path)
                if info.isdir():
                    if not (os.path.isdir(path) and not os.path.islink(path)):
                        self._remove(path)
                        os.mkdir(path, 0o700)
                    dirs.append((path, info))
                    continue
                self._remove(path)
                if info.isreg():
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(tar.extractfile(info), out, _CHUNK)
                elif info.issym():
                    os.symlink(info.linkname, path)
                elif info.islnk():
                    target = self._join(_clean_member(info.linkname))
                    if not os.path.lexists(target):
                        raise ImageError(f"{where}: hard link {name} to missing "
                                         f"{info.linkname}")
                    os.link(target, path, follow_symlinks=False)
                    continue  # a hard link shares its target's metadata
                elif info.isfifo():
                    os.mkfifo(path, 0o600)
                elif info.ischr() or info.isblk():
                    if not self.is_root:
                        continue  # only root may create device nodes
                    kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                    os.mknod(path, kind | 0o600, os.makedev(info.devmajor, info.devminor))
                else:
                    continue
                self._set_metadata(path, info)
            for path, info in reversed(dirs):  # deepest first, after children are written
                self._set_metadata(path, info)
        except (tarfile.TarError, EOFError) as exc:
            raise ImageError(f"{where}: corrupt layer tar: {exc}") from None

    def _set_metadata(self, path: str, info: tarfile.TarInfo) -> None:
        if self.is_root:
            os.lchown(path, info.uid, info.gid)
        if not info.issym():
            os.chmod(path, info.mode & 0o7777)
        os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)


# --------------------------------------------------------------------------------------------
# local image store


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """An image in an :class:`ImageStore`.

    ``id`` is the config digest; ``refs`` its fully qualified references (empty for an
    image imported without a name); ``manifest_digest``; ``config`` the image config
    document; ``rootfs`` the absolute path of its unpacked root filesystem (shared by every
    image with the same layer stack; read-only by convention: runtimes must not write to
    it); ``size`` the sum of its layer blob sizes in bytes; ``platform`` like
    ``"linux/amd64"``."""

    id: str
    refs: tuple[str, ...]
    manifest_digest: str
    config: dict
    rootfs: str
    size: int
    platform: str

    def _runtime(self, key: str) -> Any:
        return (self.config.get("config") or {}).get(key)

    @property
    def entrypoint(self) -> list[str]:
        """The image's ``Entrypoint`` (empty list when unset)."""
        return list(self._runtime("Entrypoint") or [])

    @property
    def cmd(self) -> list[str]:
        """The image's ``Cmd`` (empty list when unset)."""
        return list(self._runtime("Cmd") or [])

    @property
    def env(self) -> list[str]:
        """The image's ``Env`` as ``NAME=value`` strings."""
        return list(self._runtime("Env") or [])

    @property
    def working_dir(self) -> str:
        """The image's ``WorkingDir``, ``/`` when unset."""
        return self._runtime("WorkingDir") or "/"

    @property
    def user(self) -> str:
        """The image's ``User`` (empty string when unset)."""
        return self._runtime("User") or ""


class ImageStore:
    """A local, containerd-free image store in directory ``root``.

    Layout (the store is itself a valid OCI image layout, readable by OCI tools)::

        root/oci-layout
        root/index.json            one manifest descriptor per reference, annotated with
                                   org.opencontainers.image.ref.name and the rootfs chain ID
        root/blobs/sha256/<hex>    manifests, configs and layer blobs, content-addressed
        root/rootfs/<chain hex>/   an unpacked root filesystem per layer stack
        root/.lock                 flock(2) serializing writers, in and across processes

    Writers take an exclusive lock; a root filesystem is unpacked into a temporary directory
    and renamed into place, so readers never see a partial one. When unpacking as root,
    file ownership is kept; otherwise files belong to the caller and device nodes are
    skipped. Extended attributes (file capabilities, SELinux labels) are not kept."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.abspath(os.fspath(root))

    # -- internals

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self._path("blobs", "sha256"), exist_ok=True)
        os.makedirs(self._path("rootfs"), exist_ok=True)
        os.makedirs(self._path("tmp"), exist_ok=True)
        with open(self._path(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not os.path.exists(self._path("oci-layout")):
                    self._write_atomic("oci-layout",
                                       _canonical_json({"imageLayoutVersion": "1.0.0"}))
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_atomic(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _load_index(self) -> list[dict]:
        try:
            with open(self._path("index.json"), "rb") as f:
                index = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ImageError(f"{self._path('index.json')}: unreadable: {exc}") from None
        return list(index.get("manifests") or [])

    def _save_index(self, entries: list[dict]) -> None:
        self._write_atomic("index.json", _canonical_json(
            {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": entries}))

    def _blob(self, digest: str) -> str:
        return self._path("blobs", "sha256", digest[7:])

    def _read_blob_json(self, digest: str) -> dict:
        with open(self._blob(digest), "rb") as f:
            return json.loads(f.read())

    def _put_blob(self, digest: str, data: bytes) -> None:
        if _sha256(data) != digest:
            raise ImageError(f"blob {digest} does not match its content")
        if not os.path.exists(self._blob(digest)):
            self._write_atomic(os.path.join("blobs", "sha256", digest[7:]), data)

    def _stored(self, entry: dict, refs: tuple[str, ...]) -> StoredImage:
        manifest = self._read_blob_json(entry["digest"])
        config_digest = manifest["config"]["digest"]
        config = self._read_blob_json(config_digest)
        rootfs = self._path("rootfs", entry["annotations"][_ANNOTATION_ROOTFS])
        size = sum(layer["size"] for layer in manifest["layers"])
        return StoredImage(config_digest, refs, entry["digest"], config, rootfs, size,
                           _platform_text(config))

    def _entries_by_manifest(self) -> dict[str, tuple[dict, list[str]]]:
        out: dict[str, tuple[dict, list[str]]] = {}
        for entry in self._load_index():
            ref = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
            slot = out.setdefault(entry["digest"], (entry, []))
            if ref:
                slot[1].append(ref)
        return out

    # -- public

    def list(self) -> list[StoredImage]:
        """Every image in the store, one per manifest, with all its references."""
        return [self._stored(entry, tuple(refs))
                for entry, refs in self._entries_by_manifest().values()]

    def get(self, ref: str) -> StoredImage | None:
        """The image named ``ref`` (normalized first), or whose image ID, manifest digest or
        unique ID prefix (at least 12 hex digits) is ``ref``; None when there is none."""
        images = self.list()
        for image in images:
            if ref in (image.id, image.manifest_digest):
                return image
        hex_prefix = ref[7:] if ref.startswith("sha256:") else ref
        if re.fullmatch(r"[0-9a-f]{12,64}", hex_prefix):
            found = [i for i in images if i.id[7:].startswith(hex_prefix)]
            if len(found) == 1:
                return found[0]
        try:
            full = normalize_ref(ref)
        except ImageError:
            return None
        return next((image for image in images if full in image.refs), None)

    def import_tar(self, path: str | os.PathLike, progress: Progress | None = None
                   ) -> list[StoredImage]:
        """Import every image in the tar at ``path`` that matches this machine's OS and
        architecture (an image for another platform is an :class:`ImageError` when the tar
        holds nothing runnable here); return the imported images.

        Manifests and configs are checked by :func:`read_image_tar`; each layer is checked
        (digest, size, diff ID) while it is unpacked, and a mismatch aborts the import
        leaving the store as it was. A reference that already names another image is moved
        to the new one (like ``docker load``). Layer stacks already unpacked are not
        unpacked again. ``progress`` is called with ``total`` the tar's size in bytes and
        ``done`` advancing as layer data is unpacked, ending with ``done == total``."""
        path = os.fspath(path)
        info = read_image_tar(path, verify_layers=False)
        host = host_platform()
        wanted = [i for i in info.images
                  if i.config.get("os", "linux") == host["os"]
                  and i.config.get("architecture", host["architecture"]) == host["architecture"]]
        if not wanted:
            raise ImageError(f"{path}: no image for {host['os']}/{host['architecture']} "
                             f"(found {', '.join(i.platform for i in info.images)})")
        with self._locked(), tarfile.open(path, "r:*") as tar:
            members = _index_members(tar)
            todo = {}
            for image in wanted:
                if not os.path.isdir(self._path("rootfs", image.chain_id[7:])):
                    todo.setdefault(image.chain_id, image)
            total = os.path.getsize(path)
            layer_bytes = sum(la.size for image in todo.values() for la in image.layers)
            done = [0]

            def advance(n: int) -> None:  # layer bytes read, scaled to the file's size
                done[0] += n
                _report(progress, min(total, done[0] * total // max(layer_bytes, 1)), total)

            _report(progress, 0, total)
            for image in todo.values():
                self._unpack(tar, members, path, image, advance)
            for image in wanted:  # stacks unpacked before may still lack some layer blobs
                for layer in image.layers:
                    if not os.path.exists(self._blob(layer.digest)):
                        self._copy_blob(tar, members, path, layer)
            entries = self._load_index()
            for image in wanted:
                self._put_blob(image.config_digest, _open_member(
                    tar, members, image.config_member, path).read(_MAX_JSON))
                if image.manifest_member is None:  # synthesized for a docker archive
                    manifest_bytes = _canonical_json(image.manifest)
                else:
                    manifest_bytes = _open_member(tar, members, image.manifest_member,
                                                  path).read(_MAX_JSON)
                self._put_blob(image.manifest_digest, manifest_bytes)
                entries = self._add_entries(entries, image, len(manifest_bytes))
            self._save_index(entries)
            self._gc(entries)
            _report(progress, total, total)
        by_manifest = self._entries_by_manifest()
        return [self._stored(by_manifest[i.manifest_digest][0],
                             tuple(by_manifest[i.manifest_digest][1])) for i in wanted]

    @staticmethod
    def _add_entries(entries: list[dict], image: ReadImage, manifest_size: int) -> list[dict]:
        """Index entries after adding ``image``: its references move to it; an image that
        loses its last reference stays, unnamed (like docker's dangling images), until
        :meth:`remove` deletes it."""
        def ref_of(entry: dict) -> str | None:
            return (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)

        base = {"mediaType": MEDIA_OCI_MANIFEST, "digest": image.manifest_digest,
                "size": manifest_size, "platform": _platform_dict(image.config),
                "annotations": {_ANNOTATION_ROOTFS: image.chain_id[7:]}}
        moved = [e for e in entries
                 if ref_of(e) in image.refs and e["digest"] != image.manifest_digest]
        out = [e for e in entries if ref_of(e) not in image.refs
               and not (e["digest"] == image.manifest_digest and ref_of(e) is None)]
        for old in moved:
            if not any(e["digest"] == old["digest"] for e in out):
                orphan = {**old, "annotations": {
                    k: v for k, v in old["annotations"].items() if k != ANNOTATION_REF_NAME}}
                out.append(orphan)
        for ref in image.refs:
            out.append({**base, "annotations": {**base["annotations"],
                                                ANNOTATION_REF_NAME: ref}})
        if not any(e["digest"] == image.manifest_digest for e in out):
            out.append(base)
        return out

    def _copy_blob(self, tar, members, path, layer: Layer) -> None:
        f = _open_member(tar, members, layer.member, path)
        fd, tmp = tempfile.mkstemp(dir=self._path("tmp"))
        try:
            with os.fdopen(fd, "wb") as out:
                hashed = _HashingReader(f, tee=out)
                hashed.drain()
            if hashed.digest != layer.digest:
                raise ImageError(f"{path}: layer {layer.member} is corrupt: digest "
                                 f"{hashed.digest}, expected {layer.digest}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._blob(layer.digest))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _unpack(self, tar, members, path: str, image: ReadImage,
                advance: Callable[[int], None]) -> None:
        staging = tempfile.mkdtemp(dir=self._path("tmp"), prefix="rootfs-")
        os.chmod(staging, 0o755)
        blob_tmps: list[tuple[str, str]] = []
        try:
            unpacker = _Unpacker(staging)
            for layer in image.layers:
                where = f"{path}: layer {layer.member}"
                f = _open_member(tar, members, layer.member, path)
                keep = not os.path.exists(self._blob(layer.digest))
                tee = None
                if keep:
                    fd, blob_tmp = tempfile.mkstemp(dir=self._path("tmp"))
                    tee = os.fdopen(fd, "wb")
                    blob_tmps.append((blob_tmp, layer.digest))
                try:
                    compressed = _HashingReader(f, tee=tee, on_read=advance)
                    head = compressed.read(4)
                    compression = _sniff_compression(head)
                    plain = _HashingReader(_Decompressor(
                        _Prefixed(head, compressed), compression, where))
                    try:
                        unpacker.apply(plain, where)
                        plain.drain()
                        compressed.drain()
                    except ImageError:
                        raise
                    except (tarfile.TarError, EOFError, zlib.error) as exc:
                        raise ImageError(f"{where}: corrupt: {exc}") from None
                finally:
                    if tee is not None:
                        tee.close()
                if compressed.digest != layer.digest or compressed.size != layer.size:
                    raise ImageError(f"{where} is corrupt: digest {compressed.digest} "
                                     f"({compressed.size} bytes), expected {layer.digest} "
                                     f"({layer.size} bytes){_diff_id_note(layer)}")
                if plain.digest != layer.diff_id:
                    raise ImageError(f"{where} is corrupt: uncompressed digest "
                                     f"{plain.digest} does not match the config's diff ID "
                                     f"{layer.diff_id}")
            for blob_tmp, digest in blob_tmps:
                os.chmod(blob_tmp, 0o644)
                os.replace(blob_tmp, self._blob(digest))
            blob_tmps.clear()
            os.rename(staging, self._path("rootfs", image.chain_id[7:]))
        except BaseException:
            _force_rmtree(staging)
            raise
        finally:
            for blob_tmp, _ in blob_tmps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(blob_tmp)

    def remove(self, ref: str) -> list[str]:
        """Remove a reference, or (given an image ID or manifest digest) every reference of
        that image; then delete blobs and root filesystems no remaining image uses. Returns
        the removed references (the image ID for an unnamed image); an empty list when
        nothing matched. The caller must not remove an image a running container uses."""
        with self._locked():
            entries = self._load_index()
            image = self.get(ref)
            if image is None:
                return []
            full = None
            if ref not in (image.id, image.manifest_digest) and not re.fullmatch(
                    r"(sha256:)?[0-9a-f]{12,64}", ref):
                full = normalize_ref(ref)
            removed, kept = [], []
            for entry in entries:
                entry_ref = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
                hit = entry["digest"] == image.manifest_digest and (
                    full is None or entry_ref == full)
                if hit:
                    removed.append(entry_ref or image.id)
                else:
                    kept.append(entry)
            self._save_index(kept)
            self._gc(kept)
            return removed

    def _gc(self, entries: list[dict]) -> None:
        keep_blobs, keep_rootfs = set(), set()
        for entry in entries:
            keep_blobs.add(entry["digest"][7:])
            manifest = self._read_blob_json(entry["digest"])
            keep_blobs.add(manifest["config"]["digest"][7:])
            keep_blobs.update(layer["digest"][7:] for layer in manifest["layers"])
            keep_rootfs.add(entry["annotations"][_ANNOTATION_ROOTFS])
        for name in os.listdir(self._path("blobs", "sha256")):
            if name not in keep_blobs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path("blobs", "sha256", name))
        for name in os.listdir(self._path("rootfs")):
            if name not in keep_rootfs:
                _force_rmtree(self._path("rootfs", name))
        for name in os.listdir(self._path("tmp")):  # left by a crashed import
            _force_rmtree(self._path("tmp", name))


class _Prefixed:
    """Re-serve ``head`` (already read for sniffing) before the rest of ``raw``."""

    def __init__(self, head: bytes, raw: Any):
        self.head = head
        self.raw = raw

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                out, self.head = self.head + self.raw.read(), b""
                return out
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.raw.read(size)


def _platform_dict(config: dict) -> dict:
    out = {"architecture": config.get("architecture", ""), "os": config.get("os", "")}
    if config.get("variant"):
        out["variant"] = config["variant"]
    return out


def _force_rmtree(path: str) -> None:
    """Remove a tree even when it holds directories without write permission."""
    def onerror(func, failed, exc_info):
        if isinstance(exc_info[1], FileNotFoundError):
            return
        if isinstance(exc_info[1], PermissionError):
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(failed), 0o700)
                if os.path.isdir(failed) and not os.path.islink(failed):
                    os.chmod(failed, 0o700)
                    shutil.rmtree(failed, onerror=onerror)
                else:
                    os.unlink(failed)
                return
        raise exc_info[1]

    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=onerror)
        else:
            os.unlink(path)


def import_image_to_dir(tar: str | os.PathLike, store_dir: str | os.PathLike,
                        progress: Progress | None = None) -> list[StoredImage]:
    """Import the image tar ``tar`` (OCI layout or docker-archive) into the local image
    store at ``store_dir`` (created if missing) and return the imported images; shortcut
    for ``ImageStore(store_dir).import_tar(tar, progress)``. See :class:`ImageStore` for
    the store's layout and :meth:`ImageStore.import_tar` for checks and progress."""
    return ImageStore(store_dir).import_tar(tar, progress)
