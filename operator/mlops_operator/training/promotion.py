"""Promotion: the one place the operator edits a spec a person wrote. After a TrainingJob succeeds, its model
becomes a ModelDeployment's canary (spec.rollout.canary.model.uri) or stable model (spec.model.uri).

The edit is a JSON merge patch of just that field, not a server-side apply: the operator must not take
ownership of a spec that is the user's (or their GitOps tool's). It happens once; status.promotion records it.

as: canary keeps the rest of an existing canary block (steps, weight, runtime overrides, podAnnotations) but
clears promote and abort: they decided the previous canary's fate and must not decide the new one's. Without a
canary block it creates `{model: {uri}, weight: DEFAULT_CANARY_WEIGHT}`: a fixed 10% share, held until a person
(or analysis) promotes it. When the previous canary was promoted (`promote: true`, or analysis' autoPromote, which
status.canary records), its model becomes spec.model in the same patch: the stable keeps serving it, as a person
would have written after the promotion, instead of falling back to the model before it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

FIELDS = {"canary": "spec.rollout.canary.model.uri", "stable": "spec.model.uri"}
DEFAULT_CANARY_WEIGHT = 10


def patch(model_deployment: dict, as_: str, uri: str) -> dict[str, Any]:
    """The merge patch that makes `uri` the ModelDeployment's canary or stable model."""
    if as_ == "stable":
        return {"spec": {"model": {"uri": uri}}}
    canary = (((model_deployment.get("spec") or {}).get("rollout") or {}).get("canary")) or None
    if canary is None:
        return {"spec": {"rollout": {"canary": {"model": {"uri": uri}, "weight": DEFAULT_CANARY_WEIGHT}}}}
    block: dict[str, Any] = {"model": {"uri": uri}}
    for flag in ("promote", "abort"):
        if canary.get(flag):
            block[flag] = None
    if canary.get("weight") is None and not canary.get("steps"):
        block["weight"] = DEFAULT_CANARY_WEIGHT  # a canary needs a weight or steps to be valid
    spec: dict[str, Any] = {"rollout": {"canary": block}}
    promoted = promoted_canary(model_deployment)
    if promoted is not None and promoted.get("uri") != uri:
        spec["model"] = promoted
    return {"spec": spec}


def promoted_canary(model_deployment: dict) -> dict[str, Any] | None:
    """The previous canary's model block when that canary was promoted and the stable serves it now, else None."""
    canary = (((model_deployment.get("spec") or {}).get("rollout") or {}).get("canary")) or {}
    model = canary.get("model") or {}
    seen = ((model_deployment.get("status") or {}).get("canary")) or {}
    if not model.get("uri") or canary.get("abort"):
        return None
    decided = canary.get("promote") or (seen.get("phase") == "Promoted" and seen.get("modelUri") == model["uri"])
    return dict(model) if decided else None
