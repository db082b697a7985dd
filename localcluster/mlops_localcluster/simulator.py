"""The node simulator: plays kubelet for pods bound to the simulated node pool.

    python -m mlops_localcluster.simulator --kubeconfig PATH --state-dir DIR [--config FILE] [--pool FILE]
        [--tls-cert-file CRT --tls-private-key-file KEY] [--kubelet-port N]

Owns: one watch on pods in all namespaces (relisted every RESYNC_SECONDS), a timer heap for delayed transitions,
status PATCHes, the deletions that no kubelet will finish (SIGTERM, then SIGKILL after the grace period, for pods
with processes), a pod worker thread per pod with containers that run as processes (`podworker`), the kubelet
endpoint for `kubectl logs` (`kubeletapi`), the nodes' kubelet address (InternalIP 127.0.0.1 and
daemonEndpoints.kubeletEndpoint.Port, patched at start), and, with `--network`, the pod network hook
(`network.PodNetwork`: a namespace per pod with processes, set up before its worker starts and removed when the
pod is gone) and the hosts-file writer.
Calls: the API server (raw JSON through the kubernetes ApiClient), `simstatus` for every decision and status body
(pure), `simprocess` for local processes (see its docstring for the volume path-remapping rule), `nodes` for the pool.
Which pods run as processes, the annotations and the log files: docs/localcluster-pods.md.

The kube-scheduler alone decides placement; this never binds a pod. Pods on no node are left alone unless they
carry a deletionTimestamp. Everything is level-triggered: what to do next is derived from the pod's current
status, so a restarted simulator resumes where the last one stopped.

Config file (YAML, all keys optional; command-line flags win):

    startDelaySeconds: 0.5        # bound -> Running
    runSeconds: 1.0               # Running -> Succeeded for run-to-completion pods
                                  # (annotation sim.mlops.dev/run-seconds)
    crashBackoffSeconds: 10       # CrashLoopBackOff: the wait before the 2nd restart; doubles per restart (kubelet: 10)
    crashBackoffMaxSeconds: 300   # (kubelet: 300); tests may shorten both
    ownImages: [mlops-operator]   # images run as local processes (last path component, or a full repository)
    ownImageEntrypoint: [mlops-operator]
    pool: nodes.yaml              # node pool file (relative to this file); or a `nodes:` list inline
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import heapq
import itertools
import json
import logging
import pathlib
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from . import kubeletapi, podworker, simprocess
from . import nodes as nodepool
from .errors import ClusterError
from .network import ClusterNetwork, IpAllocator, PodNetwork
from .simstatus import (
    LABEL_RUNS,
    Facts,
    Plan,
    Settings,
    already_applied,
    decide,
    gang_key,
    rendezvous,
    runs_as_process,
    runs_label,
)

log = logging.getLogger("simulator")

SMP = "application/strategic-merge-patch+json"
RESYNC_SECONDS = 60  # a full list this often, as a kubelet resyncs: a missed watch event is repaired by it
WATCH_TIMEOUT = RESYNC_SECONDS
RETRY_SECONDS = 1.0
KUBELET_ADDRESS = "127.0.0.1"  # every simulated node's kubelet endpoint is this host's loopback


# --- configuration -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Config:
    settings: Settings
    pool: nodepool.NodePool
    entrypoint: tuple[str, ...] = simprocess.DEFAULT_ENTRYPOINT


def load_config(path: str | None, overrides: Mapping[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {}
    base = pathlib.Path(".")
    if path:
        try:
            data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"simulator config: cannot read {path}: {exc}") from exc
        base = pathlib.Path(path).parent
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {"startDelaySeconds", "runSeconds", "crashBackoffSeconds", "crashBackoffMaxSeconds", "ownImages",
             "ownImageEntrypoint", "pool", "nodes"}
    if set(data) - known:
        raise ClusterError(f"simulator config: unknown keys {sorted(set(data) - known)}")
    d = Settings()
    settings = Settings(
        start_delay=float(data.get("startDelaySeconds", d.start_delay)),
        run_seconds=float(data.get("runSeconds", d.run_seconds)),
        crash_backoff=float(data.get("crashBackoffSeconds", d.crash_backoff)),
        crash_backoff_max=float(data.get("crashBackoffMaxSeconds", d.crash_backoff_max)),
        own_images=tuple(data.get("ownImages") or d.own_images),
    )
    if data.get("nodes"):
        pool = nodepool.pool_from_dict({"nodes": data["nodes"]})
    elif (overrides or {}).get("pool"):
        pool = nodepool.load_pool(overrides["pool"])  # a command-line path, relative to the working directory
    elif data.get("pool"):
        pool = nodepool.load_pool(base / str(data["pool"]))
    else:
        pool = nodepool.default_pool()
    entrypoint = tuple(data.get("ownImageEntrypoint") or simprocess.DEFAULT_ENTRYPOINT)
    return Config(settings=settings, pool=pool, entrypoint=entrypoint)


# --- raw JSON access to the API server ---------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"{status}: {body[:300]}")
        self.status = status
        self.body = body


class Kube:
    """A few pod calls as plain JSON: no model classes, so thousands of pods stay cheap."""

    def __init__(self, api_client):
        self.api_client = api_client

    def _call(self, method: str, path: str, query: list | None = None, body: Any = None,
              content_type: str | None = None, timeout: float | tuple | None = 30, stream: bool = False):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        req = self.api_client.param_serialize(method=method, resource_path=path, query_params=query or [],
                                              header_params=headers, body=body, auth_settings=["BearerToken"])
        resp = self.api_client.call_api(*req, _request_timeout=timeout)
        if stream and 200 <= resp.status < 300:
            return resp.response
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, data.decode("utf-8", errors="replace") if data else "")
        return json.loads(data) if data else None

    def list_pods(self) -> tuple[list[dict], str]:
        items, cont = [], ""
        while True:
            query = [("limit", 500)] + ([("continue", cont)] if cont else [])
            page = self._call("GET", "/api/v1/pods", query, timeout=120)
            items.extend(page.get("items") or [])
            cont = page["metadata"].get("continue") or ""
            if not cont:
                return items, page["metadata"]["resourceVersion"]

    def watch_pods(self, resource_version: str) -> Iterator[dict]:
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", WATCH_TIMEOUT)]
        resp = self._call("GET", "/api/v1/pods", query, timeout=(10, WATCH_TIMEOUT + 30), stream=True)
        try:
            buf = b""
            for chunk in resp.stream(64 * 1024, decode_content=False):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()

    def patch_node_status(self, name: str, body: dict) -> dict:
        return self._call("PATCH", f"/api/v1/nodes/{name}/status", body=body, content_type=SMP)

    def patch_pod_status(self, namespace: str, name: str, body: dict) -> dict:
        return self._call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", body=body,
                          content_type=SMP)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)

    def get(self, path: str) -> dict | None:
        try:
            return self._call("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret or ConfigMap, or None."""
        plural = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        obj = self.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}") if name else None
        if not obj:
            return None
        data = dict(obj.get("data") or {})
        if kind == "Secret":
            return {k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in data.items()}
        data.update({k: base64.b64decode(v).decode("utf-8", errors="replace")
                     for k, v in (obj.get("binaryData") or {}).items()})
        return data


