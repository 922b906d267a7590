"""The page in headless Chromium against the real app and the fake Ollama.

Needs Debian's ``chromium`` and ``chromium-driver``; the module is skipped without them.
Every wait is a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import requests

from ollama_deck.testing import PullScript

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0
XSS = '<img src=x onerror="window.__xss=1">'

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(
        f"browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
        "chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module; Selenium Manager is kept offline."""
    os.environ["SE_OFFLINE"] = "1"
    profile = tempfile.mkdtemp(prefix="deck-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    chrome = webdriver.Chrome(options=options, service=service)
    yield chrome
    chrome.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(driver, make_app, serve):
    """Open the page of a fresh app (against this test's fake Ollama); returns the server."""

    def open_page(path: str = "/", **config):
        # A pull held for a test waits for the test's release however slowly the browser
        # gets there: with the quick 5 s of the other tests it would fail mid-test.
        config.setdefault("OLLAMA_DECK_PULL_STALL_TIMEOUT", 120.0)
        live = serve(make_app(**config))
        driver.get(live.url + path)
        wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
        return live

    yield open_page
    driver.get("about:blank")  # closes the page's SSE stream before its server stops


def wait(driver, condition, timeout: float = WAIT):
    """Wait for ``condition(driver)``; an element going stale mid-check just checks again."""
    return WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition)


def css(driver, selector: str):
    return driver.find_element(By.CSS_SELECTOR, selector)


def cards(driver, model: str | None = None):
    # Active cards, then the finished ones (folded away on narrow screens).
    found = driver.find_elements(By.CSS_SELECTOR, ".op-list [data-op-id]")
    if model is None:
        return found
    return [c for c in found if text_of(c.find_element(By.CSS_SELECTOR, ".op-model")) == model]


def text_of(element) -> str:
    """An element's text even where it is hidden (``.text`` is only what is visible)."""
    return element.get_attribute("textContent")


def card_of(driver, model: str):
    """The newest card of ``model`` once there is one."""
    return wait(driver, lambda d: (found := cards(d, model)) and found[0])


def percent(card) -> float:
    return float(card.find_element(By.CSS_SELECTOR, ".op-percent").text.rstrip("%"))


def status(card) -> str:
    # The attribute, not the badge's text: a finished card may be in a closed fold.
    return card.get_attribute("data-status")


def row(driver, model: str):
    """The Installed row of ``model``, or None; a table refresh mid-look just looks again."""
    for _ in range(5):
        try:
            rows = driver.find_elements(By.CSS_SELECTOR, "#installed-list tr[data-model]")
            return next((r for r in rows if r.get_attribute("data-model") == model), None)
        except StaleElementReferenceException:
            continue
    raise AssertionError("the Installed table kept changing")


def click_row_action(driver, model: str, action: str) -> None:
    """Click a row's button, opening the row's "more" menu first where it is folded there;
    the row is found afresh if the table was redrawn in between."""

    def click(d) -> bool:
        found = row(d, model)
        if found is None:
            return False
        button = found.find_element(By.CSS_SELECTOR, f'[data-action="{action}"]')
        if not button.is_displayed():
            found.find_element(By.CSS_SELECTOR, ".more-toggle").click()
        button.click()
        return True

    wait(driver, click)


def pull_through_box(driver, name: str) -> None:
    # As a user would: the button is disabled while the previous pull is on its way.
    wait(driver, lambda d: css(d, "#pull-button").is_enabled())
    box = css(driver, "#pull-input")
    box.clear()
    box.send_keys(name)
    css(driver, "#pull-button").click()


def test_pull_shows_live_progress_then_the_model(fake_ollama, page, driver):
    fake_ollama.allow_pull(
        "tiny:1b", PullScript(layers=[3_000_000, 1_429], step=100_000, interval=0.08)
    )
    page()
    assert row(driver, "tiny:1b") is None

    pull_through_box(driver, "tiny:1b")
    card = card_of(driver, "tiny:1b")
    first = wait(driver, lambda d: 0 < (p := percent(card)) < 100 and p)
    wait(driver, lambda d: percent(card) > first)
    assert card.find_element(By.CSS_SELECTOR, ".bar.animated")  # striped while it runs

    wait(driver, lambda d: status(card) == "succeeded")
    assert percent(card) == 100.0
    assert wait(driver, lambda d: row(d, "tiny:1b"))
    assert css(driver, "#stat-count").text == "1"
    assert css(driver, "#stat-pulls").text == "0"
    assert css(driver, "#pull-input").get_attribute("value") == ""


