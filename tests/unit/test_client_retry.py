"""The API client honours a throttling server (429, 5xx with Retry-After): it waits at least as long as asked, sends
the request again a bounded number of times (creates and applies too: a 429 was not processed), and gives up at
once when told to wait longer than it would."""

import asyncio

import pytest
from aiohttp import web

from client_servers import json_line, serve
from mlops_operator.k8s.client import ApiError, KubeClient, retry_delay


def throttling(answers: list[tuple[int, dict]], requests: list[str], last=(200, {})):
    """Answers with `answers` in turn (status, headers), then with `last`; records each request's method."""
    async def handler(request: web.Request) -> web.Response:
        requests.append(request.method)
        status, headers = answers[len(requests) - 1] if len(requests) <= len(answers) else last
        return web.json_response({"kind": "Status", "code": status, "n": len(requests)}, status=status,
                                 headers=headers)
    return handler


def run(answers, call, last=(200, {}), **client_kwargs):
    """Serves `answers`, runs `call(client)`; returns (its result or the ApiError, the requests, seconds taken)."""
    requests: list[str] = []

    async def scenario():
        async with serve(throttling(answers, requests, last)) as url:
            client = KubeClient(url, False, lambda: None, **client_kwargs)
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                result = await call(client)
            except ApiError as err:
                result = err
            finally:
                await client.close()
            return result, requests, loop.time() - start

    return asyncio.run(scenario())


def test_429_waits_the_retry_after_then_succeeds():
    answers = [(429, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]
    result, requests, took = run(answers, lambda c: c.request("GET", "/api/v1/pods"))
    assert result == {"kind": "Status", "code": 200, "n": 3}
    assert requests == ["GET"] * 3
    assert took >= 2.0 - 0.05  # two waits of at least the server's one second (the loop clock's resolution)
    assert took < 30


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_create_and_apply_are_sent_again_after_a_429(method):
    result, requests, _ = run([(429, {"Retry-After": "0"})],
                              lambda c: c.request(method, "/api/v1/namespaces/a/configmaps", body={"x": 1}))
    assert result["code"] == 200 and requests == [method, method]


def test_a_503_is_retried_only_when_the_server_says_when():
    result, requests, _ = run([(503, {"Retry-After": "0"})], lambda c: c.request("POST", "/x", body={}))
    assert result["code"] == 200 and len(requests) == 2
    result, requests, _ = run([(503, {})], lambda c: c.request("POST", "/x", body={}))
    assert isinstance(result, ApiError) and result.status == 503 and len(requests) == 1


def test_retries_are_bounded():
    result, requests, _ = run([], lambda c: c.request("GET", "/x"), last=(429, {"Retry-After": "0"}), max_retries=2)
    assert isinstance(result, ApiError) and result.status == 429
    assert len(requests) == 3


def test_a_retry_after_longer_than_the_client_waits_is_the_callers_error_at_once():
    result, requests, took = run([(429, {"Retry-After": "3600"})], lambda c: c.request("GET", "/x"))
    assert isinstance(result, ApiError) and result.status == 429 and len(requests) == 1
    assert took < 30


def test_a_throttled_watch_is_opened_again_and_streams():
    requests: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        requests.append(request.query.get("watch"))
        if len(requests) == 1:
            return web.json_response({"code": 429}, status=429, headers={"Retry-After": "0"})
        resp = web.StreamResponse()
        await resp.prepare(request)
        for n in range(2):
            await resp.write(json_line({"type": "ADDED", "object": {"n": n}}))
        return resp

    async def scenario():
        async with serve(handler) as url:
            client = KubeClient(url, False, lambda: None)
            try:
                return [event async for event in client.watch("/api/v1/pods", "1", timeout_seconds=5)]
            finally:
                await client.close()

    events = asyncio.run(scenario())
    assert [e["object"]["n"] for e in events] == [0, 1]
    assert requests == ["1", "1"]


def test_retry_delay_honours_retry_after_and_backs_off_with_bounded_jitter():
    for attempt in range(3):
        delay = retry_delay(429, "2", attempt)
        assert 2.0 <= delay <= 2.4
    plain = [retry_delay(429, None, attempt) for attempt in range(5)]
    assert all(0.2 * 2 ** n <= d <= 0.2 * 2 ** n * 1.2 for n, d in enumerate(plain))
    assert retry_delay(429, None, 5) is None  # bounded
    assert retry_delay(500, None, 0) is None and retry_delay(404, "1", 0) is None
    assert retry_delay(429, "Wed, 21 Oct 2015 07:28:00 GMT", 0) <= 0.2 * 1.2  # a date in the past: now
