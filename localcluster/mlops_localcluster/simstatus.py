"""What a kubelet would report for a pod: the simulator's pure lifecycle rules and status patches.

Owns: the per-pod state machine (`decide`), the failure annotations, and the pod status bodies it writes.
Calls: nothing (no I/O, no clock; `now` is passed in as epoch seconds). Pods are API JSON dicts (camelCase).

The state of a pod is read from its own status, so a restarted simulator carries on where the last one stopped:

    bound, no containerStatuses ──start delay──▶ Running/Ready ──run time──▶ Succeeded   (restartPolicy Never/OnFailure)
                                              └▶ Running/Ready (final)                     (restartPolicy Always)
    with sim.mlops.dev/failure: exit:N | OOMKilled | CrashLoopBackOff | ImagePullBackOff | ErrImagePull | Evicted
        run-to-completion pods end Failed; Always pods crash-loop (restartCount grows with a doubling back-off);
        image pull failures stay Pending; Evicted ends Failed with status.reason Evicted.
        sim.mlops.dev/failure-after: N  runs the pod Running/Ready for N seconds first.
        sim.mlops.dev/failure-container: a,b  limits the failure to those containers (default: all).
    sim.mlops.dev/run-seconds: N  overrides the run time of a run-to-completion pod.
    a worker of a gang (a TrainingJob attempt of several workers: `gang_key`) counts its run time from the moment
        every rank of its attempt runs (`Facts.rendezvous_at`), as a distributed training process blocks at its
        rendezvous: no rank finishes before a peer started, however late the API let a peer start.
    metadata.deletionTimestamp ──▶ delete with grace period 0 (no kubelet will ever confirm it); a pod already
        marked with grace period 0 and no finalizers that is still there after STUCK_DELETION_SECONDS is deleted again.

Pods with a container whose image runs as a process (`PROCESS_IMAGES`, `runs_as_process`) are handed to the I/O
layer (`Plan("run-local")`, a pod worker); their status comes from the worker's per-container views
(`ContainerView`) via `process_status`, which computes the phase as a kubelet's getPhase does.

A simulated pod that references a Secret or ConfigMap that does not exist (`Facts.config_error`,
`Facts.volume_error`) is not started: its containers wait with CreateContainerConfigError (env) or
ContainerCreating (volume), and the pod is looked at again every CONFIG_RECHECK_SECONDS.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ANN_FAILURE = "sim.mlops.dev/failure"
ANN_FAILURE_AFTER = "sim.mlops.dev/failure-after"
ANN_FAILURE_CONTAINER = "sim.mlops.dev/failure-container"
ANN_RUN_SECONDS = "sim.mlops.dev/run-seconds"
LABEL_RUNS = "sim.mlops.dev/runs"  # process | simulated | mixed, set on every pod the simulator starts

FAILURE_MODES = ("exit", "OOMKilled", "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "Evicted")
RUN_TO_COMPLETION = ("Never", "OnFailure")
EVICTED_MESSAGE = "The node was low on resource: memory. "
OOM_EXIT_CODE = 137
STUCK_DELETION_SECONDS = 5.0
CONFIG_RECHECK_SECONDS = 2.0  # a pod waiting for a Secret or ConfigMap is looked at again this often

# Which images run as processes (all others are simulated: Running/Ready with nothing running). An entry is the
# last path component of the repository, so `python` matches `python:3.11` and `python:3.12-slim`; the
# operator's own image comes from Settings.own_images. Documented in docs/localcluster-pods.md.
PROCESS_IMAGES = {
    "mlops-operator": "the operator's image: `mlops-operator` is the console script of the project's virtualenv",
    "python": "generic Python images: `python`/`python3` is the project's interpreter, so a script really runs",
    "mlserver": "the mlserver preset's image: MLServer from a virtualenv of its own (mlserver.py, pinned by "
                "localcluster/mlserver-constraints.txt), configured by its MLSERVER_* environment",
    "pytorch": "PyTorch images (`pytorch/pytorch`): `python`, `python3` and `torchrun` from a virtualenv of its own "
               "with PyTorch's CPU build (torchimage.py), made on first use",
    "prometheus": "Prometheus (`prom/prometheus`): Debian's /usr/bin/prometheus plays the image's ENTRYPOINT",
    "alertmanager": "Alertmanager (`prom/alertmanager`): Debian's /usr/bin/prometheus-alertmanager plays the "
                    "image's ENTRYPOINT",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    start_delay: float = 0.5
    run_seconds: float = 1.0
    crash_backoff: float = 10.0  # a kubelet's: 10 s, doubling per restart up to 5 min
    crash_backoff_max: float = 300.0
    own_images: tuple[str, ...] = ("mlops-operator",)

    @property
    def process_images(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.own_images + tuple(PROCESS_IMAGES)))


@dataclasses.dataclass(frozen=True)
class Failure:
    mode: str
    exit_code: int = 1
    after: float | None = None
    containers: tuple[str, ...] = ()  # empty: every main container

    def hits(self, container: str) -> bool:
        return not self.containers or container in self.containers

    @property
    def terminated_reason(self) -> str:
        if self.mode == "OOMKilled":
            return "OOMKilled"
        return "Completed" if self.exit_code == 0 else "Error"


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the I/O layer knows that the pod object does not say."""
    host_ip: str
    pod_ip: str
    seen_at: float  # when the simulator first saw the pod bound to a node
    started_at: float | None = None  # exact start time, when this simulator process started it
    local_busy: bool = False  # a pod worker runs this pod's processes now
    config_error: str = ""  # an env reference to a Secret/ConfigMap (or key) that does not exist
    volume_error: str = ""  # a volume's Secret/ConfigMap that does not exist
    waits_for_peers: bool = False  # a worker of a gang some of whose ranks have not started yet
    rendezvous_at: float | None = None  # when the last rank of the worker's gang started (all of them run)