def test_reload_mid_pull_keeps_the_same_operation(fake_ollama, page, driver):
    fake_ollama.allow_pull(
        "held:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=6)
    )
    page()
    pull_through_box(driver, "held:1b")
    card = card_of(driver, "held:1b")
    wait(driver, lambda d: percent(card) > 0)
    op_id = card.get_attribute("data-op-id")

    driver.refresh()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    again = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-op-id="{op_id}"]'))[0]
    assert status(again) == "running"
    assert percent(again) > 0
    assert len(cards(driver, "held:1b")) == 1

    fake_ollama.release("held:1b")
    wait(driver, lambda d: percent(again) == 100.0 and status(again) == "succeeded")
    assert wait(driver, lambda d: row(d, "held:1b"))


def test_cancel_then_retry_from_the_card(fake_ollama, page, driver):
    fake_ollama.allow_pull(
        "stuck:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=3)
    )
    page()
    pull_through_box(driver, "stuck:1b")
    card = card_of(driver, "stuck:1b")
    wait(driver, lambda d: status(card) == "running" and percent(card) > 0)

    card.find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait(driver, lambda d: status(card) == "cancelled")
    assert not card.find_element(By.CSS_SELECTOR, '[data-action="cancel"]').is_displayed()
    retry = card.find_element(By.CSS_SELECTOR, '[data-action="retry"]')
    assert retry.is_displayed()

    fake_ollama.release("stuck:1b")
    retry.click()
    wait(driver, lambda d: len(cards(d, "stuck:1b")) == 2)
    newest = cards(driver, "stuck:1b")[0]
    assert newest.get_attribute("data-op-id") != card.get_attribute("data-op-id")
    wait(driver, lambda d: status(newest) == "succeeded")
    assert status(card) == "cancelled"

    card.find_element(By.CSS_SELECTOR, '[data-action="dismiss"]').click()
    wait(driver, lambda d: len(cards(d, "stuck:1b")) == 1)


def test_delete_asks_first_then_removes_the_model(fake_ollama, page, driver):
    fake_ollama.add_model("old:7b", size=4_000_000_000, parameter_size="7B")
    fake_ollama.add_model("keep:1b")
    page()
    wait(driver, lambda d: row(d, "old:7b"))
    dialog = css(driver, "#confirm-dialog")

    click_row_action(driver, "old:7b", "delete")
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    assert "old:7b" in css(driver, "#confirm-text").text
    css(driver, "#confirm-cancel").click()
    wait(driver, lambda d: dialog.get_attribute("open") is None)
    assert row(driver, "old:7b") is not None
    assert "old:7b" in fake_ollama.installed()

    click_row_action(driver, "old:7b", "delete")
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    css(driver, "#confirm-ok").click()
    wait(driver, lambda d: row(d, "old:7b") is None)
    assert "old:7b" not in fake_ollama.installed()
    assert row(driver, "keep:1b") is not None
    wait(driver, lambda d: css(d, "#stat-count").text == "1")


def test_banner_while_ollama_is_down(fake_ollama, page, driver):
    fake_ollama.add_model("llama3.2:1b")
    page()
    banner = css(driver, "#ollama-banner")
    assert banner.get_attribute("role") == "alert"
    assert not banner.is_displayed()

    fake_ollama.stop()
    wait(driver, lambda d: banner.is_displayed())
    assert row(driver, "llama3.2:1b") is not None  # the last list stays on the page

    fake_ollama.start()  # same port: Ollama is back
    wait(driver, lambda d: not banner.is_displayed())


def test_text_from_ollama_and_users_is_never_markup(fake_ollama, page, driver):
    fake_ollama.allow_pull("evil:1b", PullScript(error_after=2, error=XSS))
    # Real Ollama refuses such a name; the fake does not, which makes a good hostile server.
    fake_ollama.add_model(XSS)
    page()
    hostile = wait(driver, lambda d: row(d, XSS + ":latest"))
    assert XSS in hostile.text
    click_row_action(driver, XSS + ":latest", "details")
    drawer = css(driver, "#details-drawer")
    wait(driver, lambda d: "invalid model name" in drawer.text)  # the deck's 400, as text
    assert XSS in css(driver, "#details-title").text
    css(driver, "#details-close").click()
    pull_through_box(driver, "evil:1b")
    card = card_of(driver, "evil:1b")
    wait(driver, lambda d: status(card) == "failed")
    assert XSS in card.find_element(By.CSS_SELECTOR, ".op-error").text

    card.find_element(By.CSS_SELECTOR, ".op-log summary").click()
    log = card.find_element(By.CSS_SELECTOR, ".log-view")
    wait(driver, lambda d: XSS in log.text)
    assert card.find_element(By.CSS_SELECTOR, '[data-action="retry"]').is_displayed()

    pull_through_box(driver, XSS)
    error = css(driver, "#pull-error")
    wait(driver, lambda d: error.is_displayed() and "invalid model name" in error.text)
    assert XSS in error.text

    assert driver.find_elements(By.CSS_SELECTOR, "img") == []
    assert driver.execute_script("return typeof window.__xss") == "undefined"


