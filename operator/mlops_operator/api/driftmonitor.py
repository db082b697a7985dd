"""DriftMonitor: compare a ModelDeployment's live inputs with reference data on a schedule; alert and retrain.

Spec and status shapes only; semantic checks live in api/validation.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, model_validator

from .common import (
    AGE_COLUMN,
    ApiModel,
    Duration,
    Kind,
    ObjectRef,
    PrinterColumn,
    SecretRef,
    StatusBase,
    StatusModel,
    Timestamp,
)
from .trainingjob import TrainingJobSpec

DRIFT_TESTS = ("auto", "ks", "psi", "chisquare", "ztest", "wasserstein", "jensenshannon")

MAX_RETRAINS_PER_DAY = 24 * 60
"""A check runs at most once a minute (cron's granularity), so no day can bring more retrainings than this."""

MIN_ROWS = 100
"""The default least current window for a verdict: the chi-square and two-proportion z-tests rest on normal
approximations that need about 5 expected rows per category (Cochran's rule), which 100 rows give down to a 5%
category; fewer rows give a p-value that means little (see docs/drift-statistics.md)."""

RUN_NOW_ANNOTATION = "mlops.dev/run-now"
"""Set to any new value to run a check now, once per value (`kubectl annotate dm X mlops.dev/run-now=$(date +%s)`)."""


def interval_cron(seconds: int) -> str | None:
    """A cron schedule for an interval that divides an hour or a day, else None (cron cannot say "every 7m")."""
    if seconds < 60 or seconds % 60:
        return None
    minutes = seconds // 60
    if minutes < 60:
        return f"*/{minutes} * * * *" if 60 % minutes == 0 else None
    if minutes % 60:
        return None
    hours = minutes // 60
    if hours == 24:
        return "0 0 * * *"
    return f"0 */{hours} * * *" if hours < 24 and 24 % hours == 0 else None


def retrain_name(monitor: str, unix_time: int) -> str:
    """The retraining TrainingJob of the result at `unix_time`: one name per result, so a retry cannot make two."""
    return f"{monitor}-retrain-{unix_time}"


class ReferenceData(ApiModel):
    """The data the model was trained on (or any data known to be good): at `uri`, or next to the model the
    ModelDeployment's stable pods serve (`fromModel`), so the reference follows each promotion."""

    uri: str | None = Field(
        None, min_length=1,
        description="Where the data is: s3://, gs://, hf://, pvc://, http(s):// or file://. Set uri or fromModel.",
    )
    from_model: str | None = Field(
        None, min_length=1, pattern=r"^[^/].*$",
        description=(
            "A path inside the model folder the ModelDeployment's stable pods serve (status.stable.modelUri, else "
            "spec.model.uri), e.g. reference.parquet: the training data the trainer saved next to its model. Each "
            "check reads the reference of the model in service, so retraining on drifted data and promoting the "
            "new model clears the drift. Set uri or fromModel."
        ),
    )
    format: Literal["parquet", "csv"] | None = Field(
        None, description="parquet or csv; inferred from the file extension when omitted."
    )
    secret_ref: SecretRef | None = Field(None, description="Secret with credentials for the data's storage.")


class CurrentData(ApiModel):
    """The live data to compare; by default the ModelDeployment's prediction log."""

    uri: str | None = Field(
        None, min_length=1, description="Where the data is; omit to read the ModelDeployment's prediction log."
    )
    format: Literal["parquet", "csv"] | None = Field(
        None, description="parquet or csv; inferred from the file extension when omitted."
    )
    window: Duration | None = Field(
        None, description='Only rows from this recent period, e.g. "24h", by timestampColumn; omit for all rows.'
    )
    timestamp_column: str = Field(
        "timestamp", min_length=1, description="Column with each row's time (RFC 3339 or a timestamp type), for window."
    )
    last_rows: int | None = Field(None, ge=1, description="Only the last N rows (applied after window).")
    revision: Literal["stable", "canary", "all"] = Field(
        "stable",
        description=(
            "Rows of which serving revision, by the prediction log's revision column: stable (a canary's rows are "
            "another model's answers, judged by its rollout), canary, or all. Data without that column is read whole."
        ),
    )
    secret_ref: SecretRef | None = Field(None, description="Secret with credentials for the data's storage.")


class Feature(ApiModel):
    """How one column is tested for drift."""

    name: str = Field(min_length=1, description="Column name, present in both reference and current data.")
    type: Literal["numerical", "categorical"] | None = Field(
        None, description="numerical or categorical; inferred from the data when omitted."
    )
    test: Literal["auto", "ks", "psi", "chisquare", "ztest", "wasserstein", "jensenshannon"] = Field(
        "auto",
        description=(
            "Statistical test: auto picks by type and size; ks, wasserstein: numerical; chisquare, ztest: "
            "categorical; psi, jensenshannon: both."
        ),
    )
    threshold: float | None = Field(
        None,
        ge=0,
        description=(
            "Drift threshold: for p-value tests (ks, chisquare, ztest) drift when p < threshold (0 to 1); "
            "for distances (psi, wasserstein, jensenshannon) drift when the statistic >= threshold. "
            "The test's usual value when omitted."
        ),
    )


class Alertmanager(ApiModel):
    """An Alertmanager that receives a DriftDetected alert."""

    url: str = Field(min_length=1, description="Base URL of the Alertmanager, http(s)://host:port.")


class Alert(ApiModel):
    """Where drift is announced (besides the DriftDetected condition and a Warning event)."""

    alertmanager: Alertmanager | None = Field(None, description="Post alerts to this Alertmanager.")


class Retrain(ApiModel):
    """Create a TrainingJob when drift is detected, at most maxPerDay and not within cooldown of the last."""

    template: TrainingJobSpec = Field(
        description="Spec of the TrainingJob to create; usually with promote set to roll out the new model."
    )
    cooldown: Duration = Field("6h", description="Least time between two retrainings, e.g. 6h.")
    max_per_day: int = Field(
        1, ge=1, le=MAX_RETRAINS_PER_DAY,
        description=f"Most retrainings in any 24 hours; at most {MAX_RETRAINS_PER_DAY} (one check a minute).",
    )


class Actions(ApiModel):
    """What happens when the dataset drifts."""

    alert: Alert | None = Field(None, description="Send an alert.")
    retrain: Retrain | None = Field(None, description="Start a retraining.")


# --- model checks: each optional, each with thresholds (docs/driftmonitor.md, "Model quality") ---------------------

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "mape")
ESTIMATED_METRICS = ("accuracy", "f1", "roc_auc")
Label = Annotated[
    Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | Annotated[str, Field(min_length=1)],
    WithJsonSchema({"x-kubernetes-int-or-string": True, "minimum": -(2**31), "maximum": 2**31 - 1, "minLength": 1}),
]
"""A class label: 1, "fraud" (the API server's int-or-string)."""
MetricName = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "mape"]


