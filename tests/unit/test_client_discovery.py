"""Discovery through the operator's API client: answers are cached for the process, but a 404 is not. A starting
kube-apiserver answers 404 for built-in groups until its aggregator has registered them (docs/reliability.md); an
operator that asked in that moment must find the group once the server is ready, not miss it until it restarts."""

import asyncio

from aiohttp import web

from client_servers import serve
from mlops_operator.k8s.client import ApiError, KubeClient

GROUP = {"kind": "APIGroup", "name": "autoscaling", "preferredVersion": {"groupVersion": "autoscaling/v2beta2",
                                                                        "version": "v2beta2"},
         "versions": [{"groupVersion": "autoscaling/v1", "version": "v1"},
                      {"groupVersion": "autoscaling/v2beta2", "version": "v2beta2"}]}
RESOURCES = {"kind": "APIResourceList", "groupVersion": "batch/v1beta1",
             "resources": [{"name": "cronjobs", "namespaced": True, "kind": "CronJob"}]}


def starting_then_ready(ready_after: int, paths: list[str]):
    """404 for the first `ready_after` requests (the aggregator has not registered the groups), then the docs."""
    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path)
        if len(paths) <= ready_after:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        return web.json_response(GROUP if request.path == "/apis/autoscaling" else RESOURCES)
    return handler


def scenario(ready_after: int, calls):
    paths: list[str] = []

    async def run():
        async with serve(starting_then_ready(ready_after, paths)) as url:
            client = KubeClient(url, False, lambda: None)
            try:
                results = []
                for call in calls:
                    try:
                        results.append(await call(client))
                    except ApiError as err:
                        results.append(err.status)
                return results
            finally:
                await client.close()

    return asyncio.run(run()), paths


def test_a_group_missing_while_the_server_starts_is_found_once_it_is_ready_and_then_cached():
    pick = lambda c: c.pick_version("autoscaling", ["v2", "v2beta2"])  # noqa: E731
    results, paths = scenario(1, [pick, pick, pick])
    assert results == [404, "autoscaling/v2beta2", "autoscaling/v2beta2"]
    assert paths == ["/apis/autoscaling"] * 2  # asked again after the 404; the answer is then cached


def test_a_resource_missing_while_the_server_starts_is_found_once_it_is_ready_and_then_cached():
    pick = lambda c: c.pick_resource_version("batch", "cronjobs", ["v1beta1"])  # noqa: E731
    results, paths = scenario(1, [pick, pick, pick])
    assert results == [404, "batch/v1beta1", "batch/v1beta1"]
    assert paths == ["/apis/batch/v1beta1"] * 2
