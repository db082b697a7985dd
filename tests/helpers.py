"""Small helpers shared by the integration tests (import as `from helpers import wait_for`)."""

from __future__ import annotations

import time

import pytest


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
