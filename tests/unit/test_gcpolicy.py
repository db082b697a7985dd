"""The operator's garbage-collection policy, in this process: a full pass freezes its survivors, so the next full
pass walks only newer objects; garbage cycles made after a freeze are still collected; a thaw makes the next full
pass complete again, collecting a cycle that died while frozen; each pass is timed."""

import asyncio
import gc
import weakref

import pytest
from prometheus_client import CollectorRegistry

from mlops_operator.gcpolicy import GcPolicy


class Node:
    def __init__(self):
        self.other = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def policy():
    policy = GcPolicy("test_gc_pause_seconds")
    policy.registry = CollectorRegistry()
    gc.collect()
    policy.install(policy.registry)
    yield policy
    policy.uninstall()


def test_a_full_pass_freezes_its_survivors_and_later_cycles_are_still_collected(policy):
    kept = [Node() for _ in range(1000)]
    before = policy.full_passes  # a pass of its own may come at any allocation: count from here
    gc.collect()
    assert policy.full_passes == before + 1
    assert gc.get_freeze_count() > len(kept)
    assert all(len(gc.get_objects(generation)) < 1000 for generation in range(3))  # the next pass skips them

    garbage = Node()
    dead = weakref.ref(garbage)
    del garbage
    gc.collect()
    assert dead() is None
    assert policy.full_passes >= before + 2


def test_a_cycle_that_dies_frozen_is_collected_after_a_thaw(policy):
    frozen = Node()
    dead = weakref.ref(frozen)
    gc.collect()  # frozen now
    del frozen
    gc.collect()
    assert dead() is not None  # kept alive while frozen: the cost the thaw bounds

    async def one_thaw():
        policy.thaw_seconds = 0.01
        task = asyncio.create_task(policy.thaw_periodically())
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(one_thaw())
    gc.collect()  # a full pass over everything: the thaw brought the dead cycle back into reach
    assert dead() is None


def test_each_pass_is_timed_and_uninstall_leaves_gc_as_it_was(policy):
    def passes(bucket="+Inf"):
        return policy.registry.get_sample_value("test_gc_pause_seconds_bucket", {"generation": "2", "le": bucket})

    before = passes()
    gc.collect()
    assert passes() == before + 1
    assert passes("2.5") == passes() and passes("0.001") <= passes()  # cumulative buckets
    assert policy.registry.get_sample_value("test_gc_pause_seconds_sum", {"generation": "2"}) > 0
    registry = policy.registry
    policy.uninstall()
    assert policy._callback not in gc.callbacks and gc.get_freeze_count() == 0
    assert registry.get_sample_value("test_gc_pause_seconds_count", {"generation": "2"}) is None
    gc.collect()
    assert gc.get_freeze_count() == 0


def test_a_second_policy_in_the_process_starts_without_a_second_metric(policy):
    other = GcPolicy("test_gc_pause_seconds")
    other.install(policy.registry)  # the same metric name: already exported, not an error
    try:
        before = other.full_passes, policy.full_passes
        gc.collect()
        assert other.full_passes > before[0] and policy.full_passes > before[1]  # both hooked
    finally:
        other.uninstall()
    assert policy.registry.get_sample_value("test_gc_pause_seconds_count", {"generation": "2"}) >= 1
