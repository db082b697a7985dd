"""The node simulator against the real control plane: the scheduler places, the simulator plays kubelet."""

from __future__ import annotations

import pathlib

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("needs_scheduler", "needs_simulator")]

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OWN_IMAGE = "mlops-operator:0.1.0"


def pod_body(name, *, image="app:1", restart="Always", annotations=None, gpus=0, command=None,
             init=None, **spec):
    container = {"name": "main", "image": image}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if command:
        container["command"] = command
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"restartPolicy": restart, "containers": [container], "terminationGracePeriodSeconds": 30,
                     # no token: pods can be created before the token controller filled the ServiceAccount
                     "automountServiceAccountToken": False, **spec}}
    if gpus:
        body["spec"]["tolerations"] = [GPU_TOLERATION]
    if init:
        body["spec"]["initContainers"] = init
    return body


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube)


def get_pod(kube, namespace, name) -> dict | None:
    try:
        return kube.sanitize_for_serialization(client.CoreV1Api(kube).read_namespaced_pod(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def cond(pod, type_) -> dict:
    return next((c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


def wait_pod(kube, namespace, name, predicate, timeout=30, message=""):
    def check():
        pod = get_pod(kube, namespace, name)
        return pod if pod and predicate(pod) else None
    return wait_for(check, timeout=timeout, message=message or f"pod {namespace}/{name}")


def phase_is(*phases):
    return lambda p: p.get("status", {}).get("phase") in phases


def container_status(pod, init=False) -> dict:
    key = "initContainerStatuses" if init else "containerStatuses"
    return (pod["status"].get(key) or [{}])[0]


def delete_and_wait(kube, namespace, name, timeout=30):
    client.CoreV1Api(kube).delete_namespaced_pod(name, namespace)
    wait_for(lambda: get_pod(kube, namespace, name) is None, timeout=timeout, message=f"{name} to be deleted")


def test_pod_asking_16_gpus_stays_pending(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("greedy", gpus=16))
    pod = wait_pod(kube, namespace, "greedy", lambda p: cond(p, "PodScheduled").get("status") == "False",
                   message="the scheduler's verdict")
    assert "Insufficient nvidia.com/gpu" in cond(pod, "PodScheduled")["message"]
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def test_pod_asking_8_gpus_runs_on_a_gpu_node(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("trainer", gpus=8))
    pod = wait_pod(kube, namespace, "trainer", lambda p: cond(p, "Ready").get("status") == "True")
    assert pod["spec"]["nodeName"].startswith("gpu-node-")
    st = pod["status"]
    assert st["phase"] == "Running" and st["podIP"].startswith("10.244.") and st["hostIP"] and st["startTime"]
    cs = container_status(pod)
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"] and cs["imageID"]
    delete_and_wait(kube, namespace, "trainer")  # frees the GPUs for the next test


def test_pod_ips_are_unique(kube, core, namespace):
    for i in range(5):
        core.create_namespaced_pod(namespace, pod_body(f"p{i}"))
    pods = [wait_pod(kube, namespace, f"p{i}", phase_is("Running")) for i in range(5)]
    assert len({p["status"]["podIP"] for p in pods}) == 5


def test_job_completes(kube, namespace, needs_controller_manager):
    batch = client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "work", "image": "job:1"}]}}}})

    def done():
        job = kube.sanitize_for_serialization(batch.read_namespaced_job("once", namespace))
        return job if (job.get("status") or {}).get("succeeded") == 1 else None
    job = wait_for(done, message="the Job to succeed")
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector="job-name=once").items
    pod = kube.sanitize_for_serialization(pods[0])
    assert pod["status"]["phase"] == "Succeeded"
    assert container_status(pod)["state"]["terminated"]["reason"] == "Completed"


