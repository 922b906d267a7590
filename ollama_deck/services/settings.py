"""Run-time settings users change, stored in the database (e.g. the active model)."""

from __future__ import annotations

import time

from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from ..db import Setting
from ..db import table_of
from ..dbhealth import no_lock_wait

SETTING = table_of(Setting)
ACTIVE_MODEL = "active_model"


class SettingStore:
    """Key/value settings shared by every worker through the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(SETTING.c.value).where(SETTING.c.key == key)).scalar()

    def set(self, key: str, value: str | None, *, wait: bool = True) -> None:
        """Store ``value`` under ``key``; None removes it.

        Without ``wait`` (a cached value), OperationalError at once where it would wait
        for another writer's lock.
        """
        now = time.time()
        with self.engine.begin() if wait else no_lock_wait(self.engine) as conn:
            if value is None:
                conn.execute(delete(SETTING).where(SETTING.c.key == key))
                return
            changed = conn.execute(
                update(SETTING).where(SETTING.c.key == key).values(value=value, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(insert(SETTING).values(key=key, value=value, updated_at=now))

    def clear_if(self, key: str, value: str) -> bool:
        """Remove ``key`` only while it still holds ``value`` (case-insensitive)."""
        with self.engine.begin() as conn:
            current = conn.execute(select(SETTING.c.value).where(SETTING.c.key == key)).scalar()
            if current is None or current.lower() != value.lower():
                return False
            conn.execute(delete(SETTING).where(SETTING.c.key == key))
        return True
