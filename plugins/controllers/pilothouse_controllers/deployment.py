"""The Deployment controller: owns ReplicaSets (one per pod template, named
``<deployment>-<pod-template-hash>``), rolls between them with RollingUpdate (maxSurge,
maxUnavailable) or Recreate, scales proportionally when ``spec.replicas`` changes mid-rollout,
keeps ``revisionHistoryLimit`` old ReplicaSets, numbers revisions
(``deployment.kubernetes.io/revision``), and reports the status ``kubectl rollout status``
reads, with the Available and Progressing conditions (progressDeadlineSeconds).

``kubectl rollout undo|pause|resume|restart`` need nothing more: they edit the Deployment
(template from an old ReplicaSet, ``spec.paused``, a template annotation) and this controller
converges. The arithmetic lives in :mod:`pilothouse_controllers.rollout`.
"""

from __future__ import annotations

import dataclasses

from pilothouse.client import object_key
from pilothouse.controllers import QueueController
from pilothouse.model import errors
from pilothouse.model.meta import controller_ref, owner_reference

from pilothouse_controllers import common
from pilothouse_controllers import rollout as ro
from pilothouse_controllers.replicaset import NS_INDEX, by_namespace

OWNER_INDEX = "pilothouse-controllers/controller-uid"


def by_controller_uid(obj: dict) -> list[str]:
    ref = controller_ref(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


class DeploymentController(QueueController):
    """Entry point ``deployment``."""

    @dataclasses.dataclass
    class Options:
        workers: int = 5

    def __init__(self, options: "DeploymentController.Options | None" = None):
        self.options = options or self.Options()
        self.workers = self.options.workers

    def setup(self) -> None:
        self.deployments = self.watch("apps/v1", "Deployment")
        self.deployments.add_index(NS_INDEX, by_namespace)
        self.rss = self.watch("apps/v1", "ReplicaSet", keys=self._rs_keys)
        self.rss.add_index(NS_INDEX, by_namespace)
        self.pods = self.watch("v1", "Pod", keys=self._pod_keys)
        self.pods.add_index(OWNER_INDEX, by_controller_uid)
        self.namespaces = self.watch("v1", "Namespace", keys=None)
        self.d_api = self.client.resource("apps/v1", "Deployment")
        self.rs_api = self.client.resource("apps/v1", "ReplicaSet")
        self._stored: dict[str, dict] = {}  # key → status last read or written (per reconcile)

    # ------------------------------------------------------------ event → key

    def _rs_keys(self, rs: dict) -> list[str]:
        ns = rs["metadata"].get("namespace") or ""
        ref = controller_ref(rs)
        if ref is not None:
            return [f"{ns}/{ref['name']}"] if ref.get("kind") == "Deployment" else []
        labels = rs["metadata"].get("labels") or {}
        return [object_key(d) for d in self.deployments.by_index(NS_INDEX, ns)
                if (sel := common.selector_of(d)) is not None and sel.matches(labels)]

    def _pod_keys(self, pod: dict) -> list[str]:
        # only Recreate waits on pods (for the old ones to be gone)
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return []
        ns = pod["metadata"].get("namespace") or ""
        rs = self.rss.get(f"{ns}/{ref['name']}")
        dref = controller_ref(rs) if rs else None
        if dref is None or dref.get("kind") != "Deployment":
            return []
        d = self.deployments.get(f"{ns}/{dref['name']}")
        if d is None or ro.is_rolling(d):
            return []
        return [f"{ns}/{dref['name']}"]

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        cached = self.deployments.get(key)
        if cached is None:
            return None
        d = common.deep(cached)
        self._stored[key] = common.deep(cached.get("status") or {})
        try:
            return await self._reconcile(d)
        finally:
            self._stored.pop(key, None)

    async def _reconcile(self, d: dict) -> float | None:
        ns, name = d["metadata"].get("namespace"), d["metadata"]["name"]
        selector = common.selector_of(d)
        if selector is None:  # selects nothing: only acknowledge the generation
            await self._write_status(d, {**(d.get("status") or {}),
                                         "observedGeneration": d["metadata"].get(
                                             "generation", 0)})
            return None

        async def fresh():
            try:
                return await self.d_api.get(name, ns)
            except errors.NotFound:
                return None
        candidates = list(self.rss.by_index(NS_INDEX, ns))
        rss = [common.deep(rs) for rs in await common.claim(
            d, "apps/v1", "Deployment", candidates, selector, self.rs_api, fresh)]
        if common.deleting(d):
            new_rs, olds = await self._new_and_old(d, rss, create=False)
            await self._write_status(d, ro.calculate_status(d, olds + [new_rs], new_rs))
            return None
        self._check_paused_conditions(d)
        spec = d.get("spec") or {}
        if spec.get("paused") or ro.is_scaling_event(d, rss):
            return await self._sync(d, rss)
        if ro.is_rolling(d):
            return await self._rolling(d, rss)
        return await self._recreate(d, rss)

    # ------------------------------------------------------------ strategies

    async def _sync(self, d: dict, rss: list[dict]) -> float | None:
        """Paused or resized: scale proportionally, no rollout."""
        new_rs, olds = await self._new_and_old(d, rss, create=False)
        for rs, size in ro.proportional_sizes(d, new_rs, olds):
            await self._scale(d, rs, size, olds + [new_rs])
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, olds)
        await self._write_status(d, ro.calculate_status(d, olds + [new_rs], new_rs))
        return None

    async def _rolling(self, d: dict, rss: list[dict]) -> float | None:
        new_rs, olds = await self._new_and_old(d, rss, create=True)
        all_rss = olds + [new_rs]
        if await self._reconcile_new(d, all_rss, new_rs):
            return await self._rollout_status(d, all_rss, new_rs)
        if await self._reconcile_old(d, all_rss, ro.active(olds), new_rs):
            return await self._rollout_status(d, all_rss, new_rs)
        if ro.complete(d, self._stored[object_key(d)]):
            await self._cleanup(d, olds)
        return await self._rollout_status(d, all_rss, new_rs)

    async def _recreate(self, d: dict, rss: list[dict]) -> float | None:
        new_rs, olds = await self._new_and_old(d, rss, create=False)
        all_rss = olds + [new_rs]
        scaled = False
        for rs in ro.active(olds):
            scaled = await self._scale(d, rs, 0, all_rss) or scaled
        if scaled or self._old_pods_running(new_rs, olds):
            return await self._rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, olds = await self._new_and_old(d, rss, create=True)
            all_rss = olds + [new_rs]
        if new_rs is not None and ro.spec_replicas(new_rs) != ro.replicas(d):
            await self._scale(d, new_rs, ro.replicas(d), all_rss)
        if ro.complete(d, self._stored[object_key(d)]):
            await self._cleanup(d, olds)
        return await self._rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: dict | None, olds: list[dict]) -> bool:
        if ro.total_status(olds, "replicas") > 0:
            return True
        new_uid = (new_rs or {}).get("metadata", {}).get("uid")
        for rs in olds:
            uid = rs["metadata"].get("uid")
            if uid == new_uid:
                continue
            for pod in self.pods.by_index(OWNER_INDEX, uid):
                if not common.terminal(pod):
                    return True
        return False

    # ------------------------------------------------------------ pieces

    async def _reconcile_new(self, d: dict, all_rss: list, new_rs: dict | None) -> bool:
        if new_rs is None:
            return False
        want, have = ro.replicas(d), ro.spec_replicas(new_rs)
        if have == want:
            return False
        if have > want:
            return await self._scale(d, new_rs, want, all_rss)
        return await self._scale(d, new_rs, ro.new_rs_replicas(d, all_rss, new_rs), all_rss)

    async def _reconcile_old(self, d: dict, all_rss: list, olds: list,
                             new_rs: dict | None) -> bool:
        if ro.total_spec(olds) == 0:
            return False
        budget = ro.max_scaled_down(d, all_rss, new_rs)
        if budget <= 0:
            return False
        scaled = False
        for rs, size in ro.unhealthy_cleanup(olds, budget):
            scaled = await self._scale(d, rs, size, all_rss) or scaled
        for rs, size in ro.old_scale_down(d, all_rss, olds):
            scaled = await self._scale(d, rs, size, all_rss) or scaled
        return scaled

    async def _scale(self, d: dict, rs: dict, size: int, all_rss: list) -> bool:
        """Resize ``rs`` (and refresh its replicas annotations); the updated object replaces
        it in ``all_rss``. True when the size changed."""
        before = ro.spec_replicas(rs)
        changed_size = before != size
        copy = common.deep(rs)
        changed_ann = ro.set_replicas_annotations(copy, ro.replicas(d),
                                                  ro.replicas(d) + ro.max_surge(d))
        if not (changed_size or changed_ann):
            return False
        copy["spec"]["replicas"] = size
        updated = await self.rs_api.update(copy)
        rs.clear()
        rs.update(updated)  # in place: every list holding it sees the new size
        if changed_size:
            self.event(d, "Normal", "ScalingReplicaSet",
                       f"Scaled {'up' if size > before else 'down'} replica set "
                       f"{rs['metadata']['name']} from {before} to {size}")
        return changed_size

    async def _cleanup(self, d: dict, olds: list[dict]) -> None:
        for rs in ro.cleanable(d, olds):
            try:
                await self.rs_api.delete(rs["metadata"]["name"], rs["metadata"]["namespace"],
                                         preconditions={"uid": rs["metadata"]["uid"]})
            except (errors.NotFound, errors.Conflict):
                pass

    async def _new_and_old(self, d: dict, rss: list[dict],
                           create: bool) -> tuple[dict | None, list[dict]]:
        """The ReplicaSet of the current template (annotated with the next revision; created
        when ``create``), and the others. Also keeps the Deployment's revision annotation and
        its FoundNewReplicaSet/NewReplicaSetCreated condition in step."""
        existing = ro.find_new(d, rss)
        olds = [rs for rs in rss if rs is not existing]
        new_revision = ro.max_revision(olds) + 1
        status = d.setdefault("status", {})
        if existing is not None:
            copy = common.deep(existing)
            changed = ro.set_new_rs_annotations(d, copy, new_revision, exists=True)
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or (copy.get("spec") or {}).get("minReadySeconds", 0) != min_ready:
                copy["spec"]["minReadySeconds"] = min_ready
                updated = await self.rs_api.update(copy)
                existing.clear()
                existing.update(updated)
            await self._set_revision(d, existing)
            cond = ro.condition(status, ro.PROGRESSING)
            # a timeout names the ReplicaSet it was about: another one gets a new deadline
            # (even when the write that recorded its creation was lost)
            stale = cond is not None and cond.get("reason") == ro.TIMED_OUT and \
                f'"{existing["metadata"]["name"]}"' not in (cond.get("message") or "")
            if ro.has_deadline(d) and (cond is None or stale):
                ro.set_condition(status, ro.new_condition(
                    ro.PROGRESSING, "True", ro.FOUND_NEW_RS,
                    f'Found new replica set "{existing["metadata"]["name"]}"'))
            return existing, olds
        if not create or common.ns_terminating(self.namespaces, d["metadata"]["namespace"]):
            return None, olds
        return await self._create_new(d, olds, new_revision), olds

    async def _create_new(self, d: dict, olds: list[dict], new_revision: int) -> dict:
        spec, m = d.get("spec") or {}, d["metadata"]
        template = common.deep(spec.get("template") or {})
        collisions = (d.get("status") or {}).get("collisionCount")
        h = ro.template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[ro.HASH_LABEL] = h
        selector = common.deep(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[ro.HASH_LABEL] = h
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{m['name']}-{h}", "namespace": m["namespace"],
                           "labels": dict(template["metadata"]["labels"]),
                           "ownerReferences": [owner_reference(
                               {**d, "apiVersion": "apps/v1", "kind": "Deployment"})]},
              "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds") or 0,
                       "selector": selector, "template": template}}
        rs["spec"]["replicas"] = ro.new_rs_replicas(d, olds + [rs], rs)
        ro.set_new_rs_annotations(d, rs, new_revision, exists=False)
        status = d.setdefault("status", {})
        already = False
        try:
            created = await self.rs_api.create(rs)
        except errors.AlreadyExists:
            found = self.rss.get(f"{m['namespace']}/{rs['metadata']['name']}")
            if found is None:
                try:
                    found = await self.rs_api.get(rs["metadata"]["name"], m["namespace"])
                except errors.NotFound:
                    raise errors.Conflict("replicasets", rs["metadata"]["name"]) from None
            if (controller_ref(found) or {}).get("uid") != m.get("uid") or \
                    not ro.templates_equal(found["spec"]["template"], spec.get("template") or {}):
                # a hash collision: count it, so that the next attempt picks another name
                status["collisionCount"] = int(collisions or 0) + 1
                await self._write_status(d, status)
                raise
            created, already = common.deep(found), True
        except errors.StatusError as exc:
            if ro.has_deadline(d) and not isinstance(exc, errors.Conflict):
                msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {exc}'
                ro.set_condition(status, ro.new_condition(ro.PROGRESSING, "False",
                                                          ro.FAILED_RS_CREATE, msg))
                await self._write_status(d, status)
                self.event(d, "Warning", ro.FAILED_RS_CREATE, msg)
            raise
        if not already:
            if rs["spec"]["replicas"] > 0:
                self.event(d, "Normal", "ScalingReplicaSet",
                           f"Scaled up replica set {created['metadata']['name']} from 0 to "
                           f"{rs['spec']['replicas']}")
            if ro.has_deadline(d):
                ro.set_condition(status, ro.new_condition(
                    ro.PROGRESSING, "True", ro.NEW_RS_CREATED,
                    f'Created new replica set "{created["metadata"]["name"]}"'))
        await self._set_revision(d, created)
        key = object_key(created)
        await self.wait_for(lambda: key in self.rss.cache)
        return created

    async def _set_revision(self, d: dict, new_rs: dict) -> None:
        wanted = (new_rs["metadata"].get("annotations") or {}).get(ro.REVISION)
        current = (d["metadata"].get("annotations") or {}).get(ro.REVISION)
        if wanted is None or wanted == current:
            return
        updated = await self.d_api.patch(
            d["metadata"]["name"], {"metadata": {"annotations": {ro.REVISION: wanted},
                                                 "resourceVersion": d["metadata"][
                                                     "resourceVersion"]}},
            d["metadata"]["namespace"])
        d["metadata"] = updated["metadata"]

    def _check_paused_conditions(self, d: dict) -> None:
        if not ro.has_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = ro.condition(status, ro.PROGRESSING)
        if cond is not None and cond.get("reason") == ro.TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        has_paused = cond is not None and cond.get("reason") == ro.PAUSED
        if paused and not has_paused:
            ro.set_condition(status, ro.new_condition(ro.PROGRESSING, "Unknown", ro.PAUSED,
                                                      "Deployment is paused"))
        elif not paused and has_paused:
            ro.set_condition(status, ro.new_condition(ro.PROGRESSING, "Unknown", ro.RESUMED,
                                                      "Deployment is resumed"))

    async def _rollout_status(self, d: dict, all_rss: list, new_rs: dict | None) -> float | None:
        status = ro.rollout_status(d, all_rss, new_rs)
        await self._write_status(d, status)
        return ro.seconds_to_deadline(d, status)

    async def _write_status(self, d: dict, status: dict) -> None:
        key = object_key(d)
        if status == self._stored.get(key):
            return
        copy = common.deep(d)
        copy["status"] = status
        try:
            updated = await self.d_api.update_status(copy)
        except errors.NotFound:
            return
        d["metadata"] = updated["metadata"]
        d["status"] = updated.get("status") or {}
        self._stored[key] = common.deep(d["status"])
