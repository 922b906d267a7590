"""In headless Chromium: a page on another origin attacks the deck, and the token prompt.

Skipped, like test_browser.py, where Debian's chromium and chromium-driver are missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from ollama_deck.testing import PullScript

from .test_browser import card_of
from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import percent
from .test_browser import pull_through_box
from .test_browser import row
from .test_browser import status
from .test_browser import wait

pytestmark = pytest.mark.browser
TOKEN = "page-token-5e1d"


class Recorder:
    """WSGI middleware that notes each request's method, path and status."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Any:
        def record(status: str, headers: list, exc_info: Any = None) -> Any:
            self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], int(status[:3])))
            return start_response(status, headers, exc_info)

        return self.app(environ, record)

    def statuses(self, method: str, path: str) -> list[int]:
        return [s for m, p, s in self.seen if m == method and p == path]


ATTACK = """<!doctype html>
<title>a page on another site</title>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="{deck}/api/models/pull" enctype="text/plain" target="sink">
  <input name='{{"model": "evil:1", "x": "' value='"}}'>
</form>
<iframe id="framed" src="{deck}/"></iframe>
<iframe id="control" src="/frameable"></iframe>
<script>
  const deck = "{deck}";
  window.results = {{}};
  const note = (key) => (value) => {{ window.results[key] = String(value); }};
  document.getElementById("sink").onload = () => note("form")("loaded");
  document.getElementById("form").submit();
  fetch(deck + "/api/models/llama3.2:1b/load", {{ mode: "no-cors", method: "POST" }})
    .then(note("load"), note("load"));
  fetch(deck + "/api/chat", {{
    mode: "no-cors", method: "POST", headers: {{ "Content-Type": "text/plain" }},
    body: JSON.stringify({{ model: "llama3.2:1b", prompt: "hi" }}),
  }}).then(note("chat"), note("chat"));
  // DELETE and a JSON body are not "simple": the browser asks first (a CORS preflight).
  fetch(deck + "/api/models/llama3.2:1b", {{ method: "DELETE" }})
    .then(note("delete"), note("delete"));
  fetch(deck + "/api/active-model", {{
    method: "PUT", headers: {{ "Content-Type": "application/json" }},
    body: JSON.stringify({{ model: "llama3.2:1b" }}),
  }}).then(note("active"), note("active"));
  document.getElementById("framed").onload = () => note("frame")("loaded");
</script>
"""


