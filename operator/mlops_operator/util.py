"""Small helpers every layer may use (no I/O)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The reconcilers' default clock (tests give their own)."""
    return datetime.now(timezone.utc)
