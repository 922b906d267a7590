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
from sqlalchemy import update
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
    fresh = {m.get("name") or m.get("model") or "": json.dumps(m) for m in models}
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(CACHE.c.name, CACHE.c.data).where(CACHE.c.host == host)
            ).all()
        kept = {r.name: r.data for r in rows}
        if _same(kept, fresh):
            return True  # unchanged: listing must not write
        # Only the rows that changed: a pull adds one model, and rewriting every row of a
        # long list would leave as many dead rows behind on PostgreSQL.
        gone = [name for name in kept if name not in fresh]
        changed = [name for name, data in fresh.items() if name in kept and kept[name] != data]
        added = [name for name in fresh if name not in kept]
        now = time.time()
        with no_lock_wait(engine) as conn:
            if gone:
                conn.execute(delete(CACHE).where(CACHE.c.host == host, CACHE.c.name.in_(gone)))
            for name in changed:
                conn.execute(
                    update(CACHE)
                    .where(CACHE.c.host == host, CACHE.c.name == name)
                    .values(data=fresh[name], seen_at=now)
                )
            if added:
                conn.execute(
                    insert(CACHE),
                    [{"host": host, "name": n, "data": fresh[n], "seen_at": now} for n in added],
                )
    except IntegrityError:
        pass  # another worker refreshed it at the same moment: its copy is as good
    except DATABASE_ERRORS as exc:
        log_skipped(f"the model list of {host}", exc)
        return False
    return True


def _same(kept: dict[str, str], fresh: dict[str, str]) -> bool:
    """The same models with the same details (JSON compared as data: a row written by an
    older deck may have its keys in another order)."""
    if kept.keys() != fresh.keys():
        return False
    return all(kept[n] == d or json.loads(kept[n]) == json.loads(d) for n, d in fresh.items())


def cached(engine: Engine, host: str) -> tuple[list[dict[str, Any]], float | None]:
    """The cached list of ``host``, newest first, and when it was seen."""
    with engine.connect() as conn:
        rows = conn.execute(select(CACHE).where(CACHE.c.host == host)).all()
    models = [json.loads(r.data) for r in rows]
    models.sort(key=lambda m: m.get("modified_at") or "", reverse=True)
    return models, max((r.seen_at for r in rows), default=None)
