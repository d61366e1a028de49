"""Pod status as the kubelet reports it, computed from what the runtime shows and what the
pod worker decided (pure functions: no I/O, no clock of their own).

* :func:`container_status` — one entry of ``containerStatuses``/``initContainerStatuses``.
* :func:`pod_phase` — Pending / Running / Succeeded / Failed from the container statuses
  and the restart policy, with the kubelet's rules.
* :func:`pod_conditions` — PodReadyToStartContainers, Initialized, Ready, ContainersReady,
  PodScheduled (other writers' conditions are kept).
* :func:`pod_status` — the whole ``status``.
"""

from __future__ import annotations

import dataclasses
import datetime

from pilothouse.interfaces import runtime as rt
from pilothouse.model.meta import pod_qos_class

__all__ = ["ContainerView", "container_status", "is_sidecar", "pod_conditions", "pod_phase",
           "pod_status", "rfc3339", "should_restart"]

AGENT_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def is_sidecar(container: dict) -> bool:
    """An init container with ``restartPolicy: Always`` (a sidecar)."""
    return container.get("restartPolicy") == "Always"


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a regular container that exited with ``exit_code`` is restarted."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


@dataclasses.dataclass
class ContainerView:
    """What the worker knows about one container of the spec.

    ``latest``/``previous``: the newest instance in the runtime and the one before it;
    ``waiting``: ``(reason, message)`` when the worker holds the container back (back-off,
    image or config errors, waiting for init containers); ``restart_count`` when no
    instance is left to count from; termination ``messages`` by container id; image ids
    by container id (``imageID`` as reported)."""

    name: str
    latest: rt.ContainerStatus | None = None
    previous: rt.ContainerStatus | None = None
    waiting: tuple[str, str] | None = None
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    messages: dict[str, str] = dataclasses.field(default_factory=dict)
    image_ids: dict[str, str] = dataclasses.field(default_factory=dict)


def _terminated(c: rt.ContainerStatus, runtime_name: str, message: str) -> dict:
    if c.state is rt.ContainerState.UNKNOWN:
        out = {"exitCode": 137, "reason": "ContainerStatusUnknown",
               "message": "The container could not be located when the pod was terminated"}
    else:
        out = {"exitCode": c.exit_code,
               "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error")}
        if message or c.message:
            out["message"] = message or c.message
    if c.started_at:
        out["startedAt"] = rfc3339(c.started_at)
    if c.finished_at:
        out["finishedAt"] = rfc3339(c.finished_at)
    out["containerID"] = f"{runtime_name}://{c.id}"
    return out


def _exited(c: rt.ContainerStatus | None) -> bool:
    return c is not None and c.state in (rt.ContainerState.EXITED, rt.ContainerState.UNKNOWN)


def container_status(spec: dict, view: ContainerView, runtime_name: str) -> dict:
    """One ``containerStatuses`` entry in the kubelet's shape."""
    latest, previous = view.latest, view.previous
    out: dict = {"name": spec["name"], "image": spec.get("image", ""), "imageID": "",
                 "ready": False, "restartCount": view.restart_count, "started": False,
                 "state": {}, "lastState": {}}
    if latest is None:
        reason, message = view.waiting or ("ContainerCreating", "")
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message
                                                          else {})}}
        return out
    out["restartCount"] = max(latest.metadata.attempt, view.restart_count)
    out["image"] = latest.image or out["image"]
    out["imageID"] = view.image_ids.get(latest.id, latest.image_id)
    out["containerID"] = f"{runtime_name}://{latest.id}"
    last = previous if _exited(previous) else None
    if latest.state is rt.ContainerState.RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at or latest.created_at)}}
        out["ready"] = bool(view.ready and view.started)
        out["started"] = bool(view.started)
    elif latest.state is rt.ContainerState.CREATED:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
    elif view.waiting is not None:
        reason, message = view.waiting
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message
                                                          else {})}}
        last = latest
    else:
        out["state"] = {"terminated": _terminated(latest, runtime_name,
                                                  view.messages.get(latest.id, ""))}
    if last is not None:
        out["lastState"] = {"terminated": _terminated(last, runtime_name,
                                                      view.messages.get(last.id, ""))}
    return out


