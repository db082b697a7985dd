"""The model checks of one run (monitoring/checks.py) on plain columns: each check's verdict, its status fields
(valid against the status model), and the case the issue names: a label flip with unchanged inputs fails
performance while input drift sees nothing."""

import numpy as np
import pytest

from mlops_operator.api import DRIFT_MONITOR, InvalidSpec, parse_spec
from mlops_operator.api.driftmonitor import LastRun
from mlops_operator.drift import compute_drift
from mlops_operator.drift.engine import DriftInputError
from mlops_operator.drift.profile import build_profile
from mlops_operator.monitoring.checks import Feedback, evaluate, needed_columns

FEATURES = ["x1", "x2", "x3"]
BASE = {"modelDeployment": {"name": "m"}, "reference": {"uri": "file:///ref.parquet"}, "interval": "1h"}


def spec(**checks):
    return parse_spec(DRIFT_MONITOR, {**BASE, **checks})


def world(rng, rows, flip=0.0):
    """Inputs, the model's score and prediction, and the true label; ``flip`` is the share of labels flipped."""
    x = {f: rng.standard_normal(rows) for f in FEATURES}
    score = 1 / (1 + np.exp(-2.5 * (x["x1"] + 0.5 * x["x2"])))
    label = (rng.random(rows) < score).astype(np.int64)
    flipped = rng.random(rows) < flip
    label[flipped] = 1 - label[flipped]
    return {**x, "score": score, "pred": (score >= 0.5).astype(np.int64), "label": label,
            "request_id": np.array([f"r{i}" for i in range(rows)])}


PERFORMANCE = {"task": "classification", "labelColumn": "label", "predictionColumn": "pred", "scoreColumn": "score",
               "metrics": [{"name": "accuracy", "maxDrop": 0.05}, {"name": "roc_auc", "min": 0.7}]}


def run(s, reference, current, feedback=None):
    out = evaluate(s, reference, current, FEATURES, feedback)
    LastRun.model_validate(out)  # the runner can write it: the status model accepts every field
    return out


def test_label_flip_with_unchanged_inputs_fails_performance_but_not_input_drift():
    rng = np.random.default_rng(0)
    reference, current = world(rng, 20_000), world(rng, 5000, flip=0.3)
    inputs = compute_drift(build_profile({f: reference[f] for f in FEATURES}), {f: current[f] for f in FEATURES})
    assert not inputs.dataset_drift
    labels = current.pop("label")
    feedback = Feedback(request_ids=current["request_id"][::2], labels=labels[::2])  # half the labels came back
    out = run(spec(performance=PERFORMANCE), reference, current, feedback)
    perf = out["performance"]
    assert perf["labelledRows"] == 2500 and perf["failed"] and out["failedChecks"] == ["performance"]
    accuracy = perf["metrics"][0]
    assert accuracy["name"] == "accuracy" and accuracy["reference"] - accuracy["value"] > 0.05
    assert "maxDrop" in accuracy["reason"]

    healthy = world(rng, 5000)
    assert run(spec(performance=PERFORMANCE), reference, healthy)["failedChecks"] == []  # labels in the window


def test_too_few_labels_give_no_verdict():
    rng = np.random.default_rng(1)
    reference, current = world(rng, 2000), world(rng, 500, flip=0.5)
    labels = current.pop("label")
    out = run(spec(performance=PERFORMANCE), reference, current,
              Feedback(current["request_id"][:10], labels[:10]))
    assert out["performance"] == {"labelledRows": 10, "failed": False, "metrics": [], "skipped": "InsufficientLabels"}
    assert out["failedChecks"] == []