@dataclasses.dataclass(frozen=True)
class Terminated:
    """How one container (or local process) ended."""
    exit_code: int
    started_at: float
    finished_at: float
    reason: str = ""  # default: Completed for 0, Error otherwise
    message: str = ""

    @property
    def final_reason(self) -> str:
        return self.reason or ("Completed" if self.exit_code == 0 else "Error")


@dataclasses.dataclass(frozen=True)
class Plan:
    action: str  # "none" | "wait" | "patch" | "delete" | "run-local"
    at: float | None = None  # for "wait" (and optionally "patch"): when to decide again
    body: dict[str, Any] | None = None  # for "patch": the body for PATCH .../status (strategic merge)
    note: str = ""


NOTHING = Plan("none")


# --- small helpers -------------------------------------------------------------------------------------------

def ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def image_name(image: str) -> str:
    """The last path component of an image reference, without tag or digest: `reg:5000/a/b:1.0` -> `b`."""
    repo = image_repository(image)
    return repo.rsplit("/", 1)[-1]


def image_repository(image: str) -> str:
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def is_own_image(image: str, own_images: Iterable[str]) -> bool:
    """True for the project's image. A configured name with a `/` must equal the repository; without, the last
    path component (`mlops-operator` matches `mlops-operator:0.1.0` and
    `example.invalid/x/mlops-operator@sha256:..`)."""
    repo = image_repository(image or "")
    for own in own_images:
        if "/" in own:
            if repo == image_repository(own):
                return True
        elif repo.rsplit("/", 1)[-1] == image_name(own):
            return True
    return False


def is_run_to_completion(pod: Mapping[str, Any]) -> bool:
    return pod.get("spec", {}).get("restartPolicy", "Always") in RUN_TO_COMPLETION


def runs_as_process(container: Mapping[str, Any], settings: Settings) -> bool:
    return is_own_image(container.get("image", ""), settings.process_images)


def runs_label(pod: Mapping[str, Any], settings: Settings) -> str:
    """`process` when every container runs as a process, `simulated` when none does (or the pod asks for a
    simulated failure), else `mixed`."""
    try:
        if parse_failure(pod.get("metadata", {}).get("annotations")) is not None:
            return "simulated"
    except ValueError:
        pass  # an unreadable failure annotation is ignored, as decide() does
    spec = pod.get("spec", {})
    flags = [runs_as_process(c, settings) for c in (spec.get("initContainers") or []) + spec.get("containers", [])]
    return "process" if all(flags) else "mixed" if any(flags) else "simulated"


def uses_local_processes(pod: Mapping[str, Any], settings: Settings) -> bool:
    """Pods with a container that runs as a process are run by a pod worker."""
    return runs_label(pod, settings) != "simulated"


