"""ModelDeployment: serve a model behind a Service, optionally with a canary and autoscaling.

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
    PrinterColumn,
    Quantity,
    Resources,
    Scheduling,
    SecretRef,
    StatusBase,
    StatusModel,
    Timestamp,
)

# The inference agent's ports in every serving pod (serving/sidecar.py); the model server must use others.
AGENT_PORT, AGENT_METRICS_PORT = 9081, 9091
AGENT_CPU, AGENT_MEMORY = "250m", "256Mi"
RUNTIME_PRESETS = ("vllm", "triton", "sklearn", "mlserver", "custom")
# What the model servers load. Each preset serves some of them (api/validation.py PRESET_FORMATS): a format the
# chosen preset cannot load is an InvalidSpec naming the preset that can.
MODEL_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow", "tensorrt", "huggingface")
ModelFormat = Literal["sklearn", "xgboost", "lightgbm", "onnx", "pytorch", "tensorflow", "tensorrt", "huggingface"]


class Model(ApiModel):
    """The model to serve: where it is stored and in which format."""

    uri: str = Field(
        min_length=1,
        description=(
            "Where the model is stored: s3://bucket/path, gs://bucket/path, hf://org/name, pvc://claim/path, "
            "http(s)://host/path or file:///path. A storage init container fetches it into a volume the "
            "server reads."
        ),
    )
    format: ModelFormat | None = Field(
        None,
        description=(
            "What the model is, checked against the runtime preset so a model the server cannot load is refused "
            "when applied: sklearn (joblib or pickle; preset sklearn or mlserver), xgboost and lightgbm (preset "
            "mlserver, or triton with the FIL backend), onnx, pytorch (TorchScript), tensorflow (SavedModel), "
            "tensorrt (preset triton), "
            "huggingface (a Hugging Face folder with safetensors; preset vllm). custom accepts any format."
        ),
    )
    size: Quantity | None = Field(
        None,
        description=(
            'Disk the fetched model needs, e.g. "20Gi": the model volume gets this size limit and the server '
            "container an ephemeral-storage request of it, so the scheduler places the pod on a node with room. "
            "Omit for models that are small next to a node's disk. Not used for pvc:// models."
        ),
    )
    secret_ref: SecretRef | None = Field(
        None, description="Secret with credentials for the model's storage, passed to the storage init container."
    )


class Runtime(ApiModel):
    """The model server. A preset gives image, port, probes and args; custom needs image and port."""

    preset: Literal["vllm", "triton", "sklearn", "mlserver", "custom"] = Field(
        description=(
            "Model server: vllm (LLMs, OpenAI API), triton, sklearn (KServe), mlserver (Seldon MLServer: "
            "sklearn, xgboost, lightgbm; Open Inference Protocol v2), or custom (bring image and port)."
        )
    )
    image: str | None = Field(None, min_length=1, description="Container image; overrides the preset's image.")
    args: list[str] = Field(default_factory=list, description="Extra arguments appended to the preset's arguments.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment variables of the server container.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port the server listens on (HTTP); overrides the preset's port."
    )


class RuntimeOverrides(ApiModel):
    """Changes to the stable runtime for the canary only; the preset stays the same."""

    image: str | None = Field(None, min_length=1, description="Container image for the canary pods.")
    args: list[str] | None = Field(None, description="Extra arguments for the canary, replacing the stable ones.")
    env: list[EnvVar] | None = Field(
        None, description="Environment variables for the canary, replacing the stable ones."
    )


class MetricTarget(ApiModel):
    """A per-pod metric the HPA scales on (a Pods metric with an AverageValue target)."""

    name: str = Field(min_length=1, description="Metric name as served by the custom metrics API.")
    target: Quantity = Field(description='Desired average value per pod, a quantity such as 10 or "500m".')


class Autoscaling(ApiModel):
    """Horizontal autoscaling through an HPA. Set exactly one of targetCPUUtilization or metric."""

    min_replicas: int = Field(1, ge=1, le=INT32_MAX, description="Fewest replicas the HPA keeps.")
    max_replicas: int = Field(ge=1, le=INT32_MAX, description="Most replicas the HPA may create.")
    target_cpu_utilization: int | None = Field(
        None, alias="targetCPUUtilization", ge=1, le=INT32_MAX,
        description="Target average CPU utilization, percent of the CPU request.",
    )
    metric: MetricTarget | None = Field(None, description="Scale on a custom per-pod metric instead of CPU.")


class CanaryStep(ApiModel):
    """One step of a canary progression: shift traffic, then pause."""

    weight: int = Field(
        ge=0, le=100,
        description=(
            "Percent of traffic requested for the canary. Canary pods are added on top of the stable's, as many "
            "as come closest to this share (at least one, at most as many as the stable has); "
            "status.canary.weight says what the canary gets."
        ),
    )
    pause: Duration | None = Field(
        None,
        description=(
            'How long to hold this step before the next one: seconds or a duration such as "30s", "5m". '
            "Omit to hold until promote is set; with analysis, omit to advance after one successful analysis."
        ),
    )


# --- canary analysis (serving/analysis.py decides, serving/prometheus.py measures) ---------------------------

# A latency such as "500ms", "0.25s" or "2s" (RE2-compatible, as the API server reads the pattern).
LATENCY_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s)$"


def latency_seconds(value: str) -> float:
    """Seconds in a latency string: "500ms" -> 0.5, "2s" -> 2.0."""
    return float(value[:-2]) / 1000 if value.endswith("ms") else float(value[:-1])


class SuccessRateCheck(ApiModel):
    """The canary's share of answers that are not 5xx, per interval. Set min, maxDegradation, or both (both must
    hold)."""

    min_value: float | None = Field(
        None, alias="min", ge=0, le=1, description="Lowest success rate the canary may have, e.g. 0.99."
    )
    max_degradation: float | None = Field(
        None, ge=0, le=1,
        description=(
            "Relative to the stable over the same interval: the canary's success rate may be at most this much "
            "lower (0.005: canary >= stable - 0.5%)."
        ),
    )


class LatencyCheck(ApiModel):
    """A quantile of the canary's request latency, per interval, from the agent's histogram. Set max,
    maxIncrease, or both (both must hold)."""

    quantile: float = Field(0.99, gt=0, lt=1, description="Which quantile: 0.99 is p99.")
    max_value: str | None = Field(
        None, alias="max", pattern=LATENCY_PATTERN,
        description='Highest the quantile may be: "500ms", "0.25s", "2s".',
    )
    max_increase: float | None = Field(
        None, ge=0,
        description=(
            "Relative to the stable over the same interval: the canary's quantile may be at most this share "
            "higher (0.2: canary <= stable x 1.2)."
        ),
    )


class CustomCheck(ApiModel):
    """A PromQL query whose value (the first sample) must stay within min and max. Placeholders: {{namespace}},
    {{name}} (the ModelDeployment), {{revision}} (canary), {{interval}} (e.g. 60s, for rate windows)."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$",
                      description="Name of the check, shown in status, events and metrics.")
    query: str = Field(min_length=1, description="PromQL giving one number (the first sample is used).")
    min_value: float | None = Field(None, alias="min", description="Lowest value that passes.")
    max_value: float | None = Field(None, alias="max", description="Highest value that passes.")


