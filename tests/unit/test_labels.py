"""Recommended labels on every child object, and a stable subset to select on."""

from __future__ import annotations

import re

from mlops_operator.k8s.labels import label_value, labels, selector_labels

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_labels_of_a_child():
    assert labels("ModelDeployment", "iris", "predictor") == {
        "app.kubernetes.io/name": "modeldeployment",
        "app.kubernetes.io/instance": "iris",
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/managed-by": "mlops-operator",
        "mlops.dev/modeldeployment": "iris",
    }
    assert labels("TrainingJob", "ft", "worker", app="torchrun")["app.kubernetes.io/name"] == "torchrun"


def test_selector_is_a_subset():
    full = labels("TrainingJob", "finetune", "worker")
    for selector in (selector_labels("TrainingJob", "finetune", "worker"), selector_labels("TrainingJob", "finetune")):
        assert selector.items() <= full.items()
    assert selector_labels("DriftMonitor", "fraud") == {"mlops.dev/driftmonitor": "fraud"}
    assert selector_labels("ModelDeployment", "iris", "canary") == {
        "mlops.dev/modeldeployment": "iris", "app.kubernetes.io/component": "canary"}


def test_long_values_still_make_valid_labels():
    long = "a" * 60 + "-" + "b" * 100
    value = label_value(long)
    assert len(value) <= 63 and LABEL_VALUE.match(value)
    assert value == label_value(long)  # stable
    assert value != label_value(long + "c")  # distinct
    assert label_value("short") == "short"
    assert labels("ModelDeployment", long, "predictor")["app.kubernetes.io/instance"] == value
