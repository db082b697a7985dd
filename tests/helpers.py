"""Small helpers shared by the integration tests (import as `from helpers import wait_for`)."""

from __future__ import annotations

import pathlib
import time

import pytest

from mlops_operator.localcluster.audit import AuditLog  # noqa: F401  (tests import it from here)


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Polls predicate until it returns a truthy value; fails the test with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}; last seen: {last!r}")



def request(kube, method: str, path: str, body=None, query=None, content_type: str = "application/json"):
    """A raw API call through the official client's ApiClient; returns (status code, parsed body) and never
    raises on HTTP errors, so tests can assert on rejections."""
    import json
    from urllib.parse import urlencode

    cfg = kube.configuration
    url = cfg.host + path + ("?" + urlencode(query) if query else "")
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    resp = kube.call_api(method, url, header_params=headers, body=body)
    raw = resp.read()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def apply(kube, obj: dict, field_manager: str = "mlops-tests") -> dict:
    """Server-side apply of any object (no discovery round trips); fails the test on an error answer."""
    from mlops_operator.k8s.client import object_path

    code, data = request(kube, "PATCH", object_path(obj), body=obj, content_type="application/apply-patch+yaml",
                         query={"fieldManager": field_manager, "force": "true"})
    if code >= 300:
        pytest.fail(f"apply {obj['kind']}/{obj['metadata']['name']} failed: {code} {data}")
    return data



def rbac_table() -> set[tuple[str, str, str]]:
    """(group, resource, verb) rows of the operator's table in docs/rbac.md (the chart's rules must equal it)."""
    rows, inside = set(), False
    for line in (pathlib.Path(__file__).resolve().parents[1] / "docs" / "rbac.md").read_text().splitlines():
        if line.startswith("| group (core"):
            inside = True
            continue
        if inside:
            if not line.startswith("|"):
                break
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            group = "" if cells[0] == "core" else cells[0]
            rows.add((group, cells[1], cells[2]))
    return rows
