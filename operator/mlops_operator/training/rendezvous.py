"""Who each worker is: pod names, stable hostnames and the environment of one rank. Pure: no I/O.

A worker's pod name changes with every attempt (pods are immutable, a new attempt is new pods):
`<job>-w<rank>-a<attempt>`. Its hostname does not: `<job>-w<rank>`, with the headless Service `<job>-workers` as
subdomain, so rank 0 is always `<job>-w0.<job>-workers.<namespace>.svc.<cluster domain>` and MASTER_ADDR never
moves. The Service carries a suffix so that a TrainingJob and the ModelDeployment it trains for can share a name
(the ModelDeployment's Service is `<name>`).

framework pytorch: MASTER_ADDR, MASTER_PORT, WORLD_SIZE (workers), NODE_RANK, NPROC_PER_NODE (GPUs per worker),
and the same values as torchrun's own PET_* variables, so a bare `torchrun train.py` joins the rendezvous.
framework generic: RANK and WORLD_SIZE only. Every worker also gets ATTEMPT and, when set, DATASET_URI,
OUTPUT_MODEL_URI and CHECKPOINT_URI (the same checkpoint location in every attempt, so a retry resumes).
The user's spec.env comes last: a name set there wins.
"""

from __future__ import annotations

from typing import Any

from ..api.trainingjob import TrainingJobSpec, worker_hostname, workers_service_name
from ..api.validation import training_job_name_problem
from ..podspec.gpu import gpu_count

MASTER_PORT = 29500
hostname = worker_hostname
service_name = workers_service_name
name_problem = training_job_name_problem  # the check lives with the other semantic checks in api/validation.py


def pod_name(job: str, rank: int, attempt: int) -> str:
    return f"{job}-w{rank}-a{attempt}"


def master_addr(job: str, namespace: str, cluster_domain: str) -> str:
    return f"{hostname(job, 0)}.{service_name(job)}.{namespace}.svc.{cluster_domain}"


def _var(name: str, value: Any) -> dict[str, str]:
    return {"name": name, "value": str(value)}


def env(spec: TrainingJobSpec, job: str, namespace: str, rank: int, attempt: int,
        cluster_domain: str) -> list[dict[str, Any]]:
    """The environment of worker `rank` in `attempt`, as a core/v1 EnvVar list."""
    out: list[dict[str, Any]] = []
    if spec.framework == "pytorch":
        addr = master_addr(job, namespace, cluster_domain)
        nproc = max(1, gpu_count(spec.resources))
        pairs = (("MASTER_ADDR", addr), ("MASTER_PORT", MASTER_PORT), ("WORLD_SIZE", spec.workers),
                 ("NODE_RANK", rank), ("NPROC_PER_NODE", nproc))
        out += [_var(k, v) for k, v in pairs]
        out += [_var("PET_MASTER_ADDR", addr), _var("PET_MASTER_PORT", MASTER_PORT),
                _var("PET_NNODES", spec.workers), _var("PET_NODE_RANK", rank), _var("PET_NPROC_PER_NODE", nproc)]
    else:
        out += [_var("RANK", rank), _var("WORLD_SIZE", spec.workers)]
    out.append(_var("ATTEMPT", attempt))
    if spec.dataset is not None:
        out.append(_var("DATASET_URI", spec.dataset.uri))
    if spec.output is not None:
        out.append(_var("OUTPUT_MODEL_URI", spec.output.model_uri))
    if spec.checkpoint is not None:
        out.append(_var("CHECKPOINT_URI", spec.checkpoint.uri))
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env]
    overridden = {e["name"] for e in user}
    return [e for e in out if e["name"] not in overridden] + user
