"""The API server: an aiohttp application serving the Kubernetes REST API over a store driver.

Request path: authentication (configured authenticators, in order) → authorization
(configured authorizers, in order) → the verb's handler in :mod:`pilothouse.apiserver.rest`,
which runs admission (mutating, then validating, in configured order) around validation and
writes through the store driver with compare-and-swap. Lists with ``resourceVersion=0`` and
every watch are served by the watch caches (one store watch per resource).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pilothouse.interfaces import admission as adm
from pilothouse.interfaces import auth
from pilothouse.interfaces.store import KeyExists, KeyNotFound, Store
from pilothouse.model import defaults, errors, meta, selectors, validation
from pilothouse.model.kinds import Kind, KindRegistry, builtin_registry

from pilothouse.apiserver import _json, crd, discovery, managedfields, patch_strategies, rest
from pilothouse.apiserver import patch as patching
from pilothouse.apiserver import request as rq
from pilothouse.apiserver import tables
from pilothouse.apiserver.proxy import NodeProxy
from pilothouse.apiserver.schemas import SchemaSet
from pilothouse.apiserver.storage import ResourceStorage, api_json
from pilothouse.apiserver.watchcache import WatchCache

log = logging.getLogger("pilothouse.apiserver")

SERVICE_CIDR = "10.96.0.0/12"
NODE_PORTS = (30000, 32767)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Context:
    """One request being served: what it asks for and who asks."""

    def __init__(self, server: "APIServer", request: web.Request, info: rq.RequestInfo,
                 user: auth.UserInfo):
        self.server, self.request, self.info, self.user = server, request, info, user
        self.query = request.query
        self.kind: Kind = None  # type: ignore[assignment]
        self.storage: ResourceStorage = None  # type: ignore[assignment]
        self.wants_table = rq.wants_table(request.headers.get("Accept"))

    async def read_body(self) -> bytes:
        if self.request.content_length and self.request.content_length > rq.MAX_BODY:
            raise errors.RequestEntityTooLarge(f"limit is {rq.MAX_BODY} bytes")
        try:
            return await self.request.read()
        except web.HTTPRequestEntityTooLarge:
            raise errors.RequestEntityTooLarge(f"limit is {rq.MAX_BODY} bytes") from None

    @property
    def field_manager(self) -> str:
        manager = self.query.get("fieldManager")
        if manager is not None:
            if not manager or len(manager) > 128:
                raise errors.BadRequest("fieldManager must be 1 to 128 characters long")
            return manager
        return managedfields.default_manager(self.request.headers.get("User-Agent", ""))

    def respond_object(self, obj: dict, status: int = 200,
                       warnings: list[str] | None = None) -> web.Response:
        headers = {"Warning": ", ".join(f'299 - {json.dumps(w)}' for w in warnings)} \
            if warnings else None
        if self.wants_table:
            body = tables.table(self.kind.group, self.kind.kind, [obj],
                                obj["metadata"].get("resourceVersion", ""),
                                include_object=self.query.get("includeObject", "Metadata"))
            return rest.json_response(body, status, headers)
        return web.Response(body=api_json(obj), status=status, content_type="application/json",
                            headers=headers)


class APIServer:
    """Serves the Kubernetes API for one store. ``plugins`` is the
    :class:`~pilothouse.plugins.LoadedPlugins` of the config (its authentication,
    authorization and admission pipelines and its hook manager); None runs with no admission
    and allows everything (for tests)."""

    def __init__(self, store: Store, plugins=None, registry: KindRegistry | None = None, *,
                 watch_window: int = 50_000):
        self.store, self.plugins = store, plugins
        self.watch_window = watch_window
        self.registry = registry or builtin_registry()
        self.pm = plugins.pm if plugins else None
        if self.pm:
            self.pm.hook.pilothouse_register_kinds(registry=self.registry)
        self.schemas = SchemaSet()
        self.openapi = discovery.OpenAPI(self.registry, self.schemas)
        self._storages: dict[tuple[str, str], ResourceStorage] = {}
        self._caches: dict[tuple[str, str], WatchCache] = {}
        self._cache_lock = asyncio.Lock()
        self.host = "127.0.0.1:6443"
        # ``app`` carries the start-up, shutdown and clean-up signals (and serves the API when
        # run by aiohttp's AppRunner); :class:`APIRunner` serves it without the router.
        self.app = web.Application(client_max_size=rq.MAX_BODY + 1)
        self.app.router.add_route("*", "/{tail:.*}", self.handle,
                                  expect_handler=_expect_in_handler)
        self.node_proxy: Callable | None = NodeProxy(self)  # logs, exec, attach, port-forward
        self.crds = crd.CRDManager(self)

    # -- plumbing ---------------------------------------------------------------------------
    def storage(self, kind: Kind) -> ResourceStorage:
        key = (kind.group, kind.plural)
        if key not in self._storages:
            self._storages[key] = ResourceStorage(self.store, kind)
        return self._storages[key]

    async def cache(self, kind: Kind) -> WatchCache:
        key = (kind.group, kind.plural)
        cache = self._caches.get(key)
        if cache is None:
            async with self._cache_lock:
                cache = self._caches.get(key)
                if cache is None:
                    cache = WatchCache(self.storage(kind), window=self.watch_window)
                    self._caches[key] = cache
        await cache.start()
        return cache

    async def start(self) -> None:
        """Start a watch cache per resource (so every list's resourceVersion can be watched
        from), then create the system namespaces and the ``kubernetes`` Service if missing."""
        await asyncio.gather(*(self.cache(kind) for kind in self.registry))
        await self.crds.start()
        ns_kind = self.registry.get("", "v1", "Namespace")
        for name in SYSTEM_NAMESPACES:
            try:
                await self.create_object(None, ns_kind, {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            except errors.AlreadyExists:
                pass
        svc_kind = self.registry.get("", "v1", "Service")
        try:
            await self.create_object(None, svc_kind, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}})
        except errors.AlreadyExists:
            pass
        if self.pm:
            self.pm.hook.pilothouse_store_opened(store=self.store, plugin_name=(
                self.plugins.drivers["store"].ref.name if "store" in self.plugins.drivers
                else "?"))

    async def stop(self) -> None:
        for cache in list(self._caches.values()):
            await cache.stop()

    @staticmethod
    def now() -> str:
        return meta.now_rfc3339()

    # -- request entry ----------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if "Expect" in request.headers:
            await _expect_continue(request)
        try:
            info = rq.parse_path(request.method, request.path, request.query)
            user = await self.authenticate(request)
            await self.authorize(user, info)
            ctx = Context(self, request, info, user)
            if not info.resource_request:
                return await self.non_resource(ctx)
            return await self.resource(ctx)
        except errors.StatusError as exc:
            return self.error(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: report it as 500 without leaking internals
            log.exception("internal error serving %s %s", request.method, request.path)
            return self.error(errors.InternalError(f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def error(exc: errors.StatusError) -> web.Response:
        headers = {"Retry-After": str(exc.retry_after_seconds)} \
            if exc.retry_after_seconds else None
        return rest.json_response(exc.to_status(), exc.code, headers)

    async def authenticate(self, request: web.Request) -> auth.UserInfo:
        user = None
        for lp in (self.plugins.pipelines["authentication"] if self.plugins else []):
            try:
                user = await lp.instance.authenticate(request.headers, None)
            except auth.AuthenticationFailed as exc:
                raise errors.Unauthorized(str(exc)) from None
            if user is not None:
                break
        user = user or auth.ANONYMOUS
        if self.pm:
            hook = self.pm.hook.pilothouse_request_authenticated
            if hook.get_hookimpls():  # a hook call costs microseconds even with no listener
                hook(user=user, method=request.method, path=request.path)
        return user

    async def authorize(self, user: auth.UserInfo, info: rq.RequestInfo) -> None:
        if not self.plugins:
            return
        attrs = auth.RequestAttributes(
            verb=info.verb, resource_request=info.resource_request, api_group=info.group,
            api_version=info.version, resource=info.resource, subresource=info.subresource,
            namespace=info.namespace, name=info.name, path=info.path)
        decision, reason = auth.Decision.NO_OPINION, "no authorizer allowed the request"
        for lp in self.plugins.pipelines["authorization"]:
            try:
                decision, reason = await lp.instance.authorize(user, attrs)
            except Exception as exc:
                decision, reason = auth.Decision.DENY, f"authorizer {lp.ref.name} failed: {exc}"
            if decision is not auth.Decision.NO_OPINION:
                break
        allowed = decision is auth.Decision.ALLOW
        hook = self.pm.hook.pilothouse_authorization_decided
        if hook.get_hookimpls():
            hook(user=user, attributes=attrs, allowed=allowed, reason=reason)
        if not allowed:
            what = (f'{info.resource}{"/" + info.subresource if info.subresource else ""}'
                    if info.resource_request else info.path)
            where = f' in the namespace "{info.namespace}"' if info.namespace else ""
            raise errors.StatusError(
                f'{info.resource or info.path} "{info.name}" is forbidden: User '
                f'"{user.username}" cannot {info.verb} resource "{what}" in API group '
                f'"{info.group}"{where}: {reason}' if info.resource_request else
                f'forbidden: User "{user.username}" cannot {info.verb} path "{info.path}"',
                code=403, reason="Forbidden", name=info.name, group=info.group,
                kind=info.resource)

    async def non_resource(self, ctx: Context) -> web.StreamResponse:
        path = ctx.request.path.rstrip("/") or "/"
        accept = ctx.request.headers.get("Accept")
        if path == "/version":
            return rest.json_response(discovery.version_info())
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path in ("/api", "/apis"):
            if rq.wants_aggregated_discovery(accept):
                body = discovery.aggregated(self.registry, core=path == "/api")
                return web.Response(body=json.dumps(body).encode(),
                                    headers={"Content-Type": discovery.AGGREGATED_TYPE})
            if path == "/api":
                return rest.json_response(discovery.api_versions(
                    ctx.request.host or self.host))
            return rest.json_response(discovery.api_group_list(self.registry))
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            if parts[1] not in self.registry.groups().get("", []):
                raise errors.NotFound("", path)
            return rest.json_response(discovery.resource_list(self.registry, "", parts[1]))
        if parts[0] == "apis" and len(parts) == 2:
            group = discovery.api_group(self.registry, parts[1])
            if group is None:
                raise errors.NotFound("", path)
            return rest.json_response(group)
        if parts[0] == "apis" and len(parts) == 3:
            if parts[2] not in self.registry.groups().get(parts[1], []):
                raise errors.NotFound("", path)
            return rest.json_response(discovery.resource_list(self.registry, parts[1],
                                                              parts[2]))
        if path == "/openapi/v3":
            return rest.json_response(self.openapi.index())
        if path.startswith("/openapi/v3/"):
            found = self.openapi.document(path[len("/openapi/v3/"):])
            if found is None:
                raise errors.NotFound("", path)
            headers = {"Cache-Control": "public, immutable"} if "hash" in ctx.query else None
            return rest.json_response(found[0], headers=headers)
        raise errors.StatusError(f"the server could not find the requested resource "
                                 f"({ctx.request.method} {path})", code=404, reason="NotFound")

    async def resource(self, ctx: Context) -> web.StreamResponse:
        info = ctx.info
        if info.group == "" and info.resource == "bindings" and info.verb == "create":
            return await self._bindings(ctx)
        kind = self.registry.get_resource(info.group, info.version, info.resource)
        if kind is None:
            raise errors.StatusError("the server could not find the requested resource",
                                     code=404, reason="NotFound")
        if info.namespace and not kind.namespaced and info.resource != "namespaces":
            raise errors.StatusError("the server could not find the requested resource",
                                     code=404, reason="NotFound")
        if info.subresource and kind.subresource(info.subresource) is None:
            raise errors.StatusError("the server could not find the requested resource",
                                     code=404, reason="NotFound")
        ctx.kind, ctx.storage = kind, self.storage(kind)
        if info.subresource in ("log", "exec", "attach", "portforward", "proxy"):
            if self.node_proxy is None:
                raise errors.ServiceUnavailable(f"{info.subresource} is not available: no node "
                                                f"streaming proxy is configured")
            return await self.node_proxy(ctx)
        verb = info.verb
        handler = _VERB_HANDLERS.get(verb)
        if handler is None:
            raise errors.MethodNotAllowed(kind.plural, verb, group=kind.group)
        if verb not in kind.verbs and not info.subresource:
            raise errors.MethodNotAllowed(kind.plural, verb, group=kind.group)
        return await handler(ctx)

    async def _bindings(self, ctx: Context) -> web.StreamResponse:
        """POST /api/v1/namespaces/{ns}/bindings: the older form of pods/{name}/binding."""
        body, _ = rq.decode_body(await ctx.read_body(), ctx.request.headers.get("Content-Type"))
        name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
        if not name:
            raise errors.Invalid("Binding", "", [errors.FieldError.required("metadata.name")])
        ctx.kind = self.registry.get("", "v1", "Pod")
        ctx.storage = self.storage(ctx.kind)
        ctx.info.name, ctx.info.subresource = name, "binding"
        return await rest.bind(ctx, body)

    # -- object pipeline ----------------------------------------------------------------------
    def check_fields(self, kind: Kind, obj: dict, mode: str,
                     unchanged: dict | None = None) -> list[str]:
        """Unknown and mistyped fields. Strict: 400 listing them; Warn: warnings (and the
        fields are dropped); Ignore: dropped silently. Type errors are always 400.
        ``unchanged``: the stored object ``obj`` was made from (see SchemaSet.check)."""
        unknown, problems = self.schemas.check(kind.group, kind.version, kind.kind, obj,
                                               ignore=(), unchanged=unchanged)
        if problems:
            raise errors.BadRequest(
                f"{kind.kind} in version \"{kind.version}\" cannot be handled as a {kind.kind}: "
                + "; ".join(str(p) for p in problems),
                causes=[p.to_cause() for p in problems])
        if not unknown:
            return []
        messages = [f'unknown field "{path}"' for path, _ in unknown]
        if mode == "Strict":
            raise errors.BadRequest(
                f"strict decoding error: {', '.join(messages)}",
                causes=[{"reason": "FieldValueInvalid", "message": m, "field": p}
                        for m, (p, _) in zip(messages, unknown)])
        for _, parts in unknown:
            _drop_path(obj, parts)
        return messages if mode == "Warn" else []

    async def admit(self, ctx: Context | None, phase: str, operation: str, kind: Kind,
                    obj: dict | None, old: dict | None, dry_run: bool,
                    subresource: str = "") -> None:
        if not self.plugins or not self.plugins.pipelines["admission"]:
            return
        source = obj if obj is not None else old
        req = adm.AdmissionRequest(
            operation=operation, group=kind.group, version=kind.version, kind=kind.kind,
            resource=kind.plural, subresource=subresource,
            namespace=source["metadata"].get("namespace", ""),
            name=source["metadata"].get("name", ""), object=obj, old_object=old,
            user=ctx.user if ctx else auth.UserInfo("system:apiserver",
                                                    groups=("system:masters",)),
            dry_run=dry_run)
        for lp in self.plugins.pipelines["admission"]:
            method = getattr(lp.instance, phase)
            try:
                denied = await method(req)
            except Exception as exc:
                log.exception("admission plugin %s failed", lp.ref.name)
                raise errors.InternalError(f"admission plugin {lp.ref.name!r} failed: "
                                           f"{type(exc).__name__}: {exc}") from None
            hook = self.pm.hook.pilothouse_admission_decided
            if hook.get_hookimpls():
                hook(request=req, plugin_name=lp.ref.name, phase=phase, allowed=denied is None,
                     message=denied.message if denied else "")
            if denied is not None:
                raise errors.StatusError(
                    denied.message, code=denied.code, reason=denied.reason,
                    name=req.name, group=kind.group, kind=kind.plural,
                    causes=[{"reason": "FieldValueInvalid", "message": m, "field": f}
                            for f, m in denied.causes])

    def _owns_writes(self) -> bool:
        """Whether only this server's own code changes the objects of writes (no admission
        plugins): then a write may hand its object over to the storage as the stored object
        (see ResourceStorage.create), as it holds JSON values only, and an update may share
        the stored object's unchanged values (see rest._may_share)."""
        return not (self.plugins is not None and self.plugins.pipelines["admission"])

    def validate(self, kind: Kind, obj: dict, old: dict | None = None) -> None:
        problems = validation.validate(kind, obj) if old is None else \
            validation.validate_update(kind, obj, old)
        problems += self.crds.validate(kind, obj)
        if problems:
            raise errors.Invalid(kind.kind, obj["metadata"].get("name", ""), problems,
                                 group=kind.group)

    async def create_object(self, ctx: Context | None, kind: Kind, obj: dict,
                            dry_run: bool = False, track_fields: bool = True,
                            private: bool = False) -> dict:
        """Create ``obj`` (changed in place when ``private``: the caller hands it over and
        shares it with nothing; else a copy is made)."""
        if not private:
            obj = _json.copy(obj)
        generated = not obj["metadata"].get("name") and bool(obj["metadata"].get("generateName"))
        meta.prepare_for_create(obj, kind)
        defaults.apply_defaults(kind, obj)
        self.crds.default(kind, obj)
        if self.crds.is_custom(kind) and kind.has_status() and not obj.get("status"):
            obj.pop("status", None)  # custom resources start without a status
        if kind == self.crds.crd_kind:
            meta.add_finalizer(obj, "customresourcecleanup.apiextensions.k8s.io")
        await self.admit(ctx, "mutate", "CREATE", kind, obj, None, dry_run)
        self.validate(kind, obj)
        await self.admit(ctx, "validate", "CREATE", kind, obj, None, dry_run)
        if ctx is not None and track_fields:
            obj = managedfields.update_managed_fields(
                None, obj, ctx.field_manager, api_version=kind.api_version,
                strategy=patch_strategies.strategy_for(kind.group, kind.kind))
        if kind.kind == "Service" and kind.group == "":
            await self._allocate_service(obj, dry_run)
        if dry_run:
            return obj
        for attempt in range(8):
            try:
                return await self.storage(kind).create(obj, owned=self._owns_writes())
            except errors.AlreadyExists:
                if not generated or attempt == 7:
                    raise
                obj["metadata"]["name"] = meta.generate_name(obj["metadata"]["generateName"])
        raise AssertionError("unreachable")

    async def update_object(self, ctx: Context | None, kind: Kind, new: dict, current: dict,
                            dry_run: bool = False, subresource: str = "",
                            track_fields: bool = True, private: bool = False) -> dict:
        """Write ``new`` over ``current`` (compare-and-swap on its resourceVersion). ``new``
        is changed in place; ``current`` only read. ``private``: ``new`` shares nothing with
        anything else, but for values it leaves as ``current`` has them, which it may share
        with ``current`` (see rest._may_share and
        :func:`pilothouse.model.meta.prepare_for_update`)."""
        bound_status = new.get("status") if subresource == "binding" else None
        meta.prepare_for_update(new, current, kind,
                                subresource="status" if subresource == "status" else "",
                                new_is_private=private)
        if bound_status is not None:
            new["status"] = bound_status
        # A namespace's spec.finalizers change only through namespaces/{name}/finalize, as in
        # Kubernetes; defaulting adds "kubernetes" on create only (it would otherwise put it
        # back on every write and a namespace could never finish deleting).
        ns_finalizers = _namespace_spec_finalizers(
            kind, new if subresource == "finalize" else current)
        defaults.apply_defaults(kind, new)
        if ns_finalizers is not None:
            new.setdefault("spec", {})["finalizers"] = ns_finalizers
        self.crds.default(kind, new)
        await self.admit(ctx, "mutate", "UPDATE", kind, new, current, dry_run, subresource)
        # the spec rules of an update do not apply to status writes and to the binding, which
        # is the one way to set a pod's nodeName
        self.validate(kind, new, None if subresource in ("status", "binding") else current)
        await self.admit(ctx, "validate", "UPDATE", kind, new, current, dry_run, subresource)
        if ctx is not None and track_fields:
            new = managedfields.update_managed_fields(
                current, new, ctx.field_manager, api_version=kind.api_version,
                strategy=patch_strategies.strategy_for(kind.group, kind.kind),
                subresource=subresource if subresource in ("status", "scale") else "")
        if _same(new, current):
            return current
        storage = self.storage(kind)
        expected = int(current["metadata"]["resourceVersion"])
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and not _namespace_finalizers(kind, new):
            if dry_run:
                return new
            return await storage.delete(new["metadata"].get("namespace", ""),
                                        new["metadata"]["name"], expected_revision=expected)
        if dry_run:
            return new
        return await storage.update(new, expected, owned=private and self._owns_writes())

    async def delete_object(self, ctx: Context | None, kind: Kind, namespace: str, name: str,
                            options: dict, dry_run: bool) -> tuple[dict, bool] | None:
        storage = self.storage(kind)
        for _ in range(rest.CAS_RETRIES):
            current = await storage.get(namespace, name)
            cmeta = current["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != cmeta.get("uid"):
                raise errors.Conflict(kind.plural, name, group=kind.group,
                                      why=f"Precondition failed: UID in precondition: "
                                          f"{pre['uid']}, UID in object meta: {cmeta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != cmeta["resourceVersion"]:
                raise errors.Conflict(kind.plural, name, group=kind.group,
                                      why=f"Precondition failed: ResourceVersion in precondition"
                                          f": {pre['resourceVersion']}, ResourceVersion in object "
                                          f"meta: {cmeta['resourceVersion']}")
            await self.admit(ctx, "validate", "DELETE", kind, None, current, dry_run)
            finalizers = list(cmeta.get("finalizers") or [])
            policy = options.get("propagationPolicy")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            grace = 0
            if kind.kind == "Pod" and kind.group == "":
                spec = current.get("spec") or {}
                grace = options.get("gracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                if not spec.get("nodeName") or (current.get("status") or {}).get("phase") in (
                        "Succeeded", "Failed"):
                    grace = 0
            terminating = bool(cmeta.get("deletionTimestamp"))
            ns_pending = _namespace_finalizers(kind, current)
            if terminating:
                shorter = grace < (cmeta.get("deletionGracePeriodSeconds") or 0)
                if grace > 0 or cmeta.get("finalizers") or ns_pending:
                    if not shorter:
                        return current, False
                    pending = True
                else:
                    pending = False  # a forced (grace 0) delete of a terminating pod
            else:
                pending = bool(finalizers) or grace > 0 or ns_pending
            if pending:
                new = _json.copy(current)
                nmeta = new["metadata"]
                stamp = datetime.datetime.now(datetime.timezone.utc) + \
                    datetime.timedelta(seconds=grace)
                nmeta["deletionTimestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
                nmeta["deletionGracePeriodSeconds"] = grace
                if finalizers:
                    nmeta["finalizers"] = finalizers
                if kind.kind == "Namespace" and kind.group == "":
                    new.setdefault("status", {})["phase"] = "Terminating"
                if dry_run:
                    return new, False
                try:
                    stored = await storage.update(new, int(cmeta["resourceVersion"]))
                except errors.Conflict:
                    continue
                return stored, False
            if dry_run:
                return current, True
            try:
                deleted = await storage.delete(namespace, name,
                                               expected_revision=int(cmeta["resourceVersion"]))
            except errors.Conflict:
                continue
            if kind.kind == "Service" and kind.group == "":
                await self._release_service(current)
            return deleted, True
        raise errors.Conflict(kind.plural, name, group=kind.group)

    # -- patches and apply --------------------------------------------------------------------
    def strategic_merge(self, kind: Kind, obj: dict, patch: dict) -> dict:
        if self.crds.is_custom(kind):
            raise errors.StatusError(
                "strategic merge patch is not supported for custom resources; use a JSON merge "
                "patch (--type=merge) or a JSON patch", code=415, reason="UnsupportedMediaType")
        return patching.apply_strategic_merge_patch(
            obj, patch, patch_strategies.strategy_for(kind.group, kind.kind))

    async def apply(self, ctx: Context, kind: Kind, body, field_validation: str,
                    dry_run: bool) -> web.Response:
        info = ctx.info
        if "fieldManager" not in ctx.query:
            raise errors.BadRequest("PATCH requests of type application/apply-patch+yaml "
                                    "must have a fieldManager")
        force = rq.parse_bool(ctx.query.get("force"), "force")
        applied = rest.check_type(ctx, kind, body)
        rest.object_name(ctx, applied)
        warnings = self.check_fields(kind, applied, field_validation)
        strategy = patch_strategies.strategy_for(kind.group, kind.kind)
        for _ in range(rest.CAS_RETRIES):
            try:
                current = await self.storage(kind).get(info.namespace, info.name)
            except errors.NotFound:
                current = None
            new, conflicts = managedfields.server_side_apply(
                current, applied, ctx.field_manager, api_version=kind.api_version,
                force=force, strategies=strategy, subresource=info.subresource)
            if conflicts:
                raise errors.StatusError(
                    managedfields.conflict_message(conflicts), code=409, reason="Conflict",
                    name=info.name, group=kind.group, kind=kind.plural,
                    causes=managedfields.conflict_causes(conflicts))
            try:
                if current is None:
                    new.setdefault("metadata", {}).pop("resourceVersion", None)
                    stored = await self.create_object(ctx, kind, new, dry_run,
                                                      track_fields=False)
                    return ctx.respond_object(stored, status=201, warnings=warnings)
                stored = await self.update_object(ctx, kind, new, current, dry_run,
                                                  info.subresource, track_fields=False)
                return ctx.respond_object(stored, warnings=warnings)
            except (errors.Conflict, errors.AlreadyExists):
                continue
        raise errors.Conflict(kind.plural, info.name, group=kind.group)

    # -- helpers for handlers ---------------------------------------------------------------
    def selector_filter(self, kind: Kind, label_selector: str | None,
                        field_selector: str | None) -> Callable[[dict], bool] | None:
        label = selectors.parse_label_selector(label_selector) if label_selector else None
        field = selectors.parse_field_selector(field_selector) if field_selector else None
        if field is not None:
            field.check(kind)
        if (label is None or label.empty()) and (field is None or field.empty()):
            return None

        def match(obj: dict) -> bool:
            if label is not None and not label.matches(
                    (obj.get("metadata") or {}).get("labels") or {}):
                return False
            return field is None or field.matches(obj, kind)
        return match

    def scale_of(self, kind: Kind, obj: dict) -> dict:
        m = obj["metadata"]
        sel = (obj.get("spec") or {}).get("selector")
        selector = selectors.LabelSelector.from_dict(sel).to_string() \
            if isinstance(sel, dict) else ""
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                               "creationTimestamp") if k in m},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector}}

    # -- services: cluster IPs and node ports ---------------------------------------------------
    async def _reserve(self, key: str, owner: str) -> bool:
        try:
            await self.store.create(key, owner.encode())
            return True
        except KeyExists:
            return False

    async def _allocate_service(self, svc: dict, dry_run: bool) -> None:
        spec = svc.setdefault("spec", {})
        owner = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
        net = ipaddress.ip_network(SERVICE_CIDR)
        if spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None":
            wanted = spec.get("clusterIP")
            if wanted:
                try:
                    ip = ipaddress.ip_address(wanted)
                except ValueError:
                    ip = None
                if ip is None or ip not in net:
                    raise errors.Invalid("Service", svc["metadata"]["name"], [
                        errors.FieldError.invalid("spec.clusterIPs[0]", wanted,
                                                  f"failed to allocate IP {wanted}: the "
                                                  f"provided IP is not in the valid range "
                                                  f"({SERVICE_CIDR})")])
                if not dry_run and not await self._reserve(f"/ranges/serviceips/{ip}", owner):
                    raise errors.Invalid("Service", svc["metadata"]["name"], [
                        errors.FieldError.invalid("spec.clusterIPs[0]", wanted,
                                                  "provided IP is already allocated")])
            else:
                hosts = net.num_addresses - 2
                for _ in range(64):
                    ip = net.network_address + random.randint(2, hosts)
                    if dry_run or await self._reserve(f"/ranges/serviceips/{ip}", owner):
                        break
                else:
                    raise errors.ServiceUnavailable("no cluster IP available")
                spec["clusterIP"] = str(ip)
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    if not dry_run and not await self._reserve(
                            f"/ranges/servicenodeports/{port['nodePort']}", owner):
                        raise errors.Invalid("Service", svc["metadata"]["name"], [
                            errors.FieldError.invalid("spec.ports[].nodePort", port["nodePort"],
                                                      "provided port is already allocated")])
                    continue
                for _ in range(64):
                    candidate = random.randint(*NODE_PORTS)
                    if dry_run or await self._reserve(
                            f"/ranges/servicenodeports/{candidate}", owner):
                        port["nodePort"] = candidate
                        break

    async def _release_service(self, svc: dict) -> None:
        spec = svc.get("spec") or {}
        keys = [f"/ranges/serviceips/{ip}" for ip in spec.get("clusterIPs") or [] if ip != "None"]
        keys += [f"/ranges/servicenodeports/{p['nodePort']}" for p in spec.get("ports") or []
                 if p.get("nodePort")]
        for key in keys:
            try:
                await self.store.delete(key)
            except KeyNotFound:
                pass


