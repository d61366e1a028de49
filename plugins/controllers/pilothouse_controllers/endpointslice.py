"""The EndpointSlice controller (and the v1 Endpoints mirror): the pod addresses behind each
Service with a selector.

For every Service with ``spec.selector``, the pods of its namespace that match, have an IP
and are not finished become endpoints: ``conditions.ready`` (pod Ready and not terminating,
or the Service publishes not-ready addresses), ``serving`` (pod Ready), ``terminating``
(being deleted), ``nodeName``, ``zone`` (the node's topology.kubernetes.io/zone) and a
``targetRef`` to the pod. Ports are resolved per pod (a named ``targetPort`` through the pod's
container ports), so pods resolving differently land in different slices. Slices hold at most
``maxEndpointsPerSlice`` endpoints, are labeled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``, and are
controlled by their Service (ownerReference). A Service without endpoints keeps one empty
slice, as in Kubernetes.

With ``endpoints: true`` (the default) the controller also writes the v1 Endpoints object of
the Service (ready addresses, notReadyAddresses; terminating pods left out).
"""

from __future__ import annotations

import dataclasses

from pilothouse.client import object_key
from pilothouse.controllers import QueueController
from pilothouse.model import errors
from pilothouse.model.meta import owner_reference
from pilothouse.model.selectors import LabelSelector

from pilothouse_controllers import common
from pilothouse_controllers.replicaset import NS_INDEX, by_namespace

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
ZONE = "topology.kubernetes.io/zone"
SLICE_INDEX = "pilothouse-controllers/service"


def slice_service(es: dict) -> list[str]:
    labels = common.meta(es).get("labels") or {}
    if labels.get(MANAGED_BY) != CONTROLLER_NAME or not labels.get(SERVICE_NAME):
        return []
    return [f"{common.meta(es).get('namespace')}/{labels[SERVICE_NAME]}"]