def needs_worker(pod: Mapping[str, Any], settings: Settings) -> bool:
    """True while a pod worker has something to do for a (not finished) pod: containers to run or to resume.
    A pod whose processes were only init containers and whose servers are simulated is done once Running."""
    spec, status = pod.get("spec", {}), pod.get("status", {})
    if status.get("phase") in ("Succeeded", "Failed") or not uses_local_processes(pod, settings):
        return False
    if not status.get("containerStatuses") or is_run_to_completion(pod):
        return True
    if any(runs_as_process(c, settings) for c in spec.get("containers", [])):
        return True
    inits = status.get("initContainerStatuses") or []
    return not all((cs.get("state") or {}).get("terminated", {}).get("exitCode") == 0 for cs in inits) \
        or len(inits) < len(spec.get("initContainers") or [])


def parse_failure(annotations: Mapping[str, str] | None) -> Failure | None:
    """The failure a pod asks for, or None. Raises ValueError for an annotation it cannot read."""
    annotations = annotations or {}
    raw = (annotations.get(ANN_FAILURE) or "").strip()
    if not raw:
        return None
    after_raw = annotations.get(ANN_FAILURE_AFTER)
    after = float(after_raw) if after_raw not in (None, "") else None
    containers = tuple(c.strip() for c in (annotations.get(ANN_FAILURE_CONTAINER) or "").split(",") if c.strip())
    if raw.lower().startswith("exit:"):
        return Failure("exit", exit_code=int(raw.split(":", 1)[1]), after=after, containers=containers)
    by_lower = {m.lower(): m for m in FAILURE_MODES if m != "exit"}
    mode = by_lower.get(raw.lower())
    if mode is None:
        raise ValueError(f"unknown {ANN_FAILURE} {raw!r}; expected exit:N or one of {', '.join(by_lower.values())}")
    if mode == "OOMKilled":
        return Failure(mode, exit_code=OOM_EXIT_CODE, after=after, containers=containers)
    return Failure(mode, exit_code=1, after=after, containers=containers)


# The operator's labels and annotation on a TrainingJob's workers (training/render.py): which job and attempt a
# worker belongs to, and how many ranks its attempt has.
GANG_LABELS = ("mlops.dev/trainingjob", "mlops.dev/attempt")
RANK_LABEL = "mlops.dev/rank"
GANG_SIZE_ANNOTATION = "mlops.dev/world-size"
RENDEZVOUS_POLL_SECONDS = 0.5


def gang_key(pod: Mapping[str, Any]) -> tuple[str, str, str, int] | None:
    """(namespace, job, attempt, ranks) of a worker of a gang of two or more ranks; None for any other pod."""
    meta = pod.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    try:
        size = int(annotations.get(GANG_SIZE_ANNOTATION) or 1)
    except ValueError:
        return None
    if size < 2 or any(name not in labels for name in GANG_LABELS):
        return None
    return meta.get("namespace", ""), labels[GANG_LABELS[0]], labels[GANG_LABELS[1]], size


def started_at(pod: Mapping[str, Any]) -> float | None:
    """When the pod's first container started, from its status (running or already ended); None: not yet."""
    times = [parse_ts((cs.get("state") or {}).get(state, {}).get("startedAt"))
             for cs in pod.get("status", {}).get("containerStatuses") or [] for state in ("running", "terminated")]
    found = [t for t in times if t is not None]
    return min(found) if found else None


def rendezvous(pod: Mapping[str, Any], peers: Iterable[Mapping[str, Any]]) -> tuple[bool, float | None]:
    """(waits for peers, rendezvous time) of a gang worker among `peers` (any pods; the gang's are picked)."""
    key = gang_key(pod)
    if key is None:
        return False, None
    starts: dict[str, float | None] = {}
    for peer in peers:
        if gang_key(peer) == key:
            starts[str((peer.get("metadata") or {}).get("labels", {}).get(RANK_LABEL))] = started_at(peer)
    if len(starts) < key[3] or any(t is None for t in starts.values()):
        return True, None
    return False, max(t for t in starts.values() if t is not None)


def run_seconds(pod: Mapping[str, Any], settings: Settings) -> float:
    raw = (pod.get("metadata", {}).get("annotations") or {}).get(ANN_RUN_SECONDS)
    try:
        return max(0.0, float(raw)) if raw not in (None, "") else settings.run_seconds
    except ValueError:
        return settings.run_seconds