def test_oomkilled_pods(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("oom-once", restart="Never",
                                                   annotations={"sim.mlops.dev/failure": "OOMKilled"}))
    core.create_namespaced_pod(namespace, pod_body("oom-loop", annotations={"sim.mlops.dev/failure": "OOMKilled"}))
    pod = wait_pod(kube, namespace, "oom-once", phase_is("Failed"))
    term = container_status(pod)["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    pod = wait_pod(kube, namespace, "oom-loop", lambda p: container_status(p).get("restartCount", 0) > 0)
    cs = container_status(pod)
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["ready"] is False


def test_deployment_pods_get_ready_and_are_garbage_collected(kube, core, namespace, needs_controller_manager):
    apps = client.AppsV1Api(kube)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}})

    def ready():
        d = kube.sanitize_for_serialization(apps.read_namespaced_deployment("web", namespace))
        return d if (d.get("status") or {}).get("readyReplicas") == 3 else None
    wait_for(ready, message="3 ready replicas")
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items
             and not apps.list_namespaced_replica_set(namespace).items, message="pods and ReplicaSet to go")


def test_own_image_runs_as_a_local_process(kube, core, namespace, local_cluster):
    core.create_namespaced_pod(namespace, pod_body("help", image=OWN_IMAGE, restart="Never",
                                                   command=["mlops-operator", "--help"]))
    pod = wait_pod(kube, namespace, "help", phase_is("Succeeded", "Failed"))
    cs = container_status(pod)
    assert pod["status"]["phase"] == "Succeeded", cs
    assert cs["state"]["terminated"]["reason"] == "Completed" and cs["state"]["terminated"]["exitCode"] == 0
    if local_cluster is not None:
        uid = pod["metadata"]["uid"]
        logfile = pathlib.Path(local_cluster.layout.root) / "sim" / "logs" / f"{namespace}_help_{uid}/main/0.log"
        assert "usage" in logfile.read_text().lower()


