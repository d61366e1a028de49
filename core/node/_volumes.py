"""Pod volumes on the node, under ``DATA/pods/<uid>/``::

    volumes/<name>/          emptyDir (a tmpfs for medium: Memory), configMap, secret,
                             downwardAPI, projected: files written atomically (a ``..data``
                             link swapped to a new timestamped directory, like the kubelet)
    volumes/kube-api-access/ the service-account directory the agent adds (see below)
    etc-hosts                the pod's /etc/hosts
    containers/<name>/<attempt>.termination-log

hostPath volumes are the host path itself (checked or created per ``type``). Other volume
types (persistentVolumeClaim, csi, ...) are not supported yet: the pod stays
ContainerCreating with a FailedMount message.

**Service-account token.** A real signed token is future work. Until then a projected
``serviceAccountToken`` source, and the directory the agent mounts at
``/var/run/secrets/kubernetes.io/serviceaccount`` for pods that do not opt out, hold a
*placeholder*: a JWT-shaped string with ``"alg": "none"`` and an empty signature whose claims
say who it stands for. No authenticator accepts it. ``namespace`` and ``ca.crt`` beside it
are real (``ca.crt`` from the agent's ``caFile`` setting, else the ``kube-root-ca.crt``
ConfigMap, else empty).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import pathlib
import shutil
import stat
import time

from pilothouse.interfaces import runtime as rt
from pilothouse.node._env import ConfigError, Lookup, expand, field_value, \
    resource_field_value

__all__ = ["SA_MOUNT_PATH", "VolumeError", "VolumeManager", "atomic_write_dir",
           "placeholder_token"]

SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SA_VOLUME = "kube-api-access"
_DATA = "..data"
_API_DATA_SOURCES = ("configMap", "secret", "downwardAPI", "projected")
_SUPPORTED = ("emptyDir", "hostPath") + _API_DATA_SOURCES


class VolumeError(Exception):
    """A volume cannot be set up (yet): the message says which and why."""


def placeholder_token(namespace: str, service_account: str, pod: dict,
                      audience: str = "", expiration: int = 3600) -> str:
    """An unsigned, JWT-shaped placeholder for a service-account token (see the module
    docstring). It carries the claims a real token would, ``"alg": "none"`` and an empty
    signature, so it is readable by tools and refused by every authenticator."""
    def b64(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()
                                        ).decode().rstrip("=")
    now = int(time.time())
    meta = pod.get("metadata") or {}
    claims = {
        "iss": "pilothouse.io/placeholder-token",
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": [audience or "https://kubernetes.default.svc"],
        "iat": now, "nbf": now, "exp": now + max(600, expiration),
        "kubernetes.io": {"namespace": namespace,
                          "pod": {"name": meta.get("name", ""), "uid": meta.get("uid", "")},
                          "serviceaccount": {"name": service_account}},
        "pilothouse.io/placeholder": "unsigned placeholder; real tokens come later",
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'pilothouse-placeholder'})}." \
           f"{b64(claims)}."


def _read_payload(directory: pathlib.Path) -> dict[str, tuple[bytes, int]] | None:
    data = directory / _DATA
    if not data.is_symlink():
        return None
    out = {}
    root = directory / os.readlink(data)
    for path in root.rglob("*"):
        if path.is_file():
            out[str(path.relative_to(root))] = (path.read_bytes(),
                                                stat.S_IMODE(path.stat().st_mode))
    return out


def atomic_write_dir(directory: str | os.PathLike, payload: dict[str, tuple[bytes, int]]
                     ) -> bool:
    """Make ``directory`` hold exactly ``payload`` (relative path → (content, mode)),
    switching all files at once: the files live in a timestamped subdirectory that the
    ``..data`` link points to, and each top-level name is a link through ``..data``. Readers
    never see a mix of old and new files. Returns False when nothing changed."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if _read_payload(d) == payload:
        return False
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = d / stamp
    fresh.mkdir()
    for rel, (content, mode) in payload.items():
        target = fresh / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, mode)
    old = os.readlink(d / _DATA) if (d / _DATA).is_symlink() else None
    tmp = d / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp)
    os.replace(tmp, d / _DATA)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in tops:
        link = d / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"{_DATA}/{top}")
    for entry in d.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops:
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
    if old and old != stamp:
        shutil.rmtree(d / old, ignore_errors=True)
    return True


def _mounted(path: pathlib.Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    out = []
    with contextlib.suppress(OSError):
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].encode().decode("unicode_escape")
                if point == str(path) or point.startswith(prefix):
                    out.append(point)
    return sorted(out, key=lambda p: p.count("/"), reverse=True)


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace").strip()


