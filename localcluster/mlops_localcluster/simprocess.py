"""Runs containers whose image runs as a process (simstatus.PROCESS_IMAGES) as local processes, for the node
simulator.

Owns: the host layout of a pod (`<state-dir>/pods/<ns>/<pod>/volumes/<volume>`; logs, as a kubelet keeps them in
/var/log/pods, at `<state-dir>/logs/<ns>_<pod>_<uid>/<container>/<restartCount>.log` in the CRI format
`<RFC3339Nano time> stdout|stderr F <line>`), the container's argv and environment, starting it (`Runner.start`,
the one place a container process is started; `Runner.run_command` runs exec probes the same way), and the
checks of the Secrets and ConfigMaps a pod refers to.
Calls: subprocess, the filesystem, and a `lookup(kind, namespace, name)` callback for Secrets and ConfigMaps.

Command: `command + args` as Kubernetes joins them (no command: the image's entrypoint, `mlops-operator`; for the
Python images, which have none, the args alone, or `python3`).
`mlops-operator` is the console script next to `sys.executable` (the virtualenv's bin); `python`/`python3` is
`sys.executable`. Images in DEBIAN_IMAGES (Prometheus, Alertmanager) run Debian's binary as their ENTRYPOINT,
with the upstream image's CMD when the container sets neither command nor args (`debian_image_argv`). `$(VAR)`
references are expanded as the kubelet does. KUBECONFIG is the cluster's kubeconfig; PYTHONUNBUFFERED=1 unless
the pod sets it, so `kubectl logs -f` shows a Python server's lines as they come.

Path remapping: every volume of the pod (emptyDir or any other kind) is a host directory
`<state-dir>/pods/<ns>/<pod>/volumes/<volume>` (configMap and secret volumes are filled with their keys, best
effort). For a container, each volumeMount maps its mountPath (plus subPath) to that directory. An arg, an env
value, or workingDir that equals a mountPath or starts with `<mountPath>/` gets the mountPath replaced by the host
directory; so does the part after the first `=` of an arg like `--output=/data/model`. The longest mountPath
wins. The folders of a DEBIAN_IMAGES image's own filesystem that no volume covers (`/prometheus`,
`/etc/prometheus`) map the same way to `<state-dir>/pods/<ns>/<pod>/containers/<container>/<path>`, so two pods
never share a data folder on the host. Nothing else is rewritten (paths inside files or config are not).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import mlserver, torchimage
from .simstatus import Terminated, image_name

Lookup = Callable[[str, str, str], "Mapping[str, str] | None"]  # (kind, namespace, name) -> decoded data
DEFAULT_ENTRYPOINT = ("mlops-operator",)
# Process images without an ENTRYPOINT, with their CMD: a container's args replace that CMD and are run as they are
# (`python:3.11` with args ["python", "-c", "..."] runs python), as Kubernetes joins them.
NO_ENTRYPOINT = {"python": ("python3",)}
LOG_TAIL_BYTES = 2048
LOG_TAIL_LINES = 80


def pod_dir(state_dir: pathlib.Path, namespace: str, name: str) -> pathlib.Path:
    return pathlib.Path(state_dir) / "pods" / namespace / name


def logs_dir(state_dir: pathlib.Path, namespace: str, pod: str, uid: str) -> pathlib.Path:
    return pathlib.Path(state_dir) / "logs" / f"{namespace}_{pod}_{uid}"


def log_path(state_dir: pathlib.Path, namespace: str, pod: str, uid: str, container: str,
             restart_count: int = 0) -> pathlib.Path:
    return logs_dir(state_dir, namespace, pod, uid) / container / f"{restart_count}.log"


def cri_line(t: float, stream: str, text: bytes) -> bytes:
    """One log line as the CRI runtimes write it: `2026-01-02T03:04:05.123456789Z stdout F text`."""
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp}000Z {stream} F ".encode() + text.rstrip(b"\n") + b"\n"


def parse_cri_line(line: bytes) -> tuple[str, bytes]:
    """(timestamp, text with its newline) of a CRI log line; a line in another format is all text."""
    parts = line.split(b" ", 3)
    if len(parts) == 4 and parts[1] in (b"stdout", b"stderr"):
        return parts[0].decode(), parts[3]
    return "", line


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


@dataclasses.dataclass(frozen=True)
class DebianImage:
    """An upstream image played by a binary of a Debian package (build.DEBIAN_PACKAGES)."""
    entrypoint: str  # the image's ENTRYPOINT, as a command may also name it
    binary: str  # the Debian binary that runs in its place
    cmd: tuple[str, ...]  # the image's CMD: the args when the container sets neither command nor args
    dirs: tuple[str, ...]  # folders of the image's own filesystem (see prepare_image_dirs)
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)  # files the image ships in them


# By the last path component of the repository, as PROCESS_IMAGES matches (`prom/prometheus:v2.42.0`).
DEBIAN_IMAGES = {
    "prometheus": DebianImage(
        "/bin/prometheus", "/usr/bin/prometheus",
        ("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
        ("/etc/prometheus", "/prometheus"),
        {"/etc/prometheus/prometheus.yml":
         "scrape_configs: [{job_name: prometheus, static_configs: [{targets: ['localhost:9090']}]}]\n"}),
    "alertmanager": DebianImage(
        "/bin/alertmanager", "/usr/bin/prometheus-alertmanager",
        ("--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"),
        ("/etc/alertmanager", "/alertmanager"),
        {"/etc/alertmanager/alertmanager.yml": "route: {receiver: web.hook}\n"
         "receivers: [{name: web.hook, webhook_configs: [{url: 'http://127.0.0.1:5001/'}]}]\n"}),
}


def debian_image_argv(container: Mapping[str, Any]) -> list[str] | None:
    """`command + args` of a DEBIAN_IMAGES container as Kubernetes joins them with the image's ENTRYPOINT and
    CMD (no command: the ENTRYPOINT; no command and no args: ENTRYPOINT + CMD), the ENTRYPOINT written as the
    Debian binary. None for other images."""
    image = DEBIAN_IMAGES.get(image_name(container.get("image") or ""))
    if image is None:
        return None
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    words = (command or [image.entrypoint]) + (args if command or args else list(image.cmd))
    if words[0] in (image.entrypoint, image.entrypoint.rsplit("/", 1)[-1]):
        words[0] = image.binary
    return words


def prepare_image_dirs(container: Mapping[str, Any], root: pathlib.Path) -> list[tuple[str, str]]:
    """(path, host dir) pairs for the folders of a DEBIAN_IMAGES image's own filesystem, made under `root` with
    the files the image ships (kept as they are when they exist: a restarted container finds its data)."""
    image = DEBIAN_IMAGES.get(image_name(container.get("image") or ""))
    if image is None:
        return []
    for path in image.dirs:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, text in image.files.items():
        if not (root / path.lstrip("/")).exists():
            (root / path.lstrip("/")).write_text(text)
    return [(path, str(root / path.lstrip("/"))) for path in image.dirs]


def path_map(pod: Mapping[str, Any], container: Mapping[str, Any], vol_dirs: Mapping[str, pathlib.Path],
             state_dir: pathlib.Path) -> list[tuple[str, str]]:
    """The container's path remapping: its volume mounts, longest first, then its image's own folders, so a
    volume mounted over one of those wins."""
    meta = pod["metadata"]
    root = pod_dir(state_dir, meta.get("namespace", "default"), meta["name"]) / "containers" / container["name"]
    return mounts(container, vol_dirs) + prepare_image_dirs(container, root)


def argv(container: Mapping[str, Any], env: Mapping[str, str], mount_map: list[tuple[str, str]],
         entrypoint: Iterable[str] = DEFAULT_ENTRYPOINT, bin_dir: pathlib.Path | None = None) -> list[str]:
    words = debian_image_argv(container)
    if words is None and not container.get("command") and image_name(container.get("image") or "") in NO_ENTRYPOINT:
        # No ENTRYPOINT in the image: args alone are the command line (none: the image's CMD).
        words = list(container.get("args") or NO_ENTRYPOINT[image_name(container["image"])])
    if words is None:
        words = list(container.get("command") or entrypoint) + list(container.get("args") or [])
    words = [remap_arg(expand(w, env), mount_map) for w in words]
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
            raw = f.read()
    except OSError:
        return ""
    text = b"".join(parse_cri_line(line)[1] for line in raw.splitlines(keepends=True))
    return "\n".join(text.decode("utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:])


# --- Secrets and ConfigMaps a pod needs before it can start ------------------------------------------------------

def _finder(pod: Mapping[str, Any], lookup: Lookup):
    ns, seen = pod["metadata"].get("namespace", "default"), {}

    def find(kind: str, name: str):
        if (kind, name) not in seen:
            seen[kind, name] = lookup(kind, ns, name)
        return seen[kind, name]
    return ns, find


def _not_found(kind: str, name: str) -> str:
    return f'{kind.lower()} "{name}" not found'


def volume_problem(pod: Mapping[str, Any], lookup: Lookup) -> str:
    """Why the pod's volumes cannot be set up (a missing, not optional Secret or ConfigMap), or ""."""
    _, find = _finder(pod, lookup)
    for vol in pod.get("spec", {}).get("volumes") or []:
        for key, kind, name_key in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
            ref = vol.get(key)
            if ref is not None and not ref.get("optional") and find(kind, ref.get(name_key, "")) is None:
                missing = _not_found(kind, ref.get(name_key, ""))
                return f'MountVolume.SetUp failed for volume "{vol["name"]}" : {missing}'
    return ""


