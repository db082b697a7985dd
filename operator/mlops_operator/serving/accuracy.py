"""The canary's accuracy on feedback labels against the stable's: one check of the canary analysis that judges what
the model predicts, not how it answers.

Reads (`labelled`, in a thread: it is file or object-store I/O): the prediction log's rows of the last interval
(datasets.py prunes the `date=`/`hour=` partitions to it) with their `request_id`, `revision` and prediction column,
and the labels posted to the agents' /v1/feedback in the same interval (`<log>/feedback/`), joined by request id.
A label comes after its prediction, so the labels of the interval's predictions are in the interval too (those
that come later are not counted). A request id labelled twice counts its last label. A request of several rows
(a batch) is one label for each of its rows.

Judges (`judge`, pure): Inconclusive while either revision has fewer than `minLabelled` labelled answers (labels
are slow; a quiet canary must not fail for want of them); else Successful when the canary's accuracy is at least
the stable's minus `maxDegradation`, else Failed.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from ..api.modeldeployment import AccuracyCheck
from ..k8s.conditions import format_time

NAME = "accuracy"
CANARY, STABLE = "canary", "stable"


@dataclasses.dataclass(frozen=True)
class Labelled:
    """Labelled answers and correct ones per revision in the interval, or why they could not be counted."""

    answers: dict[str, int] = dataclasses.field(default_factory=dict)
    correct: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None

    def accuracy(self, revision: str) -> float | None:
        n = self.answers.get(revision, 0)
        return self.correct.get(revision, 0) / n if n else None


def _same(prediction: object, label: object) -> bool:
    """A prediction equals its label as numbers when both are numbers (a class 1 logged as 1.0), else as text."""
    try:
        return float(prediction) == float(label)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(prediction) == str(label)


def labelled(log_uri: str, rule: AccuracyCheck, window_seconds: int, now: datetime) -> Labelled:
    """Counts of the interval ending `now`, read from the prediction log at `log_uri`. Blocking I/O."""
    from .. import datasets  # pyarrow: imported by the first canary with model checks, not by every operator

    window = datasets.Window(duration_seconds=window_seconds)
    try:
        try:
            labels_table = datasets.open_source(log_uri.rstrip("/") + "/" + datasets.FEEDBACK, "parquet", window,
                                                now).read(["request_id", "label"], window, now)
            predictions = datasets.open_source(log_uri, "parquet", window, now).read(
                ["request_id", "revision", rule.prediction_column], window, now)
        except datasets.DataError as err:
            if err.reason == "EmptyWindow":
                return Labelled()
            raise
    except datasets.DataError as err:
        return Labelled(error=f"{err.reason}: {err.message}")
    labels = dict(zip(labels_table.column("request_id").to_pylist(), labels_table.column("label").to_pylist()))
    answers: dict[str, int] = {}
    correct: dict[str, int] = {}
    for request_id, revision, predicted in zip(predictions.column("request_id").to_pylist(),
                                               predictions.column("revision").to_pylist(),
                                               predictions.column(rule.prediction_column).to_pylist()):
        if request_id not in labels or predicted is None:
            continue
        answers[revision] = answers.get(revision, 0) + 1
        correct[revision] = correct.get(revision, 0) + _same(predicted, labels[request_id])
    return Labelled(answers, correct)


def judge(rule: AccuracyCheck, counts: Labelled, window: str, now: datetime) -> dict:
    """The check's result for one interval (an item of status.canary.analysis.checks)."""
    def result(verdict: str, value: float | None, threshold: str | None, message: str) -> dict:
        return {"name": NAME, "verdict": verdict, "value": None if value is None else round(value, 6),
                "threshold": threshold, "message": message, "time": format_time(now)}

    if counts.error is not None:
        return result("Inconclusive", None, None, f"prediction log: {counts.error}")
    for revision in (CANARY, STABLE):
        n = counts.answers.get(revision, 0)
        if n < rule.min_labelled:
            return result("Inconclusive", counts.accuracy(CANARY), None,
                          f"the {revision} has {n} labelled answers in {window}, fewer than minLabelled "
                          f"{rule.min_labelled}")
    value, stable = counts.accuracy(CANARY), counts.accuracy(STABLE)
    assert value is not None and stable is not None
    bound = stable - rule.max_degradation
    ok = value >= bound
    return result("Successful" if ok else "Failed", value, f">= {bound:.4g}",
                  f"accuracy {value:.4g} on {counts.answers[CANARY]} labelled answers is "
                  f"{'at least' if ok else 'below'} {bound:.4g} (stable {stable:.4g} on {counts.answers[STABLE]} "
                  f"- {rule.max_degradation:.4g})")