class PredictionDriftCheck(ApiModel):
    """The canary's predictions against the stable's over the same interval, from the prediction log: the stable's
    are the reference, the canary's the current data of the drift engine."""

    test: Literal["auto", "ks", "psi", "chisquare", "ztest", "wasserstein", "jensenshannon"] = Field(
        "auto", description="The drift engine's test (as in a DriftMonitor's features)."
    )
    threshold: float | None = Field(None, ge=0, description="The test's threshold; omit for its default.")
    columns: list[str] = Field(
        default_factory=list, description="Prediction columns to compare; empty: every output column."
    )


class AccuracyCheck(ApiModel):
    """The canary's accuracy on feedback labels against the stable's, each interval: the prediction log's rows of
    the interval joined by request id with the labels posted to the agents' /v1/feedback."""

    max_degradation: float = Field(
        ge=0, le=1, description="The canary's accuracy may be at most this much lower than the stable's."
    )
    prediction_column: str = Field(
        "output_predict", min_length=1,
        description="The prediction log's column with the model's answer (an output `predict` is output_predict).",
    )
    min_labelled: int = Field(
        20, ge=1, le=10**9,
        description="Fewer labelled answers of a revision in the interval give no verdict (Inconclusive).",
    )


class CanaryAnalysis(ApiModel):
    """Checks of the canary's metrics every interval: a step advances only after its last analysis succeeded;
    failed intervals beyond failureLimit roll the canary back (scaled to zero; spec untouched)."""

    interval: Duration = Field("1m", description='Time between analyses, and the window each one measures: "1m".')
    failure_limit: int = Field(
        0, ge=0, le=INT32_MAX, description="Failed intervals tolerated; one more rolls the canary back."
    )
    inconclusive_limit: int = Field(
        3, ge=1, le=INT32_MAX,
        description=(
            "Consecutive inconclusive intervals (too few requests, no data, Prometheus unreachable) after which a "
            "Warning event says so. Inconclusive never promotes and never rolls back: the step holds."
        ),
    )
    min_requests: int = Field(
        10, ge=0, le=INT32_MAX,
        description="Requests each revision must have answered in an interval for its checks to count.",
    )
    prometheus_url: str | None = Field(
        None, min_length=1,
        description="Prometheus to query (http:// or https://); omit for the operator's --prometheus-url.",
    )
    success_rate: SuccessRateCheck | None = Field(None, description="Share of answers that are not 5xx.")
    latency: LatencyCheck | None = Field(None, description="A latency quantile.")
    checks: list[CustomCheck] = Field(default_factory=list, description="Custom PromQL checks.")
    prediction_drift: PredictionDriftCheck | None = Field(
        None, description="Predictions of canary and stable compared with the drift engine, from the prediction log."
    )
    accuracy: AccuracyCheck | None = Field(
        None, description="Accuracy on feedback labels, canary against stable, from the prediction log."
    )
    auto_promote: bool = Field(
        False, description="Promote, as promote: true does, once the last step's pause is over and analysis passed."
    )


