"""TrainingJob against the real control plane, the node simulator (which plays kubelet and injects failures
through pod annotations, set here via spec.podAnnotations) and the operator as a process."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from helpers import apply, request, wait_for

GROUP_PATH = "/apis/mlops.dev/v1alpha1"
FAILURE = "sim.mlops.dev/failure"
FAILURE_AFTER = "sim.mlops.dev/failure-after"
RUN_SECONDS = "sim.mlops.dev/run-seconds"
H100 = "NVIDIA-H100-80GB-HBM3"


def tj_manifest(namespace: str, name: str, **spec) -> dict:
    base = {"image": "trainer:1", "command": ["python", "train.py"], "workers": 1,
            "resources": {"cpu": "100m", "memory": "256Mi"}}
    base.update(spec)
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace}, "spec": base}


def get_tj(kube, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/trainingjobs/{name}")
    assert code == 200, body
    return body


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_tj(kube, namespace: str, name: str, check, timeout: float = 60, message: str = "") -> dict:
    def probe():
        tj = get_tj(kube, namespace, name)
        return tj if check(tj.get("status") or {}, tj) else None

    return wait_for(probe, timeout=timeout, message=f"{name}: {message}")


def wait_phase(kube, namespace: str, name: str, phase: str, timeout: float = 60, attempt: int | None = None) -> dict:
    return wait_tj(kube, namespace, name, lambda st, _: st.get("phase") == phase
                   and (attempt is None or st.get("attempt") == attempt), timeout, f"phase {phase} {attempt or ''}")


def pods(kube, namespace: str, name: str) -> list:
    return client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"mlops.dev/trainingjob={name}").items


def live_pods(kube, namespace: str, name: str) -> list:
    return [p for p in pods(kube, namespace, name) if p.metadata.deletion_timestamp is None]


def events_for(kube, namespace: str, name: str, kind: str = "TrainingJob") -> list:
    return [e for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == kind]


def reasons(kube, namespace: str, name: str, kind: str = "TrainingJob") -> list[str]:
    return [e.reason for e in events_for(kube, namespace, name, kind)]


def wait_events(kube, namespace: str, name: str, *wanted: str, kind: str = "TrainingJob") -> list[str]:
    """The object's event reasons once each wanted reason was posted (as often as it is named). The operator
    posts an event after the status write that records it, so a status seen may precede its event."""
    def probe():
        seen = reasons(kube, namespace, name, kind)
        return seen if all(seen.count(r) >= wanted.count(r) for r in wanted) else None

    return wait_for(probe, message=f"{kind} {name}: events {', '.join(wanted)}")


@pytest.fixture
def tj_ns(namespace, operator, needs_scheduler, needs_controller_manager):
    return namespace


@pytest.fixture
def whole_gpu_pool(kube, tj_ns):
    """2 workers x 8 GPUs need both GPU nodes empty: wait for pods of other namespaces to let go, else fail
    naming them (a leftover demo, for example, holds GPUs the test cannot have)."""
    core = client.CoreV1Api(kube)

    def holders():
        return [f"{p.metadata.namespace}/{p.metadata.name}" for p in core.list_pod_for_all_namespaces().items
                if (p.spec.node_name or "").startswith("gpu-") and p.status.phase not in ("Succeeded", "Failed")
                and any("nvidia.com/gpu" in ((c.resources and c.resources.limits) or {}) for c in p.spec.containers)]

    deadline = time.monotonic() + 30
    while holders() and time.monotonic() < deadline:
        time.sleep(0.5)
    if holders():
        pytest.fail(f"the GPU pool is not free for a 2 x 8 GPU gang: {', '.join(holders())} hold GPUs")


def test_two_gpu_workers_rendezvous_succeed_and_promote_to_the_canary(kube, tj_ns, whole_gpu_pool):
    output = "s3://models/chat/finetuned-v2"
    apply(kube, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
                 "metadata": {"name": "chat", "namespace": tj_ns},
                 "spec": {"model": {"uri": "s3://models/chat/v1"}, "runtime": {"preset": "sklearn"}, "replicas": 0}})
    apply(kube, tj_manifest(tj_ns, "ft", workers=2, podAnnotations={RUN_SECONDS: "4"},
                            resources={"cpu": "1", "memory": "1Gi", "gpu": {"count": 8, "product": H100}},
                            dataset={"uri": "s3://data/chat"}, output={"modelUri": output},
                            checkpoint={"uri": "s3://ckpt/ft"},
                            promote={"modelDeployment": {"name": "chat"}, "as": "canary"}))
    tj = wait_phase(kube, tj_ns, "ft", "Running")
    assert tj["status"]["attempt"] == 1 and tj["status"]["workers"]["active"] == 2
    assert condition(tj, "Running")["status"] == "True"
    workers = sorted(live_pods(kube, tj_ns, "ft"), key=lambda p: p.metadata.name)
    assert [p.metadata.name for p in workers] == ["ft-w0-a1", "ft-w1-a1"]
    assert {p.spec.node_name for p in workers} == {"gpu-node-0", "gpu-node-1"}
    master = f"ft-w0.ft-workers.{tj_ns}.svc.cluster.local"
    for rank, pod in enumerate(workers):
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["MASTER_ADDR"] == master and env["MASTER_PORT"] == "29500"
        assert (env["WORLD_SIZE"], env["NODE_RANK"], env["NPROC_PER_NODE"]) == ("2", str(rank), "8")
        assert (env["ATTEMPT"], env["OUTPUT_MODEL_URI"], env["CHECKPOINT_URI"]) == ("1", output, "s3://ckpt/ft")
        assert (pod.spec.hostname, pod.spec.subdomain) == (f"ft-w{rank}", "ft-workers")
        assert pod.spec.restart_policy == "Never" and pod.spec.automount_service_account_token is False
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
        assert pod.spec.node_selector == {"nvidia.com/gpu.product": H100}
        assert pod.spec.security_context.run_as_non_root is True
        assert pod.metadata.owner_references[0].kind == "TrainingJob"
        assert pod.metadata.labels["mlops.dev/trainingjob"] == "ft"
    svc = client.CoreV1Api(kube).read_namespaced_service("ft-workers", tj_ns)
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses is True

    tj = wait_phase(kube, tj_ns, "ft", "Succeeded", timeout=60)
    st = tj["status"]
    assert st["modelUri"] == output and st["completionTime"] and st["workers"]["succeeded"] == 2
    assert condition(tj, "Succeeded")["status"] == "True"
    tj = wait_tj(kube, tj_ns, "ft", lambda s, _: s.get("promotion"), message="promotion recorded")
    assert tj["status"]["promotion"]["modelUri"] == output
    code, md = request(kube, "GET", f"{GROUP_PATH}/namespaces/{tj_ns}/modeldeployments/chat")
    canary = md["spec"]["rollout"]["canary"]
    assert (canary["model"], canary["weight"], canary.get("promote", False)) == ({"uri": output}, 10, False)
    assert md["spec"]["model"]["uri"] == "s3://models/chat/v1"  # the stable is untouched
    assert wait_events(kube, tj_ns, "chat", "Promoted", kind="ModelDeployment").count("Promoted") == 1
    evs = wait_events(kube, tj_ns, "ft", "AttemptStarted", "Running", "Succeeded", "Promoted")
    assert evs.count("Promoted") == 1


# 3 workers x 4 GPUs fit the 16 free GPUs, but 40 CPUs each fit one per 64-CPU GPU node: admission lets the gang
# start and the scheduler places two; the third waits.
PLACED_TWO_OF_THREE = {"workers": 3, "resources": {"cpu": "40", "memory": "1Gi", "gpu": {"count": 4}}}


def test_a_gang_that_cannot_be_placed_says_why_and_releases_its_gpus_at_the_gang_timeout(kube, tj_ns,
                                                                                         whole_gpu_pool):
    apply(kube, tj_manifest(tj_ns, "big", podAnnotations={RUN_SECONDS: "600"}, **PLACED_TWO_OF_THREE,
                            scheduling={"gangTimeout": "6s", "gangTimeoutAction": "fail"}))
    tj = wait_tj(kube, tj_ns, "big", lambda st, t: condition(t, "Running").get("reason") == "Unschedulable",
                 message="Unschedulable")
    assert tj["status"]["phase"] == "Pending"
    assert "Insufficient cpu" in condition(tj, "Running")["message"]
    # The placed workers hold their GPUs while the third waits.
    assert [p for p in live_pods(kube, tj_ns, "big") if p.spec.node_name]
    tj = wait_phase(kube, tj_ns, "big", "Failed", timeout=30)
    assert condition(tj, "Failed")["reason"] == "GangTimeout"
    assert tj["status"]["failure"]["reason"] == "GangTimeout" and tj["status"]["failure"]["retryable"] is False
    assert "Insufficient cpu" in tj["status"]["failure"]["message"]
    wait_for(lambda: not pods(kube, tj_ns, "big"), message="the gang's pods deleted")
    wait_events(kube, tj_ns, "big", "Unschedulable")


def test_gang_timeout_wait_releases_and_tries_again_later(kube, tj_ns, whole_gpu_pool):
    # Placed workers keep running (and holding their GPUs) while the third waits for a node.
    apply(kube, tj_manifest(tj_ns, "patient", **PLACED_TWO_OF_THREE,
                            scheduling={"gangTimeout": 4, "gangTimeoutAction": "wait"},
                            podAnnotations={RUN_SECONDS: "600"}))
    tj = wait_tj(kube, tj_ns, "patient", lambda st, _: st.get("nextAttemptTime"), timeout=30,
                 message="released, waiting")
    assert tj["status"]["phase"] == "Pending" and tj["status"]["attempt"] == 2
    assert condition(tj, "Running")["reason"] == "GangTimeout"
    # The decision is written before the pods go (so a restart cannot forget it): they follow within moments.
    wait_for(lambda: not live_pods(kube, tj_ns, "patient"), timeout=10, message="attempt 1 released")
    wait_events(kube, tj_ns, "patient", "GangTimeout")
    wait_for(lambda: len(live_pods(kube, tj_ns, "patient")) == 3, timeout=30, message="attempt 2 created")
    assert {p.metadata.name for p in live_pods(kube, tj_ns, "patient")} == {f"patient-w{r}-a2" for r in range(3)}
    assert get_tj(kube, tj_ns, "patient")["status"].get("retries", 0) == 0


def test_a_gang_larger_than_the_free_gpus_waits_without_pods(kube, tj_ns, whole_gpu_pool):
    apply(kube, tj_manifest(tj_ns, "huge", workers=3, resources={"gpu": {"count": 8}}))
    tj = wait_tj(kube, tj_ns, "huge", lambda st, t: condition(t, "Running").get("reason") == "InsufficientGPUs",
                 message="InsufficientGPUs")
    st = tj["status"]
    assert st["phase"] == "Pending" and st.get("retries", 0) == 0 and st["gpus"] == 24
    assert "needs 3 workers x 8 nvidia.com/gpu; 16 of 16 are free" in condition(tj, "Running")["message"]
    assert condition(tj, "Ready")["reason"] == "InsufficientGPUs"
    assert pods(kube, tj_ns, "huge") == []
    wait_events(kube, tj_ns, "huge", "InsufficientGPUs")


def test_two_gangs_racing_for_the_gpus_run_one_after_the_other_without_losing_retries(kube, tj_ns, whole_gpu_pool):
    for name in ("first", "second"):
        apply(kube, tj_manifest(tj_ns, name, workers=2, backoffLimit=0, podAnnotations={RUN_SECONDS: "6"},
                                resources={"cpu": "1", "memory": "1Gi", "gpu": {"count": 8}}))

    def one_runs_one_waits():
        jobs = {n: get_tj(kube, tj_ns, n) for n in ("first", "second")}
        phases = {(t.get("status") or {}).get("phase") for t in jobs.values()}
        waiting = [t for t in jobs.values() if condition(t, "Running").get("reason") == "InsufficientGPUs"]
        return jobs if "Running" in phases and waiting else None

    jobs = wait_for(one_runs_one_waits, timeout=60, message="one gang runs, the other waits for GPUs")
    runner = next(n for n, t in jobs.items() if t["status"]["phase"] == "Running")
    waiter = next(n for n in jobs if n != runner)
    assert pods(kube, tj_ns, waiter) == []
    assert jobs[waiter]["status"]["phase"] == "Pending" and jobs[waiter]["status"].get("retries", 0) == 0
    wait_phase(kube, tj_ns, runner, "Succeeded", timeout=60)
    tj = wait_phase(kube, tj_ns, waiter, "Succeeded", timeout=90)
    assert tj["status"]["attempt"] == 1 and tj["status"].get("retries", 0) == 0
    for name in ("first", "second"):
        st = get_tj(kube, tj_ns, name)["status"]
        assert st.get("retries", 0) == 0 and "failure" not in st and st["workers"]["succeeded"] == 2
        assert reasons(kube, tj_ns, name).count("AttemptStarted") == 1


def test_eviction_starts_a_new_attempt_without_using_the_backoff_and_spec_edits_wait_for_it(kube, tj_ns):
    evicted = {FAILURE: "Evicted", FAILURE_AFTER: "4"}
    apply(kube, tj_manifest(tj_ns, "ev", workers=2, backoffLimit=1, podAnnotations=evicted))
    wait_phase(kube, tj_ns, "ev", "Running", attempt=1)
    # The fix arrives while attempt 1 runs: it keeps its spec (and gets evicted); attempt 2 gets the new one.
    apply(kube, tj_manifest(tj_ns, "ev", workers=2, backoffLimit=1, podAnnotations={RUN_SECONDS: "1"}))
    tj = wait_tj(kube, tj_ns, "ev", lambda st, t: st.get("observedGeneration") == t["metadata"]["generation"],
                 message="generation 2 observed")
    if tj["status"]["attempt"] == 1:
        assert "applies from the next attempt" in condition(tj, "Running")["message"]
    wait_for(lambda: "SpecChangeDeferred" in reasons(kube, tj_ns, "ev"), message="SpecChangeDeferred event")
    tj = wait_phase(kube, tj_ns, "ev", "Succeeded", timeout=60)
    st = tj["status"]
    assert st["attempt"] == 2 and st.get("retries", 0) == 0
    assert st["failure"]["reason"] == "Evicted" and st["failure"]["retryable"] is True
    assert st["failure"]["counted"] is False and st["failure"]["attempt"] == 1
    assert condition(tj, "Failed")["status"] == "False"
    evs = reasons(kube, tj_ns, "ev")
    assert evs.count("AttemptStarted") == 2 and "WorkerFailed" in evs


def test_exit_code_1_twice_with_backoff_limit_1_fails_with_the_retries_exhausted(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "crash", workers=2, backoffLimit=1, podAnnotations={FAILURE: "exit:1"}))
    tj = wait_phase(kube, tj_ns, "crash", "Failed", timeout=60)
    st = tj["status"]
    assert st["attempt"] == 2 and st["retries"] == 2
    assert condition(tj, "Failed")["reason"] == "BackoffLimitExceeded"
    assert st["failure"]["reason"] == "Error" and st["failure"]["retryable"] is True
    assert "exited with code 1" in st["failure"]["message"]
    assert wait_events(kube, tj_ns, "crash", "WorkerFailed", "WorkerFailed").count("WorkerFailed") == 2


def test_oom_fails_at_once_and_is_not_retried(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "oom", workers=2, backoffLimit=3, podAnnotations={FAILURE: "OOMKilled"}))
    tj = wait_phase(kube, tj_ns, "oom", "Failed", timeout=60)
    st = tj["status"]
    assert st["attempt"] == 1 and st.get("retries", 0) == 0
    assert st["failure"]["reason"] == "OOMKilled" and st["failure"]["retryable"] is False
    assert condition(tj, "Failed")["reason"] == "OOMKilled"
    assert "spec.resources.memory" in st["failure"]["message"]


def test_image_pull_failure_is_not_retried(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "pull", podAnnotations={FAILURE: "ErrImagePull"}))
    tj = wait_phase(kube, tj_ns, "pull", "Failed", timeout=60)
    assert tj["status"]["failure"]["reason"] == "ErrImagePull" and tj["status"]["attempt"] == 1
    wait_for(lambda: not live_pods(kube, tj_ns, "pull"), message="the stuck worker released")


def test_active_deadline_fails_the_job_and_stops_the_workers(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "late", workers=2, activeDeadlineSeconds=4, podAnnotations={RUN_SECONDS: "600"}))
    wait_phase(kube, tj_ns, "late", "Running")
    tj = wait_phase(kube, tj_ns, "late", "Failed", timeout=30)
    assert condition(tj, "Failed")["reason"] == "DeadlineExceeded"
    assert tj["status"]["failure"]["retryable"] is False
    wait_for(lambda: not live_pods(kube, tj_ns, "late"), message="running workers deleted")


def test_ttl_after_finished_removes_workers_and_service_but_keeps_the_job(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "brief", workers=2, ttlSecondsAfterFinished=3))
    wait_phase(kube, tj_ns, "brief", "Succeeded")
    assert len(pods(kube, tj_ns, "brief")) == 2  # kept for their logs until the TTL
    core = client.CoreV1Api(kube)
    wait_for(lambda: not pods(kube, tj_ns, "brief") and not core.list_namespaced_service(tj_ns).items,
             timeout=30, message="workers and Service deleted after the TTL")
    tj = get_tj(kube, tj_ns, "brief")
    assert tj["status"]["phase"] == "Succeeded" and tj["status"]["workers"]["succeeded"] == 2
    wait_events(kube, tj_ns, "brief", "CleanedUp")


def test_suspend_stops_the_workers_resume_starts_a_new_attempt_and_delete_removes_every_child(kube, tj_ns):
    long_run = {RUN_SECONDS: "600"}
    apply(kube, tj_manifest(tj_ns, "pause", workers=2, podAnnotations=long_run))
    wait_phase(kube, tj_ns, "pause", "Running", attempt=1)
    apply(kube, tj_manifest(tj_ns, "pause", workers=2, podAnnotations=long_run, suspend=True))
    tj = wait_phase(kube, tj_ns, "pause", "Suspended")
    assert condition(tj, "Suspended")["status"] == "True" and tj["status"]["attempt"] == 1
    wait_for(lambda: not pods(kube, tj_ns, "pause"), message="workers stopped")
    apply(kube, tj_manifest(tj_ns, "pause", workers=2, podAnnotations=long_run, suspend=False))
    tj = wait_phase(kube, tj_ns, "pause", "Running", attempt=2)
    assert condition(tj, "Suspended")["status"] == "False"
    assert {p.metadata.name for p in live_pods(kube, tj_ns, "pause")} == {"pause-w0-a2", "pause-w1-a2"}
    wait_events(kube, tj_ns, "pause", "Suspended", "Resumed")

    request(kube, "DELETE", f"{GROUP_PATH}/namespaces/{tj_ns}/trainingjobs/pause")
    core = client.CoreV1Api(kube)
    wait_for(lambda: not core.list_namespaced_pod(tj_ns).items and not core.list_namespaced_service(tj_ns).items,
             timeout=60, message="children garbage-collected")


def test_an_invalid_spec_starts_nothing_and_names_the_field(kube, tj_ns):
    apply(kube, tj_manifest(tj_ns, "bad", promote={"modelDeployment": {"name": "chat"}}))
    tj = wait_tj(kube, tj_ns, "bad", lambda st, _: condition({"status": st}, "Ready").get("reason") == "InvalidSpec",
                 message="InvalidSpec")
    assert "spec.output.modelUri" in condition(tj, "Ready")["message"]
    assert tj["status"]["observedGeneration"] == tj["metadata"]["generation"]
    time.sleep(1)
    core = client.CoreV1Api(kube)
    assert not core.list_namespaced_pod(tj_ns).items and not core.list_namespaced_service(tj_ns).items
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in events_for(kube, tj_ns, "bad"))


def test_converged_jobs_and_an_operator_restart_make_no_writes(kube, tj_ns, operator, audit):
    start = audit.mark()
    apply(kube, tj_manifest(tj_ns, "done", workers=2))
    apply(kube, tj_manifest(tj_ns, "busy", workers=2, podAnnotations={RUN_SECONDS: "600"}))
    wait_phase(kube, tj_ns, "done", "Succeeded")
    wait_phase(kube, tj_ns, "busy", "Running")
    time.sleep(2)
    created = audit.writes(start, tj_ns)
    assert {"pods", "services", "trainingjobs"} <= {w["resource"] for w in created}
    mark = audit.mark()
    time.sleep(3)
    assert audit.writes(mark, tj_ns) == [], "the operator wrote while nothing changed"
    mark = audit.mark()
    operator.restart()
    time.sleep(5)
    assert audit.writes(mark, tj_ns) == [], "the operator wrote on a restart resync"
    apply(kube, tj_manifest(tj_ns, "busy", workers=2, podAnnotations={RUN_SECONDS: "600"}, suspend=True))
    wait_phase(kube, tj_ns, "busy", "Suspended")


def _model_deployment(kube, ns: str, name: str, tmp_path) -> None:
    model = tmp_path / f"{name}.bin"
    model.write_bytes(b"m")
    apply(kube, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
                 "metadata": {"name": name, "namespace": ns},
                 "spec": {"model": {"uri": f"file://{model}"}, "runtime": {"preset": "sklearn"}}})
    wait_for(lambda: request(kube, "GET", f"/api/v1/namespaces/{ns}/services/{name}")[0] == 200,
             message="the ModelDeployment's Service")


def _service_owners(kube, ns: str, name: str) -> list[tuple[str, str]]:
    code, svc = request(kube, "GET", f"/api/v1/namespaces/{ns}/services/{name}")
    assert code == 200, svc
    return [(o["kind"], o["name"]) for o in svc["metadata"]["ownerReferences"]]


def test_a_training_job_and_a_model_deployment_may_share_a_name(kube, tj_ns, tmp_path):
    """The usual pairing (train "fraud", serve "fraud"): each keeps its own Service."""
    _model_deployment(kube, tj_ns, "twin", tmp_path)
    apply(kube, tj_manifest(tj_ns, "twin", workers=1))
    tj = wait_phase(kube, tj_ns, "twin", "Succeeded", timeout=60)
    assert "failure" not in tj["status"]
    assert _service_owners(kube, tj_ns, "twin") == [("ModelDeployment", "twin")]
    assert _service_owners(kube, tj_ns, "twin-workers") == [("TrainingJob", "twin")]


def test_a_service_name_taken_by_a_model_deployment_fails_the_job_with_the_reason(kube, tj_ns, tmp_path):
    _model_deployment(kube, tj_ns, "clash-workers", tmp_path)
    apply(kube, tj_manifest(tj_ns, "clash", workers=1))
    tj = wait_phase(kube, tj_ns, "clash", "Failed", timeout=60)
    assert tj["status"]["failure"]["reason"] == "InvalidConfig"
    assert tj["status"]["failure"]["retryable"] is False
    assert "clash-workers" in tj["status"]["failure"]["message"]
    assert _service_owners(kube, tj_ns, "clash-workers") == [("ModelDeployment", "clash-workers")]