class APIRunner(web.BaseRunner):
    """Serves an :class:`APIServer` on aiohttp's low-level server: each request goes straight
    to :meth:`APIServer.handle` (there is one route, so no router, match info or middleware
    layer), as a :class:`aiohttp.web.BaseRequest` limited to the API's body size. The
    server's ``app`` gets its start-up, shutdown and clean-up signals as aiohttp's AppRunner
    would send them. ``kwargs`` go to :class:`aiohttp.web.Server` (``access_log=None``...)."""

    def __init__(self, api: APIServer, **kwargs: Any):
        super().__init__(handle_signals=False, **kwargs)
        self._api = api

    async def shutdown(self) -> None:
        await self._api.app.shutdown()

    async def _make_server(self) -> web.Server:
        app = self._api.app
        app.on_startup.freeze()
        await app.startup()
        app.freeze()
        loop = asyncio.get_running_loop()
        limit = rq.MAX_BODY + 1

        def make_request(message, payload, protocol, writer, task) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop,
                                   client_max_size=limit)
        return web.Server(self._api.handle, request_factory=make_request, **self._kwargs)

    async def _cleanup_server(self) -> None:
        await self._api.app.cleanup()


async def _expect_in_handler(request: web.BaseRequest) -> None:
    """The route's Expect handler: :meth:`APIServer.handle` answers Expect itself."""