class QualityCheck(ApiModel):
    """Data quality of the current window per column, against the reference; fails before any drift verdict."""

    columns: list[str] = Field(
        default_factory=list, description="Columns to check; omitted: the drift features (or all shared columns)."
    )
    max_missing_share: float = Field(0.05, ge=0, le=1, description="Largest share of missing values (None, NaN).")
    max_out_of_range_share: float = Field(
        0.05, ge=0, le=1, description="Largest share of values outside the reference's [min, max] (numerical columns)."
    )
    max_new_category_share: float = Field(
        0.05, ge=0, le=1, description="Largest share of rows whose category the reference never had."
    )
    max_type_error_share: float = Field(
        0.0, ge=0, le=1, description="Largest share of values of the wrong type (text in a numerical column...)."
    )


class MetricThreshold(ApiModel):
    """Bounds on one metric: absolute (min, max) and/or relative to the reference period (maxDrop)."""

    name: MetricName = Field(
        description="accuracy, precision, recall, f1, roc_auc (classification); mae, rmse, mape (regression)."
    )
    min: float | None = Field(None, description="Fail when the metric is below this.")
    max: float | None = Field(None, description="Fail when the metric is above this.")
    max_drop: float | None = Field(
        None, ge=0,
        description=("Fail when the metric is worse than on the reference data by more than this, in the metric's "
                     "units (lower for scores, higher for errors such as mae)."),
    )