class Canary(ApiModel):
    """A second Deployment behind the same Service, serving a new model to a share of traffic. Traffic follows
    the replica ratio (no service mesh). Set weight for a fixed share or steps for a progression; set promote
    or abort to finish."""

    model: Model | None = Field(
        None, description=("The canary's model. Without one the block is the policy for the next canary (steps, "
                           "analysis), filled in by a person or a TrainingJob's promotion; nothing runs meanwhile."),
    )
    runtime: RuntimeOverrides | None = Field(None, description="Runtime changes for the canary only.")
    weight: int | None = Field(
        None, ge=0, le=100,
        description=(
            "Fixed percent of traffic requested for the canary; use instead of steps. Canary pods are added on top "
            "of the stable's (see steps.weight); status.canary.weight says what the canary gets."
        ),
    )
    steps: list[CanaryStep] = Field(
        default_factory=list, description="Traffic progression, weights not decreasing; use instead of weight."
    )
    analysis: CanaryAnalysis | None = Field(
        None, description="Automated analysis of the canary's metrics: advance, promote or roll back on them."
    )
    pod_annotations: dict[str, str] | None = Field(
        None, description="Annotations of the canary pods, replacing spec.podAnnotations for them."
    )
    promote: bool = Field(
        False, description="Set true to make the canary the stable model (then remove the canary block)."
    )
    abort: bool = Field(False, description="Set true to scale the canary to zero and serve only the stable model.")


class Rollout(ApiModel):
    """How a new model is rolled out."""

    canary: Canary | None = Field(
        None,
        description=(
            "Canary rollout; omit to replace the model in one step. A second Deployment behind the same Service "
            "serves the canary model to a share of traffic, following the replica ratio (no service mesh). Set "
            "weight for a fixed share or steps for a progression; set promote or abort to finish."
        ),
    )


class PredictionLog(ApiModel):
    """Where live inputs and predictions are written, for drift monitoring."""

    uri: str = Field(min_length=1, description="Destination: s3://, gs://, pvc://claim/path or file:// URI.")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Fraction of requests logged, 0 to 1.")
    secret_ref: SecretRef | None = Field(
        None,
        description=(
            "Secret with credentials for the destination (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS): its keys become environment variables of the "
            "inference agent, never arguments."
        ),
    )
    columns: list[str] = Field(
        default_factory=list,
        description=(
            "Feature names for a model whose input is one 2-D tensor (Open Inference Protocol v2) or lists "
            "(KServe v1 instances): one log column each, in order. Omit to name them <input>_<i> (v2) or f<i> (v1)."
        ),
    )
    log_payloads: bool = Field(
        False, description="Also log the prompt and completion text of OpenAI-compatible calls (token counts always)."
    )
    flush_interval: Duration | None = Field(
        None,
        description=(
            'Longest a logged row waits in the agent before its Parquet file is written: seconds or a duration '
            'such as "30s" (default 60s). Files are also written every 10000 rows and when a pod stops.'
        ),
    )


