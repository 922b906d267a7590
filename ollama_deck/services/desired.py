"""The stored desired model set (``PUT /api/desired-models``): one row, shared by every
worker through the database; the reconciler and the page's drift read it from there."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from ..db import DesiredModels as DesiredRow
from ..db import table_of
from ..schemas import DesiredModels

TABLE = table_of(DesiredRow)
NAME = "default"


class DesiredStore:
    """Read, replace and clear the stored set."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self) -> tuple[DesiredModels, float] | None:
        """The stored set and when it was stored, or None."""
        query = select(TABLE.c.document, TABLE.c.updated_at).where(TABLE.c.name == NAME)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        # Validated when it was stored; read back as it is (a host since removed from the
        # configuration is simply left out of the plan).
        return DesiredModels.model_validate(json.loads(row.document)), row.updated_at

    def exists(self) -> bool:
        query = select(TABLE.c.name).where(TABLE.c.name == NAME)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def put(self, desired: DesiredModels) -> float:
        """Store ``desired`` in place of any set stored before; when, as UNIX seconds."""
        # What was given: a host's explicit ``prune = false`` overrides the one of ``all``.
        document = json.dumps(desired.model_dump(mode="json", exclude_unset=True))
        now = time.time()
        values: dict[str, Any] = {"document": document, "updated_at": now}
        with self.engine.begin() as conn:
            changed = conn.execute(update(TABLE).where(TABLE.c.name == NAME).values(**values))
            if not changed.rowcount:
                conn.execute(insert(TABLE).values(name=NAME, **values))
        return now

    def clear(self) -> bool:
        """Forget the stored set; False if none was stored."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(TABLE).where(TABLE.c.name == NAME)).rowcount)
