"""Reading the local API server's audit log (every write request, with its user agent): how tests and benchmarks
count what the operator wrote."""

from __future__ import annotations

import json
import pathlib

OPERATOR_AGENT = "mlops-operator/"


class AuditLog:
    OPERATOR_AGENT = OPERATOR_AGENT

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)

    def mark(self) -> int:
        """A position to count from (the current size of the log)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def writes(self, since: int, namespace: str | None = None,
               agent: str | tuple[str, ...] = OPERATOR_AGENT) -> list[dict]:
        """Write requests since `since` whose user agent starts with `agent` ("" for all), in `namespace` when
        given."""
        out = []
        with open(self.path, "rb") as f:
            f.seek(since)
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                ref = entry.get("objectRef") or {}
                if not str(entry.get("userAgent", "")).startswith(agent):
                    continue
                if namespace is not None and ref.get("namespace") != namespace:
                    continue
                out.append({"verb": entry.get("verb"), "resource": ref.get("resource"), "name": ref.get("name"),
                            "namespace": ref.get("namespace"), "subresource": ref.get("subresource"),
                            "agent": entry.get("userAgent"), "user": (entry.get("user") or {}).get("username"),
                            "code": (entry.get("responseStatus") or {}).get("code")})
        return out