def test_catalog_filters_and_pulls_a_tag(fake_ollama, page, driver):
    fake_ollama.allow_pull("qwen2.5-coder:0.5b", PullScript(layers=[300_000, 1_429]))
    page()
    css(driver, "#tab-catalog").click()

    def families(d):
        return [f.get_attribute("data-family") for f in d.find_elements(By.CSS_SELECTOR, ".family")]

    wait(driver, lambda d: len(families(d)) > 3)
    everything = families(driver)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-category="code"]'))
    css(driver, '#catalog-chips [data-category="code"]').click()

    def categories(d):
        found = d.find_elements(By.CSS_SELECTOR, ".family")
        return {f.get_attribute("data-category") for f in found}

    wait(driver, lambda d: categories(d) == {"code"})
    assert len(families(driver)) < len(everything)
    chip = css(driver, '#catalog-chips [data-category="code"]')
    assert chip.get_attribute("aria-pressed") == "true"

    css(driver, "#catalog-search").send_keys("qwen2.5-coder")
    wait(driver, lambda d: families(d) == ["qwen2.5-coder"])
    tag = css(driver, '.family tr[data-model="qwen2.5-coder:0.5b"]')
    assert "unknown" in tag.find_element(By.CSS_SELECTOR, "[data-fits]").get_attribute("data-fits")

    tag.find_element(By.CSS_SELECTOR, '[data-action="pull"]').click()
    card = card_of(driver, "qwen2.5-coder:0.5b")
    wait(driver, lambda d: status(card) == "succeeded")
    wait(
        driver,
        lambda d: d.find_elements(
            By.CSS_SELECTOR, '.family tr[data-model="qwen2.5-coder:0.5b"] .badge-installed'
        ),
    )

    css(driver, '#catalog-chips [data-category=""]').click()
    css(driver, "#catalog-search").clear()
    css(driver, "#catalog-search").send_keys(" ")  # clear() fires no input event
    wait(driver, lambda d: families(d) == everything)


def test_details_drawer(fake_ollama, page, driver):
    fake_ollama.add_model(
        "llama3.2:3b",
        parameter_size="3.2B",
        quantization="Q4_K_M",
        license="Llama 3.2 Community License\nlong text",
        template="{{ .System }} <b>{{ .Prompt }}</b>",
    )
    page()
    wait(driver, lambda d: row(d, "llama3.2:3b"))
    click_row_action(driver, "llama3.2:3b", "details")
    drawer = css(driver, "#details-drawer")
    wait(driver, lambda d: drawer.get_attribute("open") is not None)
    wait(driver, lambda d: "VRAM" in drawer.text)
    text = drawer.text
    for expected in ("llama3.2:3b", "llama", "3.2B", "Q4_K_M", "completion", "tools"):
        assert expected in text
    assert "Llama 3.2 Community License" in text
    assert "131072" in re.sub(r"\D", "", text)
    assert "<b>{{ .Prompt }}</b>" in text  # the template shows as text
    assert drawer.find_element(By.CSS_SELECTOR, "[data-fits]").get_attribute("data-fits") in (
        "yes",
        "no",
        "unknown",
    )
    assert drawer.find_elements(By.CSS_SELECTOR, ".assumptions li")
    css(driver, "#details-close").click()
    wait(driver, lambda d: drawer.get_attribute("open") is None)


def test_set_active_model(fake_ollama, page, driver):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model("qwen3:4b")
    live = page()
    wait(driver, lambda d: row(d, "qwen3:4b"))
    assert css(driver, "#active-model").text == "none"

    click_row_action(driver, "qwen3:4b", "activate")
    wait(driver, lambda d: css(d, "#active-model").text == "qwen3:4b")
    assert live.get("/api/active-model").json() == {"model": "qwen3:4b"}
    assert row(driver, "qwen3:4b").find_element(By.CSS_SELECTOR, ".badge-active").is_displayed()

    driver.refresh()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    wait(driver, lambda d: css(d, "#active-model").text == "qwen3:4b")