def test_cbpe_sees_a_drop_from_scores_alone():
    rng = np.random.default_rng(2)
    reference = world(rng, 20_000)
    current = world(rng, 5000)
    for f in FEATURES:  # the model meets rows near its decision boundary: less sure, so less accurate
        current[f] = current[f] * 0.2
    current["score"] = 1 / (1 + np.exp(-2.5 * (current["x1"] + 0.5 * current["x2"])))
    current["pred"] = (current["score"] >= 0.5).astype(np.int64)
    del current["label"]
    check = {"scoreColumn": "score", "labelColumn": "label", "metrics": [{"name": "accuracy", "maxDrop": 0.05},
                                                                         {"name": "f1", "min": 0.1}]}
    out = run(spec(estimatedPerformance=check), reference, current)
    est = out["estimatedPerformance"]
    accuracy = est["metrics"][0]
    assert est["rows"] == 5000 and est["failed"] and out["failedChecks"] == ["estimatedPerformance"]
    assert accuracy["lower"] <= accuracy["value"] <= accuracy["upper"] < accuracy["reference"]
    assert run(spec(estimatedPerformance=check), reference, world(rng, 5000))["failedChecks"] == []


def test_quality_prediction_drift_and_multivariate():
    rng = np.random.default_rng(3)
    reference, current = world(rng, 5000), world(rng, 2000)
    reference["x3"] = reference["x1"] + 0.1 * rng.standard_normal(5000)
    current["x3"] = -current["x1"] + 0.1 * rng.standard_normal(2000)  # the relation between columns turns
    current["x1"] = current["x1"].copy()
    current["x1"][:200] = np.nan
    current["score"] = np.clip(current["score"] + 0.3, 0, 1)
    s = spec(quality={}, predictionDrift={"columns": [{"name": "score"}]},
             multivariate={"columns": ["x1", "x2", "x3"]})
    out = run(s, reference, current)
    assert out["quality"]["failedColumns"] == ["x1"]
    assert out["predictionDrift"]["drifted"] and out["predictionDrift"]["features"][0]["name"] == "score"
    assert out["multivariate"]["drifted"]
    assert out["failedChecks"] == ["quality", "predictionDrift", "multivariate"]
    calm_window = world(rng, 2000)
    calm_window["x3"] = calm_window["x1"] + 0.1 * rng.standard_normal(2000)
    calm = run(s, reference, calm_window)
    assert calm["failedChecks"] == [] and calm["quality"]["failed"] is False


def test_needed_columns_and_errors_name_the_column():
    s = spec(performance=PERFORMANCE, estimatedPerformance={"scoreColumn": "score", "labelColumn": "label",
                                                              "metrics": [{"name": "f1", "min": 0.5}]})
    reference, current = needed_columns(s, FEATURES)
    assert reference == {*FEATURES, "label", "pred", "score"}
    assert current == {*FEATURES, "pred", "score", "request_id"}
    # absolute bounds only: the reference (a model's training data, without predictions) needs no more columns
    absolute = {**PERFORMANCE, "metrics": [{"name": "accuracy", "min": 0.7}]}
    assert needed_columns(spec(performance=absolute), FEATURES)[0] == set(FEATURES)
    rng = np.random.default_rng(4)
    ref = world(rng, 500)
    with pytest.raises(ValueError, match="column 'pred'"):
        evaluate(spec(performance=PERFORMANCE), ref, {"x1": ref["x1"]}, FEATURES)
    with pytest.raises(DriftInputError, match="column 'nope'"):
        evaluate(spec(quality={"columns": ["nope"]}), ref, ref, FEATURES)


def test_spec_errors_name_the_field():
    with pytest.raises(InvalidSpec, match=r"spec.performance: scoreColumn: roc_auc needs"):
        spec(performance={**PERFORMANCE, "scoreColumn": None})
    with pytest.raises(InvalidSpec, match=r"metrics\[0\].name: mae is not a classification metric"):
        spec(performance={**PERFORMANCE, "metrics": [{"name": "mae", "max": 1}]})
    with pytest.raises(InvalidSpec, match=r"spec.estimatedPerformance: metrics\[0\].name: precision is not a CBPE"):
        spec(estimatedPerformance={"scoreColumn": "s", "labelColumn": "y",
                                   "metrics": [{"name": "precision", "min": 0.5}]})
    with pytest.raises(InvalidSpec, match=r"spec.quality.maxMissingShare"):
        spec(quality={"maxMissingShare": 1.5})
