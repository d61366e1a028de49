"""The Deployment arithmetic, as pure functions of API objects (plain dicts), following the
Kubernetes deployment controller: fenceposts for maxSurge/maxUnavailable, how far the new
ReplicaSet may grow and the old ones shrink, proportional scaling, revisions, template hashes,
status and the Progressing/Available conditions.

Two deliberate differences make the bounds hold for the pods themselves, not only for the
ReplicaSets' specs, even while a ReplicaSet's status lags behind its spec:

* the surge check counts ``max(spec.replicas, status.replicas)`` per ReplicaSet, so pods of
  a scaled-down ReplicaSet count until they are really terminating: a watch on the pods
  never sees more than ``replicas + maxSurge`` live pods;
* the unavailability check counts ``min(status.availableReplicas, spec.replicas)``, so pods
  a ReplicaSet is about to delete are not counted as available twice: a watch never sees
  fewer than ``replicas - maxUnavailable`` ready pods once the rollout started from a
  fully available state.
"""

from __future__ import annotations

import copy
import datetime
import json
import math

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
#: Deployment annotations never copied to its ReplicaSets (and kept by ``rollout undo``).
SKIP_COPY = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                       MAX_REPLICAS, ROLLBACK_TO})
MAX_REVISION_HISTORY_CHARS = 2000
NO_DEADLINE = 2 ** 31 - 1

# condition types and reasons, as kubectl and users read them
AVAILABLE, PROGRESSING, REPLICA_FAILURE = "Available", "Progressing", "ReplicaFailure"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
FAILED_RS_CREATE = "ReplicaSetCreateError"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# ------------------------------------------------------------------ int-or-percent


def scaled_value(value, total: int, round_up: bool) -> int:
    """An int-or-percent against ``total``: ``3`` is 3; ``"25%"`` of 10 is 3 rounded up,
    2 rounded down (Kubernetes' GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid int-or-percent {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: {value!r} is not a "
                             f"percentage") from None
    percent = int(text[:-1])
    return -(-percent * total // 100) if round_up else percent * total // 100


def resolve_fenceposts(max_surge, max_unavailable, desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both 0 becomes (0, 1) so a
    rollout can always make progress."""
    surge = scaled_value(0 if max_surge is None else max_surge, desired, True)
    unavailable = scaled_value(0 if max_unavailable is None else max_unavailable, desired,
                               False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def replicas(d: dict) -> int:
    value = (d.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def is_rolling(d: dict) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") \
        == "RollingUpdate"


def _rolling_params(d: dict) -> tuple:
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%")


def max_surge(d: dict) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(*_rolling_params(d), replicas(d))[0]


def max_unavailable(d: dict) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    unavailable = resolve_fenceposts(*_rolling_params(d), replicas(d))[1]
    return min(unavailable, replicas(d))


# ------------------------------------------------------------------ replica sets


def spec_replicas(rs: dict | None) -> int:
    if rs is None:
        return 0
    value = (rs.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_of(rs: dict | None, field: str) -> int:
    return int(((rs or {}).get("status") or {}).get(field) or 0)


def _present(rss) -> list[dict]:
    return [rs for rs in rss if rs is not None]


def total_spec(rss) -> int:
    return sum(spec_replicas(rs) for rs in _present(rss))


def total_pods(rss) -> int:
    """Pods the ReplicaSets may have: spec, or more while a scale-down is not observed."""
    return sum(max(spec_replicas(rs), status_of(rs, "replicas")) for rs in _present(rss))


def total_status(rss, field: str) -> int:
    return sum(status_of(rs, field) for rs in _present(rss))


def available(rs: dict | None) -> int:
    """Available pods of a ReplicaSet that it will keep: a scale-down its controller has not
    carried out yet does not count the pods about to go (``min(status, spec)``)."""
    return min(status_of(rs, "availableReplicas"), spec_replicas(rs))


def total_available(rss) -> int:
    return sum(available(rs) for rs in _present(rss))


def active(rss) -> list[dict]:
    return [rs for rs in _present(rss) if spec_replicas(rs) > 0]


def created(rs: dict) -> tuple:
    m = rs.get("metadata") or {}
    return (m.get("creationTimestamp") or "", m.get("name") or "")


def by_creation(rss) -> list[dict]:
    return sorted(_present(rss), key=created)


def annotation_int(rs: dict, key: str) -> int | None:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def revision(rs: dict) -> int:
    """The ReplicaSet's ``deployment.kubernetes.io/revision`` (0 when missing)."""
    return annotation_int(rs, REVISION) or 0


def max_revision(rss) -> int:
    return max((revision(rs) for rs in _present(rss)), default=0)


# ------------------------------------------------------------------ templates


def _normalized(value):
    """Drop empty maps, lists and nulls (nil and empty compare equal in Kubernetes)."""
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def templates_equal(a: dict, b: dict) -> bool:
    """Equal pod templates, ignoring the pod-template-hash label."""
    return _normalized(without_hash(a)) == _normalized(without_hash(b))


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """The pod-template-hash label value: FNV-32a of the template (and the collision
    count), written with Kubernetes' vowel-free alphabet."""
    data = json.dumps(_normalized(without_hash(template)), sort_keys=True,
                      separators=(",", ":")).encode()
    if collision_count is not None:
        data += str(int(collision_count)).encode()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)]
                   for b in str(_fnv32a(data)).encode())


