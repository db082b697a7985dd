"""Who each worker is: names, stable hostnames, the rendezvous environment, and the worker pod and Service."""

from __future__ import annotations

import pytest

from mlops_operator.api import TRAINING_JOB, InvalidSpec, validate_object
from mlops_operator.api.trainingjob import TrainingJobSpec
from mlops_operator.training import render, rendezvous

BODY = {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "ft", "namespace": "ml", "uid": "uid-1", "generation": 1}}


def spec(**fields) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"image": "trainer:1", **fields})


def env_of(s: TrainingJobSpec, rank: int, attempt: int = 1) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in rendezvous.env(s, "ft", "ml", rank, attempt, "cluster.local")}


def test_names_change_per_attempt_but_hostnames_do_not():
    assert rendezvous.pod_name("ft", 1, 3) == "ft-w1-a3"
    assert rendezvous.hostname("ft", 1) == "ft-w1"
    assert rendezvous.master_addr("ft", "ml", "cluster.local") == "ft-w0.ft-workers.ml.svc.cluster.local"


def test_pytorch_sets_the_torchrun_rendezvous():
    s = spec(workers=4, resources={"gpu": {"count": 8}})
    env = env_of(s, 2, attempt=3)
    assert env["MASTER_ADDR"] == "ft-w0.ft-workers.ml.svc.cluster.local" and env["MASTER_PORT"] == "29500"
    assert (env["WORLD_SIZE"], env["NODE_RANK"], env["NPROC_PER_NODE"], env["ATTEMPT"]) == ("4", "2", "8", "3")
    assert (env["PET_NNODES"], env["PET_NODE_RANK"], env["PET_NPROC_PER_NODE"]) == ("4", "2", "8")
    assert "RANK" not in env


def test_nproc_is_one_without_gpus():
    assert env_of(spec(), 0)["NPROC_PER_NODE"] == "1"


def test_generic_sets_rank_and_world_size_only():
    env = env_of(spec(framework="generic", workers=3), 1)
    assert env == {"RANK": "1", "WORLD_SIZE": "3", "ATTEMPT": "1"}


def test_data_locations_and_user_env_which_wins():
    s = spec(dataset={"uri": "s3://d/x"}, output={"modelUri": "s3://m/y"}, checkpoint={"uri": "s3://c/z"},
             env=[{"name": "MASTER_PORT", "value": "1234"}, {"name": "EPOCHS", "value": "3"}])
    env = env_of(s, 0)
    assert (env["DATASET_URI"], env["OUTPUT_MODEL_URI"], env["CHECKPOINT_URI"]) == ("s3://d/x", "s3://m/y", "s3://c/z")
    assert env["MASTER_PORT"] == "1234" and env["EPOCHS"] == "3"
    names = [e["name"] for e in rendezvous.env(s, "ft", "ml", 0, 1, "cluster.local")]
    assert len(names) == len(set(names))


def test_the_service_and_hostnames_must_fit_a_dns_label():
    assert rendezvous.name_problem("a" * 55, 10) is None  # a...a-workers: 63 characters
    errors = [f"metadata.name: {rendezvous.name_problem('a' * 56, 10)}"]
    assert errors and errors[0].startswith("metadata.name:") and "Service" in errors[0]
    errors = [f"metadata.name: {rendezvous.name_problem('a' * 55, 10_000_000)}"]  # a...a-w9999999: 64 characters
    assert errors and errors[0].startswith("metadata.name:") and "hostname" in errors[0]


def test_worker_pod_uses_the_shared_gpu_and_security_blocks():
    s = spec(workers=2, resources={"cpu": 4, "memory": "64Gi", "gpu": {"count": 8, "product": "NVIDIA-H100-80GB-HBM3"}},
             podAnnotations={"a": "b"}, output={"modelUri": "s3://m/y", "secretRef": {"name": "creds"}},
             checkpoint={"uri": "s3://c/z", "secretRef": {"name": "creds"}})
    pod = render.worker_pod(BODY, s, 1, 2, "cluster.local")
    meta, pod_spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "ft-w1-a2"
    assert meta["labels"]["mlops.dev/trainingjob"] == "ft" and meta["labels"]["app.kubernetes.io/component"] == "worker"
    assert (meta["labels"]["mlops.dev/rank"], meta["labels"]["mlops.dev/attempt"]) == ("1", "2")
    assert meta["annotations"] == {"a": "b", "mlops.dev/world-size": "2"}
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert (pod_spec["hostname"], pod_spec["subdomain"], pod_spec["restartPolicy"]) == ("ft-w1", "ft-workers", "Never")
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert "schedulingGates" not in pod_spec


def test_queue_name_adds_kueue_labels_and_a_gate_only_where_gates_exist():
    s = spec(workers=3, queueName="team-a")
    old = render.worker_pod(BODY, s, 0, 1, "cluster.local", scheduling_gates=False)
    new = render.worker_pod(BODY, s, 0, 1, "cluster.local", scheduling_gates=True)
    for pod in (old, new):
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "ft-a1"
        assert pod["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "3"
    assert "schedulingGates" not in old["spec"]
    assert new["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}]


def test_headless_service_selects_every_worker():
    svc = render.service(BODY, spec())
    assert svc["metadata"]["name"] == "ft-workers"  # "ft" stays free for a ModelDeployment's Service
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"mlops.dev/trainingjob": "ft", "app.kubernetes.io/component": "worker"}
    assert svc["spec"]["ports"][0]["port"] == 29500
    assert "ports" not in render.service(BODY, spec(framework="generic"))["spec"]


def test_a_name_too_long_for_the_workers_is_an_invalid_spec_from_validation():
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "a" * 56, "namespace": "ml"}, "spec": {"image": "t:1"}}
    with pytest.raises(InvalidSpec) as err:
        validate_object(body, TRAINING_JOB)
    assert err.value.errors[0].startswith("metadata.name: 'aaaa") and "Service" in err.value.errors[0]
