"""Where kopf's internals stand in the way at thousands of objects, and what this operator does about it.

kopf's readiness gate for indices (`operator_indexed`, a ToggleSet) gets one toggle per object during the initial
listing; every per-object worker drops its toggle and then waits on the set's one asyncio.Condition until all are
gone. kopf 1.45 calls `notify_all()` on every make and drop, so each of N drops wakes all N waiting workers, each
re-checking the set: O(N^2) wake-ups. Measured on this project's benchmark (2 cores, ~9,000 watched objects:
2,050 custom resources and their Deployments, Services and pods): a restart took 260 s to resync, nearly all of
it in `asyncio.Condition.notify_all` -> `call_soon` (py-spy).

The waiters' predicate depends only on `is_on()`, so a notification is only needed when a make or drop flips it.
`patch()` installs make/drop methods that notify only then; the semantics kopf relies on are unchanged. It is
applied only to kopf versions it was checked against (1.37 to 1.45); others keep kopf's own code, slower but
correct, and a warning says so.

The same patch remembers kopf's operator-wide pause (`operator_paused`, the one ToggleSet kopf makes with `any`,
once per run): peering turns it on while a peer of higher or equal priority is alive. kopf then stops its own
watches and handlers, but it does not know this operator's work queues, whose delayed requeues and child events
would go on acting on a frozen cache. `operator_paused()` hands the set to the controllers, which wait on it.
"""

from __future__ import annotations

import logging
import weakref

log = logging.getLogger("mlops_operator.kopf_tuning")
CHECKED = ((1, 37), (1, 45))
_paused: list[weakref.ref] = []  # kopf's operator_paused of the newest run


def operator_paused():
    """kopf's operator-wide pause of its current run (a ToggleSet: `is_on()`, `await wait_for(False)`), or None
    when kopf was not patched or has not started."""
    return _paused[-1]() if _paused else None


def _version() -> tuple[int, int] | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = version("kopf").split(".")[:2]
        return int(major), int(minor)
    except (PackageNotFoundError, ValueError):
        return None


def patch() -> bool:
    """Installs the ToggleSet fix and the pause hook; returns whether it did."""
    from kopf._cogs.aiokits import aiotoggles

    version = _version()
    if version is None or not CHECKED[0] <= version <= CHECKED[1] or not hasattr(aiotoggles, "ToggleSet"):
        log.warning("kopf %s is not a version the ToggleSet fix was checked against: restarts with many objects "
                    "will be slow (see mlops_operator/runtime/kopf_tuning.py)", version)
        return False
    toggle_set = aiotoggles.ToggleSet
    if getattr(toggle_set, "_mlops_patched", False):
        return True

    async def change(self, mutate) -> None:
        """Changes the set's toggles under its condition; wakes the waiters only when is_on() flips."""
        async with self._condition:
            before = self.is_on()
            mutate()
            if self.is_on() != before:
                self._condition.notify_all()

    async def make_toggle(self, __val: bool = False, *, name: str | None = None):
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        await change(self, lambda: self._toggles.add(toggle))
        return toggle

    async def drop_toggle(self, toggle) -> None:
        await change(self, lambda: self._toggles.discard(toggle))

    async def drop_toggles(self, toggles) -> None:
        await change(self, lambda: self._toggles.difference_update(toggles))

    original_init = toggle_set.__init__

    def __init__(self, fn):  # noqa: N807  (replaces toggle_set.__init__)
        original_init(self, fn)
        if fn is any:  # kopf makes exactly one such set per run: operator_paused (reactor/running.py)
            _paused[:] = [weakref.ref(self)]

    toggle_set.__init__ = __init__
    toggle_set.make_toggle = make_toggle
    toggle_set.drop_toggle = drop_toggle
    toggle_set.drop_toggles = drop_toggles
    toggle_set._mlops_patched = True
    return True