def find_new(d: dict, rss) -> dict | None:
    """The oldest ReplicaSet whose template equals the Deployment's."""
    template = (d.get("spec") or {}).get("template") or {}
    for rs in by_creation(rss):
        if templates_equal((rs.get("spec") or {}).get("template") or {}, template):
            return rs
    return None


# ------------------------------------------------------------------ annotations


def copy_annotations(d: dict, rs: dict) -> bool:
    """Copy the Deployment's annotations (but SKIP_COPY) onto ``rs``; True when changed."""
    changed = False
    target = rs.setdefault("metadata", {}).setdefault("annotations", {})
    for key, value in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if key in SKIP_COPY or target.get(key) == value:
            continue
        target[key] = value
        changed = True
    return changed


def set_replicas_annotations(rs: dict, desired: int, maximum: int) -> bool:
    ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def set_new_rs_annotations(d: dict, rs: dict, new_revision: int, exists: bool) -> bool:
    """Annotate the new ReplicaSet: copied Deployment annotations, the revision (raised to
    ``new_revision`` when lower; the old number goes to the revision history: a rollback),
    and, when it is about to be created, the desired/max replica annotations."""
    changed = copy_annotations(d, rs)
    ann = rs["metadata"]["annotations"]
    old_text = ann.get(REVISION)
    try:
        old = int(old_text) if old_text else 0
    except ValueError:
        return changed
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text:
            history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
            history.append(old_text)
            while history and len(",".join(history)) > MAX_REVISION_HISTORY_CHARS:
                history.pop(0)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


# ------------------------------------------------------------------ rolling update


def new_rs_replicas(d: dict, all_rss, new_rs: dict | None) -> int:
    """The size the new ReplicaSet may grow to now."""
    want = replicas(d)
    current_new = spec_replicas(new_rs)
    if not is_rolling(d):
        return want
    surge = scaled_value(_rolling_params(d)[0], want, True)
    current = total_pods(all_rss)
    maximum = want + surge
    if current >= maximum:
        return current_new
    return current_new + max(0, min(maximum - current, want - current_new))


def unhealthy_cleanup(old_rss, max_cleanup: int) -> list[tuple[dict, int]]:
    """Old ReplicaSets to shrink by their unavailable pods (oldest first), at most
    ``max_cleanup`` pods in all: [(rs, new size)]."""
    plan, done = [], 0
    for rs in by_creation(old_rss):
        if done >= max_cleanup:
            break
        size = spec_replicas(rs)
        if size == 0 or size == available(rs):
            continue
        count = min(max_cleanup - done, size - available(rs))
        plan.append((rs, size - count))
        done += count
    return plan


def old_scale_down(d: dict, all_rss, old_rss) -> list[tuple[dict, int]]:
    """Old ReplicaSets to shrink while keeping ``replicas - maxUnavailable`` available
    (oldest first): [(rs, new size)]."""
    min_available = replicas(d) - max_unavailable(d)
    have = total_available(all_rss)
    if have <= min_available:
        return []
    plan, done, budget = [], 0, have - min_available
    for rs in by_creation(old_rss):
        if done >= budget:
            break
        size = spec_replicas(rs)
        if size == 0:
            continue
        count = min(size, budget - done)
        plan.append((rs, size - count))
        done += count
    return plan


