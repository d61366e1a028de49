"""Small blocking reads of the API server for readiness checks (``up``, ``status``)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

__all__ = ["get", "node_ready", "port_answers", "ready", "service_account_exists"]


def get(base: str, path: str, timeout: float = 3.0) -> tuple[int, dict | str | None]:
    """GET ``base + path``: ``(status, parsed JSON or text)``; ``(0, reason)`` when the
    server cannot be reached."""
    try:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=timeout) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def ready(base: str) -> bool:
    status, body = get(base, "/readyz")
    return status == 200


def _timestamp(text: str | None) -> float | None:
    import datetime
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def node_ready(base: str, name: str, since: float | None = None) -> tuple[bool, str]:
    """Whether the Node's Ready condition is True, and a short description. With ``since``
    (a wall-clock time), the node's Lease must also have been renewed after it, so that a
    Ready condition left by an earlier agent does not count."""
    if since is not None:
        status, lease = get(base, f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/"
                                  f"leases/{name}")
        renewed = _timestamp(((lease or {}).get("spec") or {}).get("renewTime")) \
            if status == 200 and isinstance(lease, dict) else None
        if renewed is None or renewed < since - 0.5:
            return False, f"waiting for node {name} to renew its lease"
    status, node = get(base, f"/api/v1/nodes/{name}")
    if status == 404:
        return False, f"node {name} not registered yet"
    if status != 200 or not isinstance(node, dict):
        return False, f"cannot read node {name}: {status} {node}"
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            state = "Ready" if cond.get("status") == "True" else "NotReady"
            why = cond.get("message") or cond.get("reason") or ""
            return cond.get("status") == "True", f"node {name} {state}" + (
                f" ({why})" if state != "Ready" and why else "")
    return False, f"node {name} has no Ready condition yet"


def node_images(base: str, name: str) -> set[str] | None:
    """The image names the Node reports, or None when it cannot be read."""
    status, node = get(base, f"/api/v1/nodes/{name}")
    if status != 200 or not isinstance(node, dict):
        return None
    return {n for image in (node.get("status") or {}).get("images") or []
            for n in image.get("names") or []}


def service_account_exists(base: str, namespace: str = "default",
                           name: str = "default") -> bool:
    status, _ = get(base, f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
    return status == 200


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