def test_own_image_volume_paths_env_and_exit_code(kube, core, namespace, local_cluster):
    script = ("import os, sys; open(sys.argv[1], 'w').write(os.environ['POD'] + ' ' + os.environ['OUT']); "
              "print('bye'); sys.exit(3)")
    body = pod_body("local", image=OWN_IMAGE, restart="Never", command=["python", "-c", script, "/work/out.txt"],
                    volumes=[{"name": "work", "emptyDir": {}}])
    body["spec"]["containers"][0].update(
        volumeMounts=[{"name": "work", "mountPath": "/work"}],
        env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "OUT", "value": "/work/out.txt"}])
    core.create_namespaced_pod(namespace, body)
    pod = wait_pod(kube, namespace, "local", phase_is("Succeeded", "Failed"))
    term = container_status(pod)["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed" and term["exitCode"] == 3 and term["reason"] == "Error"
    assert "bye" in term.get("message", "")
    if local_cluster is not None:
        host = pathlib.Path(local_cluster.layout.root) / "sim" / "pods" / namespace / "local" / "volumes" / "work"
        assert (host / "out.txt").read_text() == f"local {host}/out.txt"


def test_own_image_init_containers_then_simulated_server_is_marked_ready(kube, core, namespace):
    init = [{"name": "prepare", "image": OWN_IMAGE, "command": ["python", "-c", "print('init ok')"]}]
    core.create_namespaced_pod(namespace, pod_body("server", image="model-server:1", init=init))
    pod = wait_pod(kube, namespace, "server", lambda p: cond(p, "Ready").get("status") == "True")
    assert container_status(pod, init=True)["state"]["terminated"]["reason"] == "Completed"
    assert pod["metadata"]["labels"]["sim.mlops.dev/runs"] == "mixed"


def test_own_image_init_container_failure_ends_a_never_pod(kube, core, namespace):
    init = [{"name": "prepare", "image": OWN_IMAGE, "command": ["python", "-c", "raise SystemExit(5)"]}]
    core.create_namespaced_pod(namespace, pod_body("broken", image=OWN_IMAGE, restart="Never", init=init))
    pod = wait_pod(kube, namespace, "broken", phase_is("Failed"))
    term = container_status(pod, init=True)["state"]["terminated"]
    assert term["exitCode"] == 5 and term["reason"] == "Error"


@pytest.mark.parametrize("failure,restart,check", [
    ("exit:3", "Never",
     lambda p: p["status"]["phase"] == "Failed"
     and container_status(p)["state"]["terminated"]["exitCode"] == 3
     and container_status(p)["state"]["terminated"]["reason"] == "Error"),
    ("exit:3", "Always",
     lambda p: container_status(p).get("restartCount", 0) > 0
     and container_status(p)["lastState"]["terminated"]["exitCode"] == 3),
    ("ImagePullBackOff", "Always",
     lambda p: p["status"]["phase"] == "Pending"
     and container_status(p).get("state", {}).get("waiting", {}).get("reason") == "ImagePullBackOff"
     and container_status(p)["state"]["waiting"]["message"]),
    ("ErrImagePull", "Always",
     lambda p: p["status"]["phase"] == "Pending"
     and container_status(p).get("state", {}).get("waiting", {}).get("reason") == "ErrImagePull"),
    ("CrashLoopBackOff", "Always",
     lambda p: p["status"]["phase"] == "Running" and container_status(p).get("restartCount", 0) >= 2
     and container_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
     and container_status(p)["lastState"]["terminated"]["exitCode"] == 1
     and cond(p, "Ready")["status"] == "False"),
    ("Evicted", "Always",
     lambda p: p["status"]["phase"] == "Failed" and p["status"].get("reason") == "Evicted"
     and "low on resource: memory" in p["status"].get("message", "")),
])
def test_failure_modes(kube, core, namespace, failure, restart, check):
    core.create_namespaced_pod(namespace, pod_body("faulty", restart=restart,
                                                   annotations={"sim.mlops.dev/failure": failure}))
    wait_pod(kube, namespace, "faulty", check, message=f"{failure} on a {restart} pod")


def test_failure_after_runs_ready_first(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("late", annotations={
        "sim.mlops.dev/failure": "OOMKilled", "sim.mlops.dev/failure-after": "2"}))
    wait_pod(kube, namespace, "late", lambda p: cond(p, "Ready").get("status") == "True")
    pod = wait_pod(kube, namespace, "late", lambda p: container_status(p).get("restartCount", 0) > 0)
    assert container_status(pod)["lastState"]["terminated"]["reason"] == "OOMKilled"


def test_a_new_pod_without_the_annotation_is_healthy(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("bad", annotations={"sim.mlops.dev/failure": "CrashLoopBackOff"}))
    core.create_namespaced_pod(namespace, pod_body("good"))
    wait_pod(kube, namespace, "good", lambda p: cond(p, "Ready").get("status") == "True")
    wait_pod(kube, namespace, "bad", lambda p: container_status(p).get("restartCount", 0) > 0)


def test_run_seconds_annotation(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("slow", restart="Never",
                                                   annotations={"sim.mlops.dev/run-seconds": "3"}))
    wait_pod(kube, namespace, "slow", phase_is("Running"))
    assert get_pod(kube, namespace, "slow")["status"]["phase"] == "Running"
    wait_pod(kube, namespace, "slow", phase_is("Succeeded"), timeout=15)


def test_deleting_pending_and_running_pods_finishes(kube, core, namespace):
    core.create_namespaced_pod(namespace, pod_body("unschedulable", gpus=16))
    core.create_namespaced_pod(namespace, pod_body("pulling", annotations={"sim.mlops.dev/failure": "ErrImagePull"}))
    core.create_namespaced_pod(namespace, pod_body("running"))
    wait_pod(kube, namespace, "pulling", lambda p: container_status(p).get("state", {}).get("waiting"))
    wait_pod(kube, namespace, "running", phase_is("Running"))
    for name in ("unschedulable", "pulling", "running"):
        delete_and_wait(kube, namespace, name, timeout=15)
