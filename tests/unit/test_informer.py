"""The children's informer cache (index by owner key, trimming, change callbacks) and kopf's readiness gate with
the ToggleSet fix: pure in-memory behaviour, no API server."""

import asyncio

from mlops_operator.runtime import kopf_tuning
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


def test_toggle_set_still_releases_waiters_when_the_last_toggle_goes():
    from kopf._cogs.aiokits import aiotoggles

    assert kopf_tuning.patch()

    async def scenario():
        toggles = aiotoggles.ToggleSet(all)
        made = [await toggles.make_toggle(name=str(i)) for i in range(50)]
        released = []

        async def waiter(i):
            await toggles.wait_for(True)
            released.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(20)]
        await asyncio.sleep(0)
        for toggle in made[:-1]:
            await toggles.drop_toggle(toggle)
        await asyncio.sleep(0.01)
        assert released == []  # one toggle left: still gated
        await toggles.drop_toggle(made[-1])
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert sorted(released) == list(range(20))
        # A new toggle gates new waiters again (kopf's peering pauses use this).
        again = await toggles.make_toggle(name="again")
        assert not toggles.is_on()
        await toggles.drop_toggles([again])
        assert toggles.is_on()

    asyncio.run(scenario())
