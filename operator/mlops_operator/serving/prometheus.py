"""Asking Prometheus for a canary analysis: instant queries over its HTTP API (`/api/v1/query`), asynchronously
(aiohttp) with a timeout, so a slow or unreachable Prometheus costs one reconcile a few seconds and never blocks
the event loop. Every failure becomes an Answer with an error: the check it feeds is Inconclusive, never Failed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp

from ..api.modeldeployment import CanaryAnalysis
from .analysis import Answer, queries

QUERY_TIMEOUT = 10.0  # seconds for all of one analysis' queries together


def parse_answer(body: object) -> Answer:
    """An `/api/v1/query` JSON answer as values by the `revision` label; a scalar answer has the key ""."""
    if not isinstance(body, dict):
        return Answer(error="the answer is not a JSON object")
    if body.get("status") != "success":
        return Answer(error=f"{body.get('errorType') or 'error'}: {body.get('error') or 'query failed'}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result") or []
    try:
        if kind == "scalar":
            return Answer(values={"": float(result[1])})
        if kind == "vector":
            values: dict[str, float] = {}
            for sample in result:
                values.setdefault((sample.get("metric") or {}).get("revision", ""), float(sample["value"][1]))
            return Answer(values=values)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        return Answer(error=f"unexpected {kind} answer: {err}")
    return Answer(error=f"a {kind} answer; the query must give a number (an instant vector or a scalar)")


async def query(session: aiohttp.ClientSession, url: str, expr: str, at: datetime) -> Answer:
    """One instant query evaluated at `at` (the analysis' time, so every query sees the same moment)."""
    try:
        async with session.get(url.rstrip("/") + "/api/v1/query",
                               params={"query": expr, "time": f"{at.timestamp():.3f}"}) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                return Answer(error=f"HTTP {response.status} from {url}, not JSON")
            return parse_answer(body)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as err:  # ValueError: a bad URL
        return Answer(error=f"{url} unreachable: {err or type(err).__name__}")


async def measure(analysis: CanaryAnalysis, url: str, namespace: str, name: str, at: datetime,
                  timeout: float = QUERY_TIMEOUT) -> dict[str, Answer]:
    """Every answer one analysis needs, asked at once; any query not answered within `timeout` is an error."""
    asked = queries(analysis, namespace, name)
    limit = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limit) as session:
        answers = await asyncio.gather(*(query(session, url, expr, at) for expr in asked.values()))
    return dict(zip(asked, answers))
