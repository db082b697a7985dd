"""Leader election on a Lease (runtime/leader.py) against an in-memory lease store that checks resourceVersion as
the API server does (409 on a stale write), with a fake clock: who acquires, when a standby may take over, that a
leader which cannot renew stops leading before its lease expires, and that a release hands over at once."""

import asyncio
import copy

import pytest

from mlops_operator.k8s.client import ApiError
from mlops_operator.runtime.leader import LeaderElector


class Leases:
    """The API server's lease store: GET, POST (409 when it exists), PUT (409 on a stale resourceVersion)."""

    def __init__(self):
        self.lease: dict | None = None
        self.version = 0
        self.down = False

    async def request(self, method: str, path: str, *, body=None, **_):
        if self.down:
            raise OSError("connection refused")
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, {"reason": "NotFound"}, method, path)
            return copy.deepcopy(self.lease)
        if method == "POST" and self.lease is not None:
            raise ApiError(409, {"reason": "AlreadyExists"}, method, path)
        if method == "PUT" and body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict"}, method, path)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def elector(leases, clock, identity):
    return LeaderElector(leases, namespace="ops", name="mlops", identity=identity, lease_duration=15,
                         renew_deadline=10, retry_period=2, clock=clock)


def run(coro):
    return asyncio.run(coro)


def test_first_acquires_the_other_waits_until_the_record_stops_changing_for_the_lease_duration():
    leases, clock = Leases(), Clock()
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    assert run(a.try_acquire_or_renew()) is True
    spec = leases.lease["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert run(b.try_acquire_or_renew()) is False
    clock.now += 10
    assert run(a.try_acquire_or_renew()) is True  # a renews: the record changes, b's clock starts again
    clock.now += 10
    assert run(b.try_acquire_or_renew()) is False
    clock.now += 14
    assert run(b.try_acquire_or_renew()) is False
    clock.now += 2  # a's record unchanged for 16 s (> 15) by b's clock: a is dead to b
    assert run(b.try_acquire_or_renew()) is True
    assert leases.lease["spec"]["holderIdentity"] == "b" and leases.lease["spec"]["leaseTransitions"] == 1
    assert run(a.try_acquire_or_renew()) is False  # a learns it lost


def test_a_stale_write_loses_the_race():
    leases, clock = Leases(), Clock()
    a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
    run(a.try_acquire_or_renew())
    clock.now += 100
    run(b.try_acquire_or_renew())  # b read the old record long ago; a renews meanwhile
    stale = copy.deepcopy(leases.lease)
    leases.lease["metadata"]["resourceVersion"] = "99"  # another write came in between
    assert run(b._update(stale, {"holderIdentity": "b"})) is None


def test_a_leader_that_cannot_renew_stops_before_the_lease_expires_and_callbacks_run():
    async def scenario():
        leases = Leases()
        a = LeaderElector(leases, namespace="ops", name="mlops", identity="a", lease_duration=1.5)
        lost = []
        a.on_lost(lambda: lost.append(asyncio.get_running_loop().time()))
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(a.wait_leading(), 5)
        assert a.is_leader()
        leases.down = True
        down_at = asyncio.get_running_loop().time()
        while not lost:
            await asyncio.sleep(0.05)
        assert not a.is_leader()
        # stopped within the renew deadline (1 s), before anyone may take over (1.5 s after the last renew)
        assert lost[0] - down_at < a.lease_duration
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(scenario())


def test_release_hands_over_at_once():
    async def scenario():
        leases, clock = Leases(), Clock()
        a, b = elector(leases, clock, "a"), elector(leases, clock, "b")
        assert await a.try_acquire_or_renew()
        a._leading.set()
        assert await b.try_acquire_or_renew() is False
        await a.release()
        assert not a.is_leader() and leases.lease["spec"]["holderIdentity"] is None
        assert await b.try_acquire_or_renew() is True  # no holder: no need to wait out the duration

    run(scenario())


def test_timings_must_nest():
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(Leases(), namespace="n", name="l", identity="a", lease_duration=10, renew_deadline=12)
