"""TrainingJob: run a (possibly distributed) training on N workers, then optionally promote its model.

Spec and status shapes only; semantic checks live in api/validation.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    AGE_COLUMN,
    INT32_MAX,
    ApiModel,
    Duration,
    EnvVar,
    Kind,
    ObjectRef,
    PrinterColumn,
    Resources,
    Scheduling,
    SecretRef,
    StatusBase,
    StatusModel,
    Timestamp,
)

DEFAULT_GANG_TIMEOUT = "10m"
"""How long placed workers wait for their peers by default: long enough for a cluster autoscaler to add a node,
short enough that a half-placed gang does not hold its GPUs for hours."""
MAX_WORKERS = 10_000
"""Workers of one job: twice the 5,000 nodes Kubernetes is tested to scale to, and more than the largest published
training runs need (Llama 3 405B: 16,384 GPUs on 2,048 nodes of 8). A typo such as 100000 is refused when the job
is applied instead of becoming that many pods."""


def workers_service_name(job: str) -> str:
    """The headless Service of a job's workers (suffixed, so a ModelDeployment may share the job's name)."""
    return f"{job}-workers"


def worker_hostname(job: str, rank: int) -> str:
    return f"{job}-w{rank}"


class TrainingScheduling(Scheduling):
    """Where workers may run, and gang scheduling: all workers start together or none do."""

    gang_timeout: Duration | None = Field(
        DEFAULT_GANG_TIMEOUT,
        description=(
            "How long created workers may wait to be scheduled together: seconds or a duration such as "
            f'"10m" (default {DEFAULT_GANG_TIMEOUT}). Counted from the creation of the workers, which waits '
            "until the gang fits the free GPUs (that wait has no limit)."
        ),
    )
    gang_timeout_action: Literal["wait", "fail"] = Field(
        "wait",
        description=(
            "What happens when gangTimeout passes: wait (release the placed workers and try again a gangTimeout "
            "later, not counted against backoffLimit) or fail (the job fails with reason GangTimeout)."
        ),
    )


class Dataset(ApiModel):
    """Training data, passed to the workers as DATASET_URI."""

    uri: str = Field(min_length=1, description="Where the data is: s3://, gs://, hf://, pvc://, http(s):// or file://.")
    secret_ref: SecretRef | None = Field(None, description="Secret with credentials for the data's storage.")


class Output(ApiModel):
    """Where the trained model goes, passed to the workers as OUTPUT_MODEL_URI."""

    model_uri: str = Field(min_length=1, description="Destination of the model: s3://, gs://, pvc:// or file://.")
    secret_ref: SecretRef | None = Field(None, description="Secret with credentials for the destination.")


class Checkpoint(ApiModel):
    """Where checkpoints go so a restarted attempt resumes, passed to the workers as CHECKPOINT_URI."""

    uri: str = Field(min_length=1, description="Checkpoint location: s3://, gs://, pvc:// or file://.")
    secret_ref: SecretRef | None = Field(None, description="Secret with credentials for the location.")


class Promote(ApiModel):
    """On success, hand the output model to a ModelDeployment in this namespace."""

    model_deployment: ObjectRef = Field(description="The ModelDeployment that receives the model.")
    as_: Literal["canary", "stable"] = Field(
        "canary", alias="as", description="canary: roll it out as the canary; stable: replace the stable model."
    )


class TrainingJobSpec(ApiModel):
    """Desired state of a TrainingJob."""

    image: str = Field(min_length=1, description="Container image of every worker.")
    command: list[str] = Field(default_factory=list, description="Entrypoint; the image's when empty.")
    args: list[str] = Field(default_factory=list, description="Arguments to the entrypoint.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables of every worker.")
    framework: Literal["pytorch", "generic"] = Field(
        "pytorch",
        description=(
            "pytorch sets the torchrun rendezvous (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, NODE_RANK, "
            "NPROC_PER_NODE = GPUs per worker); generic runs the command as it is on every worker."
        ),
    )
    workers: int = Field(
        1, ge=1, le=MAX_WORKERS, description=f"Number of worker pods, scheduled together; at most {MAX_WORKERS}."
    )
    resources: Resources = Field(default_factory=Resources, description="CPU, memory and GPUs per worker.")
    scheduling: TrainingScheduling = Field(
        default_factory=TrainingScheduling, description="Where workers may run; gang timeout."
    )
    dataset: Dataset | None = Field(None, description="Training data (DATASET_URI).")
    output: Output | None = Field(None, description="Where the trained model goes (OUTPUT_MODEL_URI).")
    checkpoint: Checkpoint | None = Field(None, description="Where checkpoints go (CHECKPOINT_URI).")
    backoff_limit: int = Field(
        3, ge=0, le=INT32_MAX, description="Retries of the whole gang after a retryable failure."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, le=INT32_MAX, description="Seconds the job may run in total (all attempts) before it fails."
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description=(
            "Seconds after success or failure until the worker pods and the Service are deleted; the "
            "TrainingJob and its status stay."
        ),
    )
    suspend: bool = Field(
        False, description="true stops the workers (status Suspended, kept); false resumes with a new attempt."
    )
    queue_name: str | None = Field(
        None,
        description=(
            "Kueue LocalQueue to admit the job through: label kueue.x-k8s.io/queue-name and a pod group on every "
            "worker; on Kubernetes 1.27+ the workers are created gated until Kueue admits them."
        ),
    )
    promote: Promote | None = Field(None, description="On success, give the output model to a ModelDeployment.")
    service_account_name: str | None = Field(
        None, description="ServiceAccount of the worker pods; only then is its token mounted."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to the worker pods (for example for a sidecar)."
    )


class WorkerCounts(StatusModel):
    """Worker pods by state."""

    active: int = Field(0, ge=0, description="Workers running or pending.")
    succeeded: int = Field(0, ge=0, description="Workers that exited successfully.")
    failed: int = Field(0, ge=0, description="Workers that failed in this attempt.")


class Failure(StatusModel):
    """Why the last attempt failed."""

    reason: str = Field(description="CamelCase reason, e.g. OOMKilled, Evicted, Error, GangTimeout, DeadlineExceeded.")
    message: str = Field(description="Details, e.g. the failing worker's exit message.")
    retryable: bool = Field(description="Whether another attempt may succeed (within backoffLimit).")
    counted: bool | None = Field(
        None, description="Whether this failure counted against backoffLimit (evictions and node loss do not)."
    )
    worker: int | None = Field(None, ge=0, description="Rank of the worker that failed, when one did.")
    attempt: int | None = Field(None, ge=1, description="The attempt that failed.")


class Promotion(StatusModel):
    """The one edit this job made to a ModelDeployment's spec, recorded so it is never repeated."""

    model_deployment: str = Field(description="Name of the ModelDeployment.")
    as_: Literal["canary", "stable"] = Field(alias="as", description="canary or stable.")
    model_uri: str = Field(description="The model URI written.")
    time: Timestamp = Field(description="When it was written.")


