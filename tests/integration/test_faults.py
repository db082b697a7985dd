"""Faults on a control plane of the test's own: the operator killed with SIGKILL mid-burst, kube-apiserver and etcd
restarted, the API server frozen (SIGSTOP) long enough to break every watch, and two operator replicas electing a
leader on a Lease (a standby taking over after the leader's kill -9; a replica joining, and the leader handing over
on SIGTERM). After each fault the same invariants are checked (see `Invariants`).

These tests kill and restart control-plane components, so they never touch the shared cluster (.cluster/): the
module starts its own LocalCluster in a temporary folder (about 6 s) and its own operator process on it.

Sizes: `make test` runs MLOPS_CHAOS_ROUNDS (default 1) round of MLOPS_CHAOS_OPS (default 80) operations. The full
soak recorded in docs/reliability.md is `MLOPS_CHAOS_ROUNDS=10 MLOPS_CHAOS_OPS=200 make test PYTEST_ARGS=...`
(see that file for the exact command); MLOPS_CHAOS_SEED shifts the seeds.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import pathlib
import random
import threading
import time
import uuid

import pytest
from kubernetes import client, config, watch

from conftest import OperatorProcess
from helpers import AuditLog, Background, apply, request, wait_for
from mlops_operator.api import crdgen
from mlops_operator.k8s.diff import contains

GROUP_PATH = "/apis/mlops.dev/v1alpha1"
PLURALS = {"ModelDeployment": "modeldeployments", "TrainingJob": "trainingjobs", "DriftMonitor": "driftmonitors"}
LABEL = {"ModelDeployment": "mlops.dev/modeldeployment", "TrainingJob": "mlops.dev/trainingjob",
         "DriftMonitor": "mlops.dev/driftmonitor"}
MANAGED = "app.kubernetes.io/managed-by=mlops-operator"
RUN_SECONDS = "sim.mlops.dev/run-seconds"
ROUNDS = int(os.environ.get("MLOPS_CHAOS_ROUNDS", "1"))
OPS = int(os.environ.get("MLOPS_CHAOS_OPS", "80"))
SEED = int(os.environ.get("MLOPS_CHAOS_SEED", "1000"))
# The private operator's limits (settings.py, handlers.py): a hung watch is given up within WATCH_TIMEOUT + 15 s,
# any other request within 60 s (the controllers' request timeout): every connection within 60 s.
WATCH_TIMEOUT = 10
REQUEST_TIMEOUT = 60
WATCH_BOUND = max(WATCH_TIMEOUT + 15, REQUEST_TIMEOUT)
LEASE_DURATION = 8  # seconds; renewed every ~1 s, given up by its holder after ~5 s without renewal
LEASE_NAMESPACE = "default"
RESULTS = pathlib.Path(os.environ.get("MLOPS_FAULTS_RESULTS", "")) if os.environ.get("MLOPS_FAULTS_RESULTS") else None

def _record(name: str, data: dict) -> None:
    """Appends a result line for docs/reliability.md (only when MLOPS_FAULTS_RESULTS names a file)."""
    if RESULTS is not None:
        with open(RESULTS, "a") as out:
            out.write(json.dumps({"test": name, **data}) + "\n")


# ---------------------------------------------------------------------------------------------------- fixtures

class PrivateCluster:
    def __init__(self, cluster, root: pathlib.Path):
        self.cluster, self.root = cluster, root
        self.kubeconfig = str(cluster.layout.kubeconfig)
        self.kube = config.new_client_from_config(config_file=self.kubeconfig)
        self.audit = AuditLog(cluster.audit_log)
        self.models = root / "models"
        self.models.mkdir(exist_ok=True)
        self.model_uris = []
        for version in ("v1", "v2", "v3"):
            path = self.models / version / "model.joblib"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(f"model {version}".encode())
            self.model_uris.append(f"file://{path}")

    def operator(self, name: str, run_args=("--standalone", "--all-namespaces"), **env) -> OperatorProcess:
        env = {"MLOPS_OPERATOR_IMAGE": "mlops-operator:test", "MLOPS_WATCH_TIMEOUT": str(WATCH_TIMEOUT),
               "MLOPS_LEASE_DURATION": str(LEASE_DURATION), **env}
        return OperatorProcess(self.kubeconfig, self.root / f"{name}.log", run_args=run_args, env=env)

    def namespace(self, prefix: str) -> str:
        core = client.CoreV1Api(self.kube)
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        wait_for(lambda: any(sa.metadata.name == "default" and sa.secrets
                             for sa in core.list_namespaced_service_account(name).items),
                 timeout=60, message=f"namespace {name}: default ServiceAccount token")
        return name


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    if os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes"):
        pytest.skip("USE_EXISTING_CLUSTER=true: fault tests restart control-plane components, so they need a "
                    "local cluster of their own")
    from mlops_localcluster import LocalCluster

    root = tmp_path_factory.mktemp("faults")
    cluster = LocalCluster(root / "cluster")
    cluster.up()
    try:
        if "kube-controller-manager" not in cluster.running()["components"]:
            pytest.skip("KUBEBUILDER_ASSETS has no kube-controller-manager: no garbage collection to converge")
        env = PrivateCluster(cluster, root)
        for crd in crdgen.render_crds():
            apply(env.kube, crd, field_manager="mlops-tests")
        ext = client.ApiextensionsV1Api(env.kube)
        names = [c["metadata"]["name"] for c in crdgen.render_crds()]
        wait_for(lambda: all(any(c.type == "Established" and c.status == "True" for c in
                                 (ext.read_custom_resource_definition(n).status.conditions or [])) for n in names),
                 message="CRDs Established")
        yield env
    finally:
        if not os.environ.get("MLOPS_KEEP_FAULT_CLUSTER"):  # keep it to look around after a failure
            cluster.down(quiet=True)


@pytest.fixture(scope="module")
def chaos_operator(private):
    proc = private.operator("operator")
    proc.start()
    yield proc
    proc.stop()


# ---------------------------------------------------------------------------------------------------- workload

class Burst:
    """A seeded stream of creates, updates and deletes over a small pool of names of the three kinds, applied
    to the real API server. `want` holds what each name should be afterwards (a spec, or None: deleted)."""

    NAMES = {"ModelDeployment": 8, "TrainingJob": 8, "DriftMonitor": 5}

    def __init__(self, env: PrivateCluster, namespace: str, seed: int):
        self.env, self.ns, self.rng = env, namespace, random.Random(seed)
        self.want: dict[tuple[str, str], dict | None] = {}
        self.counts = collections.Counter()

    def _md(self) -> dict:
        rng = self.rng
        spec = {"model": {"uri": rng.choice(self.env.model_uris)}, "runtime": {"preset": "sklearn"},
                "replicas": rng.choice([0, 1, 1, 2, 3]), "resources": {"cpu": "50m", "memory": "64Mi"}}
        if rng.random() < 0.3:
            spec["podAnnotations"] = {"chaos.mlops.dev/tag": str(rng.randint(0, 9))}
        return spec

    def _tj(self) -> dict:
        rng = self.rng
        spec = {"image": "trainer:1", "command": ["python", "train.py"], "workers": rng.choice([1, 1, 2, 3]),
                "resources": {"cpu": "50m", "memory": "64Mi"},
                "podAnnotations": {RUN_SECONDS: str(rng.choice([1, 2, 4]))},
                "backoffLimit": rng.randint(1, 4)}
        gpus = rng.choice([0, 1, 2])
        if gpus:
            spec["resources"]["gpu"] = {"count": gpus}
        if rng.random() < 0.2:
            spec["suspend"] = True
        if rng.random() < 0.2:
            spec["ttlSecondsAfterFinished"] = rng.choice([0, 3])
        return spec

    def _dm(self) -> dict:
        rng = self.rng
        spec = {"modelDeployment": {"name": f"md-{rng.randrange(self.NAMES['ModelDeployment'])}"},
                "reference": {"uri": f"file://{self.env.models}/reference.parquet"},
                # Schedules that never fire during a test: the runner is not what is tested here.
                "schedule": rng.choice(["0 0 1 1 *", "0 0 1 7 *", "0 3 1 1 *"]),
                "features": [{"name": f} for f in rng.sample(["age", "income", "score"], rng.randint(1, 3))]}
        return spec

    def step(self) -> None:
        rng = self.rng
        kind = rng.choice(list(self.NAMES))
        name = f"{dict(ModelDeployment='md', TrainingJob='tj', DriftMonitor='dm')[kind]}-" \
               f"{rng.randrange(self.NAMES[kind])}"
        key = (kind, name)
        exists = self.want.get(key) is not None
        if exists and rng.random() < 0.3:
            self.delete(kind, name)
            self.counts["delete"] += 1
            return
        spec = {"ModelDeployment": self._md, "TrainingJob": self._tj, "DriftMonitor": self._dm}[kind]()
        self.apply(kind, name, spec)
        self.counts["update" if exists else "create"] += 1

    def apply(self, kind: str, name: str, spec: dict) -> None:
        body = {"apiVersion": "mlops.dev/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": self.ns}, "spec": spec}
        _retry(lambda: apply(self.env.kube, body))
        self.want[(kind, name)] = spec

    def delete(self, kind: str, name: str) -> None:
        path = f"{GROUP_PATH}/namespaces/{self.ns}/{PLURALS[kind]}/{name}"
        _retry(lambda: _expect(request(self.env.kube, "DELETE", path), (200, 202, 404)))
        self.want[(kind, name)] = None


def _expect(result, codes):
    code, body = result
    if code not in codes:
        raise OSError(f"unexpected answer {code}: {body}")
    return body


def _retry(call, timeout: float = 120):
    """Runs call until it succeeds: the API server may be restarting (connection refused, 5xx, timeouts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (OSError, client.ApiException, pytest.fail.Exception, Exception) as err:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise AssertionError(f"API call kept failing for {timeout}s: {err}") from err
            time.sleep(0.5)


# ---------------------------------------------------------------------------------------------------- invariants

class GpuWatch(Background):
    """Watches the namespace's pods for the whole fault and records every moment a TrainingJob held GPUs twice:
    two live pods for one rank, or live pods of two attempts at once (live: not deleting, not finished)."""

    def __init__(self, kube, namespace: str):
        super().__init__(self._watch, join_timeout=30)
        self.kube, self.ns = kube, namespace
        self.pods: dict[str, dict] = {}
        self.violations: list[str] = []
        self.events = 0
        self._rv = None

    def _watch(self) -> None:
        """One list (when there is no resourceVersion to go on from) and one watch of up to 5 s."""
        core = client.CoreV1Api(self.kube)
        try:
            if self._rv is None:
                listed = core.list_namespaced_pod(self.ns, label_selector="mlops.dev/trainingjob")
                self.pods = {p.metadata.name: self._fact(p) for p in listed.items}
                self._rv = listed.metadata.resource_version
                self._check()
            for event in watch.Watch().stream(core.list_namespaced_pod, self.ns,
                                              label_selector="mlops.dev/trainingjob", resource_version=self._rv,
                                              timeout_seconds=5, _request_timeout=10):
                pod = event["object"]
                self._rv = pod.metadata.resource_version
                self.events += 1
                if event["type"] == "DELETED":
                    self.pods.pop(pod.metadata.name, None)
                else:
                    self.pods[pod.metadata.name] = self._fact(pod)
                self._check()
                if self.stopping.is_set():
                    return
        except client.ApiException as err:
            if err.status == 410:
                self._rv = None
            time.sleep(0.5)
        except Exception:  # noqa: BLE001  (the API server may be restarting: keep watching)
            time.sleep(0.5)

    @staticmethod
    def _fact(pod) -> dict:
        labels = pod.metadata.labels or {}
        gpus = sum(int((c.resources.limits or {}).get("nvidia.com/gpu", 0)) for c in pod.spec.containers
                   if c.resources)
        return {"job": labels.get("mlops.dev/trainingjob"), "rank": labels.get("mlops.dev/rank"),
                "attempt": labels.get("mlops.dev/attempt"), "owner": (pod.metadata.owner_references or [None])[0]
                and pod.metadata.owner_references[0].uid, "gpus": gpus,
                "live": pod.metadata.deletion_timestamp is None and pod.status.phase not in ("Succeeded", "Failed")}

    def _check(self) -> None:
        by_job = collections.defaultdict(list)
        for name, fact in self.pods.items():
            if fact["live"]:
                by_job[(fact["job"], fact["owner"])].append((name, fact))
        for (job, _), pods in by_job.items():
            ranks = collections.Counter(f["rank"] for _, f in pods)
            attempts = {f["attempt"] for _, f in pods}
            if any(n > 1 for n in ranks.values()) or len(attempts) > 1:
                self.violations.append(f"{job}: live pods {sorted(n for n, _ in pods)}")


def _items(kube, path: str, selector: str | None = None) -> list[dict]:
    return _expect(request(kube, "GET", path, query={"labelSelector": selector} if selector else None),
                   (200,))["items"]


def _cond(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


CHILD_PATHS = {
    "deployments": "/apis/apps/v1/namespaces/{ns}/deployments",
    "replicasets": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "services": "/api/v1/namespaces/{ns}/services",
    "pods": "/api/v1/namespaces/{ns}/pods",
    "pdbs": "/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets",
    "hpas": "/apis/autoscaling/v2beta2/namespaces/{ns}/horizontalpodautoscalers",
    "cronjobs": "/apis/batch/v1beta1/namespaces/{ns}/cronjobs",
    "jobs": "/apis/batch/v1/namespaces/{ns}/jobs",
    "serviceaccounts": "/api/v1/namespaces/{ns}/serviceaccounts",
    "roles": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "rolebindings": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


def violations(kube, ns: str, want: dict[tuple[str, str], dict | None]) -> list[str]:
    """Everything that is not (yet) as it must be in namespace ns, given what each name should be."""
    out: list[str] = []
    live: dict[tuple[str, str], dict] = {}
    for kind, plural in PLURALS.items():
        for obj in _items(kube, f"{GROUP_PATH}/namespaces/{ns}/{plural}"):
            live[(kind, obj["metadata"]["name"])] = obj
            if obj["metadata"].get("finalizers"):
                out.append(f"{kind}/{obj['metadata']['name']}: finalizers {obj['metadata']['finalizers']}")
            if obj["metadata"].get("deletionTimestamp"):
                out.append(f"{kind}/{obj['metadata']['name']}: stuck deleting")
    children = {res: _items(kube, path.format(ns=ns), MANAGED if res not in ("replicasets", "jobs") else None)
                for res, path in CHILD_PATHS.items()}
    uids = {obj["metadata"]["uid"] for obj in live.values()}

    for (kind, name), spec in want.items():
        obj = live.get((kind, name))
        if spec is None:
            if obj is not None:
                out.append(f"{kind}/{name}: deleted, still exists")
            leaked = [f"{res}/{c['metadata']['name']}" for res, items in children.items() for c in items
                      if (c["metadata"].get("labels") or {}).get(LABEL[kind]) == name]
            if leaked:
                out.append(f"{kind}/{name}: deleted, children left: {leaked}")
            continue
        if obj is None:
            out.append(f"{kind}/{name}: missing")
            continue
        if not contains(obj["spec"], spec):  # the server adds defaults; what was applied must be there
            out.append(f"{kind}/{name}: spec on the server differs from the last apply")
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            out.append(f"{kind}/{name}: observedGeneration {status.get('observedGeneration')} != "
                       f"{obj['metadata']['generation']}")
            continue
        mine = {res: [c for c in items if (c["metadata"].get("labels") or {}).get(LABEL[kind]) == name]
                for res, items in children.items()}
        out += {"ModelDeployment": _md_ok, "TrainingJob": _tj_ok, "DriftMonitor": _dm_ok}[kind](name, spec, obj, mine)

    # No orphans: every child the operator made is owned by a live custom resource (by uid).
    for res in ("deployments", "services", "pdbs", "hpas", "cronjobs", "serviceaccounts", "roles", "rolebindings"):
        for child in children[res]:
            owners = [o["uid"] for o in child["metadata"].get("ownerReferences") or [] if o.get("controller")]
            if len(owners) != 1 or owners[0] not in uids:
                out.append(f"{res}/{child['metadata']['name']}: orphan (owners {owners})")
    for pod in children["pods"]:
        refs = pod["metadata"].get("ownerReferences") or []
        if (pod["metadata"].get("labels") or {}).get(LABEL["TrainingJob"]) and \
                not any(r["uid"] in uids for r in refs):
            out.append(f"pods/{pod['metadata']['name']}: worker of no live TrainingJob")
    for res, items in children.items():
        for child in items:
            if child["metadata"].get("deletionTimestamp"):
                out.append(f"{res}/{child['metadata']['name']}: stuck deleting")
    return out


def _md_ok(name: str, spec: dict, obj: dict, mine: dict) -> list[str]:
    out = []
    deps = {d["metadata"]["name"]: d for d in mine["deployments"]}
    if set(deps) != {name}:
        out.append(f"ModelDeployment/{name}: Deployments {sorted(deps)}")
    dep = deps.get(name)
    if dep is not None:
        template = dep["spec"]["template"]
        if dep["spec"].get("replicas") != spec["replicas"]:
            out.append(f"ModelDeployment/{name}: Deployment replicas {dep['spec'].get('replicas')}"
                       f" != {spec['replicas']}")
        if template["metadata"]["annotations"].get("mlops.dev/model-uri") != spec["model"]["uri"]:
            out.append(f"ModelDeployment/{name}: Deployment serves another model")
        want_ann = spec.get("podAnnotations", {})
        have_ann = {k: v for k, v in template["metadata"]["annotations"].items() if k.startswith("chaos.")}
        if have_ann != want_ann:
            out.append(f"ModelDeployment/{name}: pod annotations {have_ann} != {want_ann}")
    if [s["metadata"]["name"] for s in mine["services"]] != [name]:
        out.append(f"ModelDeployment/{name}: Services {[s['metadata']['name'] for s in mine['services']]}")
    if (len(mine["pdbs"]) == 1) != (spec["replicas"] > 1) or len(mine["pdbs"]) > 1:
        out.append(f"ModelDeployment/{name}: {len(mine['pdbs'])} PDBs for {spec['replicas']} replicas")
    if mine["hpas"]:
        out.append(f"ModelDeployment/{name}: an HPA without autoscaling")
    ready = _cond(obj, "Ready")
    expected = ("False", "ScaledToZero") if spec["replicas"] == 0 else ("True", "AllReplicasReady")
    if (ready.get("status"), ready.get("reason")) != expected:
        out.append(f"ModelDeployment/{name}: Ready {ready.get('status')} {ready.get('reason')}: {ready.get('message')}")
    servers = [p for p in mine["pods"] if not p["metadata"].get("deletionTimestamp")]
    if len(servers) != spec["replicas"]:
        out.append(f"ModelDeployment/{name}: {len(servers)} serving pods for {spec['replicas']} replicas")
    return out


def _tj_ok(name: str, spec: dict, obj: dict, mine: dict) -> list[str]:
    out = []
    status = obj.get("status") or {}
    phase = status.get("phase")
    allowed = ("Suspended", "Succeeded") if spec.get("suspend") else ("Succeeded",)
    if phase not in allowed:
        out.append(f"TrainingJob/{name}: phase {phase} (want {'/'.join(allowed)}); Ready: "
                   f"{_cond(obj, 'Ready').get('reason')} {_cond(obj, 'Ready').get('message')}")
    live = [p for p in mine["pods"] if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    if phase in ("Succeeded", "Suspended") and live:
        out.append(f"TrainingJob/{name}: {phase} with live workers {[p['metadata']['name'] for p in live]}")
    if phase == "Succeeded" and spec.get("ttlSecondsAfterFinished") is not None:
        done = [p["metadata"]["name"] for p in mine["pods"] if not p["metadata"].get("deletionTimestamp")]
        if done or mine["services"]:
            out.append(f"TrainingJob/{name}: ttlSecondsAfterFinished passed, left {done} and "
                       f"{len(mine['services'])} Services")
    if len(mine["services"]) > 1:
        out.append(f"TrainingJob/{name}: {len(mine['services'])} Services")
    failures = status.get("retries") or 0
    if failures:
        out.append(f"TrainingJob/{name}: {failures} failures counted against backoffLimit "
                   f"({(status.get('failure') or {}).get('reason')}): faults of the operator or the control plane "
                   "must not cost a training its retries")
    return out


def _dm_ok(name: str, spec: dict, obj: dict, mine: dict) -> list[str]:
    out = []
    runner = f"{name}-drift"
    for res in ("cronjobs", "serviceaccounts", "roles", "rolebindings"):
        names = [c["metadata"]["name"] for c in mine[res]]
        if names != [runner]:
            out.append(f"DriftMonitor/{name}: {res} {names}")
    cron = next(iter(mine["cronjobs"]), None)
    if cron is not None and cron["spec"]["schedule"] != spec["schedule"]:
        out.append(f"DriftMonitor/{name}: CronJob schedule {cron['spec']['schedule']!r} != {spec['schedule']!r}")
    role = next(iter(mine["roles"]), None)
    if role is not None:
        md_rule = [r for r in role["rules"] if r["resources"] == ["modeldeployments"]]
        if not md_rule or md_rule[0].get("resourceNames") != [spec["modelDeployment"]["name"]]:
            out.append(f"DriftMonitor/{name}: runner Role does not name {spec['modelDeployment']['name']}")
    return out


# After an API server restart the kube-controller-manager's garbage collector retries each lookup that failed
# during the outage with exponential back-off (client-go's rate limiter: 5 ms doubling, at most 1000 s), so the
# children of an object deleted around the restart can wait minutes for it (measured here: up to 165 s). That is
# Kubernetes' own behaviour, not the operator's, so those violations alone get longer.
GC_TIMEOUT = 600


def _garbage_collection(violation: str) -> bool:
    return ": deleted, children left: " in violation or ": orphan (owners " in violation


def converge(env: PrivateCluster, ns: str, want: dict, timeout: float = 180, gc_timeout: float = 0) -> float:
    """Waits until no invariant is violated; fails listing what still is. Returns the seconds it took (for
    docs/reliability.md only: never asserted on). With gc_timeout, what is left for the garbage collector alone
    (deleted owners' children, orphans) may take up to that long; everything else must hold within timeout."""
    start = time.monotonic()
    last: list[str] = []

    def settled():
        nonlocal last
        try:
            last = violations(env.kube, ns, want)
        except (OSError, AssertionError, client.ApiException) as err:
            last = [f"API error: {err}"]
        return not last

    deadline, gc_deadline = start + timeout, start + max(timeout, gc_timeout)
    while True:
        if settled():
            return time.monotonic() - start
        now = time.monotonic()
        if now >= gc_deadline or (now >= deadline and not all(_garbage_collection(v) for v in last)):
            break
        time.sleep(1)
    pytest.fail(f"{ns}: not converged after {time.monotonic() - start:.0f}s:\n  " + "\n  ".join(last[:40]))


def gpus_within_capacity(kube) -> list[str]:
    """No node is promised more GPUs than it has (the scheduler's promise, checked after every fault)."""
    core = client.CoreV1Api(kube)
    capacity = {n.metadata.name: int((n.status.allocatable or {}).get("nvidia.com/gpu", 0))
                for n in core.list_node().items}
    used = collections.Counter()
    for pod in core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name and pod.status.phase not in ("Succeeded", "Failed"):
            used[pod.spec.node_name] += sum(int((c.resources.limits or {}).get("nvidia.com/gpu", 0))
                                            for c in pod.spec.containers if c.resources)
    return [f"{node}: {n} GPUs bound, {capacity.get(node, 0)} allocatable" for node, n in used.items()
            if n > capacity.get(node, 0)]


def drain(env: PrivateCluster, ns: str, burst: Burst) -> None:
    """Deletes every custom resource of the round and checks the garbage collector leaves nothing behind."""
    for (kind, name), spec in list(burst.want.items()):
        if spec is not None:
            burst.delete(kind, name)
    converge(env, ns, burst.want, timeout=120, gc_timeout=GC_TIMEOUT)
    leftovers = [f"{res}/{c['metadata']['name']}" for res, path in CHILD_PATHS.items()
                 for c in _items(env.kube, path.format(ns=ns), MANAGED)]
    assert not leftovers, f"children left after every owner was deleted: {leftovers}"


def operator_healthy(proc: OperatorProcess) -> dict:
    assert proc.alive, f"the operator exited; see {proc.log_path}"
    return {"errors": proc.metric("controller_runtime_reconcile_errors_total"),
            "total": proc.metric("controller_runtime_reconcile_total")}


# ---------------------------------------------------------------------------------------------------- tests

@pytest.mark.timeout(1800)
def test_operator_killed_mid_burst_converges(private, chaos_operator):
    """SIGKILL at seeded random moments of a burst of creates, updates and deletes; the operator is restarted
    each time, while the burst goes on. Afterwards every invariant holds, and deleting everything leaves nothing."""
    summary = []
    for round_ in range(ROUNDS):
        seed = SEED + round_
        rng = random.Random(seed * 7919)
        ns = private.namespace(f"chaos-{seed}")
        burst = Burst(private, ns, seed)
        kills = sorted(rng.sample(range(5, OPS), k=max(1, OPS // 40)))
        restarts: list[threading.Thread] = []
        with GpuWatch(private.kube, ns) as gpus:
            for i in range(OPS):
                if kills and i == kills[0]:
                    kills.pop(0)
                    for t in restarts:
                        t.join()
                    chaos_operator.kill()
                    # Restarted in the background after a random pause: the burst goes on meanwhile.
                    pause = rng.uniform(0, 2)
                    restarts.append(threading.Thread(target=lambda p=pause: (time.sleep(p), chaos_operator.start())))
                    restarts[-1].start()
                burst.step()
                time.sleep(rng.uniform(0, 0.05))
            for t in restarts:
                t.join()
            took = converge(private, ns, burst.want)
        assert not gpus.violations, f"seed {seed}: a TrainingJob held GPUs twice: {gpus.violations[:5]}"
        assert not gpus_within_capacity(private.kube)
        health = operator_healthy(chaos_operator)
        drain(private, ns, burst)
        client.CoreV1Api(private.kube).delete_namespace(ns)
        summary.append({"seed": seed, "ops": dict(burst.counts), "kills": max(1, OPS // 40),
                        "converged_s": round(took, 1), "pod_events_watched": gpus.events, **health})
    _record("operator-kill", {"rounds": summary})


class Supervisor(Background):
    """Plays the kubelet for the operator process (restartPolicy Always): starts it again whenever it exits,
    and counts those exits so the fault tests can report them (docs/reliability.md)."""

    def __init__(self, proc: OperatorProcess):
        super().__init__(self._restart_if_exited, interval=0.5, join_timeout=60)
        self.proc, self.exits = proc, []

    def _restart_if_exited(self) -> None:
        if self.proc.proc is not None and self.proc.proc.poll() is not None:
            self.exits.append(self.proc.proc.returncode)
            self.proc.start()


def _burst_in_background(burst: Burst, ops: int, rng: random.Random) -> Background:
    """`ops` steps of the burst, each followed by a pause of up to 50 ms, while the with-block runs."""
    return Background(lambda: (burst.step(), time.sleep(rng.uniform(0, 0.05))), times=ops)


def _process_state(pid: int) -> str:
    """The kernel's one-letter state of a process (T: stopped)."""
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_the_controller_manager_never_meets_an_api_server_that_is_not_ready(private):
    """A starting kube-apiserver answers /apis with most built-in groups missing until its aggregator has
    registered them; a garbage collector that syncs its discovery then drops its monitors for those kinds and
    never learns of what is deleted before it makes new ones (a fresh-clone run left a deleted ModelDeployment's
    ReplicaSet and pod for over 10 minutes). The local cluster models the ready-only endpoint of a real control
    plane: the controller manager is paused while the API server restarts. Checked here: the window exists (/apis
    was seen with groups missing) and the controller manager was stopped whenever it was open."""
    state = private.cluster.running()
    kcm = state["components"]["kube-controller-manager"]["pid"]

    def groups() -> set[str]:  # one try per call, no client retries
        return {g["name"] for g in private.cluster.get_json(state, "/apis")["groups"]}

    want = groups()
    seen: list[tuple[int, str]] = []  # (groups missing from /apis, the controller manager's state then)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                got = groups()
            except (OSError, http.client.HTTPException, ValueError):  # down, refusing, or cut off mid-answer
                time.sleep(0.01)
                continue
            seen.append((len(want - got), _process_state(kcm)))
            time.sleep(0.01)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        for _ in range(2):
            private.cluster.restart("kube-apiserver")
    finally:
        stop.set()
        thread.join(10)
    partial = [(missing, st) for missing, st in seen if missing]
    assert partial, f"no /apis answer with groups missing in {len(seen)} polls: the window this guards is gone"
    assert all(st == "T" for _, st in partial), f"the controller manager ran while /apis lacked groups: {partial}"
    assert _process_state(kcm) != "T", "the controller manager was left paused"


@pytest.mark.timeout(GC_TIMEOUT + 300)  # the garbage collector's back-off may take longer than the default
@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_during_burst(private, chaos_operator, component):
    """kube-apiserver (or etcd, whose data folder survives) restarted in the middle of a burst: the operator
    reconnects by itself and everything converges; nothing stored is lost."""
    seed = SEED + 500 + (component == "etcd")
    rng = random.Random(seed)
    ns = private.namespace(f"restart-{component.split('-')[-1]}")
    burst = Burst(private, ns, seed)
    for _ in range(20):  # objects that exist before the restart, so a lost write would show
        burst.step()
    before = {(k, n) for (k, n), spec in burst.want.items() if spec is not None}
    with (GpuWatch(private.kube, ns) as gpus, Supervisor(chaos_operator) as supervisor,
          _burst_in_background(burst, 40, rng) as worker):
        time.sleep(rng.uniform(0.5, 1.5))
        old_pid = private.cluster.running()["components"][component]["pid"]
        new_pid = private.cluster.restart(component)
        assert new_pid != old_pid
        assert worker.join(300), "the burst did not finish"
        took = converge(private, ns, burst.want, gc_timeout=GC_TIMEOUT)
    assert not gpus.violations, gpus.violations[:5]
    assert not gpus_within_capacity(private.kube)
    health = operator_healthy(chaos_operator)
    for kind, name in before:
        if burst.want[(kind, name)] is not None:  # still wanted: it must still be there (etcd kept it)
            _expect(request(private.kube, "GET", f"{GROUP_PATH}/namespaces/{ns}/{PLURALS[kind]}/{name}"), (200,))
    drain(private, ns, burst)
    client.CoreV1Api(private.kube).delete_namespace(ns)
    _record(f"restart-{component}", {"seed": seed, "ops": dict(burst.counts), "converged_s": round(took, 1),
                                     "operator_exits": supervisor.exits, **health})


def _watch_sockets(pid: int, port: int) -> set[int]:
    """Inodes of the process's established TCP connections to 127.0.0.1:port (its watches among them)."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    found = set()
    for line in pathlib.Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], int(fields[9])
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            found.add(inode)
    return found


@pytest.mark.timeout(GC_TIMEOUT + 300)
def test_frozen_api_server_breaks_watches_and_the_operator_recovers(private, chaos_operator):
    """SIGSTOP kube-apiserver for longer than the operator's limits: every connection the operator had to it is
    given up by the operator itself (watches within MLOPS_WATCH_TIMEOUT + 15 s, any request within 60 s; checked
    while the server is still frozen), and after SIGCONT changes made since are reconciled without any restart."""
    seed = SEED + 700
    ns = private.namespace("freeze")
    burst = Burst(private, ns, seed)
    for _ in range(15):
        burst.step()
    converge(private, ns, burst.want)
    port = private.cluster.running()["ports"]["apiserver"]
    before = _watch_sockets(chaos_operator.proc.pid, port)
    assert before, "the operator has no connection to the API server"
    private.cluster.pause("kube-apiserver")
    try:
        frozen = time.monotonic()
        # Every connection open before the freeze (the informers' watches, the client's keep-alive pool) is closed
        # by the operator itself; the bound is the configured one plus slack for a loaded machine.
        wait_for(lambda: not (_watch_sockets(chaos_operator.proc.pid, port) & before), timeout=WATCH_BOUND + 20,
                 interval=1, message="the operator to give up its connections to the frozen API server")
        noticed = time.monotonic() - frozen
    finally:
        private.cluster.resume("kube-apiserver")
    for _ in range(15):
        burst.step()
    took = converge(private, ns, burst.want, gc_timeout=GC_TIMEOUT)
    health = operator_healthy(chaos_operator)
    drain(private, ns, burst)
    client.CoreV1Api(private.kube).delete_namespace(ns)
    _record("freeze-apiserver", {"watch_timeout": WATCH_TIMEOUT, "bound_s": WATCH_BOUND,
                                 "connections_given_up_after_s": round(noticed, 1), "converged_s": round(took, 1),
                                 **health})


def _replicas(env: PrivateCluster, lease: str, *names: str) -> list[OperatorProcess]:
    """Operator replicas (not started) competing for the Lease `lease`, one per name."""
    return [env.operator(name, run_args=("--all-namespaces", "--lease-name", lease,
                                         "--lease-namespace", LEASE_NAMESPACE)) for name in names]


def _holder(env: PrivateCluster, lease: str) -> str | None:
    code, body = request(env.kube, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{lease}")
    return (body.get("spec") or {}).get("holderIdentity") if code == 200 else None


def _leads(env: PrivateCluster, lease: str, proc: OperatorProcess) -> bool:
    """The lease names this replica (its identity is host_pid, see cli.py) and its log says it leads."""
    return (str(_holder(env, lease) or "").endswith(f"_{proc.proc.pid}")
            and f"lease {LEASE_NAMESPACE}/{lease} acquired".encode() in proc.log_path.read_bytes())


def _writers(env: PrivateCluster, mark: int, ns: str) -> collections.Counter:
    """Writes to the test namespace by each operator process (the lease lives elsewhere)."""
    return collections.Counter(w["agent"] for w in env.audit.writes(mark, namespace=ns))


def test_two_replicas_only_the_leader_writes_and_the_standby_takes_over_after_a_kill(private, chaos_operator):
    """Two replicas electing a leader on a Lease (no --standalone): the first one started leads and alone writes
    (told apart in the audit log by the pid in the user agent); killed with SIGKILL (no release), the standby
    takes over once the dead leader's lease has not been renewed for its duration (MLOPS_LEASE_DURATION)."""
    chaos_operator.stop()  # the standalone operator of this module would act too
    leader, standby = _replicas(private, "mlops-faults", "replica-a", "replica-b")
    try:
        leader.start()
        wait_for(lambda: _leads(private, "mlops-faults", leader), timeout=60, message="replica-a leads")
        standby.start()
        wait_for(lambda: b"standing by: lease" in standby.log_path.read_bytes(), timeout=60,
                 message="replica-b stands by")
        ns = private.namespace("election")
        burst = Burst(private, ns, SEED + 900)
        mark = private.audit.mark()
        for _ in range(20):
            burst.step()
        converge(private, ns, burst.want)
        writes = _writers(private, mark, ns)
        assert writes[leader.agent] > 0, f"the leader wrote nothing: {writes}"
        assert writes[standby.agent] == 0, f"the standby wrote too: {writes}"

        leader.kill()
        killed = time.monotonic()
        mark = private.audit.mark()
        for _ in range(20):
            burst.step()
        wait_for(lambda: _leads(private, "mlops-faults", standby), timeout=LEASE_DURATION + 60,
                 message="the standby leads")
        took_over = time.monotonic() - killed
        took = converge(private, ns, burst.want, timeout=LEASE_DURATION + 180)
        writes = _writers(private, mark, ns)
        assert writes[standby.agent] > 0, f"the standby never took over: {writes}"
        assert set(writes) == {standby.agent}, f"writes by others after the leader died: {writes}"
        drain(private, ns, burst)
        client.CoreV1Api(private.kube).delete_namespace(ns)
        _record("election-kill", {"lease_duration_s": LEASE_DURATION, "took_over_after_s": round(took_over, 1),
                                  "converged_s": round(took, 1)})
    finally:
        leader.stop()
        standby.stop()
        chaos_operator.start()


def test_a_replica_joining_never_makes_two_writers_and_a_stopped_leader_hands_over(private, chaos_operator):
    """The leader acts; a second replica joins (as a rolling update's new pod does). Its informers fill and its
    work queues fill with every key, yet it reconciles nothing while the leader holds the lease: through 30 more
    operations (updates and deletes of objects both know, their children changing) only the leader writes. Then
    the leader stops on SIGTERM: its workers stop first, it releases the lease, and the new replica takes over
    without waiting out the lease duration, and alone converges what comes next."""
    chaos_operator.stop()
    old, new = _replicas(private, "mlops-handover", "handover-old", "handover-new")
    try:
        old.start()
        wait_for(lambda: _leads(private, "mlops-handover", old), timeout=60, message="the first replica leads")
        ns = private.namespace("handover")
        burst = Burst(private, ns, SEED + 950)
        for _ in range(20):
            burst.step()
        converge(private, ns, burst.want)

        new.start()
        wait_for(lambda: b"standing by: lease" in new.log_path.read_bytes(), timeout=60,
                 message="the joining replica stands by")
        mark = private.audit.mark()
        for _ in range(30):
            burst.step()
        took = converge(private, ns, burst.want)
        writes = _writers(private, mark, ns)
        assert writes[old.agent] > 0, f"the leader never acted: {writes}"
        assert writes[new.agent] == 0, f"the joining replica wrote: {writes}"
        assert new.alive, f"the standby exited; see {new.log_path}"

        old.stop()  # SIGTERM: kopf runs the cleanup handler, which releases the lease
        stopped = old.log_path.read_bytes()
        assert b"lease default/mlops-handover released" in stopped, f"see {old.log_path}"
        assert b"OS signals are ignored" not in stopped and old.proc.returncode == 0, f"see {old.log_path}"
        wait_for(lambda: _leads(private, "mlops-handover", new), timeout=LEASE_DURATION + 60,
                 message="the new replica leads")
        mark = private.audit.mark()
        for _ in range(20):
            burst.step()
        converge(private, ns, burst.want)
        writes = _writers(private, mark, ns)
        assert set(writes) == {new.agent}, f"writes by others after the handover: {writes}"
        drain(private, ns, burst)
        client.CoreV1Api(private.kube).delete_namespace(ns)
        _record("election-join-and-handover", {"converged_s": round(took, 1)})
    finally:
        old.stop()
        new.stop()
        chaos_operator.start()
