"""A paused operator (kopf peering: another replica acts) reconciles nothing, delayed requeues included, and
catches up once resumed; kopf's own pause set is the one the controllers get."""

import asyncio

from mlops_operator.runtime import kopf_tuning
from mlops_operator.runtime.controller import Controller


def test_kopf_pause_set_is_handed_over():
    from kopf._cogs.aiokits import aiotoggles

    assert kopf_tuning.patch()
    aiotoggles.ToggleSet(all)  # the index gate: not a pause
    paused = aiotoggles.ToggleSet(any)  # as kopf's reactor makes operator_paused, once per run
    assert kopf_tuning.operator_paused() is paused
    aiotoggles.ToggleSet(all)
    assert kopf_tuning.operator_paused() is paused


def test_a_paused_controller_reconciles_nothing_until_resumed():
    from kopf._cogs.aiokits import aiotoggles

    async def scenario():
        paused = aiotoggles.ToggleSet(any)
        conflict = await paused.make_toggle(False, name="conflicts")
        seen: list[str] = []

        async def reconcile(key):
            seen.append(key)
            return None

        controller = Controller("test", reconcile, workers=2, paused=paused)
        controller.start()
        controller.queue.add("a")
        await asyncio.sleep(0.05)
        assert seen == ["a"]  # not paused: acts

        await conflict.turn_to(True)
        controller.queue.add("b")
        controller.queue.add_after("c", 0.01)  # a delayed requeue fires while paused
        controller.queue.add("a")
        await asyncio.sleep(0.1)
        assert seen == ["a"], "reconciled while paused"

        await conflict.turn_to(False)
        await asyncio.sleep(0.05)
        assert sorted(seen[1:]) == ["a", "b", "c"]  # everything held is done once, after the pause
        await controller.stop()

    asyncio.run(scenario())
