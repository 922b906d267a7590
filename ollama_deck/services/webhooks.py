"""Webhooks that lose nothing: an outbox in the database, sent by one worker at a time.

When an operation ends (and, with ``OLLAMA_DECK_WEBHOOK_ON_START``, when it first starts)
the store writes one delivery per configured URL in the same transaction as the change
itself: committed together or not at all, so no event falls between the change and the
send, whatever crashes when.

Any serving process sends. It claims a due delivery with one guarded UPDATE that sets a
lease (``claimed_until``), as the runner claims queued operations: only one process wins
it, and a process that dies mid-send leaves it to another once the lease passes (at least
once; the delivery id stays the same, so receivers drop duplicates). A failure (no answer,
5xx, 408, 429) is tried again after ``retry_seconds``, doubling up to ten minutes, until
``retry_hours`` after the event; other answers (4xx) are final.

Bodies are rendered once, at the event, and stored: every attempt sends the same bytes
under the same signature, ``X-Ollama-Deck-Signature: sha256=<hex HMAC-SHA256 of the body>``
keyed with ``OLLAMA_DECK_WEBHOOK_SECRET`` (GitHub's convention).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..db import table_of
from ..db import WebhookDelivery
from ..lifecycle import DeliveryStatus
from ..lifecycle import FINAL
from ..lifecycle import Kind
from ..lifecycle import Status
from ..lifecycle import WebhookEvent
from ..serializers import iso_time
from ..serializers import operation_json
from . import tally

OUTBOX = table_of(WebhookDelivery)
SIGNATURE_HEADER = "X-Ollama-Deck-Signature"
DELIVERY_HEADER = "X-Ollama-Deck-Delivery"
EVENT_HEADER = "X-Ollama-Deck-Event"
MAX_RETRY_WAIT = 600.0  # a retry waits at most ten minutes
PURGE_BATCH = 500

VERBS = {Kind.PULL: "Pull", Kind.UPDATE: "Update", Kind.LOAD: "Load"}


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook part of the deck's settings."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    on_start: bool = False
    retry_seconds: float = 5.0
    retry_hours: float = 24.0
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.urls)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (what a receiver checks)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def summary(row: Mapping[str, Any], host_name: str) -> tuple[str, str]:
    """A title and one line of text for people: what Slack shows, what ntfy can show."""
    verb = VERBS.get(row["kind"], str(row["kind"]).capitalize())
    status = str(row["status"])
    title = f"{verb} of {row['model']} {status}"
    detail = row["error"] if status == Status.FAILED and row["error"] else row["message"]
    text = f"{title} on {host_name}" + (f": {detail}" if detail and detail != status else "")
    return title, text


def payload(
    delivery_id: str, event: WebhookEvent, row: Mapping[str, Any], names: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON of one delivery: ``text`` (Slack-compatible hooks show it), ``title``
    (for ntfy's templates), and the whole operation for programs."""
    host_name = names.get(row["host"], row["host"])
    title, text = summary(row, host_name)
    return {
        "event": str(event),
        "delivery": delivery_id,
        "title": title,
        "text": text,
        "operation": operation_json(dict(row), names),
    }


def redact(url: str) -> str:
    """A receiver's URL as shown to readers: scheme, host and port; the path and query
    often hold the hook's secret (Slack's, ntfy's topics), so they are cut."""
    parts = urlsplit(url)
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{rest}"


