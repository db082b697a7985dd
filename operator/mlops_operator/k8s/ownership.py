"""Owner references: the custom resource controls its children, so deleting it deletes them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference (controller=true, blockOwnerDeletion=true) to `owner`, a custom
    resource body with apiVersion, kind, metadata.name and metadata.uid."""
    metadata = owner.get("metadata") or {}
    missing = [key for key in ("apiVersion", "kind") if not owner.get(key)]
    missing += [f"metadata.{key}" for key in ("name", "uid") if not metadata.get(key)]
    if missing:
        raise ValueError(f"cannot own a child without the owner's {', '.join(missing)}")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def set_owner(child: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of child whose metadata.ownerReferences has the controller reference to owner (replacing an
    older reference to the same owner) and whose namespace defaults to the owner's. Raises ValueError when
    another object already controls the child."""
    result = copy.deepcopy(dict(child))
    reference = owner_reference(owner)
    metadata = result.setdefault("metadata", {})
    namespace = (owner.get("metadata") or {}).get("namespace")
    if namespace and not metadata.get("namespace"):
        metadata["namespace"] = namespace
    kept = []
    for existing in metadata.get("ownerReferences") or []:
        if existing.get("uid") == reference["uid"]:
            continue
        if existing.get("controller"):
            raise ValueError(
                f"{metadata.get('name')!r} is already controlled by {existing.get('kind')} {existing.get('name')!r}"
            )
        kept.append(existing)
    metadata["ownerReferences"] = [*kept, reference]
    return result
