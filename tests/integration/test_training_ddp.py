"""Distributed training for real: the DDP example (examples/ddp/) as a TrainingJob on the local cluster.

Two workers of `pytorch/pytorch` run torchrun as real processes, each in its own network namespace, with PyTorch's
CPU build (the image's virtualenv, mlops_localcluster/torchimage.py). They find each other only through the
rendezvous the operator wires: rank 0's DNS name in MASTER_ADDR, WORLD_SIZE, NODE_RANK (as torchrun's PET_*).
The script all-reduces gradients with gloo and exits 1 unless both ranks end with equal parameters.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal

import pytest
import yaml
from kubernetes import client

from helpers import apply, request, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ddp"
GROUP_PATH = "/apis/mlops.dev/v1alpha1"
RUN_TIMEOUT = 600  # two torch processes starting and training on 2 shared cores, generous
JOINED = re.compile(r"\[rank (\d)/(\d)\] joined: world size (\d), host (\S+), master (\S+), attempt (\d+)")
CHECKSUM = re.compile(r"\[rank (\d)/2\] checksum (\S+); all ranks (\S+) (\S+); (equal|DIFFERENT)")


@pytest.fixture(scope="module")
def torch_image(local_cluster):
    """The pytorch image's venv, made here when it is not yet (about a minute), so a job's first pod does not."""
    if local_cluster is None:
        pytest.skip("an existing cluster pulls pytorch/pytorch itself; this test drives the local cluster's")
    from mlops_localcluster import torchimage

    try:
        torchimage.ensure(local_cluster.layout.log("torch-image"))
    except torchimage.TorchUnavailable as exc:
        pytest.skip(f"PyTorch's CPU build is not on this machine: {exc}")


@pytest.fixture
def ddp_ns(kube, namespace, operator, needs_scheduler, needs_controller_manager, needs_simulator, local_cluster,
           torch_image):
    if local_cluster.pod_network() is None:
        pytest.skip("no pod network here (not root, or no iproute2/iptables): the ranks need a network each")
    client.CoreV1Api(kube).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="ddp-train"), data={"train.py": (EXAMPLE / "train.py").read_text()}))
    return namespace


def ddp_job(namespace: str, **env: str) -> dict:
    """The example TrainingJob, in the namespace, with extra environment for the script."""
    doc = next(d for d in yaml.safe_load_all((EXAMPLE / "trainingjob.yaml").read_text()) if d)
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["env"] = [e for e in doc["spec"]["env"] if e["name"] not in env] + [
        {"name": k, "value": v} for k, v in env.items()]
    return doc


def status_of(kube, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/trainingjobs/{name}")
    assert code == 200, body
    return body.get("status") or {}


def wait_status(kube, namespace: str, name: str, check, message: str, timeout: float = RUN_TIMEOUT) -> dict:
    return wait_for(lambda: (lambda st: st if check(st) else None)(status_of(kube, namespace, name)),
                    timeout=timeout, interval=1, message=f"{name}: {message}")


def worker_pods(kube, namespace: str, job: str, attempt: int) -> list:
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"mlops.dev/trainingjob={job},mlops.dev/attempt={attempt}").items
    return sorted(pods, key=lambda p: int(p.metadata.labels["mlops.dev/rank"]))


def log_of(kube, namespace: str, pod: str) -> str:
    """The pod's log; "" while it has none (not created or not started yet)."""
    try:
        return client.CoreV1Api(kube).read_namespaced_pod_log(pod, namespace)
    except client.ApiException as exc:
        if exc.status in (400, 404):
            return ""
        raise


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_ddp_job_trains_on_two_ranks_that_stay_equal_and_succeeds(kube, ddp_ns):
    apply(kube, ddp_job(ddp_ns))
    status = wait_status(kube, ddp_ns, "ddp", lambda st: st.get("phase") in ("Succeeded", "Failed"), "finished")
    pods = worker_pods(kube, ddp_ns, "ddp", 1)
    logs = {p.metadata.name: log_of(kube, ddp_ns, p.metadata.name) for p in pods}
    assert status["phase"] == "Succeeded", (status, logs)
    assert status["attempt"] == 1 and status["workers"]["succeeded"] == 2

    # two pods, two network namespaces (two addresses), both ran as processes
    assert [p.metadata.name for p in pods] == ["ddp-w0-a1", "ddp-w1-a1"]
    assert len({p.status.pod_ip for p in pods}) == 2
    assert {p.metadata.labels.get("sim.mlops.dev/runs") for p in pods} == {"process"}

    master = f"ddp-w0.ddp-workers.{ddp_ns}.svc.cluster.local"
    checksums = []
    for rank, pod in enumerate(pods):
        log = logs[pod.metadata.name]
        joined = JOINED.search(log)
        assert joined, log
        # the rank torchrun gave is the pod's rank; both joined one world of 2 through rank 0's DNS name; the
        # host name is the pod's own (gloo binds the address it resolves to)
        assert joined.groups() == (str(rank), "2", "2", f"ddp-w{rank}", master, "1"), log
        assert "step 30/30" in log
        summed = CHECKSUM.search(log)
        assert summed, log
        own, first, second, verdict = summed.group(2, 3, 4, 5)
        assert verdict == "equal" and first == second == own, log
        checksums.append(own)
    assert checksums[0] == checksums[1]


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_without_the_all_reduce_the_ranks_differ_and_the_job_fails(kube, ddp_ns):
    """The check the success above rests on can fail: the same script without DDP's all-reduce ends with unequal
    parameters, says so, and exits 1."""
    job = ddp_job(ddp_ns, NO_SYNC="1", STEPS="5")
    job["spec"]["backoffLimit"] = 0
    apply(kube, job)
    status = wait_status(kube, ddp_ns, "ddp", lambda st: st.get("phase") in ("Succeeded", "Failed"), "finished")
    assert status["phase"] == "Failed", status
    assert status["failure"]["reason"] == "Error" and status["failure"]["attempt"] == 1, status
    # The failed rank's pod stays for its log; the other rank, still running or failing a moment later, may have
    # been deleted when the attempt failed: pick the failed one by its rank, not its place in the list.
    failed = [p for p in worker_pods(kube, ddp_ns, "ddp", 1)
              if int(p.metadata.labels["mlops.dev/rank"]) == status["failure"]["worker"]]
    assert len(failed) == 1, status
    pod = failed[0]
    summed = CHECKSUM.search(log_of(kube, ddp_ns, pod.metadata.name))
    assert summed and summed.group(5) == "DIFFERENT" and summed.group(3) != summed.group(4)


