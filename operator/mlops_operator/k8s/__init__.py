"""Kubernetes helpers for the controllers. Re-exported here: the pure ones (conditions, labels, owner references)."""

from .conditions import (
    condition,
    find_condition,
    format_time,
    invalid_spec,
    is_true,
    merge_conditions,
    set_condition,
)
from .labels import kind_label, label_value, labels, selector_labels
from .ownership import owner_reference, set_owner

__all__ = [
    "condition",
    "find_condition",
    "format_time",
    "invalid_spec",
    "is_true",
    "merge_conditions",
    "set_condition",
    "labels",
    "kind_label",
    "label_value",
    "selector_labels",
    "owner_reference",
    "set_owner",
]
