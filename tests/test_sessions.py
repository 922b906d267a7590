"""Sessions that end (logout, expiry, idle, a new token) for every worker at once, cookie
names per deck, event streams of ended sessions, and the wait between wrong tokens.

"Two workers" here are two apps over one database, each behind its own socket, as two
gunicorn workers are; tests/test_security_served.py does it with gunicorn itself.
"""

from __future__ import annotations

import time

import pytest
import requests
from flask import Flask
from sqlalchemy import event
from sqlalchemy import text

from ollama_deck import OllamaDeck
from ollama_deck.services.guesses import FREE_MISTAKES
from ollama_deck.state import setup_of

from .conftest import test_settings
from .test_security import assert_error

TOKEN = "correct horse battery staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
IDLE = 600.0
MAX_AGE = 3600.0


class Clock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def locked_app(make_app, **overrides):
    settings = {
        "OLLAMA_DECK_TOKEN": TOKEN,
        "OLLAMA_DECK_SESSION_IDLE_TIMEOUT": IDLE,
        "OLLAMA_DECK_SESSION_MAX_AGE": MAX_AGE,
        **overrides,
    }
    return make_app(**settings)


def cookie_name(server) -> str:
    return f"ollama_deck_session_{server.url.rsplit(':', 1)[1]}"


def login(server) -> str:
    """POST /api/session with the token; the session id its cookie carries."""
    response = server.post("/api/session", headers=BEARER)
    assert response.status_code == 200, response.text
    return response.cookies[cookie_name(server)]


def with_session(server, session_id: str) -> dict[str, str]:
    """The Cookie header a browser would send to ``server`` for this session."""
    return {"Cookie": f"{cookie_name(server)}={session_id}"}


@pytest.fixture
def two_workers(make_app, serve):
    """Two apps with one token over one database, each served on its own port."""
    first = locked_app(make_app)
    second = locked_app(make_app)
    return serve(first), serve(second)


# ---------------------------------------------------------------- a session per login


def test_each_login_gets_a_new_random_session_stored_only_as_a_hash(
    fake_ollama, make_app, serve, sqlite_url
):
    server = serve(locked_app(make_app))
    first, second = login(server), login(server)
    assert first != second and len(first) >= 43  # 256 random bits
    for session_id in (first, second):
        assert server.get("/api/models", headers=with_session(server, session_id)).ok
    engine = setup_of(server.server.app).state(server.server.app).engine
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM ollama_deck_session")).fetchall()
    assert len(stored) == 2
    dump = repr(stored)
    assert first not in dump and second not in dump and TOKEN not in dump


