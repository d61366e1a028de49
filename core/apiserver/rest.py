"""The REST verbs on resources: get, list, watch, create, update, patch, delete, and the
status, scale and binding subresources.

Every write goes: decode → check kind/namespace → unknown fields (fieldValidation) →
metadata → defaults → mutating admission → validation → validating admission → managed
fields → store (compare-and-swap), or nowhere for ``dryRun=All``. Errors are
:mod:`pilothouse.model.errors` and reach the client as ``Status`` objects.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
from typing import TYPE_CHECKING

from aiohttp import web

from pilothouse.apiserver import _json
from pilothouse.apiserver import patch as patching
from pilothouse.apiserver import request as rq
from pilothouse.apiserver import tables
from pilothouse.apiserver.storage import decode
from pilothouse.apiserver.watchcache import Event
from pilothouse.model import errors
from pilothouse.model.kinds import Kind

if TYPE_CHECKING:
    from pilothouse.apiserver.server import Context

CAS_RETRIES = 8


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=_json.dumps(body), status=status,
                        content_type="application/json", headers=headers)


# ----------------------------------------------------------------------------- helpers


def encode_continue(revision: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        raise errors.BadRequest(f"continue key is not valid: {token!r}") from None


def field_validation(ctx: "Context") -> str:
    value = ctx.query.get("fieldValidation", "Warn") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(f"fieldValidation parameter unsupported: {value}; "
                                f"allowed: Ignore, Warn, Strict")
    return value


def dry_run(ctx: "Context") -> bool:
    values = ctx.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.BadRequest(f"Invalid dryRun parameter {v!r}: only 'All' is supported")
    return bool(values)


def check_type(ctx: "Context", kind: Kind, obj, expect_kind: str | None = None) -> dict:
    """The body must be an object of the URL's kind, in the URL's namespace."""
    expect_kind = expect_kind or kind.kind
    if not isinstance(obj, dict):
        raise errors.BadRequest(f"the body must be a JSON object of kind {expect_kind}")
    api_version, body_kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(obj.get("metadata", {}), dict):
        raise errors.BadRequest("metadata must be an object")
    if body_kind is not None and body_kind != expect_kind:
        raise errors.BadRequest(f"the kind {body_kind!r} of the body does not match the "
                                f"resource's kind {expect_kind!r} ({ctx.info.path})")
    want_av = kind.api_version
    if api_version is not None and api_version != want_av:
        raise errors.BadRequest(f"the apiVersion {api_version!r} of the body does not match "
                                f"{want_av!r} ({ctx.info.path})")
    obj["apiVersion"], obj["kind"] = want_av, expect_kind
    meta = obj.setdefault("metadata", {})
    if kind.namespaced:
        ns = meta.get("namespace")
        if ns and ctx.info.namespace and ns != ctx.info.namespace:
            raise errors.BadRequest("the namespace of the provided object does not match the "
                                    "namespace sent on the request")
        if ctx.info.namespace:
            meta["namespace"] = ctx.info.namespace
    else:
        meta.pop("namespace", None)
    return obj


def object_name(ctx: "Context", obj: dict) -> None:
    """For PUT/PATCH the URL names the object; the body must agree."""
    meta = obj["metadata"]
    if meta.get("name") and meta["name"] != ctx.info.name:
        raise errors.BadRequest(f"the name of the object ({meta['name']}) does not match the "
                                f"name on the URL ({ctx.info.name})")
    meta["name"] = ctx.info.name


# ----------------------------------------------------------------------------- read


async def get(ctx: "Context") -> web.Response:
    obj = await ctx.storage.get(ctx.info.namespace, ctx.info.name)
    if ctx.info.subresource == "scale":
        return json_response(ctx.server.scale_of(ctx.kind, obj))
    return ctx.respond_object(obj)


async def list_(ctx: "Context") -> web.StreamResponse:
    q = ctx.query
    match = ctx.server.selector_filter(ctx.kind, q.get("labelSelector"), q.get("fieldSelector"))
    limit = rq.parse_int(q, "limit")
    rv, token = q.get("resourceVersion", ""), q.get("continue", "")
    rv_match = q.get("resourceVersionMatch", "")
    if rv_match not in ("", "NotOlderThan", "Exact"):
        raise errors.BadRequest(f"resourceVersionMatch must be NotOlderThan or Exact, "
                                f"got {rv_match!r}")
    namespace = ctx.info.namespace
    cont = ""
    if token:
        if rv:
            raise errors.BadRequest("specifying resource version is not allowed when using "
                                    "continue")
        revision, start = decode_continue(token)
        items, revision, cont = await _store_page(ctx, namespace, match, limit, revision, start)
    elif rv and rv_match != "Exact" and (rv == "0" or rv_match == "NotOlderThan"):
        cache = await ctx.server.cache(ctx.kind)
        if rv != "0":
            await cache.wait_for(_rv(rv))
        items, revision = cache.snapshot(namespace, match), cache.revision
    else:
        revision = _rv(rv) if rv else 0
        items, revision, cont = await _store_page(ctx, namespace, match, limit, revision, None)
    if ctx.wants_table:
        return json_response(tables.table(ctx.kind.group, ctx.kind.kind, items, str(revision),
                                          cont, q.get("includeObject", "Metadata")))
    meta = {"resourceVersion": str(revision)}
    if cont:
        meta["continue"] = cont
    body = {"kind": ctx.kind.list_kind, "apiVersion": ctx.kind.api_version, "metadata": meta,
            "items": items}
    return json_response(body)


def _rv(rv: str) -> int:
    try:
        value = int(rv)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise errors.BadRequest(f"invalid resource version: {rv!r}") from None


async def _store_page(ctx, namespace, match, limit, revision, start):
    """One page from the store at one revision, filled up to ``limit`` despite filtering."""
    items: list[dict] = []
    while True:
        want = 0 if limit == 0 else max(limit - len(items), 1) * (1 if match is None else 2)
        result = await ctx.storage.list(namespace, revision=revision, limit=want,
                                        start_after=start)
        revision = result.revision
        for kv in result.items:
            obj = decode(kv)
            start = kv.key
            if match is None or match(obj):
                items.append(obj)
                if limit and len(items) == limit:
                    more = result.more or kv is not result.items[-1]
                    return items, revision, encode_continue(revision, start) if more else ""
        if not result.more:
            return items, revision, ""


async def watch(ctx: "Context") -> web.StreamResponse:
    q = ctx.query
    match = ctx.server.selector_filter(ctx.kind, q.get("labelSelector"), q.get("fieldSelector"))
    rv = q.get("resourceVersion", "")
    bookmarks = rq.parse_bool(q.get("allowWatchBookmarks"), "allowWatchBookmarks")
    initial_events = q.get("sendInitialEvents")
    timeout = rq.parse_int(q, "timeoutSeconds", default=random.randint(1800, 3600))
    send_initial = rq.parse_bool(initial_events, "sendInitialEvents") if initial_events else None
    if send_initial is not None:
        causes = []
        if q.get("resourceVersionMatch") != "NotOlderThan":
            causes.append(errors.FieldError.invalid(
                "resourceVersionMatch", q.get("resourceVersionMatch", ""),
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
        if send_initial and not bookmarks:
            causes.append(errors.FieldError.invalid(
                "allowWatchBookmarks", False,
                "sendInitialEvents requires setting allowWatchBookmarks to true"))
        if causes:
            raise errors.Invalid("ListOptions", "", causes, group="meta.k8s.io")
    cache = await ctx.server.cache(ctx.kind)
    initial = send_initial if send_initial is not None else rv in ("", "0")
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                        "Transfer-Encoding": "chunked"})
    await response.prepare(ctx.request)
    try:
        if send_initial and rv:
            await cache.wait_for(_rv(rv))
        watcher = cache.watch(0 if initial else _rv(rv or "0"), ctx.info.namespace, match,
                              initial=initial)
    except errors.StatusError as exc:
        await response.write(json.dumps({"type": "ERROR", "object": exc.to_status()}).encode()
                             + b"\n")
        return response
    table_cols = True

    def encode(event: Event) -> bytes:
        nonlocal table_cols
        if not ctx.wants_table:
            return event.json_line()
        obj = tables.table(ctx.kind.group, ctx.kind.kind, [event.obj],
                           event.obj["metadata"].get("resourceVersion", ""),
                           with_columns=table_cols)
        table_cols = False
        return _json.dumps({"type": event.type, "object": obj}) + b"\n"

    def bookmark(revision: int, annotations: dict | None = None) -> bytes:
        meta = {"resourceVersion": str(revision)}
        if annotations:
            meta["annotations"] = annotations
        return json.dumps({"type": "BOOKMARK", "object": {
            "kind": ctx.kind.kind, "apiVersion": ctx.kind.api_version,
            "metadata": meta}}).encode() + b"\n"

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_sent = watcher.after
    try:
        if send_initial:
            buf = []
            while not watcher.queue.empty():
                ev = watcher.queue.get_nowait()
                if ev is None:
                    return response
                buf.append(encode(ev))
                last_sent = ev.revision
            buf.append(bookmark(cache.revision if watcher.after == 0 else watcher.after,
                                {"k8s.io/initial-events-end": "true"}))
            await response.write(b"".join(buf))
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(min(remaining, 1.0)):  # cancellation-safe on 3.11
                    ev = await watcher.queue.get()
            except TimeoutError:
                if bookmarks and cache.revision > last_sent:
                    last_sent = cache.revision
                    await response.write(bookmark(last_sent))
                continue
            if ev is None:
                break
            chunk = [encode(ev)]
            while not watcher.queue.empty() and len(chunk) < 256:
                nxt = watcher.queue.get_nowait()
                if nxt is None:
                    await response.write(b"".join(chunk))
                    return response
                chunk.append(encode(nxt))
                ev = nxt
            last_sent = max(last_sent, ev.revision)
            await response.write(b"".join(chunk))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watcher.close()
    return response


# ----------------------------------------------------------------------------- write


async def create(ctx: "Context") -> web.Response:
    kind, info = ctx.kind, ctx.info
    body, _ = rq.decode_body(await ctx.read_body(), ctx.request.headers.get("Content-Type"))
    if info.subresource == "binding" and kind.kind == "Pod":
        return await bind(ctx, body)
    if info.subresource:
        raise errors.MethodNotAllowed(f"{kind.plural}/{info.subresource}", "create",
                                      group=kind.group)
    if info.name:
        raise errors.MethodNotAllowed(kind.plural, "create", group=kind.group)
    obj = check_type(ctx, kind, body)
    if kind.namespaced and not obj["metadata"].get("namespace"):
        raise errors.BadRequest("the namespace of the object is not set and the request "
                                "names no namespace")
    warnings = ctx.server.check_fields(kind, obj, field_validation(ctx))
    stored = await ctx.server.create_object(ctx, kind, obj, dry_run=dry_run(ctx),
                                            private=True)  # the decoded body: ours alone
    return ctx.respond_object(stored, status=201, warnings=warnings)


async def update(ctx: "Context") -> web.Response:
    kind, info = ctx.kind, ctx.info
    body, _ = rq.decode_body(await ctx.read_body(), ctx.request.headers.get("Content-Type"))
    if info.subresource == "scale":
        return await update_scale(ctx, lambda scale: body)
    obj = check_type(ctx, kind, body)
    object_name(ctx, obj)
    warnings = ctx.server.check_fields(kind, obj, field_validation(ctx))
    precondition = obj["metadata"].get("resourceVersion")
    stored = await _guaranteed_update(ctx, lambda current: (_json.copy(obj), precondition),
                                      info.subresource)
    return ctx.respond_object(stored, warnings=warnings)


async def patch(ctx: "Context") -> web.Response:
    kind, info = ctx.kind, ctx.info
    content_type = rq.media_type(ctx.request.headers.get("Content-Type"))
    if content_type not in rq.PATCH_TYPES:
        raise errors.UnsupportedMediaType(rq.PATCH_TYPES)
    body, _ = rq.decode_body(await ctx.read_body(), content_type, rq.PATCH_TYPES)
    dry = dry_run(ctx)
    fv = field_validation(ctx)
    if content_type == rq.APPLY_PATCH:
        return await ctx.server.apply(ctx, kind, body, fv, dry)
    if info.subresource == "scale":
        return await update_scale(ctx, lambda scale: _apply_patch(ctx, content_type, scale, body))
    precondition = _patch_precondition(content_type, body)
    warnings: list[str] = []

    share = content_type == rq.MERGE_PATCH and _may_share(ctx, kind)

    def build(current: dict) -> tuple[dict, str | None]:
        # the result shares nothing with ``current`` but what ``share`` allows
        patched = check_type(ctx, kind, _apply_patch(ctx, content_type, current, body,
                                                     share=share))
        object_name(ctx, patched)
        warnings[:] = ctx.server.check_fields(kind, patched, fv, unchanged=current)
        return patched, precondition
    stored = await _guaranteed_update(ctx, build, info.subresource)
    return ctx.respond_object(stored, warnings=warnings)


def _may_share(ctx: "Context", kind: Kind) -> bool:
    """Whether an update of ``kind`` may keep the stored object's own values where it does
    not change them (see :meth:`APIServer.update_object`'s ``private``): built-in kinds,
    whose defaulting leaves a defaulted object alone and whose unchanged fields the schema
    check does not walk, except Namespaces (their spec.finalizers are set on every write);
    and only without admission plugins (a mutating one may change any value of the new
    object, and the old one must not change with it)."""
    return ctx.server._owns_writes() and not ctx.server.crds.is_custom(kind) and \
        not (kind.group == "" and kind.kind == "Namespace")


async def _guaranteed_update(ctx: "Context", build, subresource: str, *,
                             conflict_resource: str = "") -> dict:
    """Read the object, ``build(current) -> (new, precondition)``, and write ``new`` with
    compare-and-swap on the revision read. ``new`` must share nothing with anything else
    (it is changed in place). A lost race is retried from a fresh read, unless
    the request named a resourceVersion (``precondition``): then it is the client's 409.

    As kube-apiserver's GuaranteedUpdate, the first attempt starts from the watch cache's
    copy of the object (see :func:`_cached`), which may be behind the store: only a write
    that the store accepts (its compare-and-swap proves the copy was current) ends there;
    anything else (a failed precondition, an error, a conflict, a write that changes
    nothing) is decided again from the store. ``conflict_resource`` names the resource in
    the 409 of a write that kept losing races (default: the kind's). For the kinds of
    :func:`_may_share`, ``new`` may hold ``current``'s own values where it leaves them
    unchanged: nothing on the write path changes those (they are the same JSON)."""
    kind, info = ctx.kind, ctx.info
    dry = dry_run(ctx)
    current = None if dry else _cached(ctx)
    if current is not None:
        try:
            new, precondition = build(current)
            if not precondition or precondition == current["metadata"]["resourceVersion"]:
                stored = await ctx.server.update_object(ctx, kind, new, current,
                                                        subresource=subresource, private=True)
                if stored is not current:  # written: the copy was the current object
                    return stored
        except errors.StatusError:
            pass
    for _ in range(CAS_RETRIES):
        current = await ctx.storage.get(info.namespace, info.name)
        new, precondition = build(current)
        if precondition and precondition != current["metadata"]["resourceVersion"]:
            raise errors.Conflict(kind.plural, info.name, group=kind.group)
        try:
            return await ctx.server.update_object(ctx, kind, new, current, dry_run=dry,
                                                  subresource=subresource, private=True)
        except errors.Conflict:
            if precondition:
                raise
    raise errors.Conflict(conflict_resource or kind.plural, info.name, group=kind.group)


def _cached(ctx: "Context") -> dict | None:
    """The watch cache's object named by the request, or None (no cache yet, not in it, or
    admission plugins configured: they get the old object and must not be able to change
    the cache's). The object is shared with the cache and with every list and watch event
    that holds it: it is only read (the update functions build a new object)."""
    server = ctx.server
    if server.plugins is not None and server.plugins.pipelines["admission"]:
        return None
    cache = server._caches.get((ctx.kind.group, ctx.kind.plural))
    if cache is None or not cache.ready:
        return None
    return cache.objects.get(ctx.storage.key(ctx.info.namespace, ctx.info.name))


def _patch_precondition(content_type: str, body) -> str | None:
    if isinstance(body, dict):
        rv = (body.get("metadata") or {}).get("resourceVersion")
        return str(rv) if rv else None
    if isinstance(body, list):
        for op in body:
            if isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" \
                    and op.get("op") in ("replace", "add", "test"):
                return str(op.get("value"))
    return None


def _apply_patch(ctx: "Context", content_type: str, obj: dict, body, *,
                 share: bool = False) -> dict:
    try:
        if content_type == rq.MERGE_PATCH:
            if not isinstance(body, dict):
                raise errors.BadRequest("a merge patch must be a JSON object")
            return patching.apply_merge_patch(obj, body, share=share)
        if content_type == rq.JSON_PATCH:
            if not isinstance(body, list):
                raise errors.BadRequest("a JSON patch must be a JSON array of operations")
            return patching.apply_json_patch(obj, body)
        if not isinstance(body, dict):
            raise errors.BadRequest("a strategic merge patch must be a JSON object")
        return ctx.server.strategic_merge(ctx.kind, obj, body)
    except patching.PatchError as exc:
        if exc.code == 400:
            raise errors.BadRequest(f"the patch is malformed: {exc.message}") from None
        raise errors.StatusError(f"the patch could not be applied: {exc.message}", code=422,
                                 reason="Invalid",
                                 causes=[{"reason": "FieldValueInvalid", "message": exc.message,
                                          "field": exc.field or ""}]) from None


async def update_scale(ctx: "Context", change) -> web.Response:
    kind, info = ctx.kind, ctx.info
    if kind.subresource("scale") is None:
        raise errors.NotFound(f"{kind.plural}/scale", info.name, group=kind.group)

    def build(current: dict) -> tuple[dict, str | None]:
        new_scale = change(copy.deepcopy(ctx.server.scale_of(kind, current)))
        if not isinstance(new_scale, dict):
            raise errors.BadRequest("the body must be a Scale object")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.Invalid("Scale", info.name, [errors.FieldError.invalid(
                "spec.replicas", replicas, "must be greater than or equal to 0")],
                group="autoscaling")
        new = _json.copy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        return new, (new_scale.get("metadata") or {}).get("resourceVersion")
    stored = await _guaranteed_update(ctx, build, "scale")
    return json_response(ctx.server.scale_of(kind, stored))


async def bind(ctx: "Context", body) -> web.Response:
    """POST pods/{name}/binding: assign a node, once (a second bind is a 409)."""
    info = ctx.info
    if not isinstance(body, dict) or not isinstance(body.get("target"), dict) \
            or not body["target"].get("name"):
        raise errors.Invalid("Binding", info.name, [errors.FieldError.required(
            "target.name")])
    node = body["target"]["name"]

    def build(current: dict) -> tuple[dict, None]:
        if current["metadata"].get("deletionTimestamp"):
            raise errors.Conflict("pods/binding", info.name,
                                  why="pod is being deleted, cannot be assigned to a host")
        assigned = (current.get("spec") or {}).get("nodeName")
        if assigned:
            raise errors.Conflict("pods/binding", info.name,
                                  why=f"pod {info.name} is already assigned to node {assigned!r}")
        # a new object, spec, status and metadata holding the stored pod's own values
        # when _may_share allows (nothing on the write path changes those), else a copy
        shared = _may_share(ctx, ctx.kind)
        new = dict(current) if shared else _json.copy(current)
        if shared:
            new["metadata"] = dict(current["metadata"])
        new["spec"] = {**(new.get("spec") or {}), "nodeName": node}
        status = new["status"] = dict(new.get("status") or {})
        conds = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True",
                      "lastTransitionTime": ctx.server.now()})
        status["conditions"] = conds
        return new, None
    await _guaranteed_update(ctx, build, "binding", conflict_resource="pods/binding")
    return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Success", "code": 201}, status=201)


async def delete(ctx: "Context") -> web.Response:
    kind, info = ctx.kind, ctx.info
    raw = await ctx.read_body()
    options = {}
    if raw.strip():
        options, _ = rq.decode_body(raw, ctx.request.headers.get("Content-Type"))
        if not isinstance(options, dict):
            raise errors.BadRequest("the body of a delete must be a DeleteOptions object")
    q = ctx.query
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = rq.parse_int(q, "gracePeriodSeconds")
    if rq.parse_bool(q.get("orphanDependents"), "orphanDependents") and \
            "propagationPolicy" not in options:
        options["propagationPolicy"] = "Orphan"
    policy = options.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise errors.Invalid("DeleteOptions", "", [errors.FieldError.not_supported(
            "propagationPolicy", policy, ["Foreground", "Background", "Orphan"])])
    dry = dry_run(ctx) or "All" in (options.get("dryRun") or [])
    result = await ctx.server.delete_object(ctx, kind, info.namespace, info.name, options, dry)
    if result is None:
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "details": {
                                  "name": info.name, "group": kind.group, "kind": kind.plural}})
    obj, finished = result
    if finished and kind.kind != "Pod":
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "details": {
                                  "name": info.name, "group": kind.group, "kind": kind.plural,
                                  "uid": obj["metadata"].get("uid", "")}})
    return ctx.respond_object(obj, status=200 if finished else 202)


async def delete_collection(ctx: "Context") -> web.Response:
    kind = ctx.kind
    q = ctx.query
    match = ctx.server.selector_filter(kind, q.get("labelSelector"), q.get("fieldSelector"))
    items, revision, _ = await _store_page(ctx, ctx.info.namespace, match, 0, 0, None)
    dry = dry_run(ctx)
    deleted = []
    for obj in items:
        meta = obj["metadata"]
        try:
            result = await ctx.server.delete_object(ctx, kind, meta.get("namespace", ""),
                                                    meta["name"], {}, dry)
        except errors.NotFound:
            continue
        if result:
            deleted.append(result[0])
    return json_response({"kind": kind.list_kind, "apiVersion": kind.api_version,
                          "metadata": {"resourceVersion": str(revision)}, "items": deleted})
