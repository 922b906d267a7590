"""In headless Chromium: the session ends while the page is open.

Behind a host app's Flask-Login (``guard=login_required``) the user logs out in another
tab; with ``OLLAMA_DECK_TOKEN`` the session cookie is dropped in another tab. Either way
the page says the session ended (and how to get back), stops its event stream, shows no
raw error and does not blame Ollama.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from ollama_deck import OllamaDeck

from .conftest import test_settings
from .hostapp import auth
from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import row
from .test_browser import wait

pytestmark = pytest.mark.browser
TOKEN = "session-token-9c1f"
# Recorded from the first script on: what the page threw and did not catch.
CATCH_ERRORS = """
window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason)));
"""


@pytest.fixture
def error_log(driver) -> Iterator[None]:  # noqa: F811
    added = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_ERRORS}
    )
    yield
    driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", added)
    driver.get("about:blank")  # closes the page's streams before the server stops


def page_errors(driver) -> list[str]:  # noqa: F811
    return driver.execute_script("return window.__errors || []")


def in_another_tab(driver, url: str, script: str | None = None) -> None:  # noqa: F811
    """Open ``url`` in a new tab (and run ``script`` there), close it, come back."""
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        driver.get(url)
        if script:
            driver.execute_async_script(script)
    finally:
        driver.close()
        driver.switch_to.window(first)


def dialog_open(driver, selector: str):  # noqa: F811
    element = css(driver, selector)
    return element if element.get_attribute("open") is not None else None


def assert_calm(driver) -> None:  # noqa: F811
    """No Ollama banner, no raw script error, the live stream stopped."""
    assert not css(driver, "#ollama-banner").is_displayed()
    assert css(driver, "#ollama-status").get_attribute("data-state") != "down"
    assert page_errors(driver) == []
    body = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    assert "Cannot read properties" not in body
    assert css(driver, "#live-state").get_attribute("data-state") == "stopped"


@pytest.fixture
def login_host(fake_ollama, tmp_path, monkeypatch, serve):
    from .hostapp import create_host_app

    monkeypatch.setenv("HOST_DATABASE_URL", f"sqlite:///{tmp_path / 'host.db'}")
    monkeypatch.setenv("HOST_LOGIN", "1")
    settings = test_settings(fake_ollama.url, "unused://")
    del settings["OLLAMA_DECK_DATABASE_URL"]
    app = create_host_app(**settings)
    yield serve(app)
    OllamaDeck.shutdown(app)


def log_in_through_the_form(driver) -> None:  # noqa: F811
    wait(driver, lambda d: "/login" in d.current_url)
    css(driver, "input[name=username]").send_keys(auth.USER)
    css(driver, "input[name=password]").send_keys(auth.PASSWORD)
    css(driver, "form button").click()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))


def test_a_logout_elsewhere_ends_the_page_session_with_a_way_back(
    fake_ollama,
    login_host,
    driver,  # noqa: F811
    error_log,
):
    fake_ollama.add_model("llama3.2:1b")
    live = login_host
    driver.get(live.url + "/models/")  # the host sends a logged-out browser to its login
    log_in_through_the_form(driver)
    assert driver.current_url == live.url + "/models/"
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
    wait(driver, lambda d: css(d, "#live-state").text == "live")

    in_another_tab(driver, live.url + "/logout")

    dialog = wait(driver, lambda d: dialog_open(d, "#session-dialog"))
    assert "session ended" in dialog.text.lower()
    link = css(driver, "#session-login")
    # Back to this page after logging in, not to the API call that found out.
    assert link.get_attribute("href") == live.url + "/login?next=%2Fmodels%2F"
    assert_calm(driver)

    link.click()
    log_in_through_the_form(driver)
    assert driver.current_url == live.url + "/models/"
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
    assert dialog_open(driver, "#session-dialog") is None


def test_a_dropped_token_session_asks_for_the_token_again(
    fake_ollama,
    make_app,
    serve,
    driver,  # noqa: F811
    error_log,
):
    fake_ollama.add_model("llama3.2:1b")
    live = serve(make_app(OLLAMA_DECK_TOKEN=TOKEN))
    driver.get(live.url + "/")
    wait(driver, lambda d: dialog_open(d, "#token-dialog"))
    css(driver, "#token-input").send_keys(TOKEN)
    css(driver, "#token-submit").click()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
    wait(driver, lambda d: css(d, "#live-state").text == "live")
    assert not css(driver, "#token-again").is_displayed()

    # Another tab of the same browser forgets the session (from a document of the deck's
    # whose CSP lets it fetch: the API's answers allow nothing).
    in_another_tab(
        driver,
        live.url + "/static/app.css",
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/session', {method: 'DELETE'}).then((r) => done(r.status));",
    )

    wait(driver, lambda d: dialog_open(d, "#token-dialog"))
    assert css(driver, "#token-again").is_displayed()
    assert_calm(driver)

    css(driver, "#token-input").send_keys(TOKEN)
    css(driver, "#token-submit").click()
    wait(driver, lambda d: css(d, "#live-state").text == "live")
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
