"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it, so that of several
replicas exactly one reconciles.

The lease records its holder, for how long its word is good (leaseDurationSeconds), when it last renewed
(renewTime), when it took over (acquireTime) and how often the holder changed (leaseTransitions). Every write is
an update with the lease's resourceVersion, so of two replicas racing for it one wins and the other gets 409.

- A candidate takes the lease when it has no holder, or when the holder's record has not changed for
  leaseDurationSeconds as measured by the candidate's own clock (clocks of different machines are never compared).
- The leader renews every retry_period. If no renewal succeeded for renew_deadline (shorter than the lease
  duration, so it stops before anyone may take over), or the lease names another holder, it stops leading at
  once: the callbacks given to on_lost() run, and the controllers stop reconciling.
- A leader that stops cleanly releases the lease (no holder, duration 1 s), so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone

from ..k8s.client import ApiError, KubeClient

log = logging.getLogger("mlops_operator.leader")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def micro_time(now: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 with microseconds, UTC."""
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: KubeClient, *, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float | None = None,
                 retry_period: float | None = None, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        # client-go's defaults keep these proportions: 15 s / 10 s / 2 s.
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_duration * 2 / 3
        self.retry_period = retry_period if retry_period is not None else lease_duration / 7.5
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")
        self._clock = clock
        self._leading = asyncio.Event()
        self._lost: list[Callable[[], None]] = []
        self._observed: dict | None = None  # the lease's spec as last read
        self._observed_at = 0.0  # when (our clock) that spec was first seen
        self._version: str | None = None  # the lease's resourceVersion as last read or written

    @property
    def path(self) -> str:
        return f"{LEASES.format(namespace=self.namespace)}/{self.name}"

    # ---------------------------------------------------------------- what the controllers use

    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    def on_lost(self, callback: Callable[[], None]) -> None:
        """callback() runs the moment this replica stops leading."""
        self._lost.append(callback)

    # ---------------------------------------------------------------- the election

    async def run(self) -> None:
        """Competes for the lease, leads while it holds it, and competes again after losing it; until cancelled."""
        while True:
            await self._acquire()
            await self._renew()

    async def _acquire(self) -> None:
        waiting_for = None
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self._leading.set()
                    log.info("leading: lease %s/%s acquired as %s", self.namespace, self.name, self.identity)
                    return
                holder = (self._observed or {}).get("holderIdentity")
                if holder != waiting_for:
                    waiting_for = holder
                    log.info("standing by: lease %s/%s is held by %s", self.namespace, self.name, holder)
            except (TimeoutError, ApiError, OSError, ValueError) as err:
                log.warning("lease %s/%s not acquired: %s", self.namespace, self.name, err)
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.2))

    async def _renew(self) -> None:
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.retry_period)
            started = self._clock()
            left = renewed + self.renew_deadline - started
            ours: bool | None = None
            try:
                if left > 0:
                    ours = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=left)
            except (TimeoutError, ApiError, OSError, ValueError) as err:
                log.warning("lease %s/%s not renewed: %s", self.namespace, self.name, err)
            if ours:
                renewed = started
                continue
            if ours is False or self._clock() >= renewed + self.renew_deadline:
                self._stop_leading("held by " + str((self._observed or {}).get("holderIdentity"))
                                   if ours is False else f"not renewed for {self.renew_deadline:.0f}s")
                return

    def _stop_leading(self, why: str) -> None:
        self._leading.clear()
        log.warning("lost the lease %s/%s (%s): reconciling stops", self.namespace, self.name, why)
        for callback in self._lost:
            callback()

    async def try_acquire_or_renew(self, now: datetime | None = None) -> bool | None:
        """One round of client-go's tryAcquireOrRenew: True when this replica holds the lease afterwards, False
        when another replica holds it, None when another write came first (409: read again next round)."""
        now = now or datetime.now(timezone.utc)
        try:
            lease = await self._client.request("GET", self.path)
        except ApiError as err:
            if err.status != 404:
                raise
            return await self._create(now)
        spec = lease.get("spec") or {}
        self._version = lease["metadata"]["resourceVersion"]
        if spec != self._observed:
            self._observed, self._observed_at = spec, self._clock()
        holder = spec.get("holderIdentity")
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and self._clock() < self._observed_at + duration:
            return False
        ours = holder == self.identity
        new_spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration)),
                    "renewTime": micro_time(now),
                    "acquireTime": spec.get("acquireTime") if ours and spec.get("acquireTime") else micro_time(now),
                    "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if ours else 1)}
        return await self._update(lease, new_spec)

    async def _create(self, now: datetime) -> bool | None:
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration)),
                "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        try:
            created = await self._client.request("POST", LEASES.format(namespace=self.namespace), body=body)
        except ApiError as err:
            if err.status == 409:  # another replica created it first
                return None
            raise
        self._remember(created)
        return True

    async def _update(self, lease: dict, spec: dict) -> bool | None:
        body = {**lease, "metadata": {**lease["metadata"], "resourceVersion": self._version}, "spec": spec}
        try:
            updated = await self._client.request("PUT", self.path, body=body)
        except ApiError as err:
            if err.status == 409:  # someone wrote it since we read it: read again next round
                return None
            raise
        self._remember(updated)
        return True

    def _remember(self, lease: dict) -> None:
        self._observed, self._observed_at = lease.get("spec") or {}, self._clock()
        self._version = lease["metadata"]["resourceVersion"]

    async def release(self) -> None:
        """Gives the lease up (a clean stop): no holder and a 1 s duration, so a standby acquires it at once."""
        if not self._leading.is_set():
            return
        self._leading.clear()
        spec = {**(self._observed or {}), "holderIdentity": None, "leaseDurationSeconds": 1,
                "renewTime": micro_time(datetime.now(timezone.utc))}
        try:
            lease = await self._client.request("GET", self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self._version = lease["metadata"]["resourceVersion"]
                await self._update(lease, spec)
                log.info("lease %s/%s released", self.namespace, self.name)
        except (TimeoutError, ApiError, OSError, ValueError) as err:
            log.warning("lease %s/%s not released (it expires by itself): %s", self.namespace, self.name, err)