async def _expect_continue(request: web.BaseRequest) -> None:
    """``Expect: 100-continue`` as aiohttp's router answers it: the interim response on
    HTTP/1.1, 417 for any other expectation."""
    expect = request.headers.get("Expect", "")
    if request.version == (1, 1):
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not the body
    await request.writer.drain()


_VERB_HANDLERS = {"get": rest.get, "list": rest.list_, "watch": rest.watch,
                  "create": rest.create, "update": rest.update, "patch": rest.patch,
                  "delete": rest.delete, "deletecollection": rest.delete_collection}


def _same(new: dict, current: dict) -> bool:
    """A write that changes nothing but managedFields timestamps is a no-op (no new
    resourceVersion), as in Kubernetes."""
    def strip(obj):
        m = {k: v for k, v in obj.get("metadata", {}).items()
             if k not in ("resourceVersion", "managedFields")}
        return {**obj, "metadata": m}
    return strip(new) == strip(current)


def _namespace_finalizers(kind: Kind, obj: dict) -> bool:
    return kind.kind == "Namespace" and kind.group == "" and \
        bool((obj.get("spec") or {}).get("finalizers"))


def _namespace_spec_finalizers(kind: Kind, source: dict) -> list | None:
    """For a Namespace, the spec.finalizers an update keeps (from ``source``); else None."""
    if kind.kind != "Namespace" or kind.group != "":
        return None
    return list((source.get("spec") or {}).get("finalizers") or [])


def _drop_path(obj: Any, parts: tuple) -> None:
    """Remove the field at ``parts`` (keys and list indexes): unknown-field pruning. The
    objects and lists on the way are copied first (one level each), so that values ``obj``
    shares with a stored object (a patch's result, see rest._may_share) stay as they are."""
    for part in parts[:-1]:
        child = obj[part]
        child = obj[part] = dict(child) if type(child) is dict else list(child)
        obj = child
    obj.pop(parts[-1], None)