class Outbox:
    """Deliveries in the database: written with the events, claimed, sent, recorded."""

    def __init__(self, engine: Engine, settings: WebhookSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._wake = threading.Event()  # set when this process enqueued: send at once

    # -- writing events (inside the store's transactions) ------------------------------

    def wants(self, event: WebhookEvent) -> bool:
        if not self.settings.enabled:
            return False
        return event == WebhookEvent.FINISHED or self.settings.on_start

    def enqueue(
        self,
        conn: Connection,
        event: WebhookEvent,
        row: Mapping[str, Any],
        names: Mapping[str, str],
        now: float,
    ) -> None:
        """One delivery per configured URL, in ``conn``'s transaction (the caller's)."""
        rows = []
        for url in self.settings.urls:
            delivery_id = str(uuid.uuid4())
            body = json.dumps(payload(delivery_id, event, row, names), separators=(",", ":"))
            rows.append(
                {
                    "id": delivery_id,
                    "event": str(event),
                    "operation_id": row["id"],
                    "url": url,
                    "body": body,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
            )
        if rows:
            conn.execute(insert(OUTBOX), rows)

    def event_of(self, fields: Mapping[str, Any], row: Mapping[str, Any]) -> WebhookEvent | None:
        """The event a committed change is, if any: a final status, or a first start."""
        status = fields.get("status")
        if status in FINAL:
            return WebhookEvent.FINISHED
        if status == Status.RUNNING and row.get("attempts") == 1:
            return WebhookEvent.STARTED
        return None

    def wake(self) -> None:
        self._wake.set()

    def wait(self, seconds: float) -> bool:
        """Sleep until this process enqueued something or ``seconds`` passed."""
        woken = self._wake.wait(seconds)
        self._wake.clear()
        return woken

    # -- sending -----------------------------------------------------------------------

    def claim(
        self,
        sender_id: str,
        limit: int,
        lease: float,
        holder_gone: Callable[[str], bool] = lambda _holder: False,
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` due deliveries for ``sender_id`` until ``lease`` seconds from
        now. Each is one guarded UPDATE: of processes that race for one, one wins.

        A delivery is free once its lease passed, or at once when ``holder_gone`` says the
        process that claimed it is gone (a process of this machine that died mid-send)."""
        now = time.time()
        due = (OUTBOX.c.status == DeliveryStatus.PENDING, OUTBOX.c.next_attempt_at <= now)
        with self.engine.connect() as conn:
            candidates = conn.execute(
                select(OUTBOX.c.id, OUTBOX.c.claimed_by, OUTBOX.c.claimed_until)
                .where(*due)
                .order_by(OUTBOX.c.next_attempt_at)
                .limit(limit * 4)  # some spare: others may take some first, some are held
            ).all()
        claimed: list[dict[str, Any]] = []
        for candidate in candidates:
            lapsed = OUTBOX.c.claimed_until.is_(None) | (OUTBOX.c.claimed_until < now)
            if candidate.claimed_until is not None and candidate.claimed_until >= now:
                if not (candidate.claimed_by and holder_gone(candidate.claimed_by)):
                    continue  # another process is sending it
                lapsed = OUTBOX.c.claimed_by == candidate.claimed_by  # still that holder's
            with self.engine.begin() as conn:
                row = (
                    conn.execute(
                        update(OUTBOX)
                        .where(OUTBOX.c.id == candidate.id, *due, lapsed)
                        .values(
                            claimed_by=sender_id,
                            claimed_until=now + lease,
                            attempts=OUTBOX.c.attempts + 1,
                            last_attempt_at=now,
                        )
                        .returning(OUTBOX)
                    )
                    .mappings()
                    .first()
                )
            if row is not None:
                claimed.append(dict(row))
                if len(claimed) == limit:
                    break
        return claimed

    def delivered(self, delivery_id: str, status_code: int) -> None:
        now = time.time()
        self._settle(
            delivery_id,
            status=DeliveryStatus.DELIVERED,
            last_status=status_code,
            last_error=None,
            finished_at=now,
        )

    def failed(
        self,
        row: Mapping[str, Any],
        *,
        status_code: int | None,
        error: str,
        final: bool,
        retry_after: float | None = None,
    ) -> None:
        """Record a failed attempt: tried again later, or given up (``final``, or past the
        retry window)."""
        now = time.time()
        wait = self.retry_wait(row["attempts"], retry_after)
        gives_up = final or now + wait > row["created_at"] + self.settings.retry_hours * 3600
        if gives_up:
            self._settle(
                row["id"],
                status=DeliveryStatus.FAILED,
                last_status=status_code,
                last_error=error,
                finished_at=now,
            )
        else:
            self._settle(
                row["id"],
                status=DeliveryStatus.PENDING,
                last_status=status_code,
                last_error=error,
                next_attempt_at=now + wait,
            )

    def retry_wait(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after ``attempts`` tries: doubling from the first
        wait, at most ten minutes, a tenth more at random so that deliveries kept back by
        one outage do not all come back at once; at least what ``Retry-After`` asked."""
        base = self.settings.retry_seconds * 2 ** max(0, attempts - 1)
        wait = min(MAX_RETRY_WAIT, base) * (1 + random.random() / 10)
        if retry_after is not None:
            wait = max(wait, min(MAX_RETRY_WAIT, retry_after))
        return wait

    def next_due(self) -> float | None:
        """When the earliest pending delivery is due (UNIX seconds), or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(OUTBOX.c.next_attempt_at)
                .where(OUTBOX.c.status == DeliveryStatus.PENDING)
                .order_by(OUTBOX.c.next_attempt_at)
                .limit(1)
            ).scalar()

    def _settle(self, delivery_id: str, **values: Any) -> None:
        """Record an attempt's outcome (while it is pending: a second sender that raced
        this one changes nothing); a delivery settled for good is counted for /metrics in
        the same transaction."""
        values.update(claimed_by=None, claimed_until=None)
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == delivery_id, OUTBOX.c.status == DeliveryStatus.PENDING)
                .values(**values)
            ).rowcount
            if changed and values["status"] != DeliveryStatus.PENDING:
                key = (tally.WEBHOOKS, tally.labels(status=str(values["status"])))
                tally.add(conn, {key: 1.0}, time.time())

    # -- reading and forgetting -----------------------------------------------------------

    def recent(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        operation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, as ``GET /api/webhooks/deliveries`` shows them."""
        query = select(OUTBOX).order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id).limit(limit)
        if status:
            query = query.where(OUTBOX.c.status == status)
        if operation_id:
            query = query.where(OUTBOX.c.operation_id == operation_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [delivery_json(dict(r)) for r in rows]

    def pending_count(self, conn: Connection) -> int:
        return conn.execute(
            select(func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.status == DeliveryStatus.PENDING)
        ).scalar_one()

    def purge(self, before: float | None, *, keep: int | None = None) -> int:
        """Forget settled deliveries (delivered or given up) that settled before ``before``,
        and all but the newest ``keep`` of them: the keep settings of operations."""
        settled = OUTBOX.c.status != DeliveryStatus.PENDING
        with self.engine.begin() as conn:
            ids: list[str] = []
            if before is not None:
                old = select(OUTBOX.c.id).where(settled, OUTBOX.c.finished_at < before)
                ids += list(conn.execute(old).scalars())
            if keep is not None:
                surplus = (
                    select(OUTBOX.c.id)
                    .where(settled)
                    .order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id)
                    .offset(keep)
                )
                ids += list(conn.execute(surplus).scalars())
            ids = list(dict.fromkeys(ids))
            for start in range(0, len(ids), PURGE_BATCH):
                batch = ids[start : start + PURGE_BATCH]
                conn.execute(delete(OUTBOX).where(OUTBOX.c.id.in_(batch)))
        return len(ids)


def delivery_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A delivery as readers see it: the receiver's URL redacted, never the body's secret
    parts (there are none) nor the signature."""
    pending = row["status"] == DeliveryStatus.PENDING
    return {
        "id": row["id"],
        "event": row["event"],
        "operation_id": row["operation_id"],
        "target": redact(row["url"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": iso_time(row["created_at"]),
        "last_attempt_at": iso_time(row["last_attempt_at"]),
        "next_attempt_at": iso_time(row["next_attempt_at"]) if pending else None,
        "finished_at": iso_time(row["finished_at"]),
    }
