"""Posting to Alertmanager's v2 API (POST /api/v2/alerts): one alert per DriftMonitor, identified by its labels,
so repeated posts refresh it and a post with endsAt resolves it."""

from __future__ import annotations

import aiohttp


class AlertError(Exception):
    pass


async def post(base_url: str, alerts: list[dict], timeout: float = 10) -> None:
    url = base_url.rstrip("/") + "/api/v2/alerts"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, json=alerts) as resp:
                if resp.status >= 300:
                    raise AlertError(f"{url}: {resp.status} {(await resp.text())[:200]}")
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        raise AlertError(f"{url}: {err}") from None