class TrainingJobStatus(StatusBase):
    """Observed state of a TrainingJob. Conditions: Running, Succeeded, Failed, Suspended."""

    phase: Literal["Pending", "Running", "Restarting", "Succeeded", "Failed", "Suspended", "InvalidSpec"] | None = (
        Field(None, description="Pending, Running, Restarting, Succeeded, Failed, Suspended, or InvalidSpec (the "
                                "spec of a job that never started is invalid; see the Ready condition).")
    )
    gpus: int | None = Field(None, ge=0, description="GPUs of the whole job: workers x GPUs per worker.")
    attempt: int | None = Field(None, ge=0, description="Current attempt, starting at 1.")
    start_time: Timestamp | None = Field(
        None, description="When the first attempt started (reset on resume); activeDeadlineSeconds counts from here."
    )
    completion_time: Timestamp | None = Field(None, description="When the job succeeded or failed.")
    workers: WorkerCounts | None = Field(None, description="Worker pods by state.")
    model_uri: str | None = Field(None, description="The trained model, after success.")
    failure: Failure | None = Field(None, description="Why the last attempt failed.")
    retries: int | None = Field(None, ge=0, description="Failures counted against backoffLimit so far.")
    attempt_start_time: Timestamp | None = Field(
        None, description="When the current attempt's workers were created; unset while they are being created."
    )
    next_attempt_time: Timestamp | None = Field(
        None, description="After a gang timeout with gangTimeoutAction wait: when the next attempt starts."
    )
    promotion: Promotion | None = Field(None, description="The promotion done after success (done once).")


TRAINING_JOB = Kind(
    kind="TrainingJob",
    plural="trainingjobs",
    short_name="tj",
    description="TrainingJob runs a training on one or more workers (gang-scheduled) and can promote its model.",
    spec=TrainingJobSpec,
    status=TrainingJobStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase",
                      "Pending, Running, Restarting, Succeeded, Failed, Suspended or InvalidSpec."),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition."),
        PrinterColumn("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why (not) ready."),
        PrinterColumn("Workers", "integer", ".spec.workers", "Worker pods."),
        PrinterColumn("GPUs", "integer", ".status.gpus", "GPUs of the whole job (workers x GPUs per worker)."),
        PrinterColumn("Attempt", "integer", ".status.attempt", "Current attempt."),
        AGE_COLUMN,
    ),
)
