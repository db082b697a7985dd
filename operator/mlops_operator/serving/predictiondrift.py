"""The canary's predictions against the stable's: one check of the canary analysis that sees a model answering
something else than the stable, even with every answer a 200 in no time.

Reads (`predictions`, in a thread: file or object-store I/O): the prediction log's rows of the last interval
(datasets.py), the prediction columns (`columns`, or every `output_*` column the log has) per revision.
Judges (`judge`, pure): the stable's values are the reference and the canary's the current data of the drift
engine (drift/engine.py), with the check's test and threshold, as a DriftMonitor compares features; a column of
at most CLASSES distinct values (a classifier's labels, even logged as numbers) is categorical. Inconclusive
while either revision logged fewer than minRequests rows in the interval; Failed when any column drifted.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

from ..api.modeldeployment import PredictionDriftCheck
from ..k8s.conditions import format_time

if TYPE_CHECKING:
    import numpy as np
# numpy, pyarrow and the drift engine are imported by the functions that read and judge: an operator whose
# canaries have no predictionDrift check never loads them (they would add about 150 MB to every operator).

NAME = "predictionDrift"
CANARY, STABLE = "canary", "stable"
OUTPUT_PREFIX = "output_"
CLASSES = 20


def _kind(stable: np.ndarray, canary: np.ndarray) -> str | None:
    """categorical for class labels (few distinct values on both sides), else left to the engine to infer."""
    import numpy as np

    values = np.concatenate([stable, canary])
    return "categorical" if len(set(values.tolist())) <= CLASSES else None


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The interval's prediction columns per revision, or why they could not be read."""

    values: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def rows(self, revision: str) -> int:
        columns = self.values.get(revision) or {}
        return len(next(iter(columns.values()))) if columns else 0


def predictions(log_uri: str, rule: PredictionDriftCheck, window_seconds: int, now: datetime) -> Predictions:
    """The prediction columns of the interval ending `now`, per revision. Blocking I/O."""
    import numpy as np

    from .. import datasets

    window = datasets.Window(duration_seconds=window_seconds)
    try:
        try:
            source = datasets.open_source(log_uri, "parquet", window, now)
            columns = list(rule.columns) or [n for n in source.schema.names if n.startswith(OUTPUT_PREFIX)]
            if not columns:
                return Predictions(error=f"{log_uri}: no output_* column in the prediction log; set columns")
            table = source.read(["revision", *columns], window, now)
        except datasets.DataError as err:
            if err.reason == "EmptyWindow":
                return Predictions()
            raise
    except datasets.DataError as err:
        return Predictions(error=f"{err.reason}: {err.message}")
    revisions = np.asarray(table.column("revision").to_pylist(), dtype=object)
    arrays = datasets.to_arrays(table, columns)
    return Predictions({rev: {c: arrays[c][revisions == rev] for c in columns} for rev in (CANARY, STABLE)})


def judge(rule: PredictionDriftCheck, found: Predictions, min_rows: int, window: str, now: datetime) -> dict:
    """The check's result for one interval (an item of status.canary.analysis.checks)."""
    from ..drift.engine import DriftInputError, FeatureSpec, InsufficientData, compute_drift
    from ..drift.profile import build_profile

    def result(verdict: str, value: float | None, threshold: str | None, message: str) -> dict:
        return {"name": NAME, "verdict": verdict, "value": None if value is None else round(value, 6),
                "threshold": threshold, "message": message, "time": format_time(now)}

    if found.error is not None:
        return result("Inconclusive", None, None, f"prediction log: {found.error}")
    least = max(min_rows, 1)
    for revision in (CANARY, STABLE):
        if found.rows(revision) < least:
            return result("Inconclusive", None, None, f"the {revision} logged {found.rows(revision)} predictions in "
                                                      f"{window}, fewer than minRequests {least}")
    stable, canary = found.values[STABLE], found.values[CANARY]
    specs = [FeatureSpec(name=c, type=_kind(stable[c], canary[c]), test=rule.test, threshold=rule.threshold)
             for c in stable]
    try:
        drift = compute_drift(build_profile(stable), canary, specs, drift_share=1.0, min_rows=least)
    except (DriftInputError, InsufficientData) as err:
        return result("Inconclusive", None, None, str(err))
    worst = max(drift.features, key=lambda f: f.drifted)
    words = ", ".join(f"{f.name} {f.test} {f.statistic:.4g}" + (" drifted" if f.drifted else "")
                      for f in drift.features)
    bound = f"{'p >=' if worst.p_value is not None else '<'} {worst.threshold:.4g}"
    verdict = "Failed" if any(f.drifted for f in drift.features) else "Successful"
    value = worst.p_value if worst.p_value is not None else worst.statistic
    return result(verdict, value, bound, f"canary predictions against the stable's over {window} "
                                          f"({found.rows(CANARY)} and {found.rows(STABLE)} rows): {words}")
