"""The canary analysis' checks on the model, from the prediction log (written in the agent's own layout and Arrow
conversion): accuracy (the interval's rows joined with the feedback labels by request id, counted per revision)
and predictionDrift (the canary's predictions against the stable's with the drift engine)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from test_monitoring_data import log_file

from mlops_operator.agent.parquet import parquet_bytes
from mlops_operator.api import validate_object
from mlops_operator.api.modeldeployment import AccuracyCheck, PredictionDriftCheck
from mlops_operator.serving import accuracy, analysis, predictiondrift
from mlops_operator.serving.analysis import Answer

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)
RULE = AccuracyCheck(max_degradation=0.1, min_labelled=5)


def feedback(root: Path, start: datetime, labels: dict[str, object], name: str = "f") -> None:
    path = root / "feedback" / f"date={start:%Y-%m-%d}" / f"hour={start:%H}" / f"stable-{name}-000001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    micros = int(start.timestamp() * 1e6)
    path.write_bytes(parquet_bytes([{"timestamp": micros + i, "request_id": rid, "label": label}
                                    for i, (rid, label) in enumerate(labels.items())]))


def logged(root: Path, revision: str, predictions: list[int], start: datetime) -> list[str]:
    ids = [f"{revision}-{i}" for i in range(len(predictions))]
    log_file(root, start, len(predictions), revision=revision, pod=revision, request_id=ids,
             output_predict=[float(p) for p in predictions])
    return ids


def test_counts_join_the_intervals_predictions_with_their_labels_per_revision(tmp_path):
    start = NOW - timedelta(seconds=50)
    stable = logged(tmp_path, "stable", [1, 0, 1, 1, 0, 1, 0, 1], start)
    canary = logged(tmp_path, "canary", [1, 1, 1, 1, 1, 1], start)
    truth = [1, 0, 1, 1, 0, 1, 0, 0]  # the stable is wrong once
    labels = {rid: truth[i] for i, rid in enumerate(stable)}
    labels.update({rid: [1, 0, 1, 0, 1, 0][i] for i, rid in enumerate(canary)})  # the canary right 3 of 6
    del labels[canary[0]]  # never labelled: not counted
    feedback(tmp_path, NOW - timedelta(seconds=20), labels)
    feedback(tmp_path, NOW - timedelta(seconds=10), {canary[1]: 1}, name="g")  # relabelled: the last label counts
    counts = accuracy.labelled(f"file://{tmp_path}", RULE, 60, NOW)
    assert counts.error is None
    assert (counts.answers, counts.correct) == ({"stable": 8, "canary": 5}, {"stable": 7, "canary": 3})
    # an older interval's rows are not in this one
    assert accuracy.labelled(f"file://{tmp_path}", RULE, 60, NOW + timedelta(minutes=5)).answers == {}


def test_labels_may_be_text_and_predictions_numbers(tmp_path):
    ids = logged(tmp_path, "canary", [1, 2], NOW - timedelta(seconds=5))
    feedback(tmp_path, NOW - timedelta(seconds=1), {ids[0]: "1", ids[1]: "setosa"})
    assert accuracy.labelled(f"file://{tmp_path}", RULE, 60, NOW).correct == {"canary": 1}


def test_a_log_without_the_prediction_column_is_inconclusive_and_says_which(tmp_path):
    logged(tmp_path, "canary", [1], NOW - timedelta(seconds=5))
    feedback(tmp_path, NOW - timedelta(seconds=1), {"canary-0": 1})
    rule = AccuracyCheck(max_degradation=0.1, prediction_column="output_label")
    counts = accuracy.labelled(f"file://{tmp_path}", rule, 60, NOW)
    result = accuracy.judge(rule, counts, "60s", NOW)
    assert result["verdict"] == "Inconclusive" and "'output_label'" in result["message"]


@pytest.mark.parametrize("answers, correct, verdict, words", [
    ({"canary": 4, "stable": 50}, {"canary": 4, "stable": 50}, "Inconclusive", "the canary has 4 labelled answers"),
    ({"canary": 10, "stable": 3}, {"canary": 10, "stable": 3}, "Inconclusive", "the stable has 3 labelled answers"),
    ({"canary": 10, "stable": 10}, {"canary": 8, "stable": 9}, "Successful",
     "accuracy 0.8 on 10 labelled answers is at least 0.8"),
    ({"canary": 10, "stable": 10}, {"canary": 5, "stable": 9}, "Failed",
     "accuracy 0.5 on 10 labelled answers is below 0.8"),
])
def test_the_canary_may_be_at_most_max_degradation_less_accurate(answers, correct, verdict, words):
    result = accuracy.judge(RULE, accuracy.Labelled(answers, correct), "60s", NOW)
    assert result["verdict"] == verdict and result["message"].startswith(words), result
    assert result["name"] == "accuracy"


def test_the_analysis_judges_accuracy_last_and_a_quiet_canary_is_inconclusive_for_it_too():
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m", "namespace": "ml"},
            "spec": {"model": {"uri": "s3://m/1"}, "runtime": {"preset": "mlserver"},
                     "monitoring": {"predictionLog": {"uri": "s3://logs/m"}},
                     "rollout": {"canary": {"model": {"uri": "s3://m/2"}, "steps": [{"weight": 50}], "analysis": {
                         "prometheusUrl": "http://prom:9090", "minRequests": 10, "successRate": {"min": 0.9},
                         "accuracy": {"maxDegradation": 0.1, "minLabelled": 5}}}}}}
    rule = validate_object(body).rollout.canary.analysis
    busy = {"requests": Answer({"canary": 50, "stable": 50}), "errors": Answer({})}
    bad = accuracy.Labelled({"canary": 20, "stable": 20}, {"canary": 5, "stable": 19})
    results = analysis.judge(rule, busy, NOW, bad)
    assert [(r["name"], r["verdict"]) for r in results] == [("successRate", "Successful"), ("accuracy", "Failed")]
    assert analysis.verdict(results) == "Failed"
    quiet = {"requests": Answer({"canary": 3, "stable": 50}), "errors": Answer({})}
    assert [r["verdict"] for r in analysis.judge(rule, quiet, NOW, bad)] == ["Inconclusive", "Inconclusive"]


# --- predictionDrift: the canary's predictions against the stable's ------------------------------------------

def test_prediction_drift_reads_the_output_columns_per_revision_and_fails_a_canary_that_answers_otherwise(tmp_path):
    start = NOW - timedelta(seconds=50)
    rng = np.random.default_rng(4)
    logged(tmp_path, "stable", list(rng.integers(0, 2, 200)), start)
    logged(tmp_path, "canary", [0] * 190 + [1] * 10, start)  # answers almost always 0: not the stable's mix
    rule = PredictionDriftCheck(test="chisquare", threshold=0.05)
    found = predictiondrift.predictions(f"file://{tmp_path}", rule, 60, NOW)
    assert (found.error, found.rows("canary"), found.rows("stable")) == (None, 200, 200)
    assert set(found.values["canary"]) == {"output_predict"}  # every output_* column
    result = predictiondrift.judge(rule, found, 50, "60s", NOW)
    assert result["verdict"] == "Failed" and "output_predict chisquare" in result["message"], result
    assert result["threshold"] == "p >= 0.05" and result["value"] < 0.05

    same = tmp_path / "same"
    logged(same, "stable", list(rng.integers(0, 2, 200)), start)
    logged(same, "canary", list(rng.integers(0, 2, 200)), start)
    result = predictiondrift.judge(rule, predictiondrift.predictions(f"file://{same}", rule, 60, NOW), 50, "60s", NOW)
    assert result["verdict"] == "Successful", result


def test_prediction_drift_is_inconclusive_on_too_few_rows_or_no_output_column(tmp_path):
    rule = PredictionDriftCheck()
    found = predictiondrift.Predictions({"canary": {"output_predict": np.zeros(5)},
                                         "stable": {"output_predict": np.zeros(500)}})
    result = predictiondrift.judge(rule, found, 50, "60s", NOW)
    assert result["verdict"] == "Inconclusive" and "the canary logged 5 predictions" in result["message"]
    log_file(tmp_path, NOW - timedelta(seconds=5), 3, revision="canary")  # features only, no output_ column
    found = predictiondrift.predictions(f"file://{tmp_path}", rule, 60, NOW)
    assert "no output_* column" in (found.error or "")
    assert predictiondrift.judge(rule, found, 1, "60s", NOW)["verdict"] == "Inconclusive"


def test_the_operator_loads_the_data_stack_only_for_a_canary_with_model_checks():
    # pyarrow, numpy, scipy and pandas are about 150 MB: importing the operator must not load them (they come with
    # the first accuracy or predictionDrift check). A fresh process, since this one has them loaded already.
    import subprocess
    import sys

    code = ("import sys, mlops_operator.handlers, mlops_operator.serving.accuracy, "
            "mlops_operator.serving.predictiondrift\n"
            "print(sorted(m for m in ('pyarrow', 'numpy', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
