"""Posting to Alertmanager's v2 API (POST /api/v2/alerts): one alert per DriftMonitor, identified by its labels,
so repeated posts refresh it and a post with endsAt now resolves it.

Alertmanager resolves an alert by itself at its endsAt, or `resolve_timeout` (5 min by default) after a post
without one. So a firing alert is posted with endsAt a margin beyond the next scheduled check and posted again
halfway there while drift holds: it stays firing as long as the operator sees drift, and if the operator stops,
it ends shortly after the check that should have renewed it. The timing is pure (`ends_at`, `refresh_delay`,
`retry_delay`); posting is the only I/O here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import aiohttp
from croniter import croniter

MARGIN = timedelta(minutes=5)  # a check's own run time and the operator's lag after it
LEAST_REFRESH = 5.0  # seconds: never post more often than this while firing
RETRY_FIRST, RETRY_MAX = 5.0, 300.0  # seconds: back-off of a failed post


class AlertError(Exception):
    pass


def ends_at(schedule: str, now: datetime, margin: timedelta = MARGIN) -> datetime:
    """When a firing alert posted at `now` should end unless posted again: after the next check, plus margin."""
    following: datetime = croniter(schedule, now).get_next(datetime)
    return following + margin


def refresh_delay(posted_at: datetime, ends: datetime, now: datetime) -> float:
    """Seconds until a firing alert posted at `posted_at` with endsAt `ends` is posted again: halfway through its
    life, so a post that fails has the other half to succeed."""
    due = posted_at + (ends - posted_at) / 2
    return float(max(LEAST_REFRESH, (due - now).total_seconds()))


def retry_delay(failures: int) -> float:
    """Seconds before posting again after `failures` failed posts in a row (exponential, capped)."""
    return float(min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1)))


async def post(base_url: str, alerts: list[dict], timeout: float = 10) -> None:
    url = base_url.rstrip("/") + "/api/v2/alerts"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, json=alerts) as resp:
                if resp.status >= 300:
                    raise AlertError(f"{url}: {resp.status} {(await resp.text())[:200]}")
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        raise AlertError(f"{url}: {err}") from None
