from mlops_operator.k8s.status import clean, status_patch


def test_nothing_changed_is_no_patch():
    old = {"replicas": 1, "canary": None, "conditions": [{"type": "Ready", "status": "True"}]}
    assert status_patch(old, {"replicas": 1, "conditions": [{"type": "Ready", "status": "True"}]}) is None


def test_removed_keys_become_nulls_at_any_depth():
    old = {"replicas": 1, "canary": {"step": 1, "stepStartTime": "2026-01-01T00:00:00Z"}, "url": "u"}
    new = {"replicas": 2, "canary": {"step": 2}}
    assert status_patch(old, new) == {"replicas": 2, "canary": {"step": 2, "stepStartTime": None}, "url": None}


def test_lists_are_replaced_whole():
    old = {"conditions": [{"type": "A"}, {"type": "B"}]}
    assert status_patch(old, {"conditions": [{"type": "A"}]}) == {"conditions": [{"type": "A"}]}


def test_clean_drops_nones_recursively():
    assert clean({"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}]}) == {"b": {"d": 1}, "e": [{}]}
