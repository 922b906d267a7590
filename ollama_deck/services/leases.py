"""Leases in the database: work that one process at a time may do, whichever worker or
machine it runs in (the reconciler). Like the runner's claims, the database decides: a
conditional UPDATE (or the INSERT of a new name) takes a lease that has expired, and
exactly one of the processes trying at once gets it."""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..db import Lease
from ..db import table_of

LEASE = table_of(Lease)


class LeaseStore:
    """Named leases; each lasts ``seconds`` from when it was taken."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def expires_at(self, name: str) -> float | None:
        """When the lease ``name`` ends (None: nobody ever took it). A read, so a process
        that finds it held can wait without taking the write lock."""
        query = select(LEASE.c.expires_at).where(LEASE.c.name == name)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def acquire(self, name: str, holder: str, seconds: float) -> bool:
        """Take lease ``name`` for ``seconds`` if it is free (expired, or never taken)."""
        now = time.time()
        values = {"holder": holder, "acquired_at": now, "expires_at": now + seconds}
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(LEASE)
                .where(LEASE.c.name == name, LEASE.c.expires_at <= now)
                .values(**values)
            ).rowcount
            if taken:
                return True
            if conn.execute(select(LEASE.c.name).where(LEASE.c.name == name)).first():
                return False  # held by someone, and not expired
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(LEASE).values(name=name, **values))
        except IntegrityError:
            return False  # another process inserted it first
        return True

    def holder(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(LEASE.c.holder).where(LEASE.c.name == name)).scalar()
