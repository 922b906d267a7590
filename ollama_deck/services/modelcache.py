"""The last model list seen from each Ollama host, shown (marked stale) while it is down."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db import InstalledModel
from ..db import table_of
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import log_skipped
from ..dbhealth import no_lock_wait

CACHE = table_of(InstalledModel)
log = logging.getLogger(__name__)


def remember(engine: Engine, host: str, models: list[dict[str, Any]]) -> bool:
    """Replace the cached list of ``host`` when it changed; False when that was not done.

    Caching is a side effect of reading the list: a database fault is logged, never
    passed on to the request that asked for the list, and a database locked by another
    writer is not waited for (the next listing writes it).
    """
    fresh = {m.get("name") or m.get("model") or "": m for m in models}
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(CACHE.c.name, CACHE.c.data).where(CACHE.c.host == host)
            ).all()
        if {r.name: json.loads(r.data) for r in rows} == fresh:
            return True  # unchanged: listing must not write
        now = time.time()
        with no_lock_wait(engine) as conn:
            conn.execute(delete(CACHE).where(CACHE.c.host == host))
            if fresh:
                conn.execute(
                    insert(CACHE),
                    [
                        {"host": host, "name": n, "data": json.dumps(m), "seen_at": now}
                        for n, m in fresh.items()
                    ],
                )
    except IntegrityError:
        pass  # another worker refreshed it at the same moment: its copy is as good
    except DATABASE_ERRORS as exc:
        log_skipped(f"the model list of {host}", exc)
        return False
    return True


def cached(engine: Engine, host: str) -> tuple[list[dict[str, Any]], float | None]:
    """The cached list of ``host``, newest first, and when it was seen."""
    with engine.connect() as conn:
        rows = conn.execute(select(CACHE).where(CACHE.c.host == host)).all()
    models = [json.loads(r.data) for r in rows]
    models.sort(key=lambda m: m.get("modified_at") or "", reverse=True)
    return models, max((r.seen_at for r in rows), default=None)
