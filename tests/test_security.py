"""Safe to expose: Host and Origin checks, JSON-only bodies, bounded input, the token,
the embedding guard and the security headers, each over a real socket."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
from flask import Flask
from flask import jsonify
from flask import request

from ollama_deck import OllamaDeck
from ollama_deck.cli import main as cli_main
from ollama_deck.config import settings_from_env
from ollama_deck.security import bind_refusal
from ollama_deck.security import host_allowed
from ollama_deck.security import same_origin

from .conftest import test_settings

JSON = {"Content-Type": "application/json"}
EVIL = "http://attacker.example:8000"


def operations(live) -> list[dict]:
    return live.get("/progress").json()["operations"]


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def exchange(
    url: str, data: bytes, *, timeout: float = 30
) -> tuple[http.client.HTTPResponse, socket.socket]:
    """Send raw bytes to the server of ``url`` and read one response (the socket stays open)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(data)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, sock


# ---------------------------------------------------------------- DNS rebinding: Host


def test_rebinding_host_cannot_delete_a_model(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    port = live.url.rsplit(":", 1)[1]
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
        response = live.delete("/api/models/llama3.2:1b", headers={"Host": host})
        assert_error(response, 421, "host_not_allowed")
        assert_error(live.get("/api/models", headers={"Host": host}), 421)
    assert "llama3.2:1b" in fake_ollama.installed()
    assert live.delete("/api/models/llama3.2:1b").status_code == 200  # Host 127.0.0.1:port
    assert "llama3.2:1b" not in fake_ollama.installed()


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "127.0.0.2"]
)
def test_loopback_names_are_allowed(live, host):
    port = live.url.rsplit(":", 1)[1]
    response = live.get("/api/status", headers={"Host": host.format(port=port)})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host", ["", "a b", "x@127.0.0.1", "127.0.0.1:99999", "[::1", "ünicode.example"]
)
def test_malformed_host_is_refused(live, host):
    assert_error(live.get("/api/status", headers={"Host": host}), 421, "host_not_allowed")


def test_allowed_hosts_setting_adds_names(make_app, serve):
    live = serve(make_app(OLLAMA_DECK_ALLOWED_HOSTS=("deck.example", ".lan")))
    for host in ("deck.example", "deck.example:8000", "box.lan", "a.b.lan"):
        assert live.get("/api/status", headers={"Host": host}).status_code == 200, host
    for host in ("other.example", "deck.example.evil", "lan.evil"):
        assert_error(live.get("/api/status", headers={"Host": host}), 421)


def test_host_apps_trusted_hosts_take_over(make_app, serve):
    live = serve(make_app(TRUSTED_HOSTS=["deck.corp"]))
    assert live.get("/api/status", headers={"Host": "deck.corp"}).status_code == 200
    # Flask itself refuses a Host outside TRUSTED_HOSTS (400) before the deck's check runs.
    refused = live.get("/api/status", headers={"Host": "localhost"})
    assert refused.status_code in (400, 421)
    assert_error(refused, refused.status_code)


def test_security_settings_from_the_environment():
    values = settings_from_env(
        {
            "OLLAMA_DECK_ALLOWED_HOSTS": " Deck.Example, .lan ,,",
            "OLLAMA_DECK_TOKEN": "s3cret",
            "OLLAMA_DECK_MAX_BODY_BYTES": "1000",
            "OLLAMA_DECK_BODY_TIMEOUT": "2.5",
        }
    )
    assert values["OLLAMA_DECK_ALLOWED_HOSTS"] == ("deck.example", ".lan")
    assert values["OLLAMA_DECK_TOKEN"] == "s3cret"
    assert values["OLLAMA_DECK_MAX_BODY_BYTES"] == 1000
    assert values["OLLAMA_DECK_BODY_TIMEOUT"] == 2.5
    defaults = settings_from_env({})
    assert defaults["OLLAMA_DECK_TOKEN"] is None
    assert defaults["OLLAMA_DECK_MAX_BODY_BYTES"] == 65536


def test_host_rules():
    config = {"OLLAMA_DECK_ALLOWED_HOSTS": "Deck.Example, .lan"}
    assert host_allowed("192.168.1.5:8000", config, "192.168.1.5")  # the bound address
    assert not host_allowed("192.168.1.6:8000", config, "192.168.1.5")
    assert host_allowed("DECK.example", config, None)
    assert host_allowed(None, config, None)  # HTTP/1.0 clients send no Host; browsers do
    assert host_allowed("anything", {"OLLAMA_DECK_ALLOWED_HOSTS": "*"}, None)
    assert host_allowed("deck.example", {"SERVER_NAME": "deck.example:443"}, None)