def crash_backoff(restart_count: int, settings: Settings) -> float:
    return min(settings.crash_backoff * 2 ** max(0, restart_count - 1), settings.crash_backoff_max)


def _hex(*parts: Any) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def container_id(pod: Mapping[str, Any], name: str, restart_count: int = 0) -> str:
    return "containerd://" + _hex(pod["metadata"].get("uid", ""), name, restart_count)


def image_id(image: str) -> str:
    return f"docker-pullable://{image_repository(image)}@sha256:{_hex(image)}"


# --- status bodies -------------------------------------------------------------------------------------------

def _condition(pod: Mapping[str, Any], type_: str, ok: bool, now: float, reason: str = "", message: str = ""):
    status = "True" if ok else "False"
    old = next((c for c in pod.get("status", {}).get("conditions") or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") \
        else ts(now)
    cond = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _conditions(pod, now: float, *, initialized: bool = True, ready: bool, completed: bool = False,
                not_ready: Sequence[str] = (), not_initialized: Sequence[str] = ()) -> list[dict[str, Any]]:
    conds = []
    if not any(c.get("type") == "PodScheduled" for c in pod.get("status", {}).get("conditions") or []):
        conds.append(_condition(pod, "PodScheduled", True, now))  # created with spec.nodeName set
    if completed:
        conds += [_condition(pod, "Initialized", True, now, "PodCompleted"),
                  _condition(pod, "Ready", False, now, "PodCompleted"),
                  _condition(pod, "ContainersReady", False, now, "PodCompleted")]
        return conds
    if initialized:
        conds.append(_condition(pod, "Initialized", True, now))
    else:
        conds.append(_condition(pod, "Initialized", False, now, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(not_initialized)}]"))
    if ready:
        conds += [_condition(pod, "Ready", True, now), _condition(pod, "ContainersReady", True, now)]
    else:
        msg = f"containers with unready status: [{' '.join(not_ready)}]"
        conds += [_condition(pod, "Ready", False, now, "ContainersNotReady", msg),
                  _condition(pod, "ContainersReady", False, now, "ContainersNotReady", msg)]
    return conds


def _base(pod, now: float, facts: Facts, phase: str) -> dict[str, Any]:
    status = pod.get("status", {})
    return {
        "phase": phase,
        "hostIP": facts.host_ip,
        "podIP": facts.pod_ip,
        "podIPs": [{"ip": facts.pod_ip}],
        "startTime": status.get("startTime") or ts(now),
    }


def _cstatus(pod, c: Mapping[str, Any], state: dict[str, Any], *, ready: bool, restart_count: int = 0,
             last_state: dict[str, Any] | None = None, with_id: bool = True) -> dict[str, Any]:
    out = {
        "name": c["name"], "image": c.get("image", ""), "imageID": image_id(c.get("image", "")) if with_id else "",
        "ready": ready, "started": "running" in state, "restartCount": restart_count,
        "state": state, "lastState": last_state or {},
    }
    if with_id:
        out["containerID"] = container_id(pod, c["name"], restart_count)
    return out


def _terminated(pod, c, t: Terminated, restart_count: int = 0) -> dict[str, Any]:
    term = {"exitCode": t.exit_code, "reason": t.final_reason, "startedAt": ts(t.started_at),
            "finishedAt": ts(t.finished_at), "containerID": container_id(pod, c["name"], restart_count)}
    if t.message:
        term["message"] = t.message
    return {"terminated": term}


def _init_statuses(pod, now: float, results: Mapping[str, Terminated] | None = None) -> list[dict[str, Any]]:
    """Init containers: the given results, Completed for the ones before, waiting for the ones after a failure."""
    out, failed = [], False
    for c in pod.get("spec", {}).get("initContainers", []):
        if failed:
            out.append(_cstatus(pod, c, {"waiting": {"reason": "PodInitializing"}}, ready=False, with_id=False))
            continue
        t = (results or {}).get(c["name"]) or Terminated(0, now, now)
        out.append(_cstatus(pod, c, _terminated(pod, c, t), ready=t.exit_code == 0))
        failed = t.exit_code != 0
    return out


def _with_init(body_status: dict[str, Any], pod, now, init_results=None) -> dict[str, Any]:
    if pod.get("spec", {}).get("initContainers"):
        body_status["initContainerStatuses"] = _init_statuses(pod, now, init_results)
    return {"status": body_status}


def running_status(pod, now: float, facts: Facts, init_results: Mapping[str, Terminated] | None = None):
    """All main containers running and ready."""
    st = _base(pod, now, facts, "Running")
    st["conditions"] = _conditions(pod, now, ready=True)
    st["containerStatuses"] = [
        _cstatus(pod, c, {"running": {"startedAt": ts(now)}}, ready=True) for c in pod["spec"]["containers"]]
    return _with_init(st, pod, now, init_results)


def finished_status(pod, now: float, facts: Facts, results: Mapping[str, Terminated],
                    init_results: Mapping[str, Terminated] | None = None):
    """Every main container terminated: Succeeded if all exited 0, else Failed. Missing results count as 0."""
    st = _base(pod, now, facts, "Succeeded")
    statuses = []
    for c in pod["spec"]["containers"]:
        t = results.get(c["name"]) or Terminated(0, now, now)
        if t.exit_code != 0:
            st["phase"] = "Failed"
        statuses.append(_cstatus(pod, c, _terminated(pod, c, t), ready=False))
    st["conditions"] = _conditions(pod, now, ready=False, completed=True)
    st["containerStatuses"] = statuses
    return _with_init(st, pod, now, init_results)


def failure_results(pod, now: float, started_at: float, failure: Failure) -> dict[str, Terminated]:
    return {c["name"]: (Terminated(failure.exit_code, started_at, now, failure.terminated_reason)
                        if failure.hits(c["name"]) else Terminated(0, started_at, now))
            for c in pod["spec"]["containers"]}


def crashloop_status(pod, now: float, facts: Facts, failure: Failure, restart_count: int, started_at: float,
                     settings: Settings = Settings()):
    """Always pods whose containers keep dying: Running phase, waiting CrashLoopBackOff, lastState terminated."""
    st = _base(pod, now, facts, "Running")
    meta = pod["metadata"]
    statuses, unready = [], []
    for c in pod["spec"]["containers"]:
        if not failure.hits(c["name"]):
            statuses.append(_cstatus(pod, c, {"running": {"startedAt": ts(started_at)}}, ready=True))
            continue
        unready.append(c["name"])
        last = _terminated(pod, c, Terminated(failure.exit_code, started_at, now, failure.terminated_reason),
                           restart_count - 1)
        backoff = int(crash_backoff(restart_count, settings))
        waiting = {"waiting": {"reason": "CrashLoopBackOff",
                               "message": f"back-off {backoff}s restarting failed container={c['name']} "
                                          f"pod={meta['name']}_{meta.get('namespace', '')}({meta.get('uid', '')})"}}
        statuses.append(_cstatus(pod, c, waiting, ready=False, restart_count=restart_count, last_state=last))
    st["conditions"] = _conditions(pod, now, ready=False, not_ready=unready)
    st["containerStatuses"] = statuses
    return _with_init(st, pod, now)


def image_pull_status(pod, now: float, facts: Facts, failure: Failure):
    st = _base(pod, now, facts, "Pending")
    statuses, unready = [], []
    for c in pod["spec"]["containers"]:
        if not failure.hits(c["name"]):
            statuses.append(_cstatus(pod, c, {"running": {"startedAt": ts(now)}}, ready=True))
            continue
        unready.append(c["name"])
        image = c.get("image", "")
        message = (f'Back-off pulling image "{image}"' if failure.mode == "ImagePullBackOff" else
                   f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found')
        statuses.append(_cstatus(pod, c, {"waiting": {"reason": failure.mode, "message": message}},
                                 ready=False, with_id=False))
    st["conditions"] = _conditions(pod, now, ready=False, not_ready=unready)
    st["containerStatuses"] = statuses
    return _with_init(st, pod, now)


def evicted_status(pod, now: float, facts: Facts, started_at: float):
    body = finished_status(pod, now, facts, {c["name"]: Terminated(OOM_EXIT_CODE, started_at, now)
                                             for c in pod["spec"]["containers"]})
    body["status"].update(phase="Failed", reason="Evicted", message=EVICTED_MESSAGE)
    return body


def config_waiting_status(pod, now: float, facts: Facts):
    """Not started because a Secret or ConfigMap is missing: a volume keeps every container ContainerCreating
    (init containers PodInitializing); an env reference gives CreateContainerConfigError. Phase Pending."""
    st = _base(pod, now, facts, "Pending")
    if facts.volume_error:
        waiting = {"waiting": {"reason": "ContainerCreating"}}
    else:
        waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": facts.config_error}}
    inits = pod.get("spec", {}).get("initContainers") or []
    names = [c["name"] for c in pod["spec"]["containers"]]
    st["conditions"] = _conditions(pod, now, initialized=not inits, not_initialized=[c["name"] for c in inits],
                                   ready=False, not_ready=names)
    if inits:  # the first init container is the one that cannot start
        first = waiting if not facts.volume_error else {"waiting": {"reason": "PodInitializing"}}
        st["initContainerStatuses"] = [_cstatus(pod, c, first if i == 0 else {"waiting": {"reason": "PodInitializing"}},
                                                ready=False, with_id=False) for i, c in enumerate(inits)]
        waiting = {"waiting": {"reason": "PodInitializing"}}
    st["containerStatuses"] = [_cstatus(pod, c, waiting, ready=False, with_id=False)
                               for c in pod["spec"]["containers"]]
    return {"status": st}


# --- pods run by a pod worker --------------------------------------------------------------------------------

@dataclasses.dataclass
class ContainerView:
    """What a pod worker knows about one container: exactly one of waiting / running_since / terminated."""
    name: str
    waiting: tuple[str, str] | None = ("ContainerCreating", "")  # (reason, message)
    running_since: float | None = None
    terminated: Terminated | None = None
    ready: bool = False
    restart_count: int = 0
    last: Terminated | None = None  # lastState.terminated

    def run(self, now: float) -> None:
        self.waiting, self.running_since, self.terminated = None, now, None

    def end(self, result: Terminated) -> None:
        self.waiting, self.running_since, self.terminated, self.ready = None, None, result, False

    def back_off(self, reason: str, message: str) -> None:
        """Terminated -> waiting to restart: the run becomes lastState, restartCount grows."""
        self.last = self.terminated or self.last
        self.restart_count += 1
        self.waiting, self.running_since, self.terminated, self.ready = (reason, message), None, None, False


def backoff_message(pod, container: str, seconds: float) -> str:
    meta = pod["metadata"]
    return (f"back-off {int(seconds)}s restarting failed container={container} "
            f"pod={meta['name']}_{meta.get('namespace', '')}({meta.get('uid', '')})")


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def pod_phase(pod, inits: Sequence[ContainerView], mains: Sequence[ContainerView]) -> str:
    """A kubelet's getPhase: Pending while init containers or first starts are pending; Running while a
    container runs or will restart; Succeeded/Failed once every container ended for good."""
    policy = pod.get("spec", {}).get("restartPolicy", "Always")
    for v in inits:
        if v.terminated and v.terminated.exit_code == 0:
            continue
        failed = (v.terminated and v.terminated.exit_code != 0) or (v.waiting and v.last and v.last.exit_code != 0)
        return "Failed" if failed and policy == "Never" else "Pending"
    running = sum(1 for v in mains if v.running_since is not None)
    waiting = sum(1 for v in mains if v.waiting and v.last is None)
    stopped = [v for v in mains if v.terminated or (v.waiting and v.last is not None)]
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if all((v.terminated or v.last).exit_code == 0 for v in stopped):
        return "Succeeded"
    if policy == "Never":
        return "Failed"
    # OnFailure: a failed container is always restarted, so the pod runs on, as a kubelet's getPhase says, also in
    # the moment between the exit (shown as Error) and the back-off; Failed is final and must never be shown then.
    return "Running"


def _view_status(pod, c, v: ContainerView) -> dict[str, Any]:
    if v.running_since is not None:
        state = {"running": {"startedAt": ts(v.running_since)}}
    elif v.terminated is not None:
        state = _terminated(pod, c, v.terminated, v.restart_count)
    else:
        reason, message = v.waiting or ("ContainerCreating", "")
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    last = _terminated(pod, c, v.last, max(0, v.restart_count - 1)) if v.last else None
    started_before = v.running_since is not None or v.terminated is not None or v.last is not None
    return _cstatus(pod, c, state, ready=v.ready, restart_count=v.restart_count, last_state=last,
                    with_id=started_before)


def process_status(pod, now: float, facts: Facts, inits: Sequence[ContainerView], mains: Sequence[ContainerView]):
    """The status of a pod run by a pod worker, from its containers' views (in spec order)."""
    phase = pod_phase(pod, inits, mains)
    st = _base(pod, now, facts, phase)
    spec = pod["spec"]
    initialized = all(v.terminated and v.terminated.exit_code == 0 for v in inits)
    if phase in ("Succeeded", "Failed"):
        st["conditions"] = _conditions(pod, now, ready=False, completed=True)
    else:
        unready = [v.name for v in mains if not v.ready]
        st["conditions"] = _conditions(pod, now, initialized=initialized, ready=not unready, not_ready=unready,
                                       not_initialized=[v.name for v in inits if not v.terminated
                                                        or v.terminated.exit_code != 0])
    st["containerStatuses"] = [_view_status(pod, c, v) for c, v in zip(spec["containers"], mains)]
    if inits:
        st["initContainerStatuses"] = [_view_status(pod, c, v) for c, v in zip(spec["initContainers"], inits)]
    return {"status": st}


def views_from_status(pod) -> tuple[list[ContainerView], list[ContainerView]]:
    """The views a resumed pod worker starts from: restart counts and finished init containers carry over."""
    status = pod.get("status", {})

    def view(c, statuses) -> ContainerView:
        cs = next((s for s in statuses or [] if s.get("name") == c["name"]), {})
        v = ContainerView(c["name"], restart_count=int(cs.get("restartCount") or 0))
        running = (cs.get("state") or {}).get("running")
        if running:
            v.waiting, v.running_since = None, parse_ts(running.get("startedAt")) or 0.0
        term = (cs.get("state") or {}).get("terminated")
        if term:
            v.terminated = Terminated(int(term.get("exitCode", 0)), parse_ts(term.get("startedAt")) or 0.0,
                                      parse_ts(term.get("finishedAt")) or 0.0, term.get("reason", ""),
                                      term.get("message", ""))
            v.waiting = None
        last = (cs.get("lastState") or {}).get("terminated")
        if last:
            v.last = Terminated(int(last.get("exitCode", 0)), parse_ts(last.get("startedAt")) or 0.0,
                                parse_ts(last.get("finishedAt")) or 0.0, last.get("reason", ""))
        return v

    spec = pod.get("spec", {})
    return ([view(c, status.get("initContainerStatuses")) for c in spec.get("initContainers") or []],
            [view(c, status.get("containerStatuses")) for c in spec.get("containers", [])])


# --- the state machine -----------------------------------------------------------------------------------------

def _running_since(pod, facts: Facts) -> float | None:
    if facts.started_at is not None:
        return facts.started_at
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        t = parse_ts(cs.get("state", {}).get("running", {}).get("startedAt"))
        if t is not None:
            return t
    return parse_ts(pod.get("status", {}).get("startTime"))


def _fail_now(pod, now: float, facts: Facts, failure: Failure, started_at: float, settings: Settings) -> Plan:
    if failure.mode in ("ImagePullBackOff", "ErrImagePull"):
        return Plan("patch", body=image_pull_status(pod, now, facts, failure), note=failure.mode)
    if failure.mode == "Evicted":
        return Plan("patch", body=evicted_status(pod, now, facts, started_at), note="Evicted")
    if is_run_to_completion(pod):
        body = finished_status(pod, now, facts, failure_results(pod, now, started_at, failure))
        return Plan("patch", body=body, note=f"{body['status']['phase']} ({failure.mode} {failure.exit_code})")
    return Plan("patch", body=crashloop_status(pod, now, facts, failure, 1, started_at, settings),
                note="CrashLoopBackOff")


def decide(pod: Mapping[str, Any], now: float, settings: Settings, facts: Facts) -> Plan:
    """The next thing to do for a pod: nothing, wait until a time, patch its status, delete it, or run it."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    if meta.get("deletionTimestamp"):
        if meta.get("deletionGracePeriodSeconds") != 0:
            return Plan("delete", note="finish deletion")
        if meta.get("finalizers"):
            return NOTHING  # what holds it are finalizers, not ours to remove
        # A zero grace period with no finalizers is normally gone within the same request. It stays only when the
        # API server stored the deletion mark but failed to remove the object (etcd restarting in between); the
        # API server removes such a pod on the next zero-grace delete, as a kubelet would send it.
        due = (parse_ts(meta["deletionTimestamp"]) or now) + STUCK_DELETION_SECONDS
        return Plan("wait", at=due) if now < due else Plan("delete", note="finish a deletion left half-done")
    if not spec.get("nodeName"):
        return NOTHING
    phase = status.get("phase") or "Pending"
    if phase in ("Succeeded", "Failed"):
        return NOTHING
    try:
        failure = parse_failure(meta.get("annotations"))
    except ValueError as exc:
        failure, bad = None, str(exc)
    else:
        bad = ""
    local = runs_label(pod, settings) != "simulated"
    statuses = status.get("containerStatuses") or []
    if local:  # the pod worker decides everything else, and resumes a pod an earlier simulator left
        if facts.local_busy or not needs_worker(pod, settings):
            return NOTHING
        due = facts.seen_at + settings.start_delay
        if not statuses and now < due:
            return Plan("wait", at=due)
        return Plan("run-local", note="run locally" if not statuses else "resume")

    if not statuses or _waits_for_config(statuses):  # not started yet
        due = facts.seen_at + settings.start_delay
        if now < due:
            return Plan("wait", at=due)
        if facts.config_error or facts.volume_error:
            return Plan("patch", body=config_waiting_status(pod, now, facts), at=now + CONFIG_RECHECK_SECONDS,
                        note=facts.volume_error or facts.config_error)
        if failure is not None and (failure.after is None or failure.mode in ("ImagePullBackOff", "ErrImagePull")):
            return _fail_now(pod, now, facts, failure, now, settings)
        return Plan("patch", body=running_status(pod, now, facts), note="Running" + (f" ({bad})" if bad else ""))

    if phase == "Pending":  # image pull failures stay as they are
        return NOTHING

    crashing = [cs for cs in statuses if "waiting" in (cs.get("state") or {})]
    if crashing:
        if failure is None:
            return NOTHING  # the annotation went away; healing is not simulated
        restarts = max(cs.get("restartCount", 0) for cs in crashing)
        last = parse_ts((crashing[0].get("lastState") or {}).get("terminated", {}).get("finishedAt")) or now
        due = last + crash_backoff(restarts, settings)
        if now < due:
            return Plan("wait", at=due)
        return Plan("patch", body=crashloop_status(pod, now, facts, failure, restarts + 1, now, settings),
                    note=f"restart #{restarts + 1}")

    started = _running_since(pod, facts) or now
    if failure is not None and failure.after is not None:
        due = started + failure.after
        return Plan("wait", at=due) if now < due else _fail_now(pod, now, facts, failure, started, settings)
    if is_run_to_completion(pod):
        if facts.waits_for_peers:  # blocked at the rendezvous: the peers' starts are polled
            return Plan("wait", at=now + RENDEZVOUS_POLL_SECONDS)
        due = max(started, facts.rendezvous_at or started) + run_seconds(pod, settings)
        if now < due:
            return Plan("wait", at=due)
        results = {c["name"]: Terminated(0, started, now) for c in spec.get("containers", [])}
        return Plan("patch", body=finished_status(pod, now, facts, results), note="Succeeded")
    return NOTHING


def _waits_for_config(statuses) -> bool:
    reasons = {(cs.get("state") or {}).get("waiting", {}).get("reason") for cs in statuses}
    return bool(reasons & {"CreateContainerConfigError", "ContainerCreating"}) and not any(
        cs.get("restartCount") or (cs.get("lastState") or {}).get("terminated") for cs in statuses)


# --- comparing with what is there ---------------------------------------------------------------------------------

def already_applied(body: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """True when a status patch would change nothing (timestamps included)."""
    return _subset(body.get("status", {}), pod.get("status", {}))


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return not want and have in (None, {})
        return all(_subset(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list):
            return not want and have is None
        if want and all(isinstance(w, dict) and "type" in w for w in want):  # conditions merge by type
            by_type = {h.get("type"): h for h in have if isinstance(h, dict)}
            return all(_subset(w, by_type.get(w["type"])) for w in want)
        return len(want) == len(have) and all(_subset(w, h) for w, h in zip(want, have))
    if want is None:
        return have is None
    return want == have
