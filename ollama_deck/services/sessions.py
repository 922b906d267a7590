"""Sessions of the page: random ids kept in the database, so every worker and machine agrees.

``POST /api/session`` trades a token for a random session id (the cookie). The database
keeps only a hash of the id, with an HMAC of the token keyed by the id, the token's name
and three times: when it was opened, last used and when it ends whatever happens. A
session is over when it is closed (logout), past its absolute end, idle for longer than the
idle timeout, or when its token's name no longer has that token. It carries the token's
name and its role as configured now.

Hot path: checking a cookie is one read by primary key. The last-use time is written at
most every ``touch_seconds`` per session, not on every request; the idle timeout is kept
to within that. Long event streams are checked together: each process reads, at most once
per ``recheck_seconds``, which sessions of its open streams still live (one query for all
of them, never one per stream), and a stream whose session ended stops at its next frame.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from ..config import AccessToken
from ..config import DEFAULT_TOKEN_NAME
from ..db import DeckSession
from ..db import table_of
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line

T = TypeVar("T")

SESSION = table_of(DeckSession)
log = logging.getLogger(__name__)
ID_BYTES = 32  # 256 random bits: never guessed
# Hashes asked about in one query when streams are rechecked.
RECHECK_BATCH = 500


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live; from the settings."""

    max_age: float  # seconds from opening to the absolute end
    idle_timeout: float  # seconds without use after which it ends
    recheck_seconds: float  # how often open streams learn of ended sessions

    @property
    def touch_seconds(self) -> float:
        """How stale the stored last use may get: a tenth of the idle timeout, at most a
        minute, so the idle timeout holds to within that and a busy page writes rarely."""
        return min(60.0, self.idle_timeout / 10)


@dataclass(frozen=True)
class LiveSession:
    """A session a request presented and that passed every check, with the token it was
    opened with (its name and role)."""

    id_hash: str
    expires_at: float
    token: AccessToken | None = None


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("latin-1", errors="replace")).hexdigest()


def token_check(session_id: str, token: str) -> str:
    """The token, keyed with the session id: a token change ends every session, and the
    stored value alone cannot be used to test guesses of the token."""
    key = session_id.encode("latin-1", errors="replace")
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


