"""DriftMonitor: compare a ModelDeployment's live inputs with reference data on a schedule; alert and retrain.

Spec and status shapes only; semantic checks live in api/validation.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
    """The data the model was trained on (or any data known to be good)."""

    uri: str = Field(min_length=1, description="Where the data is: s3://, gs://, hf://, pvc://, http(s):// or file://.")
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


class LastRun(StatusModel):
    """Result of the last check."""

    time: Timestamp | None = Field(None, description="When the check ran.")
    rows: Rows | None = Field(None, description="Rows compared.")
    dataset_drift: bool | None = Field(None, description="Whether the dataset drifted (driftShare reached).")
    drift_share: float | None = Field(None, ge=0, le=1, description="Share of features that drifted.")
    features: list[FeatureResult] = Field(default_factory=list, description="Per-feature results.")


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