def _items(data: dict[str, str | bytes], items: list | None, default_mode: int,
           optional: bool, what: str) -> dict[str, tuple[bytes, int]]:
    def as_bytes(v):
        return v if isinstance(v, bytes) else v.encode()
    if not items:
        return {k: (as_bytes(v), default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{what}: configuration key {key!r} not found")
        out[item.get("path") or key] = (as_bytes(data[key]), item.get("mode") or default_mode)
    return out


def _check_rel(path: str) -> str:
    parts = pathlib.PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts:
        raise VolumeError(f"invalid path {path!r}: must be relative without '..'")
    return path


class VolumeManager:
    """Sets up and tears down the volumes of the pods on this node."""

    def __init__(self, data_dir: str | os.PathLike, lookup: Lookup, *, ca_file: str = "",
                 service_account_volume: bool = True, mounts_supported: bool = True):
        self.root = pathlib.Path(data_dir) / "pods"
        self.lookup = lookup
        self.ca_file = ca_file
        self.service_account_volume = service_account_volume
        self.mounts_supported = mounts_supported

    def pod_dir(self, uid: str) -> pathlib.Path:
        return self.root / uid

    def volume_dir(self, uid: str, name: str) -> pathlib.Path:
        return self.pod_dir(uid) / "volumes" / name

    def pod_uids_on_disk(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return [p.name for p in self.root.iterdir() if p.is_dir()]
        return []

    # -- API data ---------------------------------------------------------------------------

    async def _object(self, kind: str, namespace: str, name: str, optional: bool,
                      volume: str) -> dict | None:
        obj = await self.lookup(kind, namespace, name)
        if obj is None and not optional:
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume}" : '
                              f'{kind.lower()} "{name}" not found')
        return obj

    @staticmethod
    def _data(obj: dict, kind: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if kind == "Secret":
            for k, v in (obj.get("data") or {}).items():
                out[k] = base64.b64decode(v)
            for k, v in (obj.get("stringData") or {}).items():
                out[k] = v.encode()
        else:
            for k, v in (obj.get("data") or {}).items():
                out[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                out[k] = base64.b64decode(v)
        return out

    async def _ca_bundle(self, namespace: str) -> bytes:
        if self.ca_file:
            with contextlib.suppress(OSError):
                return pathlib.Path(self.ca_file).read_bytes()
        obj = await self.lookup("ConfigMap", namespace, "kube-root-ca.crt")
        return ((obj or {}).get("data") or {}).get("ca.crt", "").encode()

    async def _downward(self, pod: dict, items: list, default_mode: int, host_ip: str,
                        pod_ips: tuple[str, ...], allocatable) -> dict[str, tuple[bytes, int]]:
        out = {}
        for item in items or []:
            path = _check_rel(item.get("path", ""))
            try:
                if item.get("fieldRef"):
                    value = field_value(pod, item["fieldRef"].get("fieldPath", ""),
                                        host_ip=host_ip, pod_ips=pod_ips)
                elif item.get("resourceFieldRef"):
                    ref = item["resourceFieldRef"]
                    container = next((c for c in (pod.get("spec") or {}).get("containers", [])
                                      if c.get("name") == ref.get("containerName")), {})
                    value = resource_field_value(pod, container, ref, allocatable or {})
                else:
                    continue
            except ConfigError as exc:
                raise VolumeError(str(exc)) from None
            out[path] = (value.encode(), item.get("mode") or default_mode)
        return out

    async def _projected(self, pod: dict, vol: dict, host_ip, pod_ips, allocatable
                         ) -> dict[str, tuple[bytes, int]]:
        spec = vol["projected"]
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        mode = spec.get("defaultMode") or 0o644
        out: dict[str, tuple[bytes, int]] = {}
        for src in spec.get("sources") or []:
            if src.get("configMap") is not None or src.get("secret") is not None:
                kind = "ConfigMap" if src.get("configMap") is not None else "Secret"
                ref = src.get("configMap") or src.get("secret")
                optional = bool(ref.get("optional"))
                if kind == "ConfigMap" and ref.get("name") == "kube-root-ca.crt":
                    obj = await self.lookup(kind, ns, ref["name"]) or \
                        {"data": {"ca.crt": (await self._ca_bundle(ns)).decode()}}
                else:
                    obj = await self._object(kind, ns, ref.get("name", ""), optional,
                                             vol["name"])
                if obj is not None:
                    out.update(_items(self._data(obj, kind), ref.get("items"), mode, optional,
                                      f'volume "{vol["name"]}"'))
            elif src.get("downwardAPI") is not None:
                out.update(await self._downward(pod, src["downwardAPI"].get("items"), mode,
                                                host_ip, pod_ips, allocatable))
            elif src.get("serviceAccountToken") is not None:
                t = src["serviceAccountToken"]
                sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
                token = placeholder_token(ns, sa, pod, t.get("audience") or "",
                                          int(t.get("expirationSeconds") or 3600))
                out[_check_rel(t.get("path") or "token")] = (token.encode(), mode)
        return out

    # -- set-up -----------------------------------------------------------------------------

    async def setup(self, pod: dict, *, host_ip: str = "", pod_ips: tuple[str, ...] = (),
                    allocatable=None, refresh: bool = True) -> dict[str, str]:
        """Prepare every volume of ``pod``; return volume name → host path. With
        ``refresh`` the API-backed volumes are rewritten from current API data (a no-op
        when unchanged). Raises :class:`VolumeError`."""
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        uid, ns = meta["uid"], meta.get("namespace", "default")
        paths: dict[str, str] = {}
        for vol in spec.get("volumes") or []:
            name = vol.get("name", "")
            target = self.volume_dir(uid, name)
            if vol.get("hostPath") is not None:
                paths[name] = await self._host_path(vol["hostPath"], name)
                continue
            if vol.get("emptyDir") is not None:
                await self._empty_dir(target, vol["emptyDir"])
                paths[name] = str(target)
                continue
            source = next((s for s in _API_DATA_SOURCES if vol.get(s) is not None), None)
            if source is None:
                kinds = [k for k, v in vol.items() if k != "name" and v is not None]
                raise VolumeError(f'volume "{name}": volume type {", ".join(kinds) or "?"} '
                                  f'is not supported by this node agent')
            paths[name] = str(target)
            if target.joinpath(_DATA).is_symlink() and not refresh:
                continue
            if source in ("configMap", "secret"):
                ref = vol[source]
                kind = "ConfigMap" if source == "configMap" else "Secret"
                obj_name = ref.get("name") if kind == "ConfigMap" else ref.get("secretName")
                optional = bool(ref.get("optional"))
                obj = await self._object(kind, ns, obj_name or "", optional, name)
                payload = _items(self._data(obj, kind) if obj else {}, ref.get("items"),
                                 ref.get("defaultMode") or 0o644, optional, f'volume "{name}"')
            elif source == "downwardAPI":
                payload = await self._downward(pod, vol["downwardAPI"].get("items"),
                                               vol["downwardAPI"].get("defaultMode") or 0o644,
                                               host_ip, pod_ips, allocatable)
            else:
                payload = await self._projected(pod, vol, host_ip, pod_ips, allocatable)
            await asyncio.to_thread(atomic_write_dir, target, payload)
        if self.wants_service_account_volume(pod):
            target = self.volume_dir(uid, _SA_VOLUME)
            if refresh or not target.joinpath(_DATA).is_symlink():
                sa = spec.get("serviceAccountName") or "default"
                payload = {"token": (placeholder_token(ns, sa, pod).encode(), 0o644),
                           "namespace": (ns.encode(), 0o644),
                           "ca.crt": (await self._ca_bundle(ns), 0o644)}
                if not target.joinpath(_DATA).is_symlink() or \
                        _read_payload(target).keys() != payload.keys():
                    await asyncio.to_thread(atomic_write_dir, target, payload)
            paths[_SA_VOLUME] = str(target)
        return paths

    def wants_service_account_volume(self, pod: dict) -> bool:
        spec = pod.get("spec") or {}
        if not self.service_account_volume or spec.get("automountServiceAccountToken") is False:
            return False
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for m in c.get("volumeMounts") or []:
                if (m.get("mountPath") or "").rstrip("/") == SA_MOUNT_PATH:
                    return False
        return True

    async def _host_path(self, hp: dict, name: str) -> str:
        path = hp.get("path", "")
        kind = hp.get("type") or ""
        p = pathlib.Path(path)
        if not p.is_absolute():
            raise VolumeError(f'volume "{name}": hostPath {path!r} is not absolute')
        checks = {"Directory": p.is_dir, "File": p.is_file,
                  "Socket": lambda: p.exists() and stat.S_ISSOCK(p.stat().st_mode),
                  "CharDevice": lambda: p.exists() and stat.S_ISCHR(p.stat().st_mode),
                  "BlockDevice": lambda: p.exists() and stat.S_ISBLK(p.stat().st_mode)}
        if kind == "DirectoryOrCreate":
            if not p.exists():
                p.mkdir(parents=True, mode=0o755)
            elif not p.is_dir():
                raise VolumeError(f'hostPath type check failed: {path} is not a directory')
        elif kind == "FileOrCreate":
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch(mode=0o644)
            elif not p.is_file():
                raise VolumeError(f'hostPath type check failed: {path} is not a file')
        elif kind in checks:
            if not checks[kind]():
                raise VolumeError(f'hostPath type check failed: {path} is not a '
                                  f'{kind[0].lower() + kind[1:]}')
        elif kind:
            raise VolumeError(f'volume "{name}": unknown hostPath type {kind!r}')
        return path

    async def _empty_dir(self, target: pathlib.Path, spec: dict) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if spec.get("medium") != "Memory" or str(target) in _mounted(target):
            return
        options = "mode=0777"
        if spec.get("sizeLimit"):
            from pilothouse.model.quantity import Quantity
            options += f",size={Quantity(str(spec['sizeLimit'])).value()}"
        code, out = await _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target))
        if code != 0:
            raise VolumeError(f"cannot mount a tmpfs for emptyDir {target.name}: {out}")

    def write_hosts(self, pod: dict, pod_ip: str) -> str:
        """Write the pod's /etc/hosts (the kubelet's managed file) and return its path."""
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        from pilothouse.node._podspec import hostname_of
        lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
                 "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
                 "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
        if pod_ip:
            host = hostname_of(pod)
            if spec.get("subdomain"):
                ns = meta.get("namespace", "default")
                lines.append(f"{pod_ip}\t{host}.{spec['subdomain']}.{ns}.svc.cluster.local\t{host}")
            else:
                lines.append(f"{pod_ip}\t{host}")
        aliases = spec.get("hostAliases") or []
        if aliases:
            lines += ["", "# Entries added by HostAliases."]
            for alias in aliases:
                lines.append(f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or []))
        path = self.pod_dir(meta["uid"]) / "etc-hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        return str(path)

    def termination_log(self, uid: str, container: str, attempt: int) -> pathlib.Path:
        path = self.pod_dir(uid) / "containers" / container / f"{attempt}.termination-log"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o666)
            os.chmod(path, 0o666)
        return path

    def mounts(self, pod: dict, container: dict, paths: dict[str, str],
               env: dict[str, str], *, hosts_file: str = "",
               termination_log: str = "") -> list[rt.Mount]:
        """The container's bind mounts: its volumeMounts (with subPath/subPathExpr),
        /etc/hosts, the termination-message file and the service-account directory."""
        spec = pod.get("spec") or {}
        read_only_types = {v["name"] for v in spec.get("volumes") or []
                           if any(v.get(s) is not None for s in _API_DATA_SOURCES)}
        out = []
        taken = set()
        for m in container.get("volumeMounts") or []:
            name = m.get("name", "")
            if name not in paths:
                raise VolumeError(f'volumeMount {name!r}: no such volume in the pod')
            host = paths[name]
            sub = m.get("subPath") or ""
            if m.get("subPathExpr"):
                sub = expand(m["subPathExpr"], env)
            if sub:
                _check_rel(sub)
                base = os.path.realpath(host)
                joined = os.path.realpath(os.path.join(host, sub))
                if joined != base and not joined.startswith(base + "/"):
                    raise VolumeError(f"subPath {sub!r} leaves volume {name!r}")
                if not os.path.exists(joined):
                    os.makedirs(joined, exist_ok=True)
                host = joined
            propagation = {"HostToContainer": rt.MountPropagation.HOST_TO_CONTAINER,
                           "Bidirectional": rt.MountPropagation.BIDIRECTIONAL}.get(
                m.get("mountPropagation") or "", rt.MountPropagation.PRIVATE)
            path = m.get("mountPath", "")
            taken.add(path.rstrip("/"))
            out.append(rt.Mount(container_path=path, host_path=host,
                                readonly=bool(m.get("readOnly")) or name in read_only_types,
                                propagation=propagation))
        if hosts_file and "/etc/hosts" not in taken:
            out.append(rt.Mount(container_path="/etc/hosts", host_path=hosts_file))
        if termination_log:
            path = container.get("terminationMessagePath") or "/dev/termination-log"
            if path not in taken:
                out.append(rt.Mount(container_path=path, host_path=termination_log))
        if _SA_VOLUME in paths and SA_MOUNT_PATH not in taken:
            out.append(rt.Mount(container_path=SA_MOUNT_PATH, host_path=paths[_SA_VOLUME],
                                readonly=True))
        return out

    async def teardown(self, uid: str) -> None:
        """Unmount and remove everything of the pod. Idempotent."""
        d = self.pod_dir(uid)
        for point in _mounted(d):
            await _run("umount", "-l", point)
        await asyncio.to_thread(shutil.rmtree, d, True)
