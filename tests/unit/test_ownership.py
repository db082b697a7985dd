"""Children are controlled by their custom resource."""

from __future__ import annotations

import copy

import pytest

from mlops_operator.k8s.ownership import owner_reference, set_owner

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "iris", "namespace": "team-a", "uid": "1234-abcd"}, "spec": {}}
REFERENCE = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "name": "iris", "uid": "1234-abcd",
             "controller": True, "blockOwnerDeletion": True}


def test_owner_reference():
    assert owner_reference(OWNER) == REFERENCE


def test_owner_reference_needs_uid():
    owner = copy.deepcopy(OWNER)
    del owner["metadata"]["uid"]
    with pytest.raises(ValueError, match="metadata.uid"):
        owner_reference(owner)


def test_set_owner_copies_and_defaults_namespace():
    child = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris"}}
    owned = set_owner(child, OWNER)
    assert owned["metadata"] == {"name": "iris", "namespace": "team-a", "ownerReferences": [REFERENCE]}
    assert child == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris"}}
    assert set_owner(owned, OWNER) == owned  # idempotent


def test_set_owner_keeps_other_owners_but_refuses_a_second_controller():
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "9"}
    owned = set_owner({"metadata": {"name": "c", "ownerReferences": [other]}}, OWNER)
    assert owned["metadata"]["ownerReferences"] == [other, REFERENCE]
    with pytest.raises(ValueError, match="already controlled"):
        set_owner({"metadata": {"name": "c", "ownerReferences": [{**other, "controller": True}]}}, OWNER)