class Monitoring(ApiModel):
    """Observability of the served model."""

    prediction_log: PredictionLog | None = Field(None, description="Log live inputs and predictions.")


class ServiceSettings(ApiModel):
    """How the model's Service is reached. ClusterIP (the default) inside the cluster only; NodePort also on every
    node's address, at nodePort or at one the cluster picks."""

    type: Literal["ClusterIP", "NodePort"] = Field("ClusterIP", description="ClusterIP or NodePort.")
    node_port: int | None = Field(
        None, ge=1, le=65535,
        description="The node port for type NodePort (within the cluster's node-port range); omit to let the "
                    "cluster pick one (status of the Service shows it).",
    )


class AgentResources(ApiModel):
    """Compute of the inference agent container; each value is both its request and its limit."""

    cpu: Quantity | None = Field(
        None, description='CPU of the agent (default "250m"); raise it for many hundred requests per second per pod.'
    )
    memory: Quantity | None = Field(
        None, description='Memory of the agent (default "256Mi"; its log buffer holds at most 32 MiB of it).'
    )


class Agent(ApiModel):
    """The inference agent: a sidecar of the operator's image in every serving pod. The Service sends requests to
    it (port 9081); it forwards them to the model server on 127.0.0.1, exports request metrics per revision on
    port 9091 (/metrics), writes monitoring.predictionLog, and takes ground truth at POST /v1/feedback."""

    enabled: bool = Field(
        True,
        description="Run the agent in the serving pods. false: the Service targets the model server directly, "
                    "and there are no request metrics, prediction log or feedback endpoint.",
    )
    resources: AgentResources = Field(default_factory=AgentResources, description="CPU and memory of the agent.")


class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    model: Model = Field(description="The model to serve.")
    runtime: Runtime = Field(description="The model server that serves it.")
    replicas: int = Field(
        1, ge=0, le=INT32_MAX, description="Pods serving the stable model; ignored when autoscaling is set."
    )
    resources: Resources = Field(default_factory=Resources, description="CPU, memory and GPUs per pod.")
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Where the pods may run.")
    autoscaling: Autoscaling | None = Field(None, description="Scale with an HPA instead of fixed replicas.")
    rollout: Rollout | None = Field(None, description="Canary rollout of a new model.")
    monitoring: Monitoring | None = Field(
        None, description="Prediction logging for drift monitoring (written by the inference agent, spec.agent)."
    )
    service_account_name: str | None = Field(
        None, description="ServiceAccount of the serving pods; only then is its token mounted."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations added to the serving pods (for example for metrics scraping or a sidecar).",
    )
    service: ServiceSettings | None = Field(
        None, description="The Service's type and node port; omit for a ClusterIP Service."
    )
    agent: Agent = Field(
        default_factory=Agent,
        description="The inference agent sidecar (request metrics, prediction log, feedback); on unless disabled.",
    )


class StableStatus(StatusModel):
    """What the stable Deployment serves."""

    model_uri: str | None = Field(
        None,
        description="Model the ready stable pods serve (taken from the pods, not the spec); empty while none is ready.",
    )
    revision: str | None = Field(None, description="Revision (pod template hash) of the stable pods.")


class CanaryCheckStatus(StatusModel):
    """One check's result in the last analysis."""

    name: str = Field(description="successRate, latency, or a custom check's name.")
    verdict: Literal["Successful", "Failed", "Inconclusive"] = Field(description="What the check said.")
    value: float | None = Field(None, description="The canary's value; empty when there was none.")
    threshold: str | None = Field(None, description='What the value had to meet, e.g. ">= 0.99" or "<= 0.5".')
    message: str | None = Field(None, description="Why, in words (the reason for an inconclusive result).")
    time: Timestamp | None = Field(None, description="When it was measured.")


