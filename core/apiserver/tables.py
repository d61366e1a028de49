"""Table output (``kubectl get``): columns per kind, rows with partial object metadata."""

from __future__ import annotations

import datetime
from collections.abc import Callable

Column = tuple[str, str, int, Callable[[dict], object]]  # name, type, priority, cell


def age(obj: dict) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<unknown>"
    secs = int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 600:
        return f"{secs // 60}m{secs % 60}s" if secs % 60 else f"{secs // 60}m"
    if secs < 3 * 3600:
        return f"{secs // 60}m"
    if secs < 8 * 3600:
        h, m = divmod(secs // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    if secs < 2 * 86400:
        return f"{secs // 3600}h"
    if secs < 8 * 86400:
        d, h = divmod(secs // 3600, 24)
        return f"{d}d{h}h" if h else f"{d}d"
    if secs < 365 * 86400:
        return f"{secs // 86400}d"
    return f"{secs // (365 * 86400)}y"


def _get(obj: dict, *path, default=None):
    for p in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(p)
        if obj is None:
            return default
    return obj


def _pod_status(pod: dict) -> str:
    if _get(pod, "metadata", "deletionTimestamp"):
        return "Terminating"
    reason = _get(pod, "status", "reason") or _get(pod, "status", "phase", default="Pending")
    for cs in _get(pod, "status", "containerStatuses", default=[]) or []:
        waiting = _get(cs, "state", "waiting", "reason")
        term = _get(cs, "state", "terminated")
        if waiting:
            reason = waiting
        elif term and not cs.get("ready"):
            reason = term.get("reason") or f"ExitCode:{term.get('exitCode')}"
    return reason


def _pod_ready(pod: dict) -> str:
    total = len(_get(pod, "spec", "containers", default=[]) or [])
    ready = sum(1 for cs in _get(pod, "status", "containerStatuses", default=[]) or []
                if cs.get("ready"))
    return f"{ready}/{total}"


def _restarts(pod: dict) -> int:
    return sum(cs.get("restartCount", 0)
               for cs in _get(pod, "status", "containerStatuses", default=[]) or [])


def _node_status(node: dict) -> str:
    ready = "Unknown"
    for cond in _get(node, "status", "conditions", default=[]) or []:
        if cond.get("type") == "Ready":
            ready = "Ready" if cond.get("status") == "True" else "NotReady"
    if _get(node, "spec", "unschedulable"):
        ready += ",SchedulingDisabled"
    return ready


def _ports(svc: dict) -> str:
    out = []
    for p in _get(svc, "spec", "ports", default=[]) or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _selector(obj: dict) -> str:
    sel = _get(obj, "spec", "selector", default={}) or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    return ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str)) or "<none>"


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, age)

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "Pod"): [NAME, ("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
                  ("Restarts", "integer", 0, _restarts), AGE,
                  ("IP", "string", 1, lambda o: _get(o, "status", "podIP", default="<none>")),
                  ("Node", "string", 1, lambda o: _get(o, "spec", "nodeName", default="<none>"))],
    ("apps", "Deployment"): [
        NAME, ("Ready", "string", 0, lambda o: f"{_get(o, 'status', 'readyReplicas', default=0)}/"
                                               f"{_get(o, 'spec', 'replicas', default=0)}"),
        ("Up-to-date", "integer", 0, lambda o: _get(o, "status", "updatedReplicas", default=0)),
        ("Available", "integer", 0, lambda o: _get(o, "status", "availableReplicas", default=0)),
        AGE, ("Selector", "string", 1, _selector)],
    ("apps", "ReplicaSet"): [
        NAME, ("Desired", "integer", 0, lambda o: _get(o, "spec", "replicas", default=0)),
        ("Current", "integer", 0, lambda o: _get(o, "status", "replicas", default=0)),
        ("Ready", "integer", 0, lambda o: _get(o, "status", "readyReplicas", default=0)), AGE],
    ("", "Service"): [
        NAME, ("Type", "string", 0, lambda o: _get(o, "spec", "type", default="ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: _get(o, "spec", "clusterIP", default="<none>")),
        ("External-IP", "string", 0, lambda o: ",".join(_get(o, "spec", "externalIPs",
                                                             default=[])) or "<none>"),
        ("Port(s)", "string", 0, _ports), AGE, ("Selector", "string", 1, _selector)],
    ("", "Node"): [NAME, ("Status", "string", 0, _node_status),
                   ("Roles", "string", 0, lambda o: "<none>"), AGE,
                   ("Version", "string", 0, lambda o: _get(o, "status", "nodeInfo",
                                                          "kubeletVersion", default=""))],
    ("", "Namespace"): [NAME, ("Status", "string", 0,
                               lambda o: _get(o, "status", "phase", default="Active")), AGE],
    ("", "Event"): [("Last Seen", "string", 0, lambda o: age({"metadata": {
                        "creationTimestamp": o.get("lastTimestamp") or o.get("eventTime")
                        or _get(o, "metadata", "creationTimestamp")}})),
                    ("Type", "string", 0, lambda o: o.get("type", "")),
                    ("Reason", "string", 0, lambda o: o.get("reason", "")),
                    ("Object", "string", 0, lambda o: f"{_get(o, 'involvedObject', 'kind', default='')}"
                                                      f"/{_get(o, 'involvedObject', 'name', default='')}".lower()),
                    ("Message", "string", 0, lambda o: o.get("message", ""))],
}


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(group: str, kind: str, objects: list[dict], resource_version: str,
          continue_token: str = "", include_object: str = "Metadata",
          with_columns: bool = True) -> dict:
    columns = COLUMNS.get((group, kind), [NAME, AGE])
    rows = []
    for obj in objects:
        cells = []
        for _, _, _, cell in columns:
            try:
                cells.append(cell(obj))
            except (KeyError, TypeError, AttributeError, ValueError):
                cells.append("<unknown>")
        row = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": resource_version}}
    if continue_token:
        out["metadata"]["continue"] = continue_token
    out["columnDefinitions"] = [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n,
         "priority": p} for n, t, p, _ in columns] if with_columns else []
    out["rows"] = rows
    return out