def training_process(namespace: str, pod: str) -> int | None:
    """The pid of the training process torchrun started in the pod (it has LOCAL_RANK; torchrun itself not)."""
    wanted = {f"HOSTNAME={pod}".encode(), f"MASTER_ADDR=ddp-w0.ddp-workers.{namespace}.svc.cluster.local".encode()}
    for proc in pathlib.Path("/proc").iterdir():
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:  # not a process, or gone
            continue
        if wanted <= env and any(v.startswith(b"LOCAL_RANK=") for v in env):
            return int(proc.name)
    return None


@pytest.mark.timeout(2 * RUN_TIMEOUT + 120)
def test_a_rank_killed_mid_run_restarts_the_whole_gang_as_a_new_attempt(kube, ddp_ns):
    apply(kube, ddp_job(ddp_ns, STEPS="20", STEP_SECONDS="0.5"))
    wait_for(lambda: "step 3/20" in log_of(kube, ddp_ns, "ddp-w1-a1"), timeout=RUN_TIMEOUT, interval=1,
             message="rank 1 of attempt 1 training")
    pid = training_process(ddp_ns, "ddp-w1-a1")
    assert pid, "no training process of ddp-w1-a1 found"
    os.kill(pid, signal.SIGKILL)  # a process of this test's own cluster, by pid

    status = wait_status(kube, ddp_ns, "ddp", lambda st: st.get("phase") in ("Succeeded", "Failed"), "finished")
    assert status["phase"] == "Succeeded" and status["attempt"] == 2, status
    # attempt 1 failed: rank 1's torchrun exits 1 when its worker is killed, and rank 0's worker loses its peer
    # in the same second, so either may speak for the attempt (finishedAt has whole seconds); an Error either
    # way, retryable and counted against backoffLimit
    failure = status["failure"]
    assert (failure["reason"], failure["attempt"]) == ("Error", 1) and failure["worker"] in (0, 1), failure
    assert failure["retryable"] and failure["counted"], failure
    assert "exited with code 1" in failure["message"], failure
    # the whole gang went: attempt 1's pods are deleted, both ranks of attempt 2 are new
    assert worker_pods(kube, ddp_ns, "ddp", 1) == []
    wanted = ["AttemptStarted", "AttemptStarted", "Succeeded", "WorkerFailed"]

    def reasons():  # the operator posts an event after the status write that records it: wait for them
        seen = sorted(e.reason for e in client.CoreV1Api(kube).list_namespaced_event(ddp_ns).items
                      if e.involved_object.kind == "TrainingJob" and e.involved_object.name == "ddp"
                      and e.reason in wanted)
        return seen if seen == wanted else None

    wait_for(reasons, timeout=60, message="one failed attempt, two started, one success")

    # both ranks of attempt 2 joined a fresh world and stayed equal
    pods = worker_pods(kube, ddp_ns, "ddp", 2)
    assert [p.metadata.name for p in pods] == ["ddp-w0-a2", "ddp-w1-a2"]
    sums = set()
    for rank, pod in enumerate(pods):
        log = log_of(kube, ddp_ns, pod.metadata.name)
        joined, summed = JOINED.search(log), CHECKSUM.search(log)
        assert joined and joined.group(1, 3, 6) == (str(rank), "2", "2"), log
        assert summed and summed.group(5) == "equal", log
        sums.add(summed.group(2))
    assert len(sums) == 1