def test_cookie_attributes_and_a_name_per_port(make_app, serve):
    server = serve(locked_app(make_app))
    opened = server.post("/api/session", headers=BEARER)
    header = opened.headers["Set-Cookie"]
    assert header.startswith(f"{cookie_name(server)}=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert f"Max-Age={int(MAX_AGE)}" in header
    assert "Secure" not in header  # plain http here; over https the cookie is Secure
    # The old, shared name is not a credential any more.
    old = {"Cookie": f"ollama_deck_session={opened.cookies[cookie_name(server)]}"}
    assert_error(server.get("/api/models", headers=old), 401)


def test_two_decks_on_one_host_keep_their_sessions_apart(two_workers):
    """Browsers send cookies of a host name to every port of it: with one shared name, the
    second deck's login overwrote the first's session (and both read each other's)."""
    first, second = two_workers
    jar = requests.Session()  # one browser, two decks on 127.0.0.1
    assert jar.post(first.url + "/api/session", headers=BEARER).ok
    assert jar.post(second.url + "/api/session", headers=BEARER).ok
    assert {c.name for c in jar.cookies} == {cookie_name(first), cookie_name(second)}
    assert jar.get(first.url + "/api/models").ok and jar.get(second.url + "/api/models").ok
    assert jar.delete(second.url + "/api/session").ok  # logging out of one ...
    assert jar.get(first.url + "/api/models").ok  # ... leaves the other alone
    assert jar.get(second.url + "/api/models").status_code == 401


def test_cookie_name_and_path_carry_the_prefix(fake_ollama, sqlite_url, serve):
    app = Flask("host")
    app.config.update(test_settings(fake_ollama.url, sqlite_url, OLLAMA_DECK_TOKEN=TOKEN))
    OllamaDeck(app, url_prefix="/models")
    try:
        server = serve(app)
        opened = server.post("/models/api/session", headers=BEARER)
        header = opened.headers["Set-Cookie"]
        assert header.startswith(f"{cookie_name(server)}_models=")
        assert "Path=/models" in header
    finally:
        OllamaDeck.shutdown(app)


def test_a_session_does_not_renew_itself(make_app, serve):
    server = serve(locked_app(make_app))
    session_id = login(server)
    again = server.post("/api/session", headers=with_session(server, session_id))
    assert again.status_code == 200
    assert "Set-Cookie" not in again.headers  # only the token opens a session


# ---------------------------------------------------------------- sessions that end


def test_session_replay_after_logout_is_refused_by_every_worker(fake_ollama, two_workers):
    first, second = two_workers
    fake_ollama.add_model("llama3.2:1b")
    session_id = login(first)
    assert second.get("/api/models", headers=with_session(second, session_id)).ok
    assert second.delete("/api/session", headers=with_session(second, session_id)).ok

    for server in (first, second):
        replay = with_session(server, session_id)
        assert_error(server.get("/api/models", headers=replay), 401, "unauthorized")
        pull = server.post("/api/models/pull", json={"model": "qwen2.5:0.5b"}, headers=replay)
        assert_error(pull, 401, "unauthorized")
        deleted = server.delete("/api/models/llama3.2:1b", headers=replay)
        assert_error(deleted, 401)
    assert fake_ollama.installed() == ["llama3.2:1b"]
    assert first.get("/progress", headers=BEARER).json()["operations"] == []


def test_idle_sessions_end_and_used_ones_live(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    clock = Clock()
    setup_of(app).state(app).sessions.clock = clock
    used, idle = login(server), login(server)
    for _ in range(3):  # used every 0.6 idle timeouts: lives past two of them
        clock.advance(0.6 * IDLE)
        assert server.get("/api/models", headers=with_session(server, used)).ok
    assert_error(server.get("/api/models", headers=with_session(server, idle)), 401)
    clock.advance(IDLE)
    assert_error(server.get("/api/models", headers=with_session(server, used)), 401)


def test_sessions_end_at_their_maximum_age_however_used(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    clock = Clock()
    setup_of(app).state(app).sessions.clock = clock
    session_id = login(server)
    elapsed = 0.0
    while elapsed + 0.5 * IDLE < MAX_AGE:
        clock.advance(0.5 * IDLE)
        elapsed += 0.5 * IDLE
        assert server.get("/api/models", headers=with_session(server, session_id)).ok
    clock.advance(MAX_AGE - elapsed)
    assert_error(server.get("/api/models", headers=with_session(server, session_id)), 401)


def test_a_new_token_ends_every_session(make_app, serve):
    old = serve(locked_app(make_app))
    session_id = login(old)
    # The deck restarted with a new token (another app over the same database).
    new = serve(locked_app(make_app, OLLAMA_DECK_TOKEN="a brand new token"))
    assert_error(new.get("/api/models", headers=with_session(new, session_id)), 401)
    assert new.get("/api/models", headers={"Authorization": "Bearer a brand new token"}).ok


def test_using_a_session_writes_its_last_use_rarely(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    state = setup_of(app).state(app)
    clock = Clock()
    state.sessions.clock = clock
    session_id = login(server)
    writes = []

    def count(_conn, _cursor, statement, *_args):
        if "ollama_deck_session" in statement and not statement.lstrip().startswith("SELECT"):
            writes.append(statement)

    event.listen(state.engine, "after_cursor_execute", count)
    try:
        for _ in range(30):
            clock.advance(1.0)  # 30 s of busy use: within one touch interval (60 s)
            assert server.get("/api/models", headers=with_session(server, session_id)).ok
        assert writes == []
        clock.advance(60.0)
        assert server.get("/api/models", headers=with_session(server, session_id)).ok
        assert len(writes) == 1
    finally:
        event.remove(state.engine, "after_cursor_execute", count)


def test_logins_purge_sessions_that_are_over(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    state = setup_of(app).state(app)
    clock = Clock()
    state.sessions.clock = clock
    for _ in range(5):
        login(server)
    clock.advance(IDLE + 1)
    login(server)
    with state.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ollama_deck_session")).scalar() == 1


# ---------------------------------------------------------------- event streams


def read_until_closed(response, timeout: float = 10.0) -> bytes:
    """Every byte of a streamed response until the server ends it; fails after ``timeout``
    (heartbeats arrive every 0.2 s here, so the deadline is checked often)."""
    deadline = time.monotonic() + timeout
    received = b""
    for chunk in response.iter_content(chunk_size=None):
        received += chunk
        if time.monotonic() > deadline:
            raise AssertionError("the stream was still open after the session ended")
    return received


def test_the_stream_of_a_session_that_ended_elsewhere_ends(make_app, serve):
    settings = {"OLLAMA_DECK_SSE_HEARTBEAT_SECONDS": 0.2}
    first = serve(locked_app(make_app, **settings))
    second = serve(locked_app(make_app, **settings))
    session_id = login(first)
    stream = requests.get(
        first.url + "/progress/stream",
        headers=with_session(first, session_id),
        stream=True,
        timeout=10,
    )
    bearer_stream = requests.get(
        first.url + "/progress/stream", headers=BEARER, stream=True, timeout=10
    )
    try:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith(b"retry:")  # it streams
        assert second.delete("/api/session", headers=with_session(second, session_id)).ok
        read_until_closed(stream)
        # A stream opened with the token itself is not affected, and the ended one is
        # counted out.
        assert next(bearer_stream.iter_lines()).startswith(b"retry:")
        assert setup_of(first.server.app).state(first.server.app).hub.watchers == 1
    finally:
        stream.close()
        bearer_stream.close()


def test_a_stream_ends_at_its_session_maximum_age(make_app, serve):
    app = locked_app(make_app, OLLAMA_DECK_SSE_HEARTBEAT_SECONDS=0.2)
    server = serve(app)
    clock = Clock()
    setup_of(app).state(app).sessions.clock = clock
    session_id = login(server)
    stream = requests.get(
        server.url + "/progress/stream",
        headers=with_session(server, session_id),
        stream=True,
        timeout=10,
    )
    try:
        assert next(stream.iter_lines()).startswith(b"retry:")
        clock.advance(MAX_AGE)
        read_until_closed(stream)
    finally:
        stream.close()


# ---------------------------------------------------------------- guessing the token


def test_wrong_tokens_make_their_address_wait_and_the_right_one_works_after(
    fake_ollama, make_app, serve
):
    app = locked_app(make_app)
    server = serve(app)
    throttle = setup_of(app).guesses
    clock = Clock()
    throttle.clock = clock
    wrong = {"Authorization": "Bearer not-the-token"}
    for _ in range(FREE_MISTAKES):  # typos cost nothing
        assert_error(server.get("/api/models", headers=wrong), 401, "unauthorized")

    waits = []
    for _ in range(4):
        assert_error(server.get("/api/models", headers=wrong), 401)
        # During the wait no token is looked at, not even the right one.
        for headers in (wrong, BEARER):
            refused = server.get("/api/models", headers=headers)
            assert_error(refused, 429, "too_many_wrong_tokens")
        waits.append(int(refused.headers["Retry-After"]))
        clock.advance(waits[-1])
    assert waits == sorted(waits) and waits[-1] > waits[0], waits  # it grows

    assert server.get("/api/models", headers=BEARER).status_code == 200
    # The right token cleared the record: the next typo is free again.
    assert_error(server.get("/api/models", headers=wrong), 401, "unauthorized")
    assert server.get("/api/models", headers=BEARER).status_code == 200


def test_a_guesser_gets_few_answers_from_many_tries(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    setup_of(app).guesses.clock = Clock()  # no time passes while it guesses
    statuses = [
        server.get("/api/session", headers={"Authorization": f"Bearer guess-{i}"}).status_code
        for i in range(60)
    ]
    # FREE_MISTAKES + 1 tokens were looked at; every other try was turned away unread.
    assert statuses.count(401) == FREE_MISTAKES + 1
    assert statuses.count(429) == 60 - FREE_MISTAKES - 1


def test_waiting_for_wrong_tokens_leaves_sessions_alone(make_app, serve):
    app = locked_app(make_app)
    server = serve(app)
    session_id = login(server)
    setup_of(app).guesses.clock = Clock()
    for i in range(FREE_MISTAKES + 3):
        server.get("/api/session", headers={"Authorization": f"Bearer guess-{i}"})
    assert server.get("/api/session", headers=BEARER).status_code == 429
    # Same address, but a live session is not a token guess: it is served at once.
    assert server.get("/api/models", headers=with_session(server, session_id)).ok