def max_scaled_down(d: dict, all_rss, new_rs: dict | None) -> int:
    """How many old pods may go now without breaking maxUnavailable."""
    min_available = replicas(d) - max_unavailable(d)
    new_unavailable = spec_replicas(new_rs) - available(new_rs)
    return total_spec(all_rss) - min_available - new_unavailable


# ------------------------------------------------------------------ proportional scaling


def find_active_or_latest(new_rs: dict | None, old_rss) -> dict | None:
    if new_rs is None and not old_rss:
        return None
    olds = sorted(_present(old_rss), key=created, reverse=True)
    current = active([new_rs] + olds)
    if not current:
        return new_rs if new_rs is not None else (olds[0] if olds else None)
    if len(current) == 1:
        return current[0]
    return None


def is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    desired = annotation_int(rs, DESIRED_REPLICAS)
    return (spec_replicas(rs) == replicas(d) and desired == replicas(d)
            and status_of(rs, "availableReplicas") == replicas(d))


def is_scaling_event(d: dict, rss) -> bool:
    """An active ReplicaSet was sized for a different ``spec.replicas``."""
    for rs in active(rss):
        desired = annotation_int(rs, DESIRED_REPLICAS)
        if desired is not None and desired != replicas(d):
            return True
    return False


def _fraction(rs: dict, d: dict) -> int:
    if replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = annotation_int(rs, MAX_REPLICAS)
    if annotated is None:
        annotated = status_of(d, "replicas")
    if not annotated:
        return 0
    size = spec_replicas(rs) * deployment_replicas / annotated
    return int(math.floor(size + 0.5)) - spec_replicas(rs)  # Go's math.Round (half away)


def proportion(rs: dict, d: dict, to_add: int, added: int) -> int:
    if rs is None or spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: dict, new_rs: dict | None, old_rss) -> list[tuple[dict, int]]:
    """New sizes for the ReplicaSets when ``spec.replicas`` changed mid-rollout: grow or
    shrink each active one in proportion, leftovers to the largest: [(rs, new size)]."""
    latest = find_active_or_latest(new_rs, old_rss)
    if latest is not None:
        return [] if spec_replicas(latest) == replicas(d) else [(latest, replicas(d))]
    if is_saturated(d, new_rs):
        return [(rs, 0) for rs in active(old_rss)]
    if not is_rolling(d):
        return []
    all_active = active(list(old_rss) + [new_rs])
    allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
    to_add = allowed - total_spec(all_active)
    if to_add > 0:  # largest first, newer first among equals
        ordered = sorted(all_active, key=created, reverse=True)
        ordered = sorted(ordered, key=spec_replicas, reverse=True)
    else:  # largest first, older first among equals
        ordered = sorted(sorted(all_active, key=created), key=spec_replicas, reverse=True)
    sizes, added = {}, 0
    for rs in ordered:
        p = proportion(rs, d, to_add, added)
        sizes[id(rs)] = spec_replicas(rs) + p
        added += p
    out = []
    for i, rs in enumerate(ordered):
        size = sizes[id(rs)]
        if i == 0 and to_add != 0:
            size = max(0, size + to_add - added)
        if size != spec_replicas(rs):
            out.append((rs, size))
    return out


# ------------------------------------------------------------------ revision history


