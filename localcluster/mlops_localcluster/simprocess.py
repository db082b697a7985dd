"""Runs containers of the project's own image as local processes, for the node simulator.

Owns: the host layout of a pod (`<state-dir>/pods/<ns>/<pod>/volumes/<volume>`, logs at
`<state-dir>/pods/<ns>_<pod>_<container>.log`), the container's argv and environment, and running it.
Calls: subprocess, the filesystem, and a `lookup(kind, namespace, name)` callback for Secrets and ConfigMaps.

Command: `command + args` as Kubernetes joins them (no command: the image's entrypoint, `mlops-operator`).
`mlops-operator` is the console script next to `sys.executable` (the virtualenv's bin); `python`/`python3` is
`sys.executable`. `$(VAR)` references are expanded as the kubelet does. KUBECONFIG is the cluster's kubeconfig.

Path remapping: every volume of the pod (emptyDir or any other kind) is a host directory
`<state-dir>/pods/<ns>/<pod>/volumes/<volume>` (configMap and secret volumes are filled with their keys, best
effort). For a container, each volumeMount maps its mountPath (plus subPath) to that directory. An arg, an env
value, or workingDir that equals a mountPath or starts with `<mountPath>/` gets the mountPath replaced by the host
directory; so does the part after the first `=` of an arg like `--output=/data/model`. The longest mountPath
wins. Nothing else is rewritten (paths inside files or config are not).
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import mlserver
from .simstatus import Terminated

Lookup = Callable[[str, str, str], "Mapping[str, str] | None"]  # (kind, namespace, name) -> decoded data
DEFAULT_ENTRYPOINT = ("mlops-operator",)
LOG_TAIL_BYTES = 2048
LOG_TAIL_LINES = 80


def pod_dir(state_dir: pathlib.Path, namespace: str, name: str) -> pathlib.Path:
    return pathlib.Path(state_dir) / "pods" / namespace / name


def log_path(state_dir: pathlib.Path, namespace: str, pod: str, container: str) -> pathlib.Path:
    return pathlib.Path(state_dir) / "pods" / f"{namespace}_{pod}_{container}.log"


def volume_dirs(pod: Mapping[str, Any], state_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    meta = pod["metadata"]
    base = pod_dir(state_dir, meta.get("namespace", "default"), meta["name"]) / "volumes"
    return {v["name"]: base / v["name"] for v in pod.get("spec", {}).get("volumes") or []}


def mounts(container: Mapping[str, Any], vol_dirs: Mapping[str, pathlib.Path]) -> list[tuple[str, str]]:
    """(mountPath, host dir) pairs, longest mountPath first."""
    out = []
    for m in container.get("volumeMounts") or []:
        host = vol_dirs.get(m.get("name", ""))
        if host is None or not m.get("mountPath"):
            continue
        if m.get("subPath"):
            host = host / m["subPath"]
        out.append((m["mountPath"].rstrip("/") or "/", str(host)))
    return sorted(out, key=lambda p: len(p[0]), reverse=True)


def remap_path(value: str, mount_map: Iterable[tuple[str, str]]) -> str:
    for mount_path, host in mount_map:
        if value == mount_path:
            return host
        prefix = mount_path if mount_path.endswith("/") else mount_path + "/"
        if value.startswith(prefix):
            return host + "/" + value[len(prefix):]
    return value


def remap_arg(arg: str, mount_map: list[tuple[str, str]]) -> str:
    mapped = remap_path(arg, mount_map)
    if mapped != arg or "=" not in arg:
        return mapped
    key, value = arg.split("=", 1)
    return f"{key}={remap_path(value, mount_map)}"


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` is a literal `$`, the rest stays."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(sub, value)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    return str({
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }.get(path) or "")


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], lookup: Lookup | None,
                  mount_map: list[tuple[str, str]]) -> dict[str, str]:
    """The container's own environment (envFrom, then env), valueFrom resolved best effort, paths remapped."""
    ns = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = {}

    def data(kind: str, name: str) -> Mapping[str, str]:
        return (lookup(kind, ns, name) if lookup else None) or {}

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if src.get(key):
                env.update({prefix + k: v for k, v in data(kind, src[key].get("name", "")).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            vf = var["valueFrom"]
            if "fieldRef" in vf:
                value = _field(pod, vf["fieldRef"].get("fieldPath", ""))
            elif "secretKeyRef" in vf:
                value = data("Secret", vf["secretKeyRef"].get("name", "")).get(vf["secretKeyRef"].get("key"), "")
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                value = data("ConfigMap", ref.get("name", "")).get(ref.get("key"), "")
            else:
                value = ""  # resourceFieldRef: no meaningful local value
        else:
            value = expand(var.get("value", ""), env)
        env[var["name"]] = remap_path(value, mount_map)
    return env


def argv(container: Mapping[str, Any], env: Mapping[str, str], mount_map: list[tuple[str, str]],
         entrypoint: Iterable[str] = DEFAULT_ENTRYPOINT, bin_dir: pathlib.Path | None = None) -> list[str]:
    command = list(container.get("command") or entrypoint)
    words = [remap_arg(expand(w, env), mount_map) for w in command + list(container.get("args") or [])]
    bin_dir = bin_dir or pathlib.Path(sys.executable).parent
    if words and words[0] == "mlops-operator":
        words[0] = str(bin_dir / "mlops-operator")
    elif words and words[0] in ("python", "python3"):
        words[0] = sys.executable
    return words


def prepare_volumes(pod: Mapping[str, Any], state_dir: pathlib.Path, lookup: Lookup | None) -> dict[str, pathlib.Path]:
    dirs = volume_dirs(pod, state_dir)
    ns = pod["metadata"].get("namespace", "default")
    for vol in pod.get("spec", {}).get("volumes") or []:
        path = dirs[vol["name"]]
        path.mkdir(parents=True, exist_ok=True)
        for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
            if key in vol and lookup:
                ref = vol[key]
                content = lookup(kind, ns, ref.get("name") or ref.get("secretName") or "") or {}
                items = ref.get("items") or [{"key": k, "path": k} for k in content]
                for item in items:
                    if item.get("key") in content:
                        target = path / item.get("path", item["key"])
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(content[item["key"]])
    return dirs


def log_tail(path: pathlib.Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


class ProcessTable:
    """The processes the simulator started, by pod uid, so deletion and shutdown can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, list[subprocess.Popen]] = {}
        self._active: set[str] = set()  # pods with a local run in progress
        self._cancelled: set[str] = set()

    def begin(self, uid: str) -> None:
        with self._lock:
            self._active.add(uid)
            self._cancelled.discard(uid)

    def end(self, uid: str) -> None:
        with self._lock:
            self._active.discard(uid)
            self._cancelled.discard(uid)

    def add(self, uid: str, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.setdefault(uid, []).append(proc)
        if self.cancelled(uid):
            _stop(proc)

    def discard(self, uid: str, proc: subprocess.Popen) -> None:
        with self._lock:
            procs = self._procs.get(uid, [])
            if proc in procs:
                procs.remove(proc)
            if not procs:
                self._procs.pop(uid, None)

    def cancelled(self, uid: str) -> bool:
        with self._lock:
            return uid in self._cancelled

    def stop(self, uid: str) -> None:
        with self._lock:
            if uid not in self._active:
                return
            self._cancelled.add(uid)
            procs = list(self._procs.get(uid, []))
        for p in procs:
            _stop(p)

    def stop_all(self) -> None:
        with self._lock:
            procs = [p for ps in self._procs.values() for p in ps]
            self._cancelled.update(self._active)
        for p in procs:
            _stop(p)


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group: the container's children go too
        proc.wait(grace)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Runner:
    """Starts one container of a pod as a local process and reports how it ended."""

    def __init__(self, state_dir: pathlib.Path, kubeconfig: pathlib.Path, lookup: Lookup | None,
                 table: ProcessTable, entrypoint: Iterable[str] = DEFAULT_ENTRYPOINT, network=None):
        self.state_dir = pathlib.Path(state_dir)
        self.network = network  # network.PodNetwork: processes run in the pod's namespace; None: in the host's
        self.kubeconfig = pathlib.Path(network.kubeconfig if network else kubeconfig).resolve()
        self.lookup = lookup
        self.table = table
        self.entrypoint = tuple(entrypoint)

    def start(self, pod: Mapping[str, Any], container: Mapping[str, Any],
              vol_dirs: Mapping[str, pathlib.Path]) -> tuple[subprocess.Popen | None, float, pathlib.Path, str]:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta.get("uid", "")
        mount_map = mounts(container, vol_dirs)
        own_env = container_env(pod, container, self.lookup, mount_map)
        words = argv(container, own_env, mount_map, self.entrypoint)
        if mlserver.serves(container):  # the mlserver preset's image: its own venv, configured by env
            words, extra = mlserver.launch(own_env, host_network=not self.network)
            own_env.update(extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
        env.update(HOSTNAME=name, KUBECONFIG=str(self.kubeconfig),
                   PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if self.network:  # pod network hook
            env.update(self.network.env())
            words = self.network.wrap(words, pod)
        env.update(own_env)
        cwd = pod_dir(self.state_dir, ns, name)
        if container.get("workingDir"):
            cwd = pathlib.Path(remap_path(container["workingDir"], mount_map))
        cwd.mkdir(parents=True, exist_ok=True)
        log = log_path(self.state_dir, ns, name, container["name"])
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        with open(log, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(words)}\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(words, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                out.write(f"cannot start: {exc}\n".encode())
                return None, started, log, f"cannot start {words[0] if words else '(no command)'}: {exc}"
        self.table.add(uid, proc)
        return proc, started, log, ""

    def finish(self, pod, proc: subprocess.Popen, started: float, log: pathlib.Path) -> Terminated:
        try:
            code = proc.wait()
        finally:
            self.table.discard(pod["metadata"].get("uid", ""), proc)
        code = code if code >= 0 else 128 - code  # killed by signal N: 128+N, as containers report it
        return Terminated(code, started, time.time(), message="" if code == 0 else log_tail(log))

    def run_all(self, pod, containers: list[Mapping[str, Any]],
                vol_dirs: Mapping[str, pathlib.Path]) -> dict[str, Terminated]:
        """Runs the containers side by side and waits for all of them."""
        started = [(c, self.start(pod, c, vol_dirs)) for c in containers]
        results = {}
        for c, (proc, t0, log, error) in started:
            if proc is None:
                results[c["name"]] = Terminated(128, t0, time.time(), reason="StartError", message=error)
            else:
                results[c["name"]] = self.finish(pod, proc, t0, log)
        return results
