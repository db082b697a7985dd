"""The informer cache (index by key, trimming, change callbacks, a relist that prunes) and the cache over it:
in-memory behaviour with a fake API client, no API server."""

import asyncio

from mlops_operator.runtime.informer import Informer


def pod(name: str, owner: str | None, rv: str = "1", uid: str | None = None) -> dict:
    labels = {"mlops.dev/trainingjob": owner} if owner else {}
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "resourceVersion": rv,
                         "labels": labels, "managedFields": [{"manager": "x"}]}, "spec": {}}


def keys(obj):
    owner = obj["metadata"]["labels"].get("mlops.dev/trainingjob")
    return [("ns", "trainingjob", owner)] if owner else []


def informer(changed: list) -> Informer:
    return Informer(client=None, api_version="v1", kind="Pod", keys=keys, on_change=changed.append)


def test_index_by_owner_trimmed_and_typed():
    changed = []
    inf = informer(changed)
    inf._put(pod("a-0", "a"))
    inf._put(pod("a-1", "a"))
    inf._put(pod("b-0", "b"))
    got = inf.get(("ns", "trainingjob", "a"))
    assert sorted(p["metadata"]["name"] for p in got) == ["a-0", "a-1"]
    assert all("managedFields" not in p["metadata"] and p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in got)
    assert inf.get(("ns", "trainingjob", "c")) == []
    assert len(inf) == 3 and len(changed) == 3


def test_same_resource_version_is_no_news_and_relabel_moves_and_notifies_both_owners():
    changed = []
    inf = informer(changed)
    inf._put(pod("x", "a"))
    inf._put(pod("x", "a"))  # a relist repeating the cache
    assert len(changed) == 1
    inf._put(pod("x", "b", rv="2"))
    assert inf.get(("ns", "trainingjob", "a")) == [] and len(inf.get(("ns", "trainingjob", "b"))) == 1
    assert [c["metadata"]["labels"]["mlops.dev/trainingjob"] for c in changed[1:]] == ["a", "b"]


def test_delete_forgets_and_notifies():
    changed = []
    inf = informer(changed)
    inf._put(pod("x", "a"))
    inf._delete(pod("x", "a", rv="2"))
    assert inf.get(("ns", "trainingjob", "a")) == [] and len(inf) == 0 and len(changed) == 2
    inf._delete(pod("never", "a"))  # unknown: nothing to do
    assert len(changed) == 2


def test_a_relist_prunes_what_the_api_server_no_longer_has_and_the_cache_reads_it():
    """A deletion missed while the watch was down (an API server restart): the next list drops the object, tells
    its owner, and the cache no longer returns it; no other place prunes."""
    from mlops_operator.runtime.cache import Cache

    class Lister:
        def __init__(self, items):
            self.items = items

        async def request(self, method, path, params=None, timeout=None):
            return {"metadata": {"resourceVersion": "9"}, "items": [dict(i, metadata=dict(i["metadata"]))
                                                                    for i in self.items]}

    changed = []
    lister = Lister([pod("a-0", "a"), pod("a-1", "a")])
    inf = Informer(client=lister, api_version="v1", kind="Pod", keys=keys, on_change=changed.append,
                   watch_timeout=5, grace=1)
    cache = Cache({"pods_idx": inf})
    assert asyncio.run(inf._list(None)) == "9"
    assert len(cache.all("pods_idx", ("ns", "trainingjob", "a"))) == 2
    lister.items = [pod("a-1", "a")]  # a-0 was deleted while nobody watched
    changed.clear()
    asyncio.run(inf._list(None))
    assert [p["metadata"]["name"] for p in cache.all("pods_idx", ("ns", "trainingjob", "a"))] == ["a-1"]
    assert [p["metadata"]["name"] for p in changed] == ["a-0"]  # the owner hears of it; a-1 is no news
    assert [p["metadata"]["name"] for p in cache.values("pods_idx")] == ["a-1"]


def test_cached_objects_share_their_keys_and_short_strings_and_keep_their_values():
    """Two pods decoded apart hold their own copies of every key and label; cached, they hold the same strings,
    values unchanged, and a long string (an annotation's JSON) is left as it is."""
    import json

    changed = []
    inf = informer(changed)
    long_value = "x" * 200
    for name in ("a-0", "a-1"):
        body = pod(name, "a")
        body["metadata"]["annotations"] = {"note": long_value, "state": "Running"}
        body["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        inf._put(json.loads(json.dumps(body)))  # as from the wire: nothing shared yet
    first, second = sorted(inf.get(("ns", "trainingjob", "a")), key=lambda p: p["metadata"]["name"])
    key_of = {id(k): k for k in first["metadata"]}
    assert all(id(k) in key_of for k in second["metadata"])  # the same key objects
    assert first["status"]["conditions"][0]["status"] is second["status"]["conditions"][0]["status"]
    assert first["metadata"]["annotations"]["state"] is second["metadata"]["annotations"]["state"]
    assert first["metadata"]["annotations"]["note"] == long_value
    assert first["metadata"]["annotations"]["note"] is not second["metadata"]["annotations"]["note"]
    assert first["metadata"]["uid"] == "uid-a-0" and "managedFields" not in first["metadata"]