def resolve_port(port: dict, pod: dict) -> int | None:
    """A Service port's target on one pod: a number as is; a name through the pod's
    container ports (None when the pod has no such port)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = port.get("protocol", "TCP")
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target and cp.get("protocol", "TCP") == protocol:
                return cp.get("containerPort")
    return None


def address_type(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def desired_endpoints(svc: dict, pods: list[dict], zones: dict[str, str]) -> dict:
    """(addressType, ports tuple) → sorted endpoints, for one Service. ``ports`` is a tuple
    of (name, protocol, port, appProtocol)."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, list[dict]] = {}
    for pod in pods:
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip or common.terminal(pod):
            continue
        ports = []
        for p in spec.get("ports") or []:
            number = resolve_port(p, pod)
            if number is not None:
                ports.append((p.get("name", ""), p.get("protocol", "TCP"), number,
                              p.get("appProtocol")))
        serving = common.pod_ready(pod)
        terminating = common.deleting(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        ep = {"addresses": [ip],
              "conditions": {"ready": publish or (serving and not terminating),
                             "serving": publish or serving, "terminating": terminating},
              "targetRef": {"kind": "Pod", "namespace": common.meta(pod).get("namespace"),
                            "name": common.meta(pod)["name"],
                            "uid": common.meta(pod).get("uid")}}
        if node:
            ep["nodeName"] = node
            if zones.get(node):
                ep["zone"] = zones[node]
        groups.setdefault((address_type(ip), tuple(ports)), []).append(ep)
    for eps in groups.values():
        eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
    return groups


def ports_json(ports: tuple) -> list[dict]:
    out = []
    for name, protocol, port, app in ports:
        p = {"name": name, "protocol": protocol, "port": port}
        if app:
            p["appProtocol"] = app
        out.append(p)
    return out


def ports_key(es: dict) -> tuple:
    return tuple((p.get("name", ""), p.get("protocol", "TCP"), p.get("port"),
                  p.get("appProtocol")) for p in es.get("ports") or [])


def endpoints_subsets(groups: dict) -> list[dict]:
    """v1 Endpoints subsets from the slice groups (terminating pods left out)."""
    subsets = []
    for (_, ports), eps in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        ready, not_ready = [], []
        for ep in eps:
            if ep["conditions"]["terminating"] and not ep["conditions"]["ready"]:
                continue
            addr = {"ip": ep["addresses"][0], "targetRef": ep["targetRef"]}
            if ep.get("nodeName"):
                addr["nodeName"] = ep["nodeName"]
            (ready if ep["conditions"]["ready"] else not_ready).append(addr)
        if not ready and not not_ready:
            continue
        subset = {"ports": [{k: v for k, v in p.items() if k != "appProtocol" or v}
                            for p in ports_json(ports)]}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        subsets.append(subset)
    return subsets


class EndpointSliceController(QueueController):
    """Entry point ``endpointslice``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 5
        maxEndpointsPerSlice: int = 100
        #: also maintain the v1 Endpoints object of each Service
        endpoints: bool = True

    def __init__(self, options: "EndpointSliceController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers

    def setup(self) -> None:
        self.services = self.watch("v1", "Service")
        self.services.add_index(NS_INDEX, by_namespace)
        self.pods = self.watch("v1", "Pod", keys=self._pod_keys)
        self.pods.add_index(NS_INDEX, by_namespace)
        self.slices = self.watch("discovery.k8s.io/v1", "EndpointSlice", keys=slice_service)
        self.slices.add_index(SLICE_INDEX, slice_service)
        self.nodes = self.watch("v1", "Node", keys=None)
        self.namespaces = self.watch("v1", "Namespace", keys=None)
        if self.options.endpoints:
            self.endpoints = self.watch("v1", "Endpoints")
        self.es_api = self.client.resource("discovery.k8s.io/v1", "EndpointSlice")
        self.ep_api = self.client.resource("v1", "Endpoints")

    def _pod_keys(self, pod: dict) -> list[str]:
        ns = common.meta(pod).get("namespace") or ""
        labels = common.meta(pod).get("labels") or {}
        out = []
        for svc in self.services.by_index(NS_INDEX, ns):
            sel = (svc.get("spec") or {}).get("selector")
            if sel and LabelSelector.from_dict({"matchLabels": sel}).matches(labels):
                out.append(object_key(svc))
        return out

    async def reconcile(self, key: str) -> float | None:
        svc = self.services.get(key)
        existing = list(self.slices.by_index(SLICE_INDEX, key))
        ns, name = key.split("/", 1)
        if svc is None or not (svc.get("spec") or {}).get("selector"):
            # gone (the garbage collector would also do it), or endpoints managed by hand
            for es in existing:
                await self._delete_slice(es)
            if svc is None and self.options.endpoints:
                ep = self.endpoints.get(key)
                if ep is not None and common.meta(ep).get("labels", {}).get(MANAGED_BY) == \
                        CONTROLLER_NAME:
                    try:
                        await self.ep_api.delete(name, ns)
                    except errors.NotFound:
                        pass
            return None
        if common.deleting(svc):
            return None
        selector = LabelSelector.from_dict({"matchLabels": svc["spec"]["selector"]})
        pods = [p for p in self.pods.by_index(NS_INDEX, ns)
                if selector.matches(common.meta(p).get("labels") or {})]
        zones = {common.meta(n)["name"]: (common.meta(n).get("labels") or {}).get(ZONE, "")
                 for n in self.nodes.list()}
        groups = desired_endpoints(svc, pods, zones)
        await self._sync_slices(svc, groups, existing)
        if self.options.endpoints:
            await self._sync_endpoints(svc, groups)
        return None

    def _slice(self, svc: dict, address: str, ports: tuple, endpoints: list[dict]) -> dict:
        m = svc["metadata"]
        labels = {**(m.get("labels") or {}), SERVICE_NAME: m["name"],
                  MANAGED_BY: CONTROLLER_NAME}
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": f"{m['name']}-", "namespace": m["namespace"],
                             "labels": labels,
                             "ownerReferences": [owner_reference(
                                 {**svc, "apiVersion": "v1", "kind": "Service"})]},
                "addressType": address, "endpoints": endpoints, "ports": ports_json(ports)}

    async def _sync_slices(self, svc: dict, groups: dict, existing: list[dict]) -> None:
        size = max(1, self.options.maxEndpointsPerSlice)
        wanted: list[tuple[str, tuple, list[dict]]] = []
        for (address, ports), eps in sorted(groups.items(), key=lambda kv: repr(kv[0])):
            for i in range(0, len(eps), size):
                wanted.append((address, ports, eps[i:i + size]))
        if not wanted:  # the placeholder slice of a Service without endpoints
            wanted.append(("IPv4", (), []))
        pool = sorted(existing, key=lambda es: common.meta(es).get("name"))
        created: list[str] = []
        for address, ports, eps in wanted:
            match = next((es for es in pool if es.get("addressType") == address
                          and ports_key(es) == ports), None)
            desired = self._slice(svc, address, ports, eps)
            if match is None:
                if common.ns_terminating(self.namespaces, svc["metadata"]["namespace"]):
                    continue
                out = await self.es_api.create(desired)
                created.append(object_key(out))
                continue
            pool.remove(match)
            if (match.get("endpoints") or []) != eps or \
                    (common.meta(match).get("labels") or {}) != desired["metadata"]["labels"]:
                updated = common.deep(match)
                updated["endpoints"] = eps
                updated["ports"] = desired["ports"]
                updated["metadata"]["labels"] = desired["metadata"]["labels"]
                await self.es_api.update(updated)
        for es in pool:
            await self._delete_slice(es)
        if created:
            await self.wait_for(lambda: all(k in self.slices.cache for k in created))

    async def _delete_slice(self, es: dict) -> None:
        try:
            await self.es_api.delete(common.meta(es)["name"], common.meta(es)["namespace"])
        except errors.NotFound:
            pass

    async def _sync_endpoints(self, svc: dict, groups: dict) -> None:
        m = svc["metadata"]
        subsets = endpoints_subsets(groups)
        labels = {**(m.get("labels") or {}), MANAGED_BY: CONTROLLER_NAME}
        current = self.endpoints.get(object_key(svc))
        if current is None:
            if common.ns_terminating(self.namespaces, m["namespace"]):
                return
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": m["name"], "namespace": m["namespace"],
                                 "labels": labels}}
            if subsets:
                body["subsets"] = subsets
            try:
                await self.ep_api.create(body)
            except errors.AlreadyExists:
                raise errors.Conflict("endpoints", m["name"]) from None  # retry, cache lags
            return
        if (current.get("subsets") or []) == subsets and \
                (common.meta(current).get("labels") or {}) == labels:
            return
        updated = common.deep(current)
        updated["metadata"]["labels"] = labels
        if subsets:
            updated["subsets"] = subsets
        else:
            updated.pop("subsets", None)
        await self.ep_api.update(updated)