def env_problem(pod: Mapping[str, Any], containers: Iterable[Mapping[str, Any]], lookup: Lookup) -> str:
    """Why a container's environment cannot be built (CreateContainerConfigError's message), or ""."""
    ns, find = _finder(pod, lookup)
    for c in containers:
        for src in c.get("envFrom") or []:
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = src.get(key)
                if ref is not None and not ref.get("optional") and find(kind, ref.get("name", "")) is None:
                    return _not_found(kind, ref.get("name", ""))
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = vf.get(key)
                if ref is None or ref.get("optional"):
                    continue
                data = find(kind, ref.get("name", ""))
                if data is None:
                    return _not_found(kind, ref.get("name", ""))
                if ref.get("key") not in data:
                    return f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name', '')}"
    return ""


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

    def stop(self, uid: str, grace: float = 3.0) -> None:
        """SIGTERM to every process of the pod, SIGKILL to those still there after `grace` seconds."""
        with self._lock:
            if uid not in self._active:
                return
            self._cancelled.add(uid)
            procs = list(self._procs.get(uid, []))
        _stop_together(procs, grace)

    def stop_all(self, grace: float = 2.0) -> None:
        """All at once, so a simulator that is asked to stop stops within about `grace` seconds."""
        with self._lock:
            procs = [p for ps in self._procs.values() for p in ps]
            self._cancelled.update(self._active)
        _stop_together(procs, grace)


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """By pid: the process group we started (start_new_session), so the container's children go too."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(max(0.0, grace))
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    _stop(proc, grace)


def _stop_together(procs: list[subprocess.Popen], grace: float) -> None:
    threads = [threading.Thread(target=_stop, args=(p, grace), daemon=True) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@dataclasses.dataclass
class Started:
    """A container process as started: `proc` is None when it could not start (`error` says why)."""
    proc: subprocess.Popen | None
    started_at: float
    log: pathlib.Path
    error: str = ""
    pumps: tuple[threading.Thread, ...] = ()

    def result(self, code: int) -> Terminated:
        for pump in self.pumps:
            pump.join(5)  # the last lines are in the file before anyone reads the message
        code = code if code >= 0 else 128 - code  # killed by signal N: 128+N, as containers report it
        return Terminated(code, self.started_at, time.time(), message="" if code == 0 else log_tail(self.log))


def _pump(pipe, stream: str, out, lock: threading.Lock) -> None:
    """Copies one output stream of a container into its log file, line by line, in the CRI format."""
    with pipe:
        for line in iter(pipe.readline, b""):
            with lock:
                out.write(cri_line(time.time(), stream, line))
                out.flush()


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

    def environment(self, pod: Mapping[str, Any], own_env: Mapping[str, str]) -> dict[str, str]:
        """The process's whole environment: the simulator's (minus in-cluster variables), then the container's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
        env.update(HOSTNAME=pod["metadata"]["name"], KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1",
                   PYTHONFAULTHANDLER="1",  # SIGABRT prints every thread's stack: how a hung process is read
                   PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if self.network:
            env.update(self.network.env())  # the `kubernetes` Service's variables, as a kubelet sets them
        env.update(own_env)
        return env

    def start(self, pod: Mapping[str, Any], container: Mapping[str, Any], vol_dirs: Mapping[str, pathlib.Path],
              restart_count: int = 0) -> Started:
        """Builds the container's argv, environment and working directory and starts it: the one place a
        container process is started."""
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", "default"), meta["name"], meta.get("uid", "")
        mount_map = path_map(pod, container, vol_dirs, self.state_dir)
        own_env = container_env(pod, container, self.lookup, mount_map)
        env = self.environment(pod, own_env)
        words = argv(container, own_env, mount_map, self.entrypoint)
        if mlserver.serves(container):  # the mlserver preset's image: its own venv, configured by env
            words, extra = mlserver.launch(own_env, host_network=not self.network)
            env.update(extra)
        image_error = ""
        if torchimage.serves(container):  # a pytorch image: its own venv, made on first use as an image is pulled
            try:
                torchimage.ensure(self.state_dir / "torch-image.log")
                words, extra = torchimage.launch(words, env)
                env.update(extra)
            except RuntimeError as exc:
                image_error = str(exc)
        if self.network:  # pod network hook: the process runs in the pod's network namespace
            words = self.network.wrap(words, pod)
        cwd = pod_dir(self.state_dir, ns, name)
        if container.get("workingDir"):
            cwd = pathlib.Path(remap_path(container["workingDir"], mount_map))
        cwd.mkdir(parents=True, exist_ok=True)
        log = log_path(self.state_dir, ns, name, uid, container["name"], restart_count)
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        out = open(log, "ab")
        try:
            if image_error:
                raise OSError(image_error)
            proc = subprocess.Popen(words, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            error = image_error or f"cannot start {words[0] if words else '(no command)'}: {exc}"
            out.write(cri_line(time.time(), "stderr", error.encode()))
            out.close()
            return Started(None, started, log, error)
        lock = threading.Lock()
        pumps = tuple(threading.Thread(target=_pump, args=(pipe, stream, out, lock), daemon=True,
                                       name=f"log-{ns}/{name}/{container['name']}-{stream}")
                      for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")))
        for pump in pumps:
            pump.start()
        threading.Thread(target=_close_after, args=(pumps, out), daemon=True).start()
        self.table.add(uid, proc)
        return Started(proc, started, log, "", pumps)

    def run_command(self, pod: Mapping[str, Any], container: Mapping[str, Any], command: list[str],
                    vol_dirs: Mapping[str, pathlib.Path], timeout: float) -> subprocess.CompletedProcess:
        """An exec probe: the command as the container's own process would run it (environment, path remapping,
        interpreter), output captured. Raises subprocess.TimeoutExpired after `timeout` seconds."""
        meta = pod["metadata"]
        mount_map = path_map(pod, container, vol_dirs, self.state_dir)
        own_env = container_env(pod, container, self.lookup, mount_map)
        words = argv({"command": command}, own_env, mount_map, self.entrypoint)
        if self.network:
            words = self.network.wrap(words, pod)
        cwd = pod_dir(self.state_dir, meta.get("namespace", "default"), meta["name"])
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run(words, env=self.environment(pod, own_env), cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)

    def connector(self, pod: Mapping[str, Any]):
        """How HTTP and TCP probes of the pod connect: from inside its network namespace when it has one."""
        return (self.network.connector(pod) if self.network else None) or socket.create_connection

    def finish(self, pod, started: Started) -> Terminated:
        """Waits for the process to end."""
        if started.proc is None:
            return Terminated(128, started.started_at, time.time(), reason="StartError", message=started.error)
        try:
            code = started.proc.wait()
        finally:
            self.table.discard(pod["metadata"].get("uid", ""), started.proc)
        return started.result(code)

    def run_all(self, pod, containers: list[Mapping[str, Any]],
                vol_dirs: Mapping[str, pathlib.Path]) -> dict[str, Terminated]:
        """Runs the containers side by side and waits for all of them."""
        started = [(c, self.start(pod, c, vol_dirs)) for c in containers]
        return {c["name"]: self.finish(pod, s) for c, s in started}


def _close_after(pumps: Iterable[threading.Thread], out) -> None:
    for pump in pumps:
        pump.join()
    out.close()
