"""The operator at scale, held against what the API server itself can take.

    python -m bench operator [--n 1000] [--objects 2000] [--latency-samples 200] [--idle-seconds 60] [--no-doc]

Runs on its own local cluster (state in .cluster-bench/, the pool in bench/pool.yaml), never the shared one.
Phases, each on a fresh cluster with the same API server, controller-manager and scheduler flags:

- floor: N ModelDeployments and N/2 TrainingJobs created at once, and their children and status writes made by a
  tight asynchronous client (no operator): create, then the same objects the operator's renderers make
  (Deployment and Service; Service and worker Pod), the same status patches and events. Bounded only by the API
  server (and the bench's own concurrency, `--concurrency`). Then the latency floor: topped up to `--objects`, every
  ModelDeployment's pod Ready, single ModelDeployments created one after another, each continued by this client
  with the operator's first-reconcile writes; apply -> status for its generation, p50/p99, as for the operator.
- burst: the same creates with the operator running: seconds until every object has its children and a status
  for its generation (status.observedGeneration == metadata.generation), seen through watches by this process;
  and the operator's own CPU seconds in that time (/proc), which other work on the machine changes far less;
- settle, then top up to `--objects` custom resources (more ModelDeployments) and let it settle again;
- latency: single ModelDeployments created one after another; apply -> status for its generation, p50/p99;
- idle: the operator's write requests per minute once everything converged, counted on the API server (the audit
  log, user agents mlops-operator/ and kopf/);
- restart: the operator stopped and started; seconds until every object was reconciled once with an empty work
  queue (its own metrics), the operator's CPU seconds from its start until then, and the writes that made;
- memory: the operator's RSS after the burst, and after the restart at `--objects`.

Writes the section "## Operator at scale" of docs/benchmarks.md (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pathlib
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

from mlops_localcluster.audit import AuditLog

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Operator at scale"
CLUSTER_DIR = ROOT / ".cluster-bench"
POOL = ROOT / "bench" / "pool.yaml"
NAMESPACE = "bench"
GROUP_PATH = "/apis/mlops.dev/v1alpha1"
BENCH_AGENT = "mlops-bench/1"
OPERATOR_AGENTS = ("mlops-operator/", "kopf/")
# Not the operator's own image: the node simulator completes such init containers at once instead of running
# `mlops-operator fetch-model` as a local process per pod.
FETCHER_IMAGE = "bench.example/model-fetcher:1"
PLACEHOLDER, PLACEHOLDER_UID = "zzplacezz", "00000000-0000-0000-0000-00000000feed"


def md_manifest(name: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"model": {"uri": "s3://models/bench/v1"}, "runtime": {"preset": "sklearn"}, "replicas": 1,
                     "resources": {"cpu": "10m", "memory": "16Mi"}}}


def tj_manifest(name: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"image": "trainer:1", "command": ["python", "train.py"], "workers": 1,
                     "resources": {"cpu": "10m", "memory": "16Mi"}}}


# ---------------------------------------------------------------------------------------------- the machine

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem = next((int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {"cpu": cpu, "nproc": os.cpu_count(), "mem_mb": mem, "python": platform.python_version()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc/<pid>/stat: the operator's own cost, which the
    machine's other work changes far less than it changes wall time."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------- the cluster

def fresh_cluster():
    """A new, empty bench cluster (etcd wiped): each phase starts from the same state."""
    from mlops_localcluster import LocalCluster

    cluster = LocalCluster(CLUSTER_DIR)
    cluster.down(quiet=True)
    cluster.up(pool_file=str(POOL))
    return cluster


def cluster_flags(cluster) -> str:
    """The API server's in-flight limits and the controllers' QPS, read from the running processes."""
    state = json.loads(cluster.layout.state.read_text())
    flags = []
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pid = state["components"][name]["pid"]
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        flags += [f"{name} {a}" for a in argv if re.match(r"--(max-.*inflight|kube-api-qps|kube-api-burst)=", a)]
    return "; ".join(flags)


async def prepare(client) -> None:
    """CRDs Established, the bench namespace with its default ServiceAccount token."""
    from mlops_operator.api import crdgen

    for crd in crdgen.render_crds():
        await client.apply(crd)
    for crd in crdgen.render_crds():
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        while not any(c["type"] == "Established" and c["status"] == "True"
                      for c in ((await client.get(path)) or {}).get("status", {}).get("conditions", [])):
            await asyncio.sleep(0.2)
    await client.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    while True:
        sa = await client.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
        if sa and sa.get("secrets"):
            break
        await asyncio.sleep(0.2)
    # Discovery the renderers need, and an API server warmed by it.
    for group in ("autoscaling", "policy"):
        await client.group_versions(group)


def bench_client(cluster, limit: int):
    from mlops_operator.k8s.client import KubeClient

    return KubeClient.from_environment(str(cluster.layout.kubeconfig), limit=limit, user_agent=BENCH_AGENT)


# ---------------------------------------------------------------------------------------------- watching

class Tracker:
    """What this process sees through watches: per object, whether it has its children and a status for its
    generation (the burst's criterion), whether it settled (Ready / finished), and when."""

    KINDS = {"modeldeployments": "md", "trainingjobs": "tj"}

    def __init__(self) -> None:
        self.expected: dict[tuple[str, str], float] = {}  # (kind, name) -> when it was applied
        self.children: dict[tuple[str, str], set[str]] = {}
        self.status_ok: set[tuple[str, str]] = set()
        self.settled: set[tuple[str, str]] = set()
        self.done: dict[tuple[str, str], float] = {}
        self.waiters: dict[tuple[str, str], asyncio.Future] = {}
        self.changed = asyncio.Event()

    def expect(self, kind: str, name: str) -> None:
        self.expected.setdefault((kind, name), time.monotonic())

    def _check(self, key: tuple[str, str]) -> None:
        if key in self.done or key not in self.expected:
            return
        want = {"deployment", "service"} if key[0] == "md" else {"pod", "service"}
        if key in self.status_ok and want <= self.children.get(key, set()):
            self.done[key] = time.monotonic()
            waiter = self.waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(self.done[key])
            self.changed.set()

    def on_custom(self, kind: str, obj: dict) -> None:
        key = (kind, obj["metadata"]["name"])
        status = obj.get("status") or {}
        if status.get("observedGeneration") == obj["metadata"].get("generation"):
            self.status_ok.add(key)
        if kind == "md":
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            settled = ready.get("status") == "True" and key in self.status_ok
        else:
            settled = status.get("phase") in ("Succeeded", "Failed")
        if settled and key not in self.settled:
            self.settled.add(key)
            self.changed.set()
        self._check(key)

    def on_child(self, child: str, obj: dict) -> None:
        labels = obj["metadata"].get("labels") or {}
        for label, kind in (("mlops.dev/modeldeployment", "md"), ("mlops.dev/trainingjob", "tj")):
            if label in labels and not (child == "pod" and kind == "md"):  # an MD's pods are not its children
                key = (kind, labels[label])
                self.children.setdefault(key, set()).add(child)
                self._check(key)

    def all_done(self) -> bool:
        return len(self.done) >= len(self.expected)

    def all_settled(self) -> bool:
        return self.settled >= set(self.expected)

    async def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
        return True


async def watch_forever(client, path: str, handle) -> None:
    from mlops_operator.k8s.client import ApiError

    while True:
        listed = await client.request("GET", path)
        for item in listed["items"]:
            handle(item)
        rv = listed["metadata"]["resourceVersion"]
        try:
            while True:
                async for event in client.watch(path, rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise ApiError(obj.get("code", 410), obj, "WATCH", path)
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handle(obj)
        except ApiError:
            continue  # expired: list again


def start_watches(client, tracker: Tracker) -> list[asyncio.Task]:
    ns = f"/namespaces/{NAMESPACE}"  # everything in the bench namespace is the benchmark's: no selectors
    specs = [(f"{GROUP_PATH}{ns}/modeldeployments", lambda o: tracker.on_custom("md", o)),
             (f"{GROUP_PATH}{ns}/trainingjobs", lambda o: tracker.on_custom("tj", o)),
             (f"/apis/apps/v1{ns}/deployments", lambda o: tracker.on_child("deployment", o)),
             (f"/api/v1{ns}/services", lambda o: tracker.on_child("service", o)),
             (f"/api/v1{ns}/pods", lambda o: tracker.on_child("pod", o))]
    return [asyncio.create_task(watch_forever(client, path, handle)) for path, handle in specs]


# ---------------------------------------------------------------------------------------------- audit log


class Audit(AuditLog):
    """The API server's audit log; the operator's writes include kopf's own (its user agent is kopf/...)."""

    def writes(self, since: int, namespace: str | None = None, agent=OPERATOR_AGENTS) -> list[dict]:
        return super().writes(since, namespace, agent)


def summarize(writes: list[dict]) -> str:
    counts: dict[str, int] = {}
    for w in writes:
        what = f"{w['verb']} {w['resource']}{'/' + w['subresource'] if w['subresource'] else ''}"
        counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


async def quiet(audit: Audit, seconds: float, timeout: float) -> bool:
    """Waits until the operator wrote nothing for `seconds` (True), or gives up after `timeout` (False)."""
    deadline = time.monotonic() + timeout
    mark, since = audit.mark(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        if audit.writes(mark):
            mark, since = audit.mark(), time.monotonic()
        elif time.monotonic() - since >= seconds:
            return True
    return False


# ---------------------------------------------------------------------------------------------- the operator

class Operator:
    def __init__(self, cluster, log: pathlib.Path, extra_env: dict | None = None, exe: str | None = None):
        self.cluster, self.log, self.extra_env = cluster, log, extra_env or {}
        # another build (an older commit's venv) to compare on the same cluster and harness; default this one's
        self.exe = pathlib.Path(exe) if exe else pathlib.Path(sys.executable).with_name("mlops-operator")
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.started = 0.0

    def start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = dict(os.environ, KUBECONFIG=str(self.cluster.layout.kubeconfig), MLOPS_OPERATOR_IMAGE=FETCHER_IMAGE,
                   **self.extra_env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.started = time.monotonic()
            self.proc = subprocess.Popen([str(self.exe), "run", "--standalone", "--all-namespaces",
                                          f"--metrics-bind-address=127.0.0.1:{self.port}"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    async def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}; see {self.log}")
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                if b"mlops-operator started" in f.read():
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the operator did not start in {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def metrics(self) -> dict[tuple[str, str], float]:
        """(metric name, controller/name label) -> value, for the runtime's counters and gauges."""
        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                label = s.labels.get("controller") or s.labels.get("name") or ""
                out[(s.name, label)] = out.get((s.name, label), 0.0) + s.value
        return out

    def rss(self) -> float:
        return rss_mb(self.proc.pid)


# ---------------------------------------------------------------------------------------------- profiling

# BENCH_PROFILE=DIR: py-spy samples the operator during the burst and the restart (collapsed stacks, for reading
# with grep or flamegraph tools): DIR/operator-burst.txt, DIR/operator-restart.txt.
PROFILE = os.environ.get("BENCH_PROFILE")


def profile_start(pid: int, phase: str) -> subprocess.Popen:
    pathlib.Path(PROFILE).mkdir(parents=True, exist_ok=True)
    spy = pathlib.Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "50", "--idle",
                             "--format", "raw", "-o", str(pathlib.Path(PROFILE) / f"operator-{phase}.txt")],
                            stdout=subprocess.DEVNULL,
                            stderr=open(pathlib.Path(PROFILE) / f"py-spy-{phase}.log", "wb"))


def profile_stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------------------------------- workloads

async def create_all(client, names: list[tuple[str, str]], tracker: Tracker, concurrency: int,
                     then=None) -> None:
    """Creates the custom resources, `concurrency` at a time; `then(kind, created)` continues each (the floor)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(kind: str, name: str) -> None:
        async with sem:
            manifest = md_manifest(name) if kind == "md" else tj_manifest(name)
            plural = "modeldeployments" if kind == "md" else "trainingjobs"
            tracker.expect(kind, name)
            created = await client.create(f"{GROUP_PATH}/namespaces/{NAMESPACE}/{plural}", manifest)
            if then is not None:
                await then(kind, created)

    await asyncio.gather(*(one(kind, name) for kind, name in names))


def names_for(n: int, start: int = 0) -> list[tuple[str, str]]:
    """N ModelDeployments and N/2 TrainingJobs, interleaved as a mixed apply would be."""
    out = []
    for i in range(start, start + n):
        out.append(("md", f"md-{i:05d}"))
        if i % 2 == 0:
            out.append(("tj", f"tj-{i // 2:05d}"))
    return out


class FloorWrites:
    """The operator's first-reconcile writes, rendered once by the operator's own pure functions for a placeholder
    object and then only renamed: the floor spends its time on requests, not on rendering."""

    def __init__(self, versions) -> None:

        from mlops_operator.api import MODEL_DEPLOYMENT, TRAINING_JOB, validate_object
        from mlops_operator.k8s.diff import stamp
        from mlops_operator.k8s.events import event_body
        from mlops_operator.k8s.status import clean, status_patch
        from mlops_operator.serving import canary, render, status
        from mlops_operator.serving.reconcile import serving_total
        from mlops_operator.settings import load
        from mlops_operator.training import lifecycle
        from mlops_operator.training import render as trender
        settings = dataclasses.replace(load(), operator_image=FETCHER_IMAGE)
        now = datetime.now(timezone.utc)

        def body(manifest: dict) -> dict:
            manifest["metadata"].update(name=PLACEHOLDER, uid=PLACEHOLDER_UID, generation=1)
            return manifest

        md = body(md_manifest(PLACEHOLDER))
        spec = validate_object(md, MODEL_DEPLOYMENT)
        plan = canary.plan(spec, None, serving_total(spec, None), status.observe_canary(None, [], None, None), now)
        children = [stamp(c) for c in render.desired(md, spec, plan, versions, settings).values() if c]
        md_status, md_events = status.compute(md, None, None, [], plan, render.url(PLACEHOLDER, NAMESPACE, settings),
                                              now)
        self.md = json.dumps({"apply": children, "status": [status_patch(None, md_status)],
                              "events": [event_body(md, *e, now) for e in md_events]})

        tj = body(tj_manifest(PLACEHOLDER))
        spec = validate_object(tj, TRAINING_JOB)
        first = lifecycle.decide(tj, spec, lifecycle.Observation(pods=[]), now)
        launched = {**tj, "status": clean(first.status)}
        second = lifecycle.decide(launched, spec, lifecycle.Observation(pods=[]), now)
        pods = [stamp(trender.worker_pod(launched, spec, rank, 1, settings.cluster_domain, False))
                for rank in second.create]
        self.tj = json.dumps({"status_first": status_patch(None, first.status),
                              "apply": [stamp(trender.service(launched, spec)), *pods],
                              "status": [status_patch(first.status, second.status)],
                              "events": [event_body(tj, *e, now) for e in first.events + second.events]})

    def writes(self, kind: str, created: dict) -> dict:
        meta = created["metadata"]
        text = (self.md if kind == "md" else self.tj).replace(PLACEHOLDER_UID, meta["uid"])
        return json.loads(text.replace(PLACEHOLDER, meta["name"]))


async def floor_continue(client, writes: FloorWrites, kind: str, created: dict) -> None:
    from mlops_operator.k8s.client import object_path, resource_path

    w = writes.writes(kind, created)
    path = object_path(created)
    if kind == "tj":
        await client.patch_status(path, w["status_first"])
    for obj in w["apply"]:
        await client.apply(obj)
    for patch in w["status"]:
        await client.patch_status(path, patch)
    for event in w["events"]:
        await client.create(resource_path("v1", "Event", NAMESPACE), event)


async def measure_latency(client, tracker: Tracker, samples: int, then=None) -> dict:
    """Apply -> status for its generation (with its children), one new ModelDeployment at a time."""
    times = []
    for i in range(samples):
        name = f"lat-{i:04d}"
        waiter = asyncio.get_running_loop().create_future()
        tracker.waiters[("md", name)] = waiter
        start = time.monotonic()
        await create_all(client, [("md", name)], tracker, 1, then=then)
        try:
            done = await asyncio.wait_for(waiter, 30)
            times.append(done - start)
        except TimeoutError:
            times.append(float("inf"))
    times.sort()
    return {"p50": statistics.median(times), "p99": times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))],
            "latency_max": times[-1], "latency_samples": len(times), "latency_objects": len(tracker.expected)}


async def pods_ready(client, want: int, timeout: float) -> bool:
    """Waits until `want` ModelDeployment pods of the bench namespace are Ready (the floor's "settled")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = await client.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                      params={"labelSelector": "mlops.dev/modeldeployment"})
        ready = sum(1 for p in listed["items"] for c in (p.get("status") or {}).get("conditions") or []
                    if c.get("type") == "Ready" and c.get("status") == "True")
        if ready >= want:
            return True
        await asyncio.sleep(2.0)
    return False


# ---------------------------------------------------------------------------------------------- phases

async def run_floor(n: int, objects: int, samples: int, concurrency: int, log) -> dict:
    cluster = fresh_cluster()
    client = bench_client(cluster, concurrency)
    try:
        await prepare(client)
        versions = await _versions(client)
        writes = FloorWrites(versions)
        tracker = Tracker()
        watches = start_watches(client, tracker)
        await asyncio.sleep(1.0)
        names = names_for(n)
        log(f"floor: {len(names)} objects, children and status by the bench client (load {load()})")
        t0 = time.monotonic()
        await create_all(client, names, tracker, concurrency, then=lambda k, c: floor_continue(client, writes, k, c))
        ok = await tracker.wait(tracker.all_done, 600)
        seconds = (max(tracker.done.values()) if tracker.done else time.monotonic()) - t0
        out = {"seconds": seconds, "objects": len(names), "complete": ok, "flags": cluster_flags(cluster)}
        if samples:
            # The latency floor: the operator run's latency phase with the operator's first-reconcile writes made
            # by this client, as many objects present, every ModelDeployment's pod Ready first.
            extra = [("md", f"mx-{i:05d}") for i in range(max(0, objects - len(names)))]
            continue_ = lambda k, c: floor_continue(client, writes, k, c)  # noqa: E731
            await create_all(client, extra, tracker, concurrency, then=continue_)
            await tracker.wait(tracker.all_done, 600)
            mds = sum(1 for kind, _ in tracker.expected if kind == "md")
            out["latency_settled"] = await pods_ready(client, mds, 600)
            await asyncio.sleep(10.0)
            log(f"floor latency: {samples} single ModelDeployments with {len(tracker.expected)} objects present "
                f"(load {load()})")
            out.update(await measure_latency(client, tracker, samples, then=continue_))
            log(f"floor latency: p50 {out['p50'] * 1000:.0f} ms, p99 {out['p99'] * 1000:.0f} ms")
        for task in watches:
            task.cancel()
        return out
    finally:
        await client.close()


async def _versions(client):
    from mlops_operator.serving.reconcile import api_versions

    return await api_versions(client)


async def run_operator(n: int, objects: int, samples: int, idle_seconds: float, concurrency: int,
                       settle_timeout: float, log, exe: str | None = None) -> dict:
    cluster = fresh_cluster()
    audit = Audit(cluster.audit_log)
    client = bench_client(cluster, concurrency)
    op = Operator(cluster, cluster.layout.log("operator-bench"), exe=exe)
    out: dict = {"flags": cluster_flags(cluster)}
    try:
        await prepare(client)
        tracker = Tracker()
        watches = start_watches(client, tracker)
        op.start()
        await op.wait_started()
        await asyncio.sleep(1.0)

        names = names_for(n)
        log(f"burst: {len(names)} objects with the operator (load {load()})")
        profiler = profile_start(op.proc.pid, "burst") if PROFILE else None
        mark = audit.mark()
        cpu0 = cpu_seconds(op.proc.pid)
        t0 = time.monotonic()
        await create_all(client, names, tracker, concurrency)
        out["created_in"] = time.monotonic() - t0
        ok = await tracker.wait(tracker.all_done, 900)
        out["burst_cpu"] = cpu_seconds(op.proc.pid) - cpu0
        out["burst"] = (max(tracker.done.values()) if tracker.done else time.monotonic()) - t0
        out["burst_complete"] = ok
        out["burst_objects"] = len(names)
        out["burst_writes"] = summarize(audit.writes(mark))
        out["burst_load"] = load()
        profile_stop(profiler)
        log(f"burst: {out['burst']:.1f} s, operator CPU {out['burst_cpu']:.1f} s (complete: {ok}); "
            f"writes {out['burst_writes']}")

        settled = await tracker.wait(tracker.all_settled, settle_timeout)
        out["settle"] = time.monotonic() - t0
        out["settled"] = settled
        out["rss_burst"] = op.rss()
        log(f"settled: {settled} after {out['settle']:.0f} s; RSS {out['rss_burst']:.0f} MB")

        extra = max(0, objects - len(names))
        if extra:
            more = [("md", f"mx-{i:05d}") for i in range(extra)]
            log(f"top-up: {extra} more ModelDeployments to {objects} objects")
            await create_all(client, more, tracker, concurrency)
            settled = await tracker.wait(tracker.all_settled, settle_timeout) and settled
            out["settled"] = settled
        out["objects"] = len(tracker.expected)
        out["quiet"] = await quiet(audit, 10, 300)

        log(f"latency: {samples} single ModelDeployments with {out['objects']} objects present (load {load()})")
        out.update(await measure_latency(client, tracker, samples))
        log(f"latency: p50 {out['p50'] * 1000:.0f} ms, p99 {out['p99'] * 1000:.0f} ms")

        await tracker.wait(tracker.all_settled, settle_timeout)
        out["quiet_before_idle"] = await quiet(audit, 10, 300)
        log(f"idle: counting the operator's writes for {idle_seconds:.0f} s (load {load()})")
        mark = audit.mark()
        await asyncio.sleep(idle_seconds)
        idle = audit.writes(mark)
        out["idle_per_min"] = len(idle) * 60 / idle_seconds
        out["idle_writes"] = summarize(idle)
        out["rss_idle"] = op.rss()

        log(f"restart: the operator with {len(tracker.expected)} objects (load {load()})")
        out["restart_objects"] = len(tracker.expected)
        op.stop()
        mark = audit.mark()
        op.start()
        profiler = profile_start(op.proc.pid, "restart") if PROFILE else None
        expected = {"modeldeployment": sum(1 for k, _ in tracker.expected if k == "md"),
                    "trainingjob": sum(1 for k, _ in tracker.expected if k == "tj")}
        await op.wait_started()
        while True:
            m = op.metrics()
            reconciled = all(sum(v for (name, c), v in m.items()
                                 if name == "controller_runtime_reconcile_total" and c == ctl) >= count
                             for ctl, count in expected.items())
            idle_now = all(m.get(("workqueue_depth", ctl), 0) == 0 and
                           m.get(("controller_runtime_active_workers", ctl), 0) == 0 for ctl in expected)
            if reconciled and idle_now:
                break
            if time.monotonic() - op.started > 600:
                break
            await asyncio.sleep(0.25)  # a scrape costs the operator a few ms: not too often
        out["restart"] = time.monotonic() - op.started
        out["restart_cpu"] = cpu_seconds(op.proc.pid)  # from its start: imports, lists, a reconcile per object
        profile_stop(profiler)
        out["restart_reconciles"] = {ctl: sum(v for (name, c), v in m.items()
                                              if name == "controller_runtime_reconcile_total" and c == ctl)
                                     for ctl in expected}
        await asyncio.sleep(10)
        restart_writes = audit.writes(mark)
        out["restart_writes"] = len(restart_writes)
        out["restart_writes_what"] = summarize(restart_writes)
        out["rss_restart"] = op.rss()
        log(f"restart: {out['restart']:.1f} s, operator CPU {out['restart_cpu']:.1f} s, {out['restart_writes']} "
            f"writes; RSS {out['rss_restart']:.0f} MB")
        for task in watches:
            task.cancel()
        return out
    finally:
        op.stop()
        await client.close()


# ---------------------------------------------------------------------------------------------- report

def table(floor: dict, op: dict, n: int) -> list[str]:
    ratio = floor["seconds"] / op["burst"] if op["burst"] else float("nan")
    rows = [
        ("burst", f"{op['burst_objects']} objects ({n} ModelDeployments, {n // 2} TrainingJobs) applied at once",
         f"{op['burst']:.1f} s ({op['burst_objects'] / op['burst']:.0f} objects/s)"
         + ("" if op["burst_complete"] else " (INCOMPLETE)"), "-"),
        ("burst: operator CPU", "the operator's user + system CPU from the first create until every object was done",
         f"{op['burst_cpu']:.1f} s ({op['burst_cpu'] / op['burst_objects'] * 1000:.1f} ms per object)", "-"),
        ("floor", "the same creates, children, status patches and events by a tight async client, no operator",
         f"{floor['seconds']:.1f} s ({floor['objects'] / floor['seconds']:.0f} objects/s)"
         + ("" if floor["complete"] else " (INCOMPLETE)"), "-"),
        ("burst throughput / floor", "floor seconds / operator seconds", f"{ratio:.2f}", ">= 0.5: "
         + ("met" if ratio >= 0.5 else "NOT met")),
        ("latency p50", f"apply -> status for its generation, one ModelDeployment at a time, {op['latency_objects']}"
                        f" objects present, {op['latency_samples']} samples", f"{op['p50'] * 1000:.0f} ms", "-"),
        ("latency p99", "same", f"{op['p99'] * 1000:.0f} ms (max {op['latency_max'] * 1000:.0f} ms)",
         "< 1 s: " + ("met" if op["p99"] < 1 else "NOT met")),
        ("latency floor p50 / p99", "the same, the writes of the first reconcile made by the bench client (no "
                                    "operator), as many objects present, on the floor's cluster",
         f"{floor['p50'] * 1000:.0f} ms / {floor['p99'] * 1000:.0f} ms (max {floor['latency_max'] * 1000:.0f} ms)"
         if "p50" in floor else "not measured", "-"),
        ("idle writes", "operator writes per minute once converged (audit log)", f"{op['idle_per_min']:.1f}/min",
         "0: " + ("met" if op["idle_per_min"] == 0 else "NOT met")),
        ("restart", f"operator restarted with {op['restart_objects']} objects: until each was reconciled, queue empty",
         f"{op['restart']:.1f} s", "-"),
        ("restart: operator CPU", "the operator's CPU from its start (imports, lists, a reconcile each) until then",
         f"{op['restart_cpu']:.1f} s", "-"),
        ("restart writes", "writes made by that resync", str(op["restart_writes"]),
         "0: " + ("met" if op["restart_writes"] == 0 else "NOT met")),
        ("memory", f"operator RSS after the burst / at {op['restart_objects']} objects after the restart",
         f"{op['rss_burst']:.0f} MB / {op['rss_restart']:.0f} MB",
         "< 250 MB: " + ("met" if max(op["rss_burst"], op["rss_restart"], op["rss_idle"]) < 250 else "NOT met")),
    ]
    lines = ["| measure | what | result | target |", "|---|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n")


def report(floor: dict, op: dict, args, started_load: str, ended_load: str) -> str:
    import kopf

    m = machine()
    lines = [HEADING, "",
             "Produced by `python -m bench operator` (`make bench` runs it with the drift benchmark) on its own local "
             "cluster (`.cluster-bench/`, nodes from `bench/pool.yaml`), a fresh one for the floor and for the "
             "operator run, with the same control-plane flags. One run; the machine is shared and noisy, so compare "
             "the ratios within a run rather than seconds across runs.", "",
             f"- CPU: {m['cpu']}, nproc {m['nproc']}, {m['mem_mb'] // 1024} GiB RAM; python {m['python']}, "
             f"kopf {kopf.__version__ if hasattr(kopf, '__version__') else '?'}",
             f"- load average (1, 5, 15 min) at start: {started_load}; after the burst: {op['burst_load']}; "
             f"at the end: {ended_load}",
             f"- control plane: {op['flags']}",
             f"- objects: ModelDeployments with 1 replica (sklearn preset, 10m CPU), TrainingJobs with 1 worker; "
             f"bench concurrency {args.concurrency}; operator MLOPS_WORKERS default",
             f"- run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
             f"`--n {args.n} --objects {args.objects} --latency-samples {args.latency_samples} "
             f"--idle-seconds {args.idle_seconds:.0f}`", "",
             *table(floor, op, args.n), "",
             f"Writes in the burst (operator): {op['burst_writes']}.  ",
             f"Idle writes: {op['idle_writes']}.  ",
             f"Restart: reconciles {op['restart_reconciles']}; writes: {op['restart_writes_what']}.  ",
             f"Settled (every ModelDeployment Ready, every TrainingJob finished): {op['settled']}.  ",
             "What was changed in the operator to get here, and why: the next section.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench operator", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="ModelDeployments in the burst (and N/2 TrainingJobs)")
    parser.add_argument("--objects", type=int, default=2000,
                        help="custom resources present for latency, idle, restart and memory (topped up)")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight from the bench client")
    parser.add_argument("--settle-timeout", type=float, default=900)
    parser.add_argument("--skip-floor", action="store_true", help="(development) no floor run")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--operator", metavar="EXE",
                        help="(comparison) an mlops-operator executable of another build, e.g. an older commit's "
                             "venv, run on this bench's cluster and harness; implies --no-doc")
    parser.add_argument("--keep-cluster", action="store_true", help="leave .cluster-bench running afterwards")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    started_load = load()
    floor = ({"seconds": float("nan"), "objects": 0, "complete": False} if args.skip_floor
             else asyncio.run(run_floor(args.n, args.objects, args.latency_samples, args.concurrency, log)))
    if not args.skip_floor:
        log(f"floor: {floor['seconds']:.1f} s for {floor['objects']} objects")
    try:
        op = asyncio.run(run_operator(args.n, args.objects, args.latency_samples, args.idle_seconds,
                                      args.concurrency, args.settle_timeout, log, args.operator))
    finally:
        if not args.keep_cluster:
            from mlops_localcluster import LocalCluster

            LocalCluster(CLUSTER_DIR).down(quiet=True)
    section = report(floor, op, args, started_load, load())
    print(section)
    if not args.no_doc and not args.skip_floor and not args.operator:
        write_doc(section)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
