"""The async REST client."""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from pilothouse.model import errors
from pilothouse.model.kinds import Kind, KindRegistry, builtin_registry, split_api_version

from pilothouse.client import _http, _json

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/%:@!$&'()*+,;=._~-]")


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: dict


class Client:
    """An async client for one API server.

    ``Client(url, token=None, ca_file=None, insecure=False, user_agent=...)``; use as an async
    context manager or call :meth:`close`. ``registry`` maps kinds to URLs (the built-in
    kinds by default; :meth:`register_kind` adds custom ones).
    """

    def __init__(self, url: str, *, token: str | None = None, ca_file: str | None = None,
                 insecure: bool = False, user_agent: str = "pilothouse/0.1",
                 registry: KindRegistry | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.registry = registry or builtin_registry()
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl: ssl.SSLContext | bool | None = None
        if url.startswith("https"):
            if insecure:
                self._ssl = False
            else:
                self._ssl = ssl.create_default_context(cafile=ca_file)
        self._timeout = timeout
        self._pool = _http.Pool(self.url, self._ssl, limit=256)
        head = {"Host": self._pool.host_header, **self._headers}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode("latin-1")
        self._body_heads: dict[str, bytes] = {}  # content type → its header line
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """An aiohttp session with the client's headers, for calls the client does not
        cover (the client's own requests use a leaner transport)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=256, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    async def close(self) -> None:
        await self._pool.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def resource(self, api_version: str, kind: str) -> "Resource":
        """The :class:`Resource` for a kind, e.g. ``resource("apps/v1", "Deployment")``."""
        group, version = split_api_version(api_version)
        found = self.registry.get(group, version, kind)
        if found is None:
            raise KeyError(f"unknown kind {kind} in {api_version}")
        return Resource(self, found)

    async def request(self, method: str, path: str, *, params: dict | None = None,
                      body: Any = None, content_type: str = "application/json",
                      raw: bool = False) -> Any:
        """Send one request; return the decoded JSON (or the text with ``raw``). Raises the
        :class:`~pilothouse.model.errors.StatusError` the server's Status describes, or
        :class:`~pilothouse.model.errors.ServiceUnavailable` when it cannot be reached."""
        if body is None:
            data = b"%s %s HTTP/1.1\r\n%s%s\r\n" % (
                method.encode(), self._target(path, params), self._head,
                b"Content-Length: 0\r\n" if method in ("POST", "PUT", "PATCH") else b"")
        else:
            payload = _json.dumps(body)
            ctype = self._body_heads.get(content_type)
            if ctype is None:
                ctype = self._body_heads[content_type] = \
                    f"Content-Type: {content_type}\r\n".encode("latin-1")
            data = b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
                method.encode(), self._target(path, params), self._head, ctype, len(payload),
                payload)
        try:
            resp = await self._pool.request(data, self._timeout, head_only=method == "HEAD")
        except TimeoutError:
            raise errors.Timeout(f"request to {self.url}{path} timed out") from None
        except OSError as exc:
            raise errors.ServiceUnavailable(f"cannot reach the API server at {self.url}: "
                                            f"{_reason(exc)}") from None
        if resp.status >= 400:
            raise _error(resp.status, resp.text())
        if raw:
            return resp.text()
        return _json.loads(resp.body) if resp.body else None

    async def stream(self, path: str, params: dict) -> AsyncIterator[dict]:
        """GET a watch stream and yield each decoded line."""
        data = b"GET %s HTTP/1.1\r\n%s\r\n" % (self._target(path, params), self._head)
        conn = None
        try:
            conn, resp = await self._pool.open_stream(data, self._timeout)
            if resp.status >= 400:
                resp.body = await conn.read_rest()
                raise _error(resp.status, resp.text())
            loads = _json.loads
            tail = b""
            async for chunk in conn.iter_body():
                lines = chunk.split(b"\n")
                if tail:
                    lines[0] = tail + lines[0]
                tail = lines.pop()  # the rest of an unfinished line, or b""
                for line in lines:
                    if line.strip():
                        yield loads(line)
        except OSError as exc:  # a connect timeout included
            raise errors.ServiceUnavailable(f"watch on {self.url}{path} broke: "
                                            f"{_reason(exc)}") from None
        finally:
            if conn is not None:
                self._pool.release(conn)

    def _target(self, path: str, params: dict | None) -> bytes:
        """The request target: the path (percent-encoded where needed) and the query."""
        target = self._pool.base_path + path
        if _NEEDS_QUOTING.search(target):
            target = quote(target, safe="/%:@!$&'()*+,;=-._~")
        query = _params(params)
        if query:
            target += "?" + urlencode(query, quote_via=quote, safe="/:,!")
        return target.encode("ascii")


def _reason(exc: OSError) -> str:
    return str(exc) or type(exc).__name__


def _params(params: dict | None) -> dict | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out or None


def _error(status: int, text: str) -> errors.StatusError:
    try:
        body = _json.loads(text)
        if isinstance(body, dict) and body.get("kind") == "Status":
            body.setdefault("code", status)
            return errors.StatusError.from_status(body)
    except ValueError:
        pass
    return errors.StatusError.from_status({"code": status, "message": text.strip()[:500]})


class Resource:
    """Calls on one kind. ``namespace`` arguments are ignored for cluster-scoped kinds."""

    def __init__(self, client: Client, kind: Kind):
        self.client, self.kind = client, kind

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        k = self.kind
        base = f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}"
        if k.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{k.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base

    async def get(self, name: str, namespace: str | None = None) -> dict:
        return await self.client.request("GET", self.path(namespace, name))

    async def list(self, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, limit: int | None = None,
                   resource_version: str | None = None) -> dict:
        """One list call (all pages): returns the list object with every item."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                  "limit": limit, "resourceVersion": resource_version}
        result = await self.client.request("GET", self.path(namespace), params=params)
        while limit and result.get("metadata", {}).get("continue"):
            page = await self.client.request("GET", self.path(namespace), params={
                **params, "resourceVersion": None, "continue": result["metadata"]["continue"]})
            result["items"] += page["items"]
            result["metadata"] = page["metadata"]
        return result

    async def watch(self, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None,
                    bookmarks: bool = True) -> AsyncIterator[WatchEvent]:
        """Yield events after ``resource_version``; raises
        :class:`~pilothouse.model.errors.Gone` when it is too old (relist)."""
        params = {"watch": True, "resourceVersion": resource_version,
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": bookmarks}
        async for line in self.client.stream(self.path(namespace), params):
            if line.get("type") == "ERROR":
                raise errors.StatusError.from_status(line.get("object") or {})
            yield WatchEvent(line["type"], line["object"])

    async def create(self, obj: dict, namespace: str | None = None, *,
                     field_manager: str | None = None, dry_run: bool = False) -> dict:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.client.request("POST", self.path(ns), body=obj, params={
            "fieldManager": field_manager, "dryRun": "All" if dry_run else None})

    async def update(self, obj: dict, *, field_manager: str | None = None) -> dict:
        m = obj["metadata"]
        return await self.client.request("PUT", self.path(m.get("namespace"), m["name"]),
                                         body=obj, params={"fieldManager": field_manager})

    async def update_status(self, obj: dict) -> dict:
        m = obj["metadata"]
        return await self.client.request("PUT", self.path(m.get("namespace"), m["name"],
                                                          "status"), body=obj)

    async def patch(self, name: str, patch: Any, namespace: str | None = None, *,
                    content_type: str = MERGE, subresource: str | None = None,
                    field_manager: str | None = None) -> dict:
        return await self.client.request(
            "PATCH", self.path(namespace, name, subresource), body=patch,
            content_type=content_type, params={"fieldManager": field_manager})

    async def apply(self, obj: dict, *, field_manager: str, force: bool = False) -> dict:
        m = obj["metadata"]
        return await self.client.request(
            "PATCH", self.path(m.get("namespace"), m["name"]), body=obj, content_type=APPLY,
            params={"fieldManager": field_manager, "force": force})

    async def delete(self, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = preconditions
        return await self.client.request("DELETE", self.path(namespace, name), body=body)

    async def get_scale(self, name: str, namespace: str | None = None) -> dict:
        return await self.client.request("GET", self.path(namespace, name, "scale"))

    async def bind(self, name: str, namespace: str, node_name: str) -> dict:
        """POST pods/{name}/binding (pods only). 409 when already bound."""
        return await self.client.request("POST", self.path(namespace, name, "binding"), body={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name,
                                                                 "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}})