# --- small state ---------------------------------------------------------------------------------------------

def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _key(pod: Mapping[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"


# --- the simulator -------------------------------------------------------------------------------------------

class Simulator:
    def __init__(self, kube: Kube, config: Config, state_dir: pathlib.Path, kubeconfig: pathlib.Path,
                 net: PodNetwork | None = None):
        self.kube = kube
        self.settings = config.settings
        self.state_dir = pathlib.Path(state_dir)
        self.hosts: dict[str, str] = config.pool.host_ips()  # simulated node -> host IP
        self._not_ours: dict[str, float] = {}  # node name -> when we last checked it is not simulated
        self.procs = simprocess.ProcessTable()
        self.net = net  # pod network hook: process pods run in a namespace of their own (None: in the host's)
        self.runner = simprocess.Runner(self.state_dir, kubeconfig, kube.lookup, self.procs, config.entrypoint,
                                        network=net)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.pods: dict[str, dict] = {}  # uid -> newest pod seen
        self.seen_at: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.workers: dict[str, podworker.PodWorker] = {}  # uid -> the worker running its processes
        self.terminating: set[str] = set()  # uids whose processes are being stopped before the delete
        self.kubelet: kubeletapi.KubeletServer | None = None
        self.ips = IpAllocator()
        self._queue: queue.Queue[str] = queue.Queue()
        self._timers: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._seq = itertools.count()
        self.writes = 0

    # --- which pods are ours ---
    def _is_sim_node(self, name: str) -> bool:
        if name in self.hosts:
            return True
        checked = self._not_ours.get(name)
        if checked and time.time() - checked < 30:
            return False
        try:
            node = self.kube.get(f"/api/v1/nodes/{name}")
        except Exception as exc:  # noqa: BLE001 - a failed lookup only delays the pod to its next event
            log.warning("cannot read node %s: %s", name, exc)
            return False
        if node and (node["metadata"].get("labels") or {}).get(nodepool.SIMULATED_LABEL) == "true":
            addrs = node.get("status", {}).get("addresses") or []
            self.hosts[name] = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), "10.0.0.1")
            log.info("simulating node %s too (labelled %s)", name, nodepool.SIMULATED_LABEL)
            self.report_kubelet_endpoint([name])
            return True
        self._not_ours[name] = time.time()
        return False

    def _relevant(self, pod: Mapping[str, Any]) -> bool:
        node = pod.get("spec", {}).get("nodeName")
        if node:
            return self._is_sim_node(node)
        return bool(pod["metadata"].get("deletionTimestamp"))

    # --- cache, fed by the watch and by our own writes ---
    def observe(self, pod: dict) -> None:
        if not self._relevant(pod):
            return
        uid = pod["metadata"]["uid"]
        with self._lock:
            old = self.pods.get(uid)
            if old is not None and _rv(old) > _rv(pod):
                return  # our own write already gave us something newer
            self.pods[uid] = pod
            if pod.get("spec", {}).get("nodeName"):
                self.seen_at.setdefault(uid, time.time())
                if not pod.get("spec", {}).get("hostNetwork"):
                    self.ips.claim(uid, pod.get("status", {}).get("podIP", ""))
        self._queue.put(uid)

    def forget(self, uid: str) -> None:
        with self._lock:
            pod = self.pods.pop(uid, None)
            self.seen_at.pop(uid, None)
            self.started_at.pop(uid, None)
            self._due.pop(uid, None)
            self.ips.release(uid)
            worker = self.workers.get(uid)
        if worker is not None:  # deleted under us (grace period 0): stop its processes, off the watch thread
            grace = podworker.grace_seconds(pod or worker.pod)
            threading.Thread(target=self._stop_then_teardown, args=(uid, worker, grace), daemon=True).start()
        elif self.net:  # pod network hook
            self.net.teardown(uid)
        if pod is None:
            return
        # Volumes live as long as the pod (logs stay, for debugging), unless a new pod took the name.
        folder = simprocess.pod_dir(self.state_dir, pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        if folder.exists():
            with self._lock:
                reused = any(_key(p) == _key(pod) for p in self.pods.values())
            if not reused:
                shutil.rmtree(folder, ignore_errors=True)

    def resync(self, pods: list[dict]) -> None:
        uids = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            gone = [u for u in self.pods if u not in uids]
        for uid in gone:
            self.forget(uid)
        with self._lock:  # every IP in use is known before any pod gets a new one
            for pod in pods:
                if pod.get("status", {}).get("podIP") and not pod.get("spec", {}).get("hostNetwork"):
                    self.ips.claim(pod["metadata"]["uid"], pod["status"]["podIP"])
        if self.net:  # pod network hook: adopt the namespaces of listed pods, remove the others
            self.net.prune(pods)
        for pod in pods:
            self.observe(pod)

    # --- the watch thread ---
    def watch_loop(self) -> None:
        rv, listed_at = "", 0.0
        while not self.stopping.is_set():
            try:
                if not rv or time.monotonic() - listed_at >= RESYNC_SECONDS:
                    pods, rv = self.kube.list_pods()
                    listed_at = time.monotonic()
                    self.resync(pods)
                    log.info("listed %d pods (resourceVersion %s), %d on simulated nodes or terminating",
                             len(pods), rv, len(self.pods))
                for event in self.kube.watch_pods(rv):
                    if self.stopping.is_set():
                        return
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        log.info("watch error %s: %s; listing again", obj.get("code"), obj.get("message"))
                        rv = ""
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        self.forget(obj["metadata"]["uid"])
                    else:
                        self.observe(obj)
            except ApiError as exc:
                log.warning("watch: %s", exc)
                if exc.status == 410:
                    rv = ""
                self.stopping.wait(RETRY_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting; keep trying
                if self.stopping.is_set():
                    return
                log.warning("watch: %s: %s", type(exc).__name__, exc)
                self.stopping.wait(RETRY_SECONDS)

    # --- the decision loop (one thread) ---
    def _schedule(self, uid: str, at: float) -> None:
        """Decide about the pod again at `at`; any thread may call it."""
        with self._lock:
            if self._due.get(uid, float("inf")) <= at:
                return  # an earlier timer will decide again anyway
            self._due[uid] = at
            heapq.heappush(self._timers, (at, next(self._seq), uid))

    def run(self) -> None:
        while not self.stopping.is_set():
            timeout = 0.5
            with self._lock:
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.time()))
            batch = set()
            try:
                batch.add(self._queue.get(timeout=timeout))
                while True:
                    batch.add(self._queue.get_nowait())
            except queue.Empty:
                pass
            now = time.time()
            with self._lock:
                while self._timers and self._timers[0][0] <= now:
                    at, _, uid = heapq.heappop(self._timers)
                    if self._due.get(uid) == at:
                        del self._due[uid]
                        batch.add(uid)
            for uid in batch:
                if self.stopping.is_set():
                    break
                self.step(uid)

    def facts(self, uid: str, pod: Mapping[str, Any], check_config: bool = False) -> Facts:
        host_ip = self.hosts.get(pod.get("spec", {}).get("nodeName", ""), "")
        config_error = volume_error = ""
        if check_config:  # API reads: only for a simulated pod that has not started yet
            volume_error = simprocess.volume_problem(pod, self.kube.lookup)
            spec = pod.get("spec", {})
            config_error = simprocess.env_problem(pod, (spec.get("initContainers") or []) + spec.get("containers", []),
                                                  self.kube.lookup)
        with self._lock:
            pod_ip = host_ip if pod.get("spec", {}).get("hostNetwork") else self.ips.get(uid)
            waits, met = rendezvous(pod, list(self.pods.values())) if gang_key(pod) else (False, None)
            return Facts(host_ip=host_ip, pod_ip=pod_ip, seen_at=self.seen_at.get(uid, time.time()),
                         started_at=self.started_at.get(uid), local_busy=uid in self.workers,
                         config_error=config_error, volume_error=volume_error, waits_for_peers=waits,
                         rendezvous_at=met)

    def _not_started(self, pod: Mapping[str, Any]) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        return not pod.get("metadata", {}).get("deletionTimestamp") and not any(
            "running" in (cs.get("state") or {}) or cs.get("restartCount") or cs.get("lastState") for cs in statuses) \
            and (pod.get("status", {}).get("phase") or "Pending") == "Pending"

    def step(self, uid: str) -> None:
        with self._lock:
            pod = self.pods.get(uid)
        if pod is None:
            return
        unbound = not pod.get("spec", {}).get("nodeName")
        check = not unbound and runs_label(pod, self.settings) == "simulated" and self._not_started(pod)
        facts = Facts("", "", time.time()) if unbound else self.facts(uid, pod, check_config=check)
        plan = decide(pod, time.time(), self.settings, facts)
        try:
            self.execute(uid, pod, plan)
        except ApiError as exc:
            if exc.status == 404:
                self.forget(uid)
            elif exc.status in (400, 403, 422):  # 422 also when a new pod took the name (uid mismatch)
                log.error("%s: %s refused, giving up on it: %s", _key(pod), plan.action, exc)
            else:
                log.warning("%s: %s failed, retrying: %s", _key(pod), plan.action, exc)
                self._schedule(uid, time.time() + RETRY_SECONDS)
        except Exception as exc:  # noqa: BLE001 - one pod's trouble must not stop the others
            log.warning("%s: %s failed, retrying: %s: %s", _key(pod), plan.action, type(exc).__name__, exc)
            self._schedule(uid, time.time() + RETRY_SECONDS)

    def execute(self, uid: str, pod: dict, plan: Plan) -> None:
        if plan.action == "wait":
            self._schedule(uid, plan.at)
        elif plan.action == "patch":
            self.write_status(uid, pod, plan.body, plan.note)
            if plan.at is not None:
                self._schedule(uid, plan.at)
        elif plan.action == "delete":
            with self._lock:
                worker = self.workers.get(uid)
                if uid in self.terminating:
                    return
                if worker is not None:
                    self.terminating.add(uid)
            if worker is None:
                self.delete(uid, pod)
            else:  # SIGTERM, the grace period, SIGKILL: not in the decision loop
                threading.Thread(target=self.terminate_then_delete, args=(uid, pod, worker),
                                 name=f"terminate-{_key(pod)}", daemon=True).start()
        elif plan.action == "run-local":
            with self._lock:
                if uid in self.workers:
                    return
                worker = podworker.PodWorker(uid, pod, host=self, runner=self.runner, settings=self.settings,
                                             state_dir=self.state_dir)
                self.workers[uid] = worker
            self.procs.begin(uid)  # from here on a deletion cancels the run
            threading.Thread(target=self.run_worker, args=(uid, worker), name=f"pod-{_key(pod)}",
                             daemon=True).start()

    def delete(self, uid: str, pod: dict) -> None:
        try:
            self.kube.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
            log.info("%s deleted (grace period 0)", _key(pod))
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or a new pod took the name
                raise

    def terminate_then_delete(self, uid: str, pod: dict, worker: podworker.PodWorker) -> None:
        grace = podworker.grace_seconds(pod)
        log.info("%s terminating: SIGTERM, SIGKILL after %gs", _key(pod), grace)
        try:
            worker.stop(grace)
            self.delete(uid, pod)
        except Exception as exc:  # noqa: BLE001 - the decision loop tries again
            log.warning("%s: delete failed, retrying: %s: %s", _key(pod), type(exc).__name__, exc)
            self._schedule(uid, time.time() + RETRY_SECONDS)
        finally:
            with self._lock:
                self.terminating.discard(uid)

    def write_status(self, uid: str, pod: dict, body: dict, note: str = "") -> None:
        labelled = (pod["metadata"].get("labels") or {}).get(LABEL_RUNS) == runs_label(pod, self.settings)
        if already_applied(body, pod) and labelled:
            return
        # metadata.uid makes the patch fail instead of landing on a new pod that took the same name
        meta: dict[str, Any] = {"uid": uid}
        runs = runs_label(pod, self.settings)
        if (pod["metadata"].get("labels") or {}).get(LABEL_RUNS) != runs:
            meta["labels"] = {LABEL_RUNS: runs}  # pods/status may set labels; a kubelet's own mark
        body = {**body, "metadata": meta}
        new = self.kube.patch_pod_status(pod["metadata"]["namespace"], pod["metadata"]["name"], body)
        self.writes += 1
        phase = body["status"].get("phase")
        if phase == "Running" and all("running" in cs.get("state", {})
                                      for cs in body["status"].get("containerStatuses", [])):
            with self._lock:
                self.started_at.setdefault(uid, time.time())
        if note:
            log.info("%s %s", _key(pod), note)
        self.observe(new)

    # --- pods with processes: the worker's host ---
    def run_worker(self, uid: str, worker: podworker.PodWorker) -> None:
        retry_at = None
        try:
            if self.net and not worker.pod["spec"].get("hostNetwork"):
                # pod network hook: eth0 gets the status.podIP address before the pod's first process
                self.net.setup(worker.pod, self.facts(uid, worker.pod).pod_ip)
            worker.run()
        except Exception as exc:  # noqa: BLE001
            log.warning("%s: pod worker failed, retrying: %s: %s", worker.name, type(exc).__name__, exc)
            retry_at = time.time() + RETRY_SECONDS
        finally:
            if not worker.stopping.is_set():  # a stopped worker's processes get their grace period from stop()
                self.runner.table.stop(uid, 0)  # nothing of a finished worker keeps running
            self.procs.end(uid)
            with self._lock:
                self.workers.pop(uid, None)
            if retry_at is None:
                self._queue.put(uid)
            else:
                self._schedule(uid, retry_at)

    def _stop_then_teardown(self, uid: str, worker: podworker.PodWorker, grace: float) -> None:
        worker.stop(grace)
        if self.net:  # after the processes: none of them outlives its namespace's name
            self.net.teardown(uid)

    def current(self, uid: str) -> dict | None:
        with self._lock:
            return self.pods.get(uid)

    def facts_for(self, uid: str, pod: Mapping[str, Any]) -> Facts:
        return self.facts(uid, pod)

    def write(self, uid: str, pod: dict, body: dict, note: str) -> None:
        try:
            self.write_status(uid, pod, body, note)
        except ApiError as exc:
            if exc.status in (404, 409, 422):  # the pod is gone, or a new one took its name
                worker = self.workers.get(uid)
                if worker is not None:
                    worker.stopping.set()
            log.warning("%s: status write failed: %s", _key(pod), exc)
        except Exception as exc:  # noqa: BLE001 - the API server may be restarting: the next change writes again
            log.warning("%s: status write failed: %s: %s", _key(pod), type(exc).__name__, exc)

    def lookup(self, kind: str, namespace: str, name: str):
        return self.kube.lookup(kind, namespace, name)

    # --- the kubelet endpoint ---
    def log_source(self, namespace: str, name: str, container: str, previous: bool) -> kubeletapi.LogSource:
        with self._lock:
            found = [(u, p) for u, p in self.pods.items() if _key(p) == f"{namespace}/{name}"]
        if not found:
            return kubeletapi.LogSource(None, f'pod "{name}" in namespace "{namespace}" is not on this node', 404)
        uid, pod = found[-1]
        spec = pod.get("spec", {})
        c = next((c for c in (spec.get("initContainers") or []) + spec.get("containers", [])
                  if c["name"] == container), None)
        if c is None:
            return kubeletapi.LogSource(None, f'container "{container}" is not in pod "{name}"', 404)
        if not runs_as_process(c, self.settings):
            return kubeletapi.LogSource(None, f'container "{container}" in pod "{name}" is simulated (image '
                                              f'{c.get("image")} does not run as a process here): it has no log; '
                                              f'see docs/localcluster-pods.md', 400)
        folder = simprocess.log_path(self.state_dir, namespace, name, uid, container).parent
        runs = sorted((int(f.stem) for f in folder.glob("*.log") if f.stem.isdigit()), reverse=True)
        if previous:
            runs = runs[1:]
        if not runs:
            what = "previous terminated container" if previous else "container"
            return kubeletapi.LogSource(None, f'{what} "{container}" in pod "{name}" has not run yet', 400)
        path = folder / f"{runs[0]}.log"
        worker = self.workers.get(uid)

        def live() -> bool:
            newest = max((int(f.stem) for f in folder.glob("*.log") if f.stem.isdigit()), default=-1)
            return worker is not None and container in worker.running and newest == int(path.stem) \
                and not worker.stopping.is_set()
        return kubeletapi.LogSource(path, live=live)

    def serve_kubelet(self, port: int, cert_file: str | None, key_file: str | None) -> None:
        self.kubelet = kubeletapi.KubeletServer(self, port, cert_file, key_file)
        self.kubelet.start()
        log.info("kubelet endpoint on %s://%s:%d", self.kubelet.scheme, KUBELET_ADDRESS, self.kubelet.port)
        self.report_kubelet_endpoint(list(self.hosts))

    def report_kubelet_endpoint(self, names: list[str]) -> None:
        """As a kubelet reports itself: the address and port the API server proxies `kubectl logs` to."""
        if self.kubelet is None:
            return
        body = {"status": {"addresses": [{"type": "InternalIP", "address": KUBELET_ADDRESS}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.port}}}}
        for name in names:
            try:
                self.kube.patch_node_status(name, body)
            except Exception as exc:  # noqa: BLE001 - logs stay unreachable on that node; all else works
                log.warning("cannot report the kubelet endpoint of node %s: %s", name, exc)

    def shutdown(self) -> None:
        """Stops every process; the pods' status stays as it was, for the next simulator to resume from."""
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stopping.set()  # first: a worker must not report the exits that follow as crashes
        self.procs.stop_all()
        if self.kubelet is not None:
            self.kubelet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_localcluster.simulator",
                                     description="Plays kubelet for pods on the simulated node pool.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--config", help="YAML config (see the module docstring)")
    parser.add_argument("--pool", help="node pool YAML (default: the built-in pool)")
    parser.add_argument("--start-delay", type=float, help="seconds from bound to Running (default 0.5)")
    parser.add_argument("--run-seconds", type=float, help="seconds a run-to-completion pod runs (default 1)")
    parser.add_argument("--crash-backoff", type=float, help="first CrashLoopBackOff wait (default 10)")
    parser.add_argument("--crash-backoff-max", type=float, help="longest CrashLoopBackOff wait (default 300)")
    parser.add_argument("--own-image", action="append", help="image run as local processes (repeatable)")
    parser.add_argument("--network", help="the cluster's network.json: process pods get network namespaces")
    parser.add_argument("--pod-kubeconfig", help="kubeconfig for processes in pod namespaces (with --network)")
    parser.add_argument("--kubelet-port", type=int, default=0, help="the kubelet endpoint's port (default: free)")
    parser.add_argument("--tls-cert-file", help="the kubelet endpoint's certificate (default: plain HTTP)")
    parser.add_argument("--tls-private-key-file", help="its key")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retries would flood the log
    try:
        config = load_config(args.config, {"startDelaySeconds": args.start_delay, "runSeconds": args.run_seconds,
                                           "crashBackoffSeconds": args.crash_backoff,
                                           "crashBackoffMaxSeconds": args.crash_backoff_max,
                                           "ownImages": args.own_image,
                                           "pool": args.pool})
    except (ClusterError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2

    from kubernetes import config as kconfig
    api_client = kconfig.new_client_from_config(config_file=args.kubeconfig)
    net = PodNetwork(ClusterNetwork.load(pathlib.Path(args.network)), pathlib.Path(args.pod_kubeconfig)) \
        if args.network else None
    sim = Simulator(Kube(api_client), config, pathlib.Path(args.state_dir), pathlib.Path(args.kubeconfig), net)
    pathlib.Path(args.state_dir).mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        log.info("signal %d: stopping", signum)
        sim.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    s = config.settings
    log.info("simulator up: nodes %s; start %.1fs, run %.1fs, own images %s", ", ".join(sim.hosts),
             s.start_delay, s.run_seconds, ", ".join(s.own_images))
    try:
        sim.serve_kubelet(args.kubelet_port, args.tls_cert_file, args.tls_private_key_file)
    except (OSError, ValueError) as exc:
        print(f"simulator: cannot serve the kubelet endpoint: {exc}", file=sys.stderr)
        return 2
    threading.Thread(target=sim.watch_loop, name="watch", daemon=True).start()
    if net:
        threading.Thread(target=net.hosts.loop, args=(sim.kube.get, sim.stopping), name="hosts", daemon=True).start()
    try:
        sim.run()
    finally:
        sim.shutdown()
        log.info("simulator stopped after %d status writes", sim.writes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