def _metric_names_in(metrics: list[MetricThreshold], allowed: tuple[str, ...], field: str, what: str) -> None:
    seen: set[str] = set()
    for index, metric in enumerate(metrics):
        if metric.name not in allowed:
            raise ValueError(f"{field}[{index}].name: {metric.name} is not a {what} metric ({', '.join(allowed)})")
        if metric.name in seen:
            raise ValueError(f"{field}[{index}].name: {metric.name} is listed twice")
        seen.add(metric.name)
        if metric.min is None and metric.max is None and metric.max_drop is None:
            raise ValueError(f"{field}[{index}]: set min, max or maxDrop")


class PerformanceCheck(ApiModel):
    """Performance from labelled rows: the current data's label column, or feedback joined by request id."""

    task: Literal["classification", "regression"] = Field(description="classification or regression.")
    label_column: str = Field(min_length=1, description="Column with the true label (in the reference too).")
    prediction_column: str = Field(min_length=1, description="Column with the model's prediction.")
    score_column: str | None = Field(
        None, min_length=1, description="Column with the model's probability of positiveLabel; needed for roc_auc."
    )
    positive_label: Label = Field(
        1, description="The positive class of binary classification (precision, recall, f1, roc_auc)."
    )
    request_id_column: str = Field(
        "request_id", min_length=1, description="Column joining predictions to feedback labels."
    )
    min_labelled_rows: int = Field(
        100, ge=1, le=10**9, description="Fewer labelled rows give no performance verdict (InsufficientLabels)."
    )
    metrics: list[MetricThreshold] = Field(
        min_length=1, description="Metrics and their bounds.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _metrics_fit_the_task(self) -> PerformanceCheck:
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        _metric_names_in(self.metrics, allowed, "metrics", self.task)
        if any(m.name == "roc_auc" for m in self.metrics) and self.score_column is None:
            raise ValueError("scoreColumn: roc_auc needs the column with the model's probability")
        return self


class EstimatedPerformanceCheck(ApiModel):
    """Performance without labels (CBPE, binary classification): expected metrics from calibrated probabilities,
    calibrated on the reference, whose labels it needs. Assumes no concept drift."""

    score_column: str = Field(min_length=1, description="Column with the model's probability of the positive class.")
    label_column: str = Field(min_length=1, description="Column with the true label, in the reference data.")
    prediction_column: str | None = Field(
        None, min_length=1, description="Column with the predicted class; omitted: score >= decisionThreshold."
    )
    positive_label: Label = Field(1, description="The positive class.")
    decision_threshold: float = Field(0.5, ge=0, le=1, description="Score from which a row is predicted positive.")
    calibration: Literal["auto", "isotonic", "none"] = Field(
        "auto", description="auto: isotonic only where it lowers the calibration error on the reference (NannyML)."
    )
    metrics: list[MetricThreshold] = Field(
        min_length=1, description="accuracy, f1, roc_auc and their bounds; the band is 3 sampling errors.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _metrics_can_be_estimated(self) -> EstimatedPerformanceCheck:
        _metric_names_in(self.metrics, ESTIMATED_METRICS, "metrics", "CBPE")
        return self


class MultivariateCheck(ApiModel):
    """One verdict for the whole window: PCA reconstruction error (NannyML's definition)."""

    method: Literal["pcaReconstruction"] = Field("pcaReconstruction", description="pcaReconstruction.")
    columns: list[str] = Field(
        default_factory=list, description="Columns (at least two); omitted: the drift features (or all shared)."
    )
    max_error: float | None = Field(
        None, ge=0, description="Drift above this mean error; omitted: the reference's error + 3 sampling errors."
    )
    min_increase: float = Field(
        0.05, ge=0,
        description="Without maxError, also at least this relative rise over the reference (0.05 = 5%), so large "
                    "windows do not flag harmless shifts.",
    )


class PredictionDriftCheck(ApiModel):
    """Drift of the model's outputs against the reference's predictions, with the input drift tests."""

    columns: list[Feature] = Field(
        min_length=1, description="Output columns (in the reference and current data) and their tests.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class DriftMonitorSpec(ApiModel):
    """Desired state of a DriftMonitor."""

    model_deployment: ObjectRef = Field(description="The monitored ModelDeployment, in this namespace.")
    reference: ReferenceData = Field(description="Reference data.")
    current: CurrentData | None = Field(None, description="Current data; the prediction log when omitted.")
    schedule: str | None = Field(
        None, min_length=1, description='When to check, as cron: "0 * * * *". Set schedule or interval.'
    )
    interval: Duration | None = Field(
        None, description='How often to check, e.g. "1h" or 3600. Set schedule or interval.'
    )
    features: list[Feature] = Field(
        default_factory=list,
        description="Tests per column; omitted: all shared columns with test auto.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    drift_share: float = Field(
        0.5, ge=0, le=1, description="The dataset drifts when at least this share of features drift, 0 to 1."
    )
    min_rows: int = Field(
        MIN_ROWS, ge=1, le=10**9,
        description=(f"Least rows in the current window for a verdict; a smaller window is InsufficientData "
                     f"(no drift verdict, alert or retraining). Default {MIN_ROWS}."),
    )
    actions: Actions | None = Field(None, description="Alerting and retraining on drift.")
    quality: QualityCheck | None = Field(None, description="Data quality checks per column.")
    performance: PerformanceCheck | None = Field(None, description="Performance from labelled rows.")
    estimated_performance: EstimatedPerformanceCheck | None = Field(
        None, description="Performance estimated without labels (CBPE, binary classification)."
    )
    multivariate: MultivariateCheck | None = Field(None, description="Multivariate drift of the whole window.")
    prediction_drift: PredictionDriftCheck | None = Field(None, description="Drift of the model's outputs.")


class Rows(StatusModel):
    """Rows compared in a check."""

    reference: int = Field(0, ge=0, description="Rows of reference data.")
    current: int = Field(0, ge=0, description="Rows of current data.")


class FeatureResult(StatusModel):
    """Drift result of one feature."""

    name: str = Field(description="Column name.")
    test: str = Field(description="Test used.")
    statistic: float | None = Field(None, description="Test statistic or distance.")
    p_value: float | None = Field(None, description="p-value, for tests that have one.")
    threshold: float | None = Field(None, description="Threshold applied.")
    drifted: bool = Field(description="Whether this feature drifted.")


class ColumnQualityResult(StatusModel):
    """Data quality of one column."""

    name: str = Field(description="Column name.")
    rows: int = Field(0, ge=0, description="Rows in the window.")
    missing: int = Field(0, ge=0, description="Missing values.")
    missing_share: float | None = Field(None, description="missing / rows.")
    out_of_range: int = Field(0, ge=0, description="Values outside the reference's range.")
    new_categories: int = Field(0, ge=0, description="Rows with a category the reference never had.")
    new_category_examples: list[str] = Field(default_factory=list, description="The most frequent unseen categories.")
    type_errors: int = Field(0, ge=0, description="Values of the wrong type.")
    failed: list[str] = Field(
        default_factory=list, description="Shares over their limit: missing, outOfRange, newCategories, typeErrors."
    )


class QualityResult(StatusModel):
    """Data quality of the window."""

    failed: bool = Field(description="Whether any column failed.")
    failed_columns: list[str] = Field(default_factory=list, description="Columns that failed.")
    columns: list[ColumnQualityResult] = Field(default_factory=list, description="Per-column results.")


class MetricResult(StatusModel):
    """One metric of the window."""

    name: str = Field(description="Metric name.")
    value: float | None = Field(None, description="Value in the window (estimated, for CBPE).")
    reference: float | None = Field(None, description="Value on the reference data.")
    sampling_error: float | None = Field(None, description="Standard error of an estimate (CBPE).")
    lower: float | None = Field(None, description="Lower end of the confidence band (CBPE).")
    upper: float | None = Field(None, description="Upper end of the confidence band (CBPE).")
    failed: bool = Field(False, description="Whether the value breaks a bound.")
    reason: str | None = Field(None, description="Which bound it broke.")


class PerformanceResult(StatusModel):
    """Performance of the window, measured (labels) or estimated (CBPE)."""

    labelled_rows: int | None = Field(None, ge=0, description="Rows with a label (measured performance).")
    label_delay_seconds: float | None = Field(None, description="Median time from prediction to its label.")
    rows: int | None = Field(None, ge=0, description="Rows estimated (CBPE).")
    skipped: str | None = Field(None, description="Why there is no verdict: InsufficientLabels.")
    failed: bool = Field(False, description="Whether any metric broke a bound.")
    metrics: list[MetricResult] = Field(default_factory=list, description="Per-metric results.")


class MultivariateResult(StatusModel):
    """Multivariate drift of the window."""

    method: str = Field(description="pcaReconstruction.")
    value: float | None = Field(None, description="Mean reconstruction error of the window.")
    reference: float | None = Field(None, description="Mean reconstruction error of the reference.")
    threshold: float | None = Field(None, description="Error above which the window drifted.")
    sampling_error: float | None = Field(None, description="Standard error of value.")
    lower: float | None = Field(None, description="value - 3 sampling errors.")
    upper: float | None = Field(None, description="value + 3 sampling errors.")
    components: int | None = Field(None, description="Principal components kept.")
    drifted: bool = Field(description="Whether the window drifted.")


class PredictionDriftResult(StatusModel):
    """Drift of the model's outputs."""

    drifted: bool = Field(description="Whether any output column drifted.")
    features: list[FeatureResult] = Field(default_factory=list, description="Per output column.")


class LastRun(StatusModel):
    """Result of the last check."""

    time: Timestamp | None = Field(None, description="When the check ran.")
    rows: Rows | None = Field(None, description="Rows compared.")
    dataset_drift: bool | None = Field(None, description="Whether the dataset drifted (driftShare reached).")
    drift_share: float | None = Field(None, ge=0, le=1, description="Share of features that drifted.")
    features: list[FeatureResult] = Field(default_factory=list, description="Per-feature results.")
    quality: QualityResult | None = Field(None, description="Data quality, when spec.quality is set.")
    performance: PerformanceResult | None = Field(None, description="Performance, when spec.performance is set.")
    estimated_performance: PerformanceResult | None = Field(
        None, description="Estimated performance, when spec.estimatedPerformance is set."
    )
    multivariate: MultivariateResult | None = Field(None, description="Multivariate drift, when set.")
    prediction_drift: PredictionDriftResult | None = Field(None, description="Prediction drift, when set.")
    failed_checks: list[str] = Field(
        default_factory=list,
        description="Checks whose verdict calls for action: quality, performance, estimatedPerformance, "
                    "multivariate, predictionDrift.",
    )
    reference_uri: str | None = Field(None, description="The reference data this check compared with.")


class Attempt(StatusModel):
    """How the last check went: a failed check keeps the previous lastRun (no false alarm)."""

    time: Timestamp | None = Field(None, description="When the check ran.")
    succeeded: bool = Field(description="Whether the check produced a result.")
    reason: str | None = Field(
        None, description=("Why it failed: DataUnreadable, MissingColumn, EmptyWindow, InsufficientData, "
                           "SchemaChanged, InvalidData, ModelDeploymentNotFound, InvalidSpec.")
    )
    message: str | None = Field(None, description="What exactly went wrong, naming the data or the column.")


class RetrainRecord(StatusModel):
    """A TrainingJob this monitor created."""

    training_job: str = Field(description="Name of the TrainingJob.")
    time: Timestamp = Field(description="When it was created.")


class DriftMonitorStatus(StatusBase):
    """Observed state of a DriftMonitor. Conditions: Ready (the last check ran), DriftDetected."""

    last_run: LastRun | None = Field(None, description="Result of the last successful check.")
    last_attempt: Attempt | None = Field(None, description="The last check, successful or not.")
    acted_on: Timestamp | None = Field(
        None, description="lastRun.time of the result whose actions (alert, retrain) were taken."
    )
    retrains: list[RetrainRecord] = Field(
        default_factory=list, description="Recent retrainings, newest last (for cooldown and maxPerDay)."
    )
    share: str | None = Field(None, description='lastRun.driftShare as a rounded percent, e.g. "67%".')
    run_now: str | None = Field(
        None, description=f"The last {RUN_NOW_ANNOTATION} annotation value a check was started for."
    )


DRIFT_MONITOR = Kind(
    kind="DriftMonitor",
    plural="driftmonitors",
    short_name="dm",
    description="DriftMonitor checks a ModelDeployment's live data for drift on a schedule, alerts and retrains.",
    spec=DriftMonitorSpec,
    status=DriftMonitorStatus,
    printer_columns=(
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Ready condition."),
        PrinterColumn("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', "Why (not) ready."),
        PrinterColumn("Drift", "boolean", ".status.lastRun.datasetDrift", "Whether the dataset drifted."),
        PrinterColumn("Share", "string", ".status.share", "Share of features that drifted, in percent."),
        PrinterColumn("Last Check", "date", ".status.lastRun.time", "When the last check ran."),
        AGE_COLUMN,
    ),
)