class SessionStore:
    """Open, check and close sessions; end the event streams of sessions that ended."""

    def __init__(
        self, engine: Engine, policy: SessionPolicy, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock  # wall-clock seconds: the times are compared across machines
        self._lock = threading.Lock()
        self._streams: dict[str, int] = {}  # id hash -> open streams in this process
        self._ended: set[str] = set()  # of those, the sessions known to be over
        self._rechecking = threading.Lock()
        self._checked_at = self.clock()

    # -- requests ------------------------------------------------------------------

    def open(self, token: AccessToken) -> tuple[str, LiveSession]:
        """A new session under ``token``: its id (for the cookie only) and what it is.

        Sessions that are over are deleted here: logins are rare, so this keeps the table
        to the sessions of the last ``max_age`` seconds at no cost to other requests.
        """
        session_id = secrets.token_urlsafe(ID_BYTES)
        now = self.clock()
        session = LiveSession(hash_id(session_id), now + self.policy.max_age, token)
        with self.engine.begin() as conn:
            conn.execute(delete(SESSION).where(self._over(now)))
            conn.execute(
                insert(SESSION).values(
                    id_hash=session.id_hash,
                    token_check=token_check(session_id, token.secret),
                    created_at=now,
                    seen_at=now,
                    expires_at=session.expires_at,
                    token_name=token.name,
                )
            )
        return session_id, session

    def check(self, session_id: str, tokens: tuple[AccessToken, ...]) -> LiveSession | None:
        """The session of this id if it lives (refreshing its last use when that is old),
        else None. A session found over is deleted, as is one whose token's name is gone
        or names another token now."""
        id_hash = hash_id(session_id)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    SESSION.c.token_check,
                    SESSION.c.seen_at,
                    SESSION.c.expires_at,
                    SESSION.c.token_name,
                ).where(SESSION.c.id_hash == id_hash)
            ).first()
        if row is None:
            return None
        now = self.clock()
        name = row.token_name or DEFAULT_TOKEN_NAME  # sessions from before named tokens
        token = next((t for t in tokens if t.name == name), None)
        right_token = token is not None and hmac.compare_digest(
            row.token_check, token_check(session_id, token.secret)
        )
        if not right_token or self._is_over(row.seen_at, row.expires_at, now):
            self._forget(id_hash)
            return None
        if now - row.seen_at >= self.policy.touch_seconds:
            self._touch([id_hash], now)
        return LiveSession(id_hash, row.expires_at, token)

    def close(self, session_id: str) -> None:
        """End a session now (logout); its streams in this process stop at their next
        frame, those in other processes within ``recheck_seconds`` and a frame."""
        id_hash = hash_id(session_id)
        with self.engine.begin() as conn:
            conn.execute(delete(SESSION).where(SESSION.c.id_hash == id_hash))
        with self._lock:
            if id_hash in self._streams:
                self._ended.add(id_hash)

    def purge(self) -> int:
        """Delete every session that is over; how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(SESSION).where(self._over(self.clock()))).rowcount

    # -- event streams ---------------------------------------------------------------

    def bounded(self, frames: Iterator[T], session: LiveSession) -> Iterator[T]:
        """``frames`` for as long as ``session`` lives: a frame is sent only while it does.

        Streams yield at least a heartbeat every SSE heartbeat interval, so a stream ends
        within that interval plus ``recheck_seconds`` of its session ending anywhere.
        """
        with self._lock:
            self._streams[session.id_hash] = self._streams.get(session.id_hash, 0) + 1
        try:
            for frame in frames:
                if not self.alive(session):
                    return
                yield frame
        finally:
            with self._lock:
                left = self._streams.get(session.id_hash, 1) - 1
                if left:
                    self._streams[session.id_hash] = left
                else:
                    self._streams.pop(session.id_hash, None)
                    self._ended.discard(session.id_hash)
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def alive(self, session: LiveSession) -> bool:
        """Whether a streaming session still lives, as far as this process knows now."""
        now = self.clock()
        if now >= session.expires_at or session.id_hash in self._ended:
            return False
        if now - self._checked_at >= self.policy.recheck_seconds:
            # One stream rechecks for all; the others go on with what is known.
            if self._rechecking.acquire(blocking=False):
                try:
                    self._recheck(now)
                finally:
                    self._rechecking.release()
        return session.id_hash not in self._ended

    def _recheck(self, now: float) -> None:
        self._checked_at = now
        with self._lock:
            watched = list(self._streams)
        if not watched:
            return
        try:
            living: set[str] = set()
            for start in range(0, len(watched), RECHECK_BATCH):
                batch = watched[start : start + RECHECK_BATCH]
                with self.engine.connect() as conn:
                    living.update(
                        conn.execute(
                            select(SESSION.c.id_hash).where(
                                SESSION.c.id_hash.in_(batch), ~self._over(now)
                            )
                        ).scalars()
                    )
            # An open stream is use: its session does not idle out while it watches.
            self._touch(sorted(living), now)
        except DATABASE_ERRORS as exc:
            # Unknown is not over: the streams go on, and the next recheck asks again.
            log.warning("could not recheck the sessions of open streams: %s", first_line(exc))
            return
        with self._lock:
            self._ended.update(h for h in watched if h not in living and h in self._streams)

    # -- helpers ---------------------------------------------------------------------

    def _is_over(self, seen_at: float, expires_at: float, now: float) -> bool:
        return now >= expires_at or now - seen_at >= self.policy.idle_timeout

    def _over(self, now: float):  # noqa: ANN202 - a SQL expression
        return or_(SESSION.c.expires_at <= now, SESSION.c.seen_at <= now - self.policy.idle_timeout)

    def _touch(self, hashes: list[str], now: float) -> None:
        """Record use of these sessions where the stored time is older than the touch
        interval. A failure costs only freshness, never the request."""
        if not hashes:
            return
        stale = now - self.policy.touch_seconds
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(SESSION)
                    .where(and_(SESSION.c.id_hash.in_(hashes), SESSION.c.seen_at <= stale))
                    .values(seen_at=now)
                )
        except DATABASE_ERRORS as exc:
            log.warning("could not record the use of a session: %s", first_line(exc))

    def _forget(self, id_hash: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(SESSION).where(SESSION.c.id_hash == id_hash))
        except DATABASE_ERRORS as exc:
            log.warning("could not delete an ended session: %s", first_line(exc))