def test_prompt_streams_the_reply(fake_ollama, page, driver):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model("qwen3:4b")
    live = page()
    # The active model is listed second (older), so selecting it is the page's doing.
    active = requests.put(live.url + "/api/active-model", json={"model": "llama3.2:1b"}, timeout=10)
    assert active.ok
    driver.refresh()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    css(driver, "#tab-prompt").click()
    select = Select(css(driver, "#prompt-model"))
    assert [o.text for o in select.options] == ["qwen3:4b", "llama3.2:1b"]
    wait(driver, lambda d: select.first_selected_option.text == "llama3.2:1b")
    select.select_by_visible_text("qwen3:4b")

    css(driver, "#prompt-input").send_keys("Say hello")
    css(driver, "#prompt-send").click()
    wait(driver, lambda d: css(d, "#prompt-reply").text == fake_ollama.chat_reply)
    stats = wait(driver, lambda d: (t := css(d, "#prompt-stats").text) and t)
    assert "tokens" in stats
    assert not css(driver, "#prompt-error").is_displayed()

    fake_ollama.remove_model("qwen3:4b")  # gone behind the page's back: a JSON 404
    css(driver, "#prompt-send").click()
    error = css(driver, "#prompt-error")
    wait(driver, lambda d: error.is_displayed() and "qwen3:4b" in error.text)
    assert css(driver, "#prompt-reply").text == ""


def test_polls_when_the_stream_fails(fake_ollama, page, driver):
    # Every EventSource of the page asks for a bad Last-Event-ID: the server answers 400,
    # the browser closes the stream for good, and the page must fall back to polling.
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.EventSource = class extends EventSource {"
            " constructor(url) { super(url + (url.includes('?') ? '&' : '?')"
            " + 'last_event_id=broken'); } };"
        },
    )
    try:
        fake_ollama.allow_pull(
            "polled:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=4)
        )
        page()
        wait(driver, lambda d: css(d, "#live-state").text == "polling")
        pull_through_box(driver, "polled:1b")
        card = card_of(driver, "polled:1b")
        wait(driver, lambda d: status(card) == "running" and percent(card) > 0)
        fake_ollama.release("polled:1b")
        wait(driver, lambda d: status(card) == "succeeded" and percent(card) == 100.0)
        assert wait(driver, lambda d: row(d, "polled:1b"))
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def test_page_works_under_a_url_prefix(fake_ollama, page, driver):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("prefixed:1b", PullScript(layers=[500_000, 1_429]))
    live = page("/models/", OLLAMA_DECK_URL_PREFIX="/models")
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
    assert css(driver, "#live-state").text == "live"
    pull_through_box(driver, "prefixed:1b")
    card = card_of(driver, "prefixed:1b")
    wait(driver, lambda d: status(card) == "succeeded")
    assert wait(driver, lambda d: row(d, "prefixed:1b"))
    assert live.get("/models/api/models").ok


def test_a_host_selector_picks_the_ollama_host_the_page_manages(fake_ollama, page, driver):
    from ollama_deck.testing import FakeOllama

    second = FakeOllama().start()
    try:
        fake_ollama.add_model("llama3.2:1b")
        second.add_model("qwen2.5:0.5b")
        second.allow_pull("phi3:mini", PullScript(layers=[200_000, 100], step=20_000))
        page(OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url, "gpu2": second.url})
        wait(driver, lambda d: row(d, "llama3.2:1b") is not None)
        select = css(driver, "#host-select")
        assert select.is_displayed()
        assert [o.text for o in select.find_elements(By.TAG_NAME, "option")] == ["gpu1", "gpu2"]
        Select(select).select_by_visible_text("gpu2")
        wait(driver, lambda d: row(d, "qwen2.5:0.5b") is not None and row(d, "llama3.2:1b") is None)
        pull_through_box(driver, "phi3:mini")
        card = card_of(driver, "phi3:mini")
        assert card.find_element(By.CSS_SELECTOR, ".op-host").text == "on gpu2"
        wait(driver, lambda d: status(card_of(d, "phi3:mini")) == "succeeded")
        assert second.pull_count("phi3:mini") == 1 and fake_ollama.pull_count("phi3:mini") == 0
        wait(driver, lambda d: row(d, "phi3:mini") is not None)
    finally:
        driver.get("about:blank")
        second.stop()


def test_with_one_host_there_is_no_selector(fake_ollama, page, driver):
    page()
    assert not css(driver, "#host-pick").is_displayed()
    assert css(driver, "#host-select").find_elements(By.TAG_NAME, "option") == []
