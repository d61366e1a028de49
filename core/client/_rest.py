"""The async REST client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from pilothouse.model import errors
from pilothouse.model.kinds import Kind, KindRegistry, builtin_registry, split_api_version

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


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
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=256, ssl=self._ssl))
        return self._session

    async def close(self) -> None:
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
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            async with self.session.request(
                    method, self.url + path, params=_params(params), data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise _error(resp.status, text)
                if raw:
                    return text
                return json.loads(text) if text else None
        except aiohttp.ClientError as exc:
            raise errors.ServiceUnavailable(f"cannot reach the API server at {self.url}: "
                                            f"{exc}") from None
        except asyncio.TimeoutError:
            raise errors.Timeout(f"request to {self.url}{path} timed out") from None

    async def stream(self, path: str, params: dict) -> AsyncIterator[dict]:
        """GET a watch stream and yield each decoded line."""
        try:
            async with self.session.get(self.url + path, params=_params(params),
                                        timeout=aiohttp.ClientTimeout(
                                            total=None, sock_connect=self._timeout)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.text())
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
        except aiohttp.ClientError as exc:
            raise errors.ServiceUnavailable(f"watch on {self.url}{path} broke: {exc}") from None


def _params(params: dict | None) -> dict | None:
    if not params:
        return None
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _error(status: int, text: str) -> errors.StatusError:
    try:
        body = json.loads(text)
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
