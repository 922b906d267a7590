"""The deck behind a host app's Flask-Login (``guard=login_required``), over a real socket.

A logged-out browser that navigates keeps the host's redirect to its login page; scripts,
``fetch()`` and ``EventSource`` get a JSON 401 that names the login page; ``/healthz``
answers probes unless the host guards it too.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask_login import login_required

from ollama_deck import OllamaDeck
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .helpers import wait_until
from .hostapp import auth

BROWSER_PAGE = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
}
FETCH = {"Accept": "application/json", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"}
EVENT_SOURCE = {"Accept": "text/event-stream", "Sec-Fetch-Dest": "empty"}


@pytest.fixture
def login_host(fake_ollama, tmp_path, monkeypatch, serve):
    """tests/hostapp with its Flask-Login login (HOST_LOGIN=1), served; returns the server."""
    from .hostapp import create_host_app

    monkeypatch.setenv("HOST_DATABASE_URL", f"sqlite:///{tmp_path / 'host.db'}")
    monkeypatch.setenv("HOST_LOGIN", "1")
    settings = test_settings(fake_ollama.url, "unused://")
    del settings["OLLAMA_DECK_DATABASE_URL"]  # with db=, the host's database is the deck's
    app = create_host_app(**settings)
    yield serve(app)
    OllamaDeck.shutdown(app)


def log_in(live) -> None:
    answer = live.post(
        "/login?next=/models/",
        data={"username": auth.USER, "password": auth.PASSWORD},
        allow_redirects=False,
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/models/"


def assert_login_required(response) -> str:
    """A JSON 401 naming the host's login page; returns that URL."""
    assert response.status_code == 401, response.text[:200]
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "login_required"
    assert error["login_url"].startswith("/login?next=")
    assert error["login_url"] in error["message"]
    return error["login_url"]


def test_logged_out_scripts_fetch_and_event_streams_get_json_401(login_host, fake_ollama):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[20_000], step=5_000))
    live = login_host
    # curl and scripts (Accept */* or none), fetch() and EventSource alike.
    assert_login_required(live.get("/models/api/models", allow_redirects=False))
    assert_login_required(live.get("/models/api/models", headers=FETCH, allow_redirects=False))
    assert_login_required(live.get("/models/api/status", headers={"Accept": "application/json"}))
    stream = live.get("/models/progress/stream", headers=EVENT_SOURCE, allow_redirects=False)
    assert_login_required(stream)
    assert_login_required(live.get("/models/progress/stream", allow_redirects=False))
    pull = live.post(
        "/models/api/models/pull", json={"model": "llama3.2:1b"}, allow_redirects=False
    )
    assert_login_required(pull)
    # A fetch of the page itself reads the answer too.
    assert_login_required(live.get("/models/", headers=FETCH, allow_redirects=False))
    assert fake_ollama.pull_count("llama3.2:1b") == 0

    # Logged in, the same client pulls a model and watches it.
    log_in(live)
    op = live.post("/models/api/models/pull", json={"model": "llama3.2:1b"}).json()
    final = wait_until(
        lambda: (s := live.get(op["urls"]["progress"]).json())["status"] == "succeeded" and s
    )
    assert final["percent"] == 100.0
    with live.session.get(
        live.url + "/models/progress/stream", headers=EVENT_SOURCE, stream=True, timeout=10
    ) as events:
        assert events.status_code == 200
        assert events.headers["Content-Type"].startswith("text/event-stream")

    # Logged out again: 401 at once.
    live.post("/logout", allow_redirects=False)
    assert_login_required(live.get("/models/api/models", headers=FETCH))


def test_a_browser_that_navigates_keeps_the_hosts_redirect(login_host):
    live = login_host
    for path in ("/models/", "/models/api/models"):
        answer = live.get(path, headers=BROWSER_PAGE, allow_redirects=False)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/login?next=")
    # A browser that sends no Sec-Fetch headers, by what it accepts.
    old_browser = {"Accept": BROWSER_PAGE["Accept"]}
    page = live.get("/models/", headers=old_browser, allow_redirects=False)
    assert page.status_code == 302
    # The page and its files without a hint either way: the guard's own answer.
    assert live.get("/models/", allow_redirects=False).status_code == 302
    assert live.get("/models/static/app.js", allow_redirects=False).status_code == 302
    # Logged in, the page shows.
    log_in(live)
    assert live.get("/models/", headers=BROWSER_PAGE).status_code == 200


def test_healthz_answers_probes_without_the_login(login_host):
    answer = login_host.get("/models/healthz", allow_redirects=False)
    assert answer.status_code == 200
    assert answer.json()["ok"] is True


@pytest.fixture
def guarded_app(fake_ollama, sqlite_url, serve):
    """A minimal host with Flask-Login; ``build(**deck_options)`` serves one."""
    apps = []

    def build(**options):
        app = Flask("host")
        app.config.update(test_settings(fake_ollama.url, sqlite_url))
        auth.init_login(app)
        OllamaDeck(app, url_prefix="/models", guard=login_required, **options)
        apps.append(app)
        return serve(app)

    yield build
    for app in apps:
        OllamaDeck.shutdown(app)


def test_a_host_can_guard_healthz_too(guarded_app):
    live = guarded_app(guard_healthz=True)
    assert_login_required(live.get("/models/healthz", allow_redirects=False))
    navigated = live.get("/models/healthz", headers=BROWSER_PAGE, allow_redirects=False)
    assert navigated.status_code == 302
    log_in(live)
    assert live.get("/models/healthz").status_code == 200


def test_without_a_login_page_the_401_names_none(guarded_app, monkeypatch):
    # Flask-Login with no login view aborts with 401: JSON clients get the same JSON.
    monkeypatch.setattr(auth.login, "login_view", None)
    live = guarded_app()
    answer = live.get("/models/api/models", headers=FETCH)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "login_required"
    assert "login_url" not in answer.json()["error"]
    assert live.get("/models/progress/stream", headers=EVENT_SOURCE).status_code == 401
