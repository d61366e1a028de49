"""The Deployment arithmetic on plain objects: fenceposts and percentages with Kubernetes'
rounding, how far new and old ReplicaSets move, proportional scaling, revisions, hashes,
history cleanup, status and conditions."""

from __future__ import annotations

import datetime

import pytest

from pilothouse_controllers import rollout as ro

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def dep(replicas=10, surge="25%", unavailable="25%", strategy="RollingUpdate", generation=1,
        status=None, annotations=None, deadline=600, **spec):
    s = {"replicas": replicas, "strategy": {"type": strategy},
         "template": {"metadata": {"labels": {"app": "x"}},
                      "spec": {"containers": [{"name": "c", "image": "img:1"}]}},
         "revisionHistoryLimit": 10, **spec}
    if deadline is not None:
        s["progressDeadlineSeconds"] = deadline
    if strategy == "RollingUpdate":
        s["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "generation": generation,
                         "annotations": dict(annotations or {})},
            "spec": s, "status": dict(status or {})}


_n = [0]


def rs(name, spec, replicas=None, available=None, ready=None, revision=None,
       created=None, annotations=None, image="img:1", generation=1, observed=1):
    _n[0] += 1
    ann = dict(annotations or {})
    if revision is not None:
        ann[ro.REVISION] = str(revision)
    return {"metadata": {"name": name, "uid": f"uid-{name}", "annotations": ann,
                         "generation": generation,
                         "creationTimestamp": created or f"2024-01-01T00:00:{_n[0] % 60:02}Z"},
            "spec": {"replicas": spec, "template": {
                "metadata": {"labels": {"app": "x", ro.HASH_LABEL: name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {"replicas": spec if replicas is None else replicas,
                       "availableReplicas": spec if available is None else available,
                       "readyReplicas": (spec if available is None else available)
                       if ready is None else ready,
                       "observedGeneration": observed}}


# ------------------------------------------------------------------ int-or-percent


@pytest.mark.parametrize("value,total,up,expected", [
    (3, 10, True, 3), ("3", 10, False, 3), ("25%", 10, True, 3), ("25%", 10, False, 2),
    ("25%", 4, True, 1), ("25%", 4, False, 1), ("10%", 3, True, 1), ("10%", 3, False, 0),
    ("0%", 7, True, 0), ("100%", 7, False, 7), ("33%", 100, True, 33), ("1%", 1, True, 1),
    (None, 5, True, 0)])
def test_scaled_value_rounds_like_kubernetes(value, total, up, expected):
    assert ro.scaled_value(value, total, up) == expected


def test_scaled_value_rejects_garbage():
    with pytest.raises(ValueError):
        ro.scaled_value("lots", 3, True)


@pytest.mark.parametrize("surge,unavailable,desired,expected", [
    ("25%", "25%", 10, (3, 2)), ("25%", "25%", 1, (1, 0)), (0, 0, 5, (0, 1)),
    ("0%", "0%", 5, (0, 1)), ("10%", "10%", 3, (1, 0)), (0, "10%", 3, (0, 1)),
    (2, 1, 4, (2, 1))])
def test_fenceposts(surge, unavailable, desired, expected):
    assert ro.resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_and_surge_by_strategy():
    assert (ro.max_surge(dep(10)), ro.max_unavailable(dep(10))) == (3, 2)
    assert ro.max_unavailable(dep(2, unavailable=5)) == 2  # capped at replicas
    assert ro.max_unavailable(dep(0)) == 0
    recreate = dep(4, strategy="Recreate")
    assert (ro.max_surge(recreate), ro.max_unavailable(recreate)) == (0, 0)
    assert ro.max_unavailable(dep(3, surge=0, unavailable=0)) == 1


# ------------------------------------------------------------------ rolling steps


def test_new_replica_set_grows_by_the_surge_only():
    d = dep(10)  # surge 3
    old = rs("old", 10)
    new = rs("new", 0)
    assert ro.new_rs_replicas(d, [old, new], new) == 3
    old, new = rs("old", 8), rs("new", 3)
    assert ro.new_rs_replicas(d, [old, new], new) == 5
    assert ro.new_rs_replicas(d, [rs("old", 10), rs("new", 3)], rs("new", 3)) == 3  # full
    assert ro.new_rs_replicas(d, [rs("old", 0), rs("new", 9)], rs("new", 9)) == 10  # cap
    assert ro.new_rs_replicas(dep(4, strategy="Recreate"), [rs("n", 0)], rs("n", 0)) == 4


def test_surge_counts_pods_a_scale_down_has_not_removed_yet():
    d = dep(10)
    old = rs("old", 8, replicas=10)  # spec lowered, the pods are still there
    new = rs("new", 3)
    assert ro.new_rs_replicas(d, [old, new], new) == 3


def test_old_replica_sets_shrink_only_within_max_unavailable():
    d = dep(10)  # minAvailable 8
    old, new = rs("old", 10), rs("new", 3, available=0)
    # 13 pods, 3 new not available: 13 - 8 - 3 = 2 may go
    assert ro.max_scaled_down(d, [old, new], new) == 2
    assert [(r["metadata"]["name"], n) for r, n in ro.old_scale_down(d, [old, new], [old])] \
        == [("old", 8)]
    new = rs("new", 3, available=3)
    assert [(r["metadata"]["name"], n) for r, n in ro.old_scale_down(d, [old, new], [old])] \
        == [("old", 5)]
    assert ro.old_scale_down(d, [rs("old", 8), rs("new", 0)], [rs("old", 8)]) == []


def test_pods_about_to_be_deleted_are_not_available_twice():
    d = dep(4, surge=1, unavailable=1)  # minAvailable 3
    old = rs("old", 2, replicas=3, available=3, generation=3, observed=2)  # lagging
    new = rs("new", 2, available=2)
    # old really keeps 2 available: 2 + 2 - 3 = 1 may go, not 2
    assert [(r["metadata"]["name"], n) for r, n in ro.old_scale_down(d, [old, new], [old])] \
        == [("old", 1)]


def test_unhealthy_old_pods_go_first_oldest_replica_set_first():
    older = rs("older", 3, available=1, created="2024-01-01T00:00:01Z")
    old = rs("old", 2, available=0, created="2024-01-01T00:00:02Z")
    plan = ro.unhealthy_cleanup([old, older], 3)
    assert [(r["metadata"]["name"], n) for r, n in plan] == [("older", 1), ("old", 1)]
    assert ro.unhealthy_cleanup([rs("ok", 3)], 5) == []


# ------------------------------------------------------------------ proportional scaling


def test_proportional_scaling_matches_the_kubernetes_docs_example():
    # 10 replicas mid-rollout (old 8, new 5, both sized for 10 + surge 3 = 13), scaled to 15:
    # 3 of the 5 extra replicas go to the old ReplicaSet, 2 to the new one
    ann = {ro.DESIRED_REPLICAS: "10", ro.MAX_REPLICAS: "13"}
    old = rs("old", 8, annotations=ann, created="2024-01-01T00:00:01Z")
    new = rs("new", 5, annotations=ann, created="2024-01-01T00:00:02Z")
    d = dep(15, surge=3, unavailable=2)
    assert ro.is_scaling_event(d, [old, new])
    sizes = {r["metadata"]["name"]: n for r, n in ro.proportional_sizes(d, new, [old])}
    assert sizes == {"old": 11, "new": 7}


def test_proportional_scale_down_and_leftovers():
    ann = {ro.DESIRED_REPLICAS: "10", ro.MAX_REPLICAS: "13"}
    old = rs("old", 8, annotations=ann, created="2024-01-01T00:00:01Z")
    new = rs("new", 5, annotations=ann, created="2024-01-01T00:00:02Z")
    d = dep(5, surge=1, unavailable=1)  # allowed 6: remove 7
    sizes = {r["metadata"]["name"]: n for r, n in ro.proportional_sizes(d, new, [old])}
    assert sum(sizes.values()) == 6 and sizes["old"] >= sizes["new"]


def test_a_single_active_replica_set_is_simply_resized():
    d = dep(7)
    new, old = rs("new", 5), rs("old", 0)
    assert [(r["metadata"]["name"], n) for r, n in ro.proportional_sizes(d, new, [old])] == \
        [("new", 7)]
    assert ro.proportional_sizes(dep(5), new, [old]) == []
    assert ro.find_active_or_latest(None, [rs("a", 0, created="2024-01-01T00:00:01Z"),
                                           rs("b", 0, created="2024-01-01T00:00:09Z")])[
        "metadata"]["name"] == "b"


# ------------------------------------------------------------------ revisions and templates


def test_find_new_ignores_the_hash_label_and_empty_fields():
    d = dep()
    a = rs("a", 1, image="img:1", created="2024-01-01T00:00:05Z")
    b = rs("b", 1, image="img:1", created="2024-01-01T00:00:01Z")
    b["spec"]["template"]["spec"]["volumes"] = []
    c = rs("c", 1, image="img:2")
    assert ro.find_new(d, [a, b, c]) is b  # the oldest match
    assert ro.find_new(dep(), [c]) is None


def test_template_hash_is_stable_and_collision_count_changes_it():
    t = dep()["spec"]["template"]
    h = ro.template_hash(t)
    assert h == ro.template_hash(t) and h != ro.template_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    labeled = {"metadata": {"labels": {"app": "x", ro.HASH_LABEL: "zzz"}},
               "spec": t["spec"]}
    assert ro.template_hash(labeled) == h


def test_revision_annotations_of_a_rollback():
    d = dep(annotations={"kubernetes.io/change-cause": "undo", ro.LAST_APPLIED: "{}"})
    target = rs("old", 0, revision=2)
    assert ro.set_new_rs_annotations(d, target, 4, exists=True)
    ann = target["metadata"]["annotations"]
    assert ann[ro.REVISION] == "4" and ann[ro.REVISION_HISTORY] == "2"
    assert ann["kubernetes.io/change-cause"] == "undo" and ro.LAST_APPLIED not in ann
    assert not ro.set_new_rs_annotations(d, target, 4, exists=True)  # settled
    assert ro.set_new_rs_annotations(d, target, 6, exists=True)
    assert ann[ro.REVISION] == "6" and ann[ro.REVISION_HISTORY] == "2,4"
    fresh = rs("fresh", 0)
    ro.set_new_rs_annotations(dep(10), fresh, 1, exists=False)
    assert fresh["metadata"]["annotations"][ro.DESIRED_REPLICAS] == "10"
    assert fresh["metadata"]["annotations"][ro.MAX_REPLICAS] == "13"
    assert ro.max_revision([rs("a", 0, revision=3), rs("b", 0, revision=7), rs("c", 0)]) == 7


def test_history_cleanup_keeps_the_limit_and_only_removes_settled_sets():
    d = dep(revisionHistoryLimit=2)
    olds = [rs(f"r{i}", 0, revision=i) for i in range(1, 6)]
    olds[1]["status"]["replicas"] = 1  # r2 still has a pod
    assert [r["metadata"]["name"] for r in ro.cleanable(d, olds)] == ["r1", "r3"]
    assert ro.cleanable(dep(revisionHistoryLimit=10), olds) == []
    d0 = dep(revisionHistoryLimit=0)
    assert len(ro.cleanable(d0, [rs("x", 0, revision=1)])) == 1


# ------------------------------------------------------------------ status and conditions


def conds(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


def test_status_sums_the_replica_sets_and_sets_available():
    d = dep(4, surge=1, unavailable=1)
    new = rs("new", 2, replicas=2, available=1, ready=2)
    old = rs("old", 3, replicas=3, available=3)
    st = ro.calculate_status(d, [old, new], new, T0)
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"], st["unavailableReplicas"]) == (5, 2, 5, 4, 1)
    assert conds(st)["Available"] == ("True", ro.MIN_AVAILABLE)
    st = ro.calculate_status(d, [rs("old", 4, available=2)], None, T0)
    assert conds(st)["Available"] == ("False", ro.MIN_UNAVAILABLE)


def test_progressing_condition_lifecycle():
    d = dep(2, status={"replicas": 2, "updatedReplicas": 0, "availableReplicas": 2,
                       "conditions": [ro.new_condition(ro.PROGRESSING, "True",
                                                       ro.NEW_RS_CREATED, "x", T0)]})
    new = rs("new", 1, available=1)
    old = rs("old", 1)
    st = ro.rollout_status(d, [old, new], new, T0 + datetime.timedelta(seconds=5))
    assert conds(st)["Progressing"] == ("True", ro.RS_UPDATED)
    assert [c for c in st["conditions"] if c["type"] == "Progressing"][0]["message"] == \
        'ReplicaSet "new" is progressing.'
    # nothing moved for longer than the deadline: timed out
    stuck = dep(2, deadline=10, status=st)
    later = T0 + datetime.timedelta(seconds=30)
    st2 = ro.rollout_status(stuck, [old, new], new, later)
    assert conds(st2)["Progressing"] == ("False", ro.TIMED_OUT)
    # before the deadline, look again when it would pass
    wait = ro.seconds_to_deadline(stuck, st, T0 + datetime.timedelta(seconds=7))
    assert wait == pytest.approx(9.0)
    # complete
    done = ro.rollout_status(d, [rs("old", 0, replicas=0, available=0), rs("new", 2)],
                             rs("new", 2), T0)
    assert conds(done)["Progressing"] == ("True", ro.NEW_RS_AVAILABLE)
    assert ro.complete(d, done)
    assert ro.seconds_to_deadline(d, done, T0) is None


def test_no_deadline_means_no_progressing_condition():
    d = dep(1, deadline=None, status={"conditions": [
        ro.new_condition(ro.PROGRESSING, "True", ro.RS_UPDATED, "x", T0)]})
    st = ro.rollout_status(d, [rs("n", 1)], rs("n", 1), T0)
    assert "Progressing" not in conds(st)


def test_set_condition_keeps_transition_time_and_order_rules():
    status = {"conditions": [ro.new_condition(ro.AVAILABLE, "True", "A", "m", T0)]}
    ro.set_condition(status, ro.new_condition(ro.AVAILABLE, "True", "A", "m2",
                                              T0 + datetime.timedelta(seconds=9)))
    assert status["conditions"][0]["message"] == "m"  # same status and reason: unchanged
    ro.set_condition(status, ro.new_condition(ro.AVAILABLE, "True", "B", "m3",
                                              T0 + datetime.timedelta(seconds=9)))
    c = status["conditions"][0]
    assert c["reason"] == "B" and c["lastTransitionTime"] == "2024-01-01T00:00:00Z"


def test_replica_failure_is_copied_from_the_replica_sets():
    failing = rs("new", 2, available=0)
    failing["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True",
                                        "reason": "FailedCreate", "message": "quota",
                                        "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    st = ro.rollout_status(dep(2), [failing], failing, T0)
    assert conds(st)["ReplicaFailure"] == ("True", "FailedCreate")