# ---------------------------------------------------------------- cross-site writes


def test_foreign_origin_cannot_change_anything(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("evil:1")
    attempts = [
        ("post", "/api/models/pull", {"json": {"model": "evil:1"}}),
        ("post", "/api/models/llama3.2:1b/load", {}),
        ("post", "/api/models/llama3.2:1b/unload", {}),
        ("delete", "/api/models/llama3.2:1b", {}),
        ("put", "/api/active-model", {"json": {"model": "llama3.2:1b"}}),
        ("post", "/api/chat", {"json": {"model": "llama3.2:1b", "prompt": "hi"}}),
        ("post", "/progress/00000000-0000-0000-0000-000000000000/cancel", {}),
    ]
    refusals = [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": live.url.replace("127.0.0.1", "localhost")},  # another origin, same machine
        {"Origin": live.url.replace("http:", "https:")},
        {"Origin": live.url + ":1"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for method, path, kwargs in attempts:
        for headers in refusals:
            response = getattr(live, method)(path, headers=headers, **kwargs)
            assert_error(response, 403, "cross_origin")
    assert operations(live) == []
    assert fake_ollama.installed() == ["llama3.2:1b"]
    assert fake_ollama.loaded() == []
    assert live.get("/api/active-model").json()["model"] is None
    assert not [r for r in fake_ollama.requests if r[1] in ("/api/chat", "/api/pull")]


def test_own_origin_and_curl_can_write(fake_ollama, live):
    fake_ollama.allow_pull("a:1")
    fake_ollama.allow_pull("b:1")
    own = live.post("/api/models/pull", json={"model": "a:1"}, headers={"Origin": live.url})
    assert own.status_code == 202
    fetched = live.post(
        "/api/models/pull", json={"model": "b:1"}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert fetched.status_code == 202
    assert live.get("/api/models", headers={"Origin": EVIL}).status_code == 200  # reads: CORS
    assert len(operations(live)) == 2


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_bodies_must_be_json(live, content_type):
    """What a cross-site form or no-cors fetch can send without a preflight is refused."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"model": "evil:1", "x": "="}'
    for method, path in [
        ("post", "/api/models/pull"),
        ("put", "/api/active-model"),
        ("post", "/api/chat"),
    ]:
        response = getattr(live, method)(path, data=body, headers=headers)
        assert_error(response, 415, "unsupported_media_type")
    assert operations(live) == []


def test_origin_rules():
    assert same_origin(None, None, "http", "127.0.0.1:8000")  # curl
    assert same_origin(None, "none", "http", "127.0.0.1:8000")  # typed into the address bar
    assert same_origin("http://127.0.0.1", None, "http", "127.0.0.1:80")
    assert same_origin("https://deck.example", None, "https", "deck.example")
    assert not same_origin("http://deck.example", None, "https", "deck.example")
    assert not same_origin("http://127.0.0.1:8000/path", None, "http", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8000", None, "http", None)


# ---------------------------------------------------------------- bounded input


def test_large_body_is_refused_before_it_is_read(live):
    head = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
    )
    response, sock = exchange(live.url, head + b'{"model": "')  # 50 MB announced, 11 B sent
    try:
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
    finally:
        sock.close()
    assert operations(live) == []


def test_large_chunked_body_is_refused(live):
    chunk = b"x" * 70_000
    data = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x}\r\n".encode()
        + chunk
        + b"\r\n0\r\n\r\n"
    )
    response, sock = exchange(live.url, data)
    try:
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
    finally:
        sock.close()


def test_body_just_under_the_limit_is_read(make_app, serve):
    live = serve(make_app(OLLAMA_DECK_MAX_BODY_BYTES=1000))
    padding = "x" * (1000 - len('{"model": "", "pad": ""}'))
    body = json.dumps({"model": "", "pad": padding}).encode()
    assert len(body) == 1000
    assert_error(live.post("/api/models/pull", data=body, headers=JSON), 400, "model_required")
    assert_error(live.post("/api/models/pull", data=body + b" ", headers=JSON), 413)


BAD_JSON = [
    b"[" * 30_000 + b"]" * 30_000,  # RecursionError in the parser
    b'{"model": ' + b"[" * 25 + b"]" * 25 + b"}",  # parses, but deeper than any real body
    b'{"model": ' + b"9" * 5000 + b"}",  # more digits than Python converts
    b'{"model": ' + b"9" * 30 + b"}",
    b'{"model": -' + b"9" * 30 + b"}",
    b'{"model": 1e999}',
    b'{"model": NaN}',
    b'{"model": Infinity}',
    b'{"model": "\xff\xfe"}',
    b"\xef\xbb\xbf{}",
    b'{"model": "a"',
    b"[]",
    b'"llama3.2:1b"',
    b"42",
    b"null",
    b"true",
]


@pytest.mark.parametrize("body", BAD_JSON, ids=range(len(BAD_JSON)))
def test_bad_json_is_a_400_on_every_json_route(live, body):
    for method, path in [
        ("post", "/api/models/pull"),
        ("put", "/api/active-model"),
        ("post", "/api/chat"),
    ]:
        response = getattr(live, method)(path, data=body, headers=JSON)
        assert_error(response, 400)
    assert operations(live) == []


@pytest.mark.parametrize(
    "value",
    ["99999999999999999999999999", "9223372036854775808", "-1", "1e3", "0x10", "1_0", "abc", "1 2"],
)
def test_out_of_range_event_ids_are_a_400(live, value):
    for path in ("/progress/stream", "/progress/00000000-0000-0000-0000-000000000000/stream"):
        response = live.get(path, headers={"Last-Event-ID": value}, stream=True)
        if path.endswith("0/stream"):
            assert response.status_code in (400, 404)
        else:
            assert_error(response, 400)
        response.close()
    assert_error(live.get(f"/progress/stream?last_event_id={value}", stream=True), 400)


def test_non_ascii_digits_are_not_event_ids(live):
    assert_error(live.get("/progress/stream?last_event_id=١٢", stream=True), 400)


def test_largest_event_id_is_accepted(live):
    response = live.get("/progress/stream", headers={"Last-Event-ID": str(2**63 - 1)}, stream=True)
    assert response.status_code == 200
    response.close()


@pytest.mark.parametrize(
    "path",
    [
        "/progress?limit=99999999999999999999999",
        "/progress?limit=-1",
        "/progress?limit=0",
        "/progress?limit=1.5",
        "/progress?status=" + "x" * 3000,
        "/progress/00000000-0000-0000-0000-000000000000?log=99999999999999999999",
        "/api/catalog?q=" + "x" * 201,
        "/api/catalog?category=" + "y" * 500,
    ],
)
def test_out_of_range_query_values_are_a_400(live, path):
    response = live.get(path)
    assert response.status_code in (400, 404), response.text
    assert_error(response, response.status_code)


def test_catalog_survives_an_installed_name_it_cannot_parse(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model("weird name!:x")
    response = live.get("/api/catalog")
    assert response.status_code == 200, response.text
    tags = [t for f in response.json()["families"] for t in f["tags"]]
    assert [t["model"] for t in tags if t["installed"]] == ["llama3.2:1b"]


def test_slow_body_is_cut_off(make_app, serve):
    live = serve(make_app(OLLAMA_DECK_BODY_TIMEOUT=0.5))
    head = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    response, sock = exchange(live.url, head + b'{"model": "', timeout=30)
    try:
        assert response.status == 408
        assert json.loads(response.read())["error"]["code"] == "body_timeout"
        assert sock.recv(1) == b""  # and the connection is closed
    finally:
        sock.close()
    assert operations(live) == []


# ---------------------------------------------------------------- headers


def test_page_and_assets_carry_a_strict_policy(live):
    for path in ("/", "/static/app.js", "/static/app.css"):
        response = live.get(path)
        assert response.status_code == 200
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    page = live.get("/").text
    # No inline script may run: the only inline <script> is the JSON config.
    assert page.count("<script") == 2
    assert '<script id="deck-config" type="application/json">' in page


def test_api_answers_are_never_cached(live):
    for response in (
        live.get("/api/status"),
        live.get("/api/models/nope:1"),
        live.get("/progress"),
        live.get("/api/no-such-thing"),
        live.post("/api/models/pull", data=b"[]", headers=JSON),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    stream = live.get("/progress/stream", stream=True)
    assert stream.headers["Cache-Control"] == "no-store"
    stream.close()


# ---------------------------------------------------------------- the token

TOKEN = "correct horse battery staple"


@pytest.fixture
def locked(make_app, serve):
    return serve(make_app(OLLAMA_DECK_TOKEN=TOKEN))


def test_token_is_required_everywhere_but_the_shell(fake_ollama, locked):
    fake_ollama.add_model("llama3.2:1b")
    for path in ("/api/models", "/api/status", "/progress", "/api/session", "/api/catalog"):
        response = locked.get(path)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(locked.delete("/api/models/llama3.2:1b"), 401)
    assert_error(locked.post("/api/models/pull", json={"model": "x:1"}), 401)
    assert_error(locked.get("/progress/stream", stream=True), 401)
    assert fake_ollama.installed() == ["llama3.2:1b"]
    for path in ("/", "/static/app.js", "/static/app.css"):
        assert locked.get(path).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        "Bearer " + "x" * 5000,
    ],
)
def test_wrong_token_is_a_401(locked, authorization):
    assert_error(locked.get("/api/models", headers={"Authorization": authorization}), 401)


def test_right_token_and_session_cookie(fake_ollama, locked):
    fake_ollama.add_model("llama3.2:1b")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/api/models", headers=bearer).status_code == 200
    assert locked.get("/api/session", headers=bearer).json() == {"token_required": True}

    opened = locked.post("/api/session", headers=bearer)
    assert opened.status_code == 200
    cookie = opened.headers["Set-Cookie"]
    name = f"ollama_deck_session_{locked.url.rsplit(':', 1)[1]}"
    assert cookie.startswith(f"{name}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie and TOKEN.replace(" ", "%20") not in cookie

    # The cookie alone now opens everything, the event stream included (EventSource sends
    # cookies, never headers).
    assert locked.get("/api/models").status_code == 200
    stream = locked.get("/progress/stream", stream=True)
    assert stream.status_code == 200
    stream.close()
    # A forged cookie does not.
    locked.session.cookies.clear()
    locked.session.cookies.set(name, "0" * 64)
    assert_error(locked.get("/api/models"), 401)


def test_session_can_be_closed(locked):
    opened = locked.post("/api/session", headers={"Authorization": f"Bearer {TOKEN}"})
    assert opened.status_code == 200
    closed = locked.delete("/api/session")
    assert closed.status_code == 200
    assert_error(locked.get("/api/models"), 401)


def test_health_check_is_exempt_by_name(make_app, serve):
    app = make_app(OLLAMA_DECK_TOKEN=TOKEN)
    if "ollama_deck.healthz" not in app.view_functions:
        pytest.skip("GET /healthz is added on main by another change")
    assert serve(app).get("/healthz").status_code == 200


def test_serve_refuses_an_open_address_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("OLLAMA_DECK_TOKEN", raising=False)
    for host in ("0.0.0.0", "192.168.1.5", "::", "deck.example"):
        assert cli_main(["serve", "--host", host, "--port", "1"]) == 2
        assert "OLLAMA_DECK_TOKEN" in capsys.readouterr().err
    assert bind_refusal("0.0.0.0", None, insecure=True) is None
    assert bind_refusal("0.0.0.0", "s3cret", insecure=False) is None
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert bind_refusal(host, None, insecure=False) is None


# ---------------------------------------------------------------- embedding: guard=


def login_required(view):
    """A stand-in for Flask-Login's decorator: a session header instead of a login."""

    def wrapped(*args, **kwargs):
        if request.headers.get("X-User") != "ada":
            return jsonify({"host": "please log in"}), 401
        return view(*args, **kwargs)

    return wrapped


@pytest.fixture
def guarded(fake_ollama, sqlite_url, serve):
    app = Flask("host")
    app.config.update(test_settings(fake_ollama.url, sqlite_url))

    @app.get("/")
    def home():
        return "host home"

    OllamaDeck(app, url_prefix="/models", guard=login_required)
    yield serve(app)
    OllamaDeck.shutdown(app)


def test_guard_covers_every_deck_route_and_no_host_route(fake_ollama, guarded):
    fake_ollama.add_model("llama3.2:1b")
    for path in ("/models/", "/models/static/app.js", "/models/api/models", "/models/progress"):
        response = guarded.get(path)
        assert response.status_code == 401
        assert response.json() == {"host": "please log in"}
    assert guarded.delete("/models/api/models/llama3.2:1b").status_code == 401
    assert fake_ollama.installed() == ["llama3.2:1b"]
    assert guarded.get("/").text == "host home"
    ada = {"X-User": "ada"}
    assert guarded.get("/models/api/models", headers=ada).status_code == 200
    assert guarded.get("/models/", headers=ada).status_code == 200


def test_embedded_deck_leaves_host_routes_alone(guarded):
    home = guarded.get("/", headers={"Host": "attacker.example"})
    assert home.text == "host home"
    assert "Content-Security-Policy" not in home.headers