@pytest.fixture
def attacker() -> Iterator[Callable[[str], str]]:
    """A site on another origin (localhost, while the deck is on 127.0.0.1); returns its URL."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = pages.get(self.path, b"<p id='mine'>framing my own page works</p>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def host(deck_url: str) -> str:
        pages["/"] = ATTACK.format(deck=deck_url).encode()
        return f"http://localhost:{server.server_address[1]}/"

    yield host
    server.shutdown()
    server.server_close()


def test_another_site_cannot_pull_load_chat_delete_or_frame(
    fake_ollama,
    make_app,
    serve,
    attacker,
    driver,  # noqa: F811
):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("evil:1")
    recorder = Recorder(make_app())
    live = serve(recorder)
    try:
        driver.get(attacker(live.url))
        results = wait(
            driver,
            lambda d: (r := d.execute_script("return window.results")) and len(r) == 6 and r,
        )
        assert results["form"] == "loaded" and results["frame"] == "loaded"

        # Every request reached the deck and was refused there.
        assert recorder.statuses("POST", "/api/models/pull") == [403]
        assert recorder.statuses("POST", "/api/models/llama3.2:1b/load") == [403]
        assert recorder.statuses("POST", "/api/chat") == [403]
        # The preflights came and got no Access-Control-Allow-* grant; the requests never came.
        assert results["delete"].startswith("TypeError")
        assert results["active"].startswith("TypeError")
        assert recorder.statuses("OPTIONS", "/api/models/llama3.2:1b")
        assert recorder.statuses("OPTIONS", "/api/active-model")
        assert recorder.statuses("DELETE", "/api/models/llama3.2:1b") == []
        assert recorder.statuses("PUT", "/api/active-model") == []
        assert live.get("/api/active-model").json()["model"] is None
        assert live.get("/progress").json()["operations"] == []
        assert fake_ollama.installed() == ["llama3.2:1b"]
        assert fake_ollama.loaded() == []
        assert not [r for r in fake_ollama.requests if r[1] in ("/api/chat", "/api/pull")]

        # The framed deck page was blocked; a page the site may frame shows (the control).
        driver.switch_to.frame(driver.find_element("id", "control"))
        assert driver.find_elements("id", "mine")
        driver.switch_to.default_content()
        driver.switch_to.frame(driver.find_element("id", "framed"))
        assert driver.find_elements("id", "pull-button") == []
        assert driver.find_elements("id", "deck-config") == []
    finally:
        driver.switch_to.default_content()
        driver.get("about:blank")


def test_page_asks_for_the_token_then_works_live(fake_ollama, make_app, serve, driver):  # noqa: F811
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull(
        "held:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=5)
    )
    # The held pull waits for the release however slowly the browser gets there.
    recorder = Recorder(make_app(OLLAMA_DECK_TOKEN=TOKEN, OLLAMA_DECK_PULL_STALL_TIMEOUT=120.0))
    live = serve(recorder)
    try:
        driver.get(live.url + "/")
        dialog = wait(
            driver, lambda d: (e := css(d, "#token-dialog")).get_attribute("open") is not None and e
        )
        assert row(driver, "llama3.2:1b") is None  # nothing shows before the token

        box = css(driver, "#token-input")
        box.send_keys("not-the-token")
        css(driver, "#token-submit").click()
        error = wait(driver, lambda d: (e := css(d, "#token-error")).is_displayed() and e)
        assert "not right" in error.text
        assert dialog.get_attribute("open") is not None

        box.clear()
        box.send_keys(TOKEN)
        css(driver, "#token-submit").click()
        wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
        assert css(driver, "#token-dialog").get_attribute("open") is None
        assert wait(driver, lambda d: row(d, "llama3.2:1b"))

        # Live events arrive over EventSource, which carries only the session cookie.
        wait(driver, lambda d: css(d, "#live-state").text == "live")
        pull_through_box(driver, "held:1b")
        card = card_of(driver, "held:1b")
        wait(driver, lambda d: percent(card) > 0)
        fake_ollama.release("held:1b")
        wait(driver, lambda d: status(card) == "succeeded")
        assert css(driver, "#live-state").text == "live"
        assert 200 in recorder.statuses("GET", "/progress/stream")
        assert driver.get_cookies()[0]["httpOnly"] is True
        assert TOKEN not in str(driver.get_cookies())
    finally:
        driver.get("about:blank")


def test_page_runs_under_its_policy_without_a_violation(fake_ollama, make_app, serve, driver):  # noqa: F811
    """Every feature of the page works with script-src 'self' and no inline style."""
    fake_ollama.add_model("llama3.2:1b")
    live = serve(make_app())
    # Injected by the browser itself, so the page's policy does not apply to this script.
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__violations = [];"
            "document.addEventListener('securitypolicyviolation', (e) =>"
            " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
        },
    )
    try:
        driver.get(live.url + "/")
        wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
        assert wait(driver, lambda d: row(d, "llama3.2:1b"))
        for tab in ("catalog", "prompt", "installed"):
            css(driver, f'[data-tab="{tab}"]').click()
        wait(driver, lambda d: d.find_elements("css selector", "#catalog-list *"))
        row(driver, "llama3.2:1b").find_element("css selector", '[data-action="details"]').click()
        wait(driver, lambda d: css(d, "#details-drawer").get_attribute("open") is not None)
        assert driver.execute_script("return window.__violations") == []
        # The probe works: an inline script is refused and reported.
        driver.execute_script(
            "const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
            "document.body.append(s);"
        )
        wait(driver, lambda d: d.execute_script("return window.__violations.length"))
        assert driver.execute_script("return window.__ran") is None
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )
        driver.get("about:blank")