class CanaryAnalysisStatus(StatusModel):
    """The canary's analysis so far: counts since the canary started and the last interval's results."""

    canary: str | None = Field(None, description="Digest of the canary's model and runtime the counts are for.")
    verdict: Literal["Successful", "Failed", "Inconclusive"] | None = Field(
        None, description="The last interval's verdict: Failed if a check failed, else Inconclusive if one was."
    )
    last_time: Timestamp | None = Field(None, description="When the last analysis ran; the next is an interval on.")
    failed: int | None = Field(None, ge=0, description="Failed intervals of this canary.")
    inconclusive: int | None = Field(None, ge=0, description="Inconclusive intervals of this canary.")
    consecutive_inconclusive: int | None = Field(None, ge=0, description="Inconclusive intervals in a row, now.")
    checks: list[CanaryCheckStatus] | None = Field(None, description="The last interval's result per check.")
    decision: Literal["Promote", "Rollback"] | None = Field(
        None, description="What the analysis decided for this canary: Promote (autoPromote) or Rollback."
    )


class CanaryStatus(StatusModel):
    """Progress of the canary."""

    model_uri: str | None = Field(None, description="Model the canary pods serve.")
    weight: int | None = Field(
        None, ge=0, le=100, description="Percent of traffic the canary gets now: its share of the ready pods."
    )
    requested_weight: int | None = Field(
        None, ge=0, le=100, description="Percent the current step (or spec weight) asks for."
    )
    planned_weight: int | None = Field(
        None, ge=0, le=100,
        description="Percent the canary gets once its pods are ready, from the replica counts (see the docs).",
    )
    replicas: int | None = Field(None, ge=0, description="Canary pods planned on top of the stable's.")
    ever_ready: bool | None = Field(
        None, description="A canary pod of this model has been Ready; a canary that never was is not promoted."
    )
    step: int | None = Field(None, ge=0, description="Index of the current step in spec.rollout.canary.steps.")
    phase: Literal["Progressing", "Paused", "Promoted", "Aborted", "Failed", "RolledBack"] | None = Field(
        None,
        description=(
            "Progressing (the Progressing condition is True), Paused (waiting for promote or for a canary pod to "
            "become Ready), Promoted, Aborted, Failed (canary pods cannot run; the Progressing condition says "
            "why, and the canary resumes when they can), or RolledBack (analysis failed: the canary is scaled to "
            "zero until its model or runtime changes, or promote or abort is set)."
        ),
    )
    step_start_time: Timestamp | None = Field(
        None, description="When the current step's canary pods were all ready; its pause counts from here."
    )
    analysis: CanaryAnalysisStatus | None = Field(None, description="The canary's analysis, when it has one.")


class ModelDeploymentStatus(StatusBase):
    """Observed state of a ModelDeployment. Conditions: Ready, Available, Progressing; when pods cannot start,
    the reason says why (Unschedulable, ImagePullBackOff, CrashLoopBackOff, OOMKilled)."""

    url: str | None = Field(None, description="In-cluster URL of the model server.")
    replicas: int | None = Field(None, ge=0, description="Pods (stable and canary) that exist.")
    ready_replicas: int | None = Field(None, ge=0, description="Pods (stable and canary) ready to serve.")
    stable: StableStatus | None = Field(None, description="The stable model.")
    canary: CanaryStatus | None = Field(None, description="The canary, while one exists.")
    warnings: list[str] | None = Field(
        None, description="Values that are accepted but probably not meant, such as memory: 512 (bytes)."
    )


MODEL_DEPLOYMENT = Kind(
    kind="ModelDeployment",
    plural="modeldeployments",
    short_name="md",
    description="ModelDeployment serves a model behind a Service, with optional canary rollout and autoscaling.",
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    printer_columns=(
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition."),
        PrinterColumn("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why Ready is what it is."),
        PrinterColumn("Replicas", "integer", ".status.readyReplicas", "Pods ready to serve."),
        PrinterColumn("Model", "string", ".status.stable.modelUri", "Model the ready stable pods serve."),
        PrinterColumn("Canary", "integer", ".status.canary.weight", "Percent of traffic the canary gets now."),
        PrinterColumn("Analysis", "string", ".status.canary.analysis.verdict", "The canary's last analysis verdict."),
        PrinterColumn("URL", "string", ".status.url", "In-cluster URL."),
        AGE_COLUMN,
    ),
)
