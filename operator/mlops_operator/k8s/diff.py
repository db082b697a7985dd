"""Is a desired object already true of a live one? The test that keeps reconciles from writing when nothing
changed, and that still notices when someone edits a child by hand.

- `contains(live, desired)`: every field we want is there with our value (the server may add defaults; lists
  match element-wise; quantities compare by value, so "1000m" equals "1").
- `stamp(desired)`: records a hash of the desired object in an annotation, so that a field we stop setting
  (which `contains` cannot see) still triggers an apply that removes it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kubernetes.utils.quantity import parse_quantity

HASH_ANNOTATION = "mlops.dev/applied-hash"


def _same_scalar(live: Any, want: Any) -> bool:
    if live == want:
        return True
    if isinstance(live, (str, int, float)) and isinstance(want, (str, int, float)) and not isinstance(want, bool):
        try:
            return bool(parse_quantity(live) == parse_quantity(want))
        except (ValueError, TypeError):
            return False
    return False


def contains(live: Any, desired: Any) -> bool:
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and contains(live[k], v) for k, v in desired.items()) if desired else True
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        key = _merge_key(desired)
        if key:  # a map-like list (containers, env, volumes, ownerReferences): others may add entries
            by_key = {item.get(key): item for item in live if isinstance(item, dict)}
            return all(d[key] in by_key and contains(by_key[d[key]], d) for d in desired)
        return len(live) == len(desired) and all(contains(lv, dv) for lv, dv in zip(live, desired))
    return _same_scalar(live, desired)


def _merge_key(items: list) -> str | None:
    for key in ("uid", "name"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def digest(obj: dict) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp(desired: dict) -> dict:
    out = copy.deepcopy(desired)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(HASH_ANNOTATION, None)
    annotations[HASH_ANNOTATION] = digest(out)
    return out


def up_to_date(live: dict | None, stamped: dict) -> bool:
    if not live:
        return False
    want = stamped["metadata"]["annotations"][HASH_ANNOTATION]
    have = (live.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return have == want and contains(live, stamped)
