"""The closed loop's example (examples/loop/) and the pure parts of its driver (mlops_localcluster/demo.py):
the manifests are valid objects once filled in, the trainer learns and writes what the DriftMonitor and MLServer
read, it trains on the prediction log's labelled rows of its window, and the timeline picture has every step."""

from __future__ import annotations

import importlib.util
import pathlib
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlops_localcluster import demo
from mlops_operator.agent.parquet import parquet_bytes
from mlops_operator.api import validate_object

ROOT = pathlib.Path(__file__).resolve().parents[2]
VALUES = {"NAMESPACE": "loop", "ROOT": "/srv/loop", "PROMETHEUS_URL": "http://127.0.0.1:30001",
          "ALERTMANAGER_URL": "http://127.0.0.1:30002", "FIRST_MODEL": "file:///srv/loop/models/fraud-v1/"}


@pytest.fixture(scope="module")
def fraud():
    spec = importlib.util.spec_from_file_location("fraud", ROOT / "examples" / "loop" / "fraud.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_manifests_filled_in_are_valid_objects_and_name_the_same_features(fraud):
    docs = demo.render(VALUES)
    assert "${" not in str(docs)
    kinds = {f"{d['kind']}/{d['metadata']['name']}" for d in docs}
    assert {"TrainingJob/fraud-v1", "ModelDeployment/fraud", "DriftMonitor/fraud", "Deployment/traffic",
            "Deployment/prometheus", "Deployment/alertmanager"} <= kinds
    by = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    for name in ("TrainingJob/fraud-v1", "ModelDeployment/fraud", "DriftMonitor/fraud"):
        validate_object({**by[name], "metadata": {**by[name]["metadata"], "namespace": "loop"}})
    md, dm = by["ModelDeployment/fraud"]["spec"], by["DriftMonitor/fraud"]["spec"]
    assert md["monitoring"]["predictionLog"]["columns"] == [f["name"] for f in dm["features"]] == fraud.FEATURES
    assert demo.FEATURES == fraud.FEATURES
    assert "model" not in md["rollout"]["canary"]  # the policy for the canaries the retrainings bring


def test_the_shift_moves_every_drifting_feature_and_the_rule_stays(fraud):
    x0, y0 = fraud.payments(0, 5000, np.random.default_rng(0))
    x1, y1 = fraud.payments(1, 5000, np.random.default_rng(0))
    assert np.median(x1[:, 0]) > 2 * np.median(x0[:, 0]) and x1[:, 1].mean() > 2 * x0[:, 1].mean()
    assert x1[:, 3].mean() > x0[:, 3].mean() + 0.1
    assert y1.mean() > 5 * y0.mean()  # the same rule, on riskier payments, finds more fraud
    again, _ = fraud.payments(0, 5000, np.random.default_rng(0))
    assert (again == x0).all()  # reproducible


def test_train_writes_a_model_and_its_reference(fraud, tmp_path, monkeypatch):
    import joblib

    monkeypatch.setenv("OUTPUT_MODEL_URI", f"file://{tmp_path}/m/")
    monkeypatch.setenv("TRAIN_ERA", "1")
    monkeypatch.delenv("DATASET_URI", raising=False)
    assert fraud.train() == 0
    model = joblib.load(tmp_path / "m" / "model.joblib")
    reference = pq.read_table(tmp_path / "m" / "reference.parquet")
    assert reference.column_names == [*fraud.FEATURES, "label"] and reference.num_rows == 4000
    x, y = fraud.payments(1, 2000, np.random.default_rng(9))
    assert (model.predict(x) == y).mean() > 0.8
    monkeypatch.setenv("SHUFFLE_LABELS", "1")
    monkeypatch.setenv("OUTPUT_MODEL_URI", f"file://{tmp_path}/bad/")
    assert fraud.train() == 0
    bad = joblib.load(tmp_path / "bad" / "model.joblib")
    assert (bad.predict(x) == y).mean() < (model.predict(x) == y).mean() - 0.1


def test_a_retraining_learns_from_the_logged_rows_of_its_window_joined_with_their_labels(fraud, tmp_path):
    now = int(time.time() * 1e6)
    x, y = fraud.payments(1, 300, np.random.default_rng(3))
    rows = [{"timestamp": now - (10 if i < 250 else 100) * 1_000_000, "request_id": f"r{i}", "revision": "stable",
             **{name: float(x[i, j]) for j, name in enumerate(fraud.FEATURES)}, "output_predict": 0}
            for i in range(300)]  # the last 50 rows are 100 s old: outside a 60 s window
    (tmp_path / "date=2026-12-01" / "hour=04").mkdir(parents=True)
    (tmp_path / "date=2026-12-01" / "hour=04" / "stable-p-1.parquet").write_bytes(parquet_bytes(rows))
    (tmp_path / "feedback").mkdir()
    labels = [{"timestamp": now, "request_id": f"r{i}", "label": int(y[i])} for i in range(0, 300, 2)]
    (tmp_path / "feedback" / "stable-p-1.parquet").write_bytes(parquet_bytes(labels))
    got_x, got_y = fraud.logged_rows(f"file://{tmp_path}", 60)
    assert len(got_y) == 125  # the even rows of the 250 in the window
    assert sorted(got_y.tolist()) == sorted(int(y[i]) for i in range(0, 250, 2))
    assert sorted(got_x[:, 0].tolist()) == sorted(float(x[i, 0]) for i in range(0, 250, 2))


def test_the_timeline_picture_has_a_dot_and_a_label_per_step():
    steps = [demo.Step(0, "start", ""), demo.Step(95.5, "drift <75%> & more", "kubectl get dm")]
    svg = demo.timeline_svg(steps, "make demo")
    assert svg.count("<circle") == 2 and "drift &lt;75%&gt; &amp; more" in svg and "1:30" in svg