def cleanable(d: dict, old_rss) -> list[dict]:
    """Old ReplicaSets beyond ``revisionHistoryLimit`` that may be deleted (lowest revision
    first; only empty, settled ones)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in _present(old_rss) if not (rs.get("metadata") or {}).get(
        "deletionTimestamp")]
    excess = len(alive) - int(limit)
    if excess <= 0:
        return []
    alive.sort(key=lambda rs: (revision(rs), created(rs)))
    out = []
    for rs in alive[:excess]:
        if status_of(rs, "replicas") != 0 or spec_replicas(rs) != 0:
            continue
        gen = int((rs.get("metadata") or {}).get("generation") or 0)
        if gen > status_of(rs, "observedGeneration"):
            continue
        out.append(rs)
    return out


# ------------------------------------------------------------------ status and conditions


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


def condition(status: dict, ctype: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def new_condition(ctype: str, status: str, reason: str, message: str,
                  now: datetime.datetime | None = None) -> dict:
    t = now_rfc3339(now)
    return {"type": ctype, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
            "reason": reason, "message": message}


def set_condition(status: dict, cond: dict) -> None:
    """Set a condition: unchanged when status and reason are the same; keeps
    lastTransitionTime when only the reason changes; the set one moves last."""
    current = condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and \
            current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: dict, ctype: str) -> None:
    kept = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if kept:
        status["conditions"] = kept
    else:
        status.pop("conditions", None)


def has_deadline(d: dict) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) != NO_DEADLINE


def calculate_status(d: dict, all_rss, new_rs: dict | None,
                     now: datetime.datetime | None = None) -> dict:
    """The Deployment's status from its ReplicaSets, with the Available condition."""
    rss = _present(all_rss)
    available = total_status(rss, "availableReplicas")
    status = {"observedGeneration": int((d.get("metadata") or {}).get("generation") or 0),
              "replicas": total_status(rss, "replicas"),
              "updatedReplicas": status_of(new_rs, "replicas"),
              "readyReplicas": total_status(rss, "readyReplicas"),
              "availableReplicas": available,
              "unavailableReplicas": max(0, total_spec(rss) - available)}
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= replicas(d) - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def complete(d: dict, status: dict) -> bool:
    want = replicas(d)
    return (status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("observedGeneration", 0) >= int(
                (d.get("metadata") or {}).get("generation") or 0))


def progressing(d: dict, status: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return (status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new_old < old_old
            or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or status.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def timed_out(d: dict, status: dict, now: datetime.datetime | None = None) -> bool:
    if not has_deadline(d):
        return False
    cond = condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return since + datetime.timedelta(
        seconds=int(d["spec"]["progressDeadlineSeconds"])) < now


def rollout_status(d: dict, all_rss, new_rs: dict | None,
                   now: datetime.datetime | None = None) -> dict:
    """calculate_status plus the Progressing condition (complete, progressing, timed out)
    and the ReplicaFailure condition copied from the ReplicaSets."""
    status = calculate_status(d, all_rss, new_rs, now)
    if not has_deadline(d):
        remove_condition(status, PROGRESSING)
    current = condition(d.get("status") or {}, PROGRESSING)
    name = (new_rs or {}).get("metadata", {}).get("name")
    what = f'ReplicaSet "{name}"' if name else \
        f'Deployment "{(d.get("metadata") or {}).get("name")}"'
    done = status["replicas"] == status["updatedReplicas"] and current is not None and \
        current.get("reason") == NEW_RS_AVAILABLE
    if has_deadline(d) and not done:
        if complete(d, status):
            set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                                f"{what} has successfully progressed.", now))
        elif progressing(d, status):
            cond = new_condition(PROGRESSING, "True", RS_UPDATED, f"{what} is progressing.",
                                 now)
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, PROGRESSING)
            set_condition(status, cond)
        elif timed_out(d, status, now):
            set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT,
                                                f"{what} has timed out progressing.", now))
    failures = [c for rs in _present(all_rss)
                for c in ((rs.get("status") or {}).get("conditions") or [])
                if c.get("type") == REPLICA_FAILURE and c.get("status") == "True"]
    if failures:
        f = failures[0]
        set_condition(status, {"type": REPLICA_FAILURE, "status": "True",
                               "lastUpdateTime": f.get("lastTransitionTime") or now_rfc3339(now),
                               "lastTransitionTime": f.get("lastTransitionTime")
                               or now_rfc3339(now),
                               "reason": f.get("reason", ""), "message": f.get("message", "")})
    else:
        remove_condition(status, REPLICA_FAILURE)
    return status


def seconds_to_deadline(d: dict, status: dict,
                        now: datetime.datetime | None = None) -> float | None:
    """When to look at a stuck rollout again (None: no deadline to watch)."""
    cond = condition(status, PROGRESSING)
    if not has_deadline(d) or cond is None or complete(d, status) or \
            cond.get("reason") in (TIMED_OUT, NEW_RS_AVAILABLE, PAUSED):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    left = (since + datetime.timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))
            - now).total_seconds()
    return 0.0 if left < 1 else left + 1
