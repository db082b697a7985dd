"""Conditions keep lastTransitionTime unless status changes, and carry observedGeneration."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.common import Condition
from mlops_operator.k8s.conditions import (
    condition,
    find_condition,
    format_time,
    invalid_spec,
    is_true,
    merge_conditions,
    set_condition,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=5)


def test_condition_shape_matches_metav1_condition():
    built = condition("Ready", True, "Available", "2/2 replicas ready", observed_generation=4, now=T0)
    assert built == {"type": "Ready", "status": "True", "reason": "Available", "message": "2/2 replicas ready",
                     "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": 4}
    Condition.model_validate(built)  # and it fits the status schema
    assert "observedGeneration" not in condition("Ready", "Unknown", "Pending", now=T0)


def test_format_time():
    assert format_time(datetime(2024, 5, 1, 14, 0, 0, 999, tzinfo=timezone(timedelta(hours=2)))) == \
        "2024-05-01T12:00:00Z"
    assert format_time(datetime(2024, 5, 1, 12, 0, 0)) == "2024-05-01T12:00:00Z"  # naive = UTC


def test_default_clock_is_now():
    stamp = datetime.strptime(condition("Ready", True, "Ok")["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(stamp.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)) < timedelta(seconds=5)


@pytest.mark.parametrize("reason", ["invalid spec", "", "Bad-Reason", "1Reason"])
def test_reason_must_be_camel_case(reason):
    with pytest.raises(ValueError):
        condition("Ready", False, reason, now=T0)


def test_status_must_be_known():
    with pytest.raises(ValueError):
        condition("Ready", "Yes", "Ok", now=T0)


def test_long_messages_are_cut():
    assert len(condition("Ready", False, "Failed", "x" * 40000, now=T0)["message"]) == 32768


def test_same_status_keeps_transition_time_but_updates_the_rest():
    before = [condition("Ready", False, "Progressing", "0/2", observed_generation=1, now=T0)]
    after = set_condition(before, condition("Ready", False, "Unschedulable", "0/3 nodes", observed_generation=2,
                                            now=T1))
    assert after == [{"type": "Ready", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes",
                      "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": 2}]


def test_status_change_moves_transition_time():
    before = [condition("Ready", False, "Progressing", now=T0)]
    after = set_condition(before, condition("Ready", True, "Available", now=T1))
    assert after[0]["lastTransitionTime"] == "2024-05-01T12:05:00Z"
    assert after[0]["status"] == "True"


def test_other_types_are_kept_in_place_and_new_ones_appended():
    before = [condition("Ready", True, "Available", now=T0), condition("Progressing", True, "Rolling", now=T0)]
    snapshot = copy.deepcopy(before)
    after = set_condition(before, condition("Available", True, "MinimumReplicas", now=T1))
    assert [c["type"] for c in after] == ["Ready", "Progressing", "Available"]
    assert before == snapshot  # the input is not mutated
    after = set_condition(after, condition("Progressing", False, "Complete", now=T1))
    assert [c["type"] for c in after] == ["Ready", "Progressing", "Available"]
    assert find_condition(after, "Progressing")["reason"] == "Complete"


def test_merge_and_read():
    merged = merge_conditions(None, [condition("Ready", True, "Available", now=T0),
                                     condition("DriftDetected", False, "NoDrift", now=T0)])
    merged = merge_conditions(merged, [condition("Ready", True, "Available", "again", now=T1)])
    assert find_condition(merged, "Ready")["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert find_condition(merged, "Ready")["message"] == "again"
    assert is_true(merged, "Ready") and not is_true(merged, "DriftDetected") and not is_true(merged, "Missing")
    assert find_condition(merged, "Missing") is None


def test_invalid_spec_condition_names_the_fields():
    errors = ["spec.rollout.canary.model.uri: a canary needs a model", "spec.replicas: must be >= 0"]
    built = invalid_spec(errors, observed_generation=7, now=T0)
    assert (built["type"], built["status"], built["reason"]) == ("Ready", "False", "InvalidSpec")
    assert built["message"] == "; ".join(errors)
    assert built["observedGeneration"] == 7
