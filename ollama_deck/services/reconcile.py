"""The reconciler: with ``OLLAMA_DECK_RECONCILE_SECONDS`` set, the deck applies its stored
desired model set on that interval by itself.

Every serving process's runner calls :meth:`Reconciler.tick` once a heartbeat; a tick
applies the set only when it takes the ``reconcile`` lease, which lasts one interval. So
across workers and machines the set is applied once per interval, by whichever process
took the lease, and a process that finds it held only reads one row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .desired import DesiredStore
from .fleet import Fleet
from .leases import LeaseStore

log = logging.getLogger(__name__)

LEASE_NAME = "reconcile"
ORIGIN = "reconcile"


@dataclass
class ReconcileState:
    """What this process's reconciler did last (``/api/status`` shows it, per process)."""

    checked_at: float | None = None  # the last tick that looked at the lease
    applied_at: float | None = None  # the last tick that held it and applied the set
    group_id: str | None = None  # the group that apply queued, if it queued one


class Reconciler:
    """Applies the stored set once per ``every`` seconds across every process."""

    def __init__(
        self, fleet: Fleet, desired: DesiredStore, leases: LeaseStore, *, every: float, holder: str
    ) -> None:
        self.fleet = fleet
        self.desired = desired
        self.leases = leases
        self.every = every
        self.holder = holder
        self.state = ReconcileState()
        self._not_before = 0.0  # the lease is someone's until then: no need to read it

    def tick(self) -> str | None:
        """Apply the stored set if it is this process's turn; the group id queued, if any."""
        now = time.time()
        self.state.checked_at = now
        if now < self._not_before:
            return None
        expires = self.leases.expires_at(LEASE_NAME)
        if expires is not None and expires > now:
            self._not_before = expires
            return None
        stored = self.desired.get()
        if stored is None:
            return None  # nothing to apply: asked again next heartbeat
        if not self.leases.acquire(LEASE_NAME, self.holder, self.every):
            return None
        self._not_before = now + self.every
        applied = self.fleet.apply(stored[0], origin=ORIGIN, join_pending=False)
        self.state.applied_at = now
        group = applied.made.group if applied.made is not None else None
        self.state.group_id = group["id"] if group is not None else None
        if applied.plan.errors:
            failed = [h.host for h in applied.plan.hosts if h.error]
            log.warning("reconcile: could not plan %s", ", ".join(failed))
        return self.state.group_id

    def describe(self) -> dict[str, object]:
        return {
            "every": self.every,
            "checked_at": self.state.checked_at,
            "applied_at": self.state.applied_at,
            "group": self.state.group_id,
        }