def pod_phase(spec: dict, init_statuses: list[dict], statuses: list[dict],
              terminal: bool = False) -> str:
    """The kubelet's phase rules. ``terminal`` is true when the pod is finished by the agent
    (deleted, or its sandbox is gone for good): then the phase is Succeeded when every
    container exited 0, and Failed otherwise."""
    policy = spec.get("restartPolicy") or "Always"
    by_name = {s["name"]: s for s in init_statuses + statuses}
    pending_init = failed_init = 0
    for c in spec.get("initContainers") or []:
        st = by_name.get(c["name"])
        state = (st or {}).get("state") or {}
        if is_sidecar(c):
            if not (st and "running" in state and st.get("started")):
                pending_init += 1
            continue
        if st is None or "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        else:
            last = (st.get("lastState") or {}).get("terminated")
            if last is not None and last.get("exitCode") != 0:
                failed_init += 1
            else:
                pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    regular_started = False
    for c in spec.get("containers") or []:
        st = by_name.get(c["name"])
        if st is None:
            unknown += 1
            continue
        state = st.get("state") or {}
        if st.get("containerID"):
            regular_started = True
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif (st.get("lastState") or {}).get("terminated") is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init > 0 and policy == "Never":
        phase = "Failed"
    elif pending_init > 0 and not regular_started:
        phase = "Pending"
    elif waiting > 0:
        phase = "Pending"
    elif running > 0 and unknown == 0:
        phase = "Running"
    elif running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            phase = "Succeeded" if stopped == succeeded else "Failed"
        elif policy == "Always":
            phase = "Running"
        elif stopped == succeeded:
            phase = "Succeeded"
        elif policy == "Never":
            phase = "Failed"
        else:
            phase = "Running"
    else:
        phase = "Pending"
    if terminal and phase not in ("Succeeded", "Failed"):
        phase = "Failed"
    return phase


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> dict:
    out = {"type": type_, "status": "True" if ok else "False"}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def pod_conditions(pod: dict, *, phase: str, init_statuses: list[dict],
                   statuses: list[dict], sandbox_ready: bool, now: str) -> list[dict]:
    """The agent's conditions plus the pod's other conditions, with ``lastTransitionTime``
    kept from the previous status when the condition's status did not change."""
    spec = pod.get("spec") or {}
    old = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    init_specs = spec.get("initContainers") or []
    by_name = {s["name"]: s for s in init_statuses}
    incomplete = []
    for c in init_specs:
        st = by_name.get(c["name"]) or {}
        state = st.get("state") or {}
        done = ("running" in state and st.get("started")) if is_sidecar(c) else \
            (state.get("terminated") or {}).get("exitCode") == 0
        if not done:
            incomplete.append(c["name"])
    any_regular_started = any(s.get("containerID") for s in statuses)
    if any_regular_started:
        incomplete = [n for n in incomplete
                      if is_sidecar(next(c for c in init_specs if c["name"] == n))]
    unready = [s["name"] for s in statuses if not s.get("ready")]
    unready += [s["name"] for s, c in zip(init_statuses, init_specs)
                if is_sidecar(c) and not s.get("ready")]
    completed = phase == "Succeeded"
    conditions = [_condition("PodReadyToStartContainers", sandbox_ready)]
    if completed:
        conditions.append(_condition("Initialized", True, "PodCompleted"))
    elif incomplete and not any_regular_started:
        conditions.append(_condition("Initialized", False, "ContainersNotInitialized",
                                     f"containers with incomplete status: "
                                     f"[{' '.join(incomplete)}]"))
    else:
        conditions.append(_condition("Initialized", True))
    if completed or phase == "Failed":
        ready_cond = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        ready_cond = _condition("ContainersReady", False, "ContainersNotReady",
                                f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready_cond = _condition("ContainersReady", True)
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    missing = [g for g in gates if (old.get(g) or {}).get("status") != "True"]
    if ready_cond["status"] != "True":
        pod_ready = dict(ready_cond, type="Ready")
    elif missing:
        g = missing[0]
        msg = (f'corresponding condition of pod readiness gate "{g}" does not exist.'
               if g not in old else
               f'the status of pod readiness gate "{g}" is not "True", but '
               f'{old[g].get("status")}')
        pod_ready = _condition("Ready", False, "ReadinessGatesNotReady", msg)
    else:
        pod_ready = _condition("Ready", True)
    conditions += [pod_ready, ready_cond]
    if "PodScheduled" not in old:
        conditions.append(_condition("PodScheduled", True))
    for c in conditions:
        prev = old.get(c["type"])
        c["lastProbeTime"] = None
        c["lastTransitionTime"] = (prev.get("lastTransitionTime") if prev and
                                   prev.get("status") == c["status"] and
                                   prev.get("lastTransitionTime") else now)
    ours = {c["type"] for c in conditions}
    others = [c for c in (pod.get("status") or {}).get("conditions") or []
              if c.get("type") not in ours]
    # the kubelet's order, with other writers' conditions (PodScheduled, gates) after
    return conditions[:4] + others + conditions[4:]


def pod_status(pod: dict, *, init_statuses: list[dict], statuses: list[dict],
               sandbox_ready: bool, host_ip: str, pod_ips: tuple[str, ...],
               start_time: str | None, now: str, terminal: bool = False,
               phase: str | None = None, reason: str = "", message: str = "") -> dict:
    """The whole ``status`` of a pod the agent runs."""
    spec = pod.get("spec") or {}
    phase = phase or pod_phase(spec, init_statuses, statuses, terminal)
    status: dict = {"phase": phase}
    status["conditions"] = pod_conditions(pod, phase=phase, init_statuses=init_statuses,
                                          statuses=statuses, sandbox_ready=sandbox_ready,
                                          now=now)
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    if start_time:
        status["startTime"] = start_time
    if spec.get("initContainers"):
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = pod_qos_class(pod)
    return status
