"""The page beyond its peers, in headless Chromium: updates, the tab title, notifications,
warnings before big pulls, queue places, the speed sparkline and disk bar, a layout that
fits at 1280 and 390 px, and axe-core with keyboard use.

Skipped, like test_browser.py, where Debian's chromium and chromium-driver are missing.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from ollama_deck.testing import PullScript

from .test_browser import card_of
from .test_browser import cards
from .test_browser import click_row_action
from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import page  # noqa: F401 - opens the page of a fresh app
from .test_browser import percent
from .test_browser import pull_through_box
from .test_browser import row
from .test_browser import status
from .test_browser import wait

pytestmark = pytest.mark.browser
TITLE = "Ollama Deck"
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"

# Stands in for the browser's permission prompt, which headless Chromium cannot show: the
# page starts with permission "default", and a request is granted as a user would. Every
# request and notification is noted in localStorage, which another tab of the same origin
# can read while this one is hidden.
NOTIFICATION_STUB = """
(() => {
  let permission = "default";
  const note = (key, value) => {
    const list = JSON.parse(localStorage.getItem(key) || "[]");
    list.push(value);
    localStorage.setItem(key, JSON.stringify(list));
  };
  class StubNotification {
    constructor(title, options) {
      note("deck-test-notes", {
        title: title, body: (options || {}).body || "", visibility: document.visibilityState,
      });
    }
    static get permission() { return permission; }
    static requestPermission() {
      note("deck-test-asked", document.visibilityState);
      permission = "granted";
      return Promise.resolve(permission);
    }
  }
  window.Notification = StubNotification;
})();
"""


@pytest.fixture
def notifications(driver):  # noqa: F811 - the imported fixture
    """Install the notification stand-in on every page this test opens."""
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATION_STUB}
    )
    yield
    driver.execute_cdp_cmd(
        "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
    )


def stored(browser, key: str) -> list:
    return json.loads(browser.execute_script(f"return localStorage.getItem('{key}') || '[]'"))


def update_card(browser, model: str):
    """The newest update card of ``model``."""
    return wait(
        browser,
        lambda d: next(
            (c for c in cards(d, model) if c.get_attribute("data-kind") == "update"), None
        ),
    )


# ---------------------------------------------------------------- 1. updates


def test_update_all_tells_updated_from_current(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("fresh:1b", size=2_000_000_000)
    fake_ollama.add_model("steady:1b", size=1_000_000_000)
    fake_ollama.publish_update("fresh:1b", PullScript(layers=[900_000, 1_429], step=100_000))
    old = fake_ollama.digest("fresh:1b")
    steady = fake_ollama.digest("steady:1b")
    page()
    wait(driver, lambda d: row(d, "fresh:1b") and row(d, "steady:1b"))

    css(driver, "#update-all").click()
    fresh_card = update_card(driver, "fresh:1b")
    steady_card = update_card(driver, "steady:1b")
    wait(driver, lambda d: status(fresh_card) == "succeeded" and status(steady_card) == "succeeded")
    new = fake_ollama.digest("fresh:1b")
    assert new != old
    wait(driver, lambda d: fresh_card.get_attribute("data-result") == "updated")
    result = fresh_card.find_element(By.CSS_SELECTOR, ".op-result").text
    assert result == f"updated {old[:12]} → {new[:12]}"
    assert steady_card.get_attribute("data-result") == "current"
    assert steady_card.find_element(By.CSS_SELECTOR, ".op-result").text == "already current"
    assert fake_ollama.digest("steady:1b") == steady

    # One model from its row: a newer version now exists for steady:1b only.
    fake_ollama.publish_update("steady:1b")
    click_row_action(driver, "steady:1b", "update")
    wait(driver, lambda d: len([c for c in cards(d, "steady:1b")]) == 2)
    again = update_card(driver, "steady:1b")
    wait(driver, lambda d: again.get_attribute("data-result") == "updated")
    assert fake_ollama.digest("steady:1b") != steady
    assert len(cards(driver, "fresh:1b")) == 1  # the row's Update touched only its model


# ---------------------------------------------------------------- 2. title, notification


def test_title_shows_progress_then_returns(fake_ollama, page, driver, notifications):  # noqa: F811
    fake_ollama.allow_pull(
        "titled:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=8)
    )
    page()
    assert driver.title == TITLE
    pull_through_box(driver, "titled:1b")
    card = card_of(driver, "titled:1b")
    wait(driver, lambda d: percent(card) > 0)

    def title_percent(d) -> int | None:
        shown = re.fullmatch(r"(\d+)% · Ollama Deck", d.title)
        return int(shown.group(1)) if shown else None

    # One pull: the title is its percent (the pull holds, so both settle on one value).
    wait(
        driver,
        lambda d: title_percent(d) == int(float(card.get_attribute("data-percent"))),
    )
    assert 0 < title_percent(driver) < 100

    fake_ollama.release("titled:1b")
    wait(driver, lambda d: status(card) == "succeeded")
    wait(driver, lambda d: d.title == TITLE)
    assert stored(driver, "deck-test-notes") == []  # the user was looking: no notification


def test_notification_only_for_a_pull_that_ends_while_hidden(
    fake_ollama,
    page,  # noqa: F811
    driver,  # noqa: F811
    notifications,
):
    fake_ollama.allow_pull(
        "away:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=6)
    )
    live = page()
    assert stored(driver, "deck-test-asked") == []  # never asked on page load
    pull_through_box(driver, "away:1b")
    card = card_of(driver, "away:1b")
    wait(driver, lambda d: percent(card) > 0)
    assert stored(driver, "deck-test-asked") == ["visible"]  # asked on the first pull

    deck_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")  # the deck's tab is hidden now
    try:
        driver.get(live.url + "/healthz")  # same origin: reads the deck tab's localStorage

        def deck_title(d) -> str:
            targets = d.execute_cdp_cmd("Target.getTargets", {})["targetInfos"]
            deck = [t for t in targets if t["type"] == "page" and t["url"] == live.url + "/"]
            return deck[0]["title"]

        assert re.fullmatch(r"\d+% · Ollama Deck", deck_title(driver))
        fake_ollama.release("away:1b")
        notes = wait(driver, lambda d: stored(d, "deck-test-notes"))
        assert notes == [{"title": "away:1b finished", "body": "pulled", "visibility": "hidden"}]
        wait(driver, lambda d: deck_title(d) == TITLE)  # a hidden tab's title moves on too
    finally:
        driver.close()
        driver.switch_to.window(deck_tab)
    wait(driver, lambda d: status(card) == "succeeded")
    pull_through_box(driver, "away:1b")  # a second pull does not ask again
    assert stored(driver, "deck-test-asked") == ["visible"]


# ---------------------------------------------------------------- 3. warnings


@pytest.fixture
def small_gpu(monkeypatch):
    """An 8 GB GPU, as OLLAMA_DECK_GPU_MEMORY tells a deck that runs away from it."""
    monkeypatch.setenv("OLLAMA_DECK_GPU_MEMORY", "8GB")


def test_pull_that_does_not_fit_asks_first(fake_ollama, page, driver, small_gpu):  # noqa: F811
    fake_ollama.allow_pull("llama3.1:70b", PullScript(layers=[400_000, 1_429]))
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[300_000, 1_429]))
    page()
    dialog = css(driver, "#pull-warning")

    pull_through_box(driver, "llama3.1:70b")
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    text = dialog.text
    assert "8.6 GB" in text  # the largest GPU (8 GiB)
    assert "43.0 GB" in text  # the download
    assert re.search(r"about \d+(\.\d+)? GB of GPU memory", text)
    assert driver.switch_to.active_element == css(driver, "#pull-warning-cancel")
    css(driver, "#pull-warning-cancel").click()
    wait(driver, lambda d: dialog.get_attribute("open") is None)
    assert cards(driver, "llama3.1:70b") == []
    assert fake_ollama.pull_count("llama3.1:70b") == 0

    css(driver, "#pull-button").click()  # the name is still in the box
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    css(driver, "#pull-warning-ok").click()
    assert wait(driver, lambda d: status(card_of(d, "llama3.1:70b")) == "succeeded")

    pull_through_box(driver, "llama3.2:1b")  # fits: no question
    assert wait(driver, lambda d: status(card_of(d, "llama3.2:1b")) == "succeeded")
    assert dialog.get_attribute("open") is None

    # The catalog asks too, for a tag it marks too big.
    css(driver, "#tab-catalog").click()
    css(driver, "#catalog-search").send_keys("llama3.3")
    button = wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-model="llama3.3:70b"] [data-action]'),
    )[0]
    button.click()
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    assert "llama3.3:70b" in css(driver, "#pull-warning-title").text
    css(driver, "#pull-warning-cancel").click()
    wait(driver, lambda d: dialog.get_attribute("open") is None)
    assert fake_ollama.pull_count("llama3.3:70b") == 0


def test_details_of_a_model_that_does_not_fit_say_so(fake_ollama, page, driver, small_gpu):  # noqa: F811
    fake_ollama.add_model("huge:70b", parameter_size="70.6B")
    fake_ollama.add_model("tiny:1b", parameter_size="1.2B")
    page()
    drawer = css(driver, "#details-drawer")
    click_row_action(driver, "huge:70b", "details")
    warning = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#details-body .fit-warning"))
    assert "more than the 8.6 GB" in warning[0].text
    css(driver, "#details-close").click()
    wait(driver, lambda d: drawer.get_attribute("open") is None)
    click_row_action(driver, "tiny:1b", "details")
    wait(driver, lambda d: "VRAM" in drawer.text)
    assert driver.find_elements(By.CSS_SELECTOR, "#details-body .fit-warning") == []


# ---------------------------------------------------------------- 4. queue and stall


def test_queue_places_then_a_stall(fake_ollama, page, driver):  # noqa: F811
    # One pull at a time. The first pull is slow but steady, so it has an ETA.
    fake_ollama.allow_pull("first:1b", PullScript(layers=[50_000_000], step=100_000, interval=0.05))
    fake_ollama.allow_pull("second:1b", PullScript(layers=[1_000_000], hold_after=2))
    fake_ollama.allow_pull("third:1b", PullScript(layers=[300_000, 1_429]))
    page(OLLAMA_DECK_MAX_CONCURRENT_PULLS=1, OLLAMA_DECK_STALL_NOTICE_SECONDS=1)
    pull_through_box(driver, "first:1b")
    first = card_of(driver, "first:1b")
    wait(driver, lambda d: status(first) == "running")
    pull_through_box(driver, "second:1b")
    pull_through_box(driver, "third:1b")
    second = card_of(driver, "second:1b")
    third = card_of(driver, "third:1b")

    def queue_text(card) -> str:
        return card.find_element(By.CSS_SELECTOR, ".op-queue").text

    wait(
        driver,
        lambda d: re.fullmatch(r"1st in queue · likely to start in \S.*", queue_text(second)),
    )
    assert queue_text(third) == "2nd in queue"  # one slot: no estimate past the first
    assert queue_text(first) == ""

    first.find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait(driver, lambda d: status(second) == "running")
    wait(driver, lambda d: queue_text(third).startswith("1st in queue"))
    assert queue_text(second) == ""

    # second:1b holds after two lines: after a second without bytes it shows the stall.
    speed = second.find_element(By.CSS_SELECTOR, ".op-speed")
    wait(driver, lambda d: re.fullmatch(r"stalled for \d+ s", speed.text))
    assert second.get_attribute("data-stalled") is not None
    assert second.find_element(By.CSS_SELECTOR, ".op-eta").text == ""
    fake_ollama.release("second:1b")
    wait(driver, lambda d: status(second) == "succeeded" and status(third) == "succeeded")
    assert second.get_attribute("data-stalled") is None


# ---------------------------------------------------------------- 5. sparkline, disk bar


def test_speed_sparkline_and_disk_bar(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("big:7b", size=3_000_000_000)
    fake_ollama.add_model("small:1b", size=1_000_000_000)
    # A steady stream of about 6 s with a write every 0.25 s: the page sees many speeds
    # while it runs, never a stall that ends the pull (the test's 5 s stall timeout).
    fake_ollama.allow_pull(
        "drawn:1b", PullScript(layers=[4_000_000, 1_429], step=20_000, interval=0.03)
    )
    page()
    segments = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#disk-bar .disk-seg"))
    assert [s.get_attribute("data-model") for s in segments] == ["big:7b", "small:1b"]
    widths = [s.rect["width"] for s in segments]
    assert 2.5 < widths[0] / widths[1] < 3.5  # 3 GB against 1 GB
    label = css(driver, "#disk-bar").get_attribute("aria-label")
    assert "big:7b 3.0 GB" in label and "small:1b 1.0 GB" in label
    assert "75%" in css(driver, "#disk-legend").text

    pull_through_box(driver, "drawn:1b")
    card = card_of(driver, "drawn:1b")
    spark = card.find_element(By.CSS_SELECTOR, ".op-spark")
    wait(driver, lambda d: spark.is_displayed() and int(spark.get_attribute("data-points")) >= 3)
    points = spark.find_element(By.CSS_SELECTOR, "polyline").get_attribute("points").split()
    assert len(points) == int(spark.get_attribute("data-points"))
    assert "peak" in spark.text and "/s" in spark.text
    wait(driver, lambda d: status(card) == "succeeded")
    wait(driver, lambda d: not spark.is_displayed())
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#disk-bar .disk-seg")) == 3)


# ---------------------------------------------------------------- 6. layout

# Every rendered element that sticks out of the viewport sideways or out of its own box,
# every box that scrolls sideways, and every scroll box that scrolls without being meant to
# (stray scroll arrows).
OVERFLOW_REPORT = """
const width = document.documentElement.clientWidth;
const meantToScroll = ".log-view, .code, dialog, .drawer-body";
const bad = [];
const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
  (e.getAttribute("class") ? "." + e.getAttribute("class").trim().split(/\\s+/).join(".") : "");
if (document.documentElement.scrollWidth > width) {
  bad.push("page scrolls sideways: " + document.documentElement.scrollWidth + " > " + width);
}
for (const e of document.body.querySelectorAll("*")) {
  if (!e.getClientRects().length || e.closest(".sr-only, .offscreen")) continue;
  const r = e.getBoundingClientRect();
  if (r.width && (r.right > width + 0.5 || r.left < -0.5)) {
    bad.push(name(e) + " spans " + Math.round(r.left) + ".." + Math.round(r.right));
  }
  const style = getComputedStyle(e);
  const scrolls = (v) => v === "auto" || v === "scroll";
  if (scrolls(style.overflowX) && e.scrollWidth > e.clientWidth) {
    bad.push(name(e) + " scrolls sideways: " + e.scrollWidth + " > " + e.clientWidth);
  }
  if (scrolls(style.overflowY) && e.scrollHeight > e.clientHeight && !e.matches(meantToScroll)) {
    bad.push(name(e) + " scrolls: " + e.scrollHeight + " > " + e.clientHeight);
  }
  // Content wider than a box that does not clip it sticks out of the box (a row menu
  // opening over its neighbours is meant to).
  const block = style.display !== "inline" && style.display !== "contents";
  if (block && style.overflowX === "visible" && e.clientWidth && !e.closest(".more") &&
      e.scrollWidth > e.clientWidth + 1) {
    bad.push(name(e) + " is wider inside: " + e.scrollWidth + " > " + e.clientWidth);
  }
}
return bad;
"""
LONG_NAME = "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"


@pytest.mark.parametrize("width", [1280, 1024, 390])
def test_nothing_overflows(fake_ollama, page, driver, width):  # noqa: F811
    for name, size in [
        (LONG_NAME, 2_019_393_189),
        ("qwen2.5-coder:32b-instruct-q4_K_M", 19_851_336_256),
        ("llama3.2:3b", 2_019_393_189),
        ("nomic-embed-text:latest", 274_302_450),
    ]:
        fake_ollama.add_model(name, size=size, parameter_size="3.2B")
    # Still streaming when the test ends (about 90 s at this pace): the card stays running,
    # with its speed, ETA and sparkline, however slowly this machine gets through the test.
    # (It used to hold after 1.2 s: a page that saw fewer than two speeds by then never drew
    # the sparkline, and 5 s later the held pull timed out, so under load the wait failed.)
    fake_ollama.allow_pull(
        "mistral-small3.1:24b-instruct-2503-q4_K_M",
        PullScript(layers=[900_000_000, 1_429], step=200_000, interval=0.02),
    )
    fake_ollama.allow_pull("broken:1b", PullScript(error_after=1, error="x" * 300))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    try:
        live = page()
        live.put("/api/active-model", json={"model": "llama3.2:3b"})
        pull_through_box(driver, "broken:1b")
        pull_through_box(driver, "mistral-small3.1:24b-instruct-2503-q4_K_M")
        card = card_of(driver, "mistral-small3.1:24b-instruct-2503-q4_K_M")
        wait(driver, lambda d: card.find_element(By.CSS_SELECTOR, ".op-spark").is_displayed())
        card.find_element(By.CSS_SELECTOR, ".op-log summary").click()
        wait(driver, lambda d: status(card_of(d, "broken:1b")) == "failed")
        wait(driver, lambda d: row(d, LONG_NAME))
        assert driver.execute_script("return window.innerWidth") == width

        assert driver.execute_script(OVERFLOW_REPORT) == []
        # Every row's Delete is on screen once its menu (if folded) is open.
        for model in [LONG_NAME, "nomic-embed-text:latest"]:
            found = row(driver, model)
            delete = found.find_element(By.CSS_SELECTOR, '[data-action="delete"]')
            toggle = found.find_element(By.CSS_SELECTOR, ".more-toggle")
            if not delete.is_displayed():
                toggle.click()
            assert delete.is_displayed()
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", delete)
            box = delete.rect
            assert 0 <= box["x"] and box["x"] + box["width"] <= width
            assert driver.execute_script(OVERFLOW_REPORT) == []
            if toggle.is_displayed():
                toggle.send_keys(Keys.ESCAPE)  # closes the list again
        for tab in ("catalog", "prompt", "fleet"):
            css(driver, f"#tab-{tab}").click()
            if tab == "catalog":
                wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".family")) > 3)
            if tab == "fleet":
                wait(driver, lambda d: "No desired model set" in css(d, "#fleet-note").text)
            assert driver.execute_script(OVERFLOW_REPORT) == [], tab
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# ---------------------------------------------------------------- 7. axe-core, keyboard


def axe_problems(driver) -> list[str]:  # noqa: F811
    """Serious and critical axe-core violations on the page as it is now."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then((r) => done(r.violations), (e) => done([{id: 'axe-error', impact: 'critical',"
        "  help: String(e), nodes: []}]));"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def axe():
    if not AXE.exists():
        pytest.skip("axe-core is missing: run `npm ci` (package.json) in the repository")


def test_axe_finds_nothing_serious(fake_ollama, page, driver, axe, small_gpu):  # noqa: F811
    fake_ollama.add_model("llama3.2:3b", size=2_019_393_189, parameter_size="3.2B")
    fake_ollama.add_model("huge:70b", size=42_000_000_000, parameter_size="70.6B")
    fake_ollama.allow_pull(
        "held:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=10)
    )
    page()
    pull_through_box(driver, "held:1b")
    card = card_of(driver, "held:1b")
    wait(driver, lambda d: percent(card) > 0)
    card.find_element(By.CSS_SELECTOR, ".op-log summary").click()
    wait(driver, lambda d: row(d, "huge:70b"))
    assert axe_problems(driver) == [], "installed"

    found = row(driver, "huge:70b")
    found.find_element(By.CSS_SELECTOR, ".more-toggle").click()
    assert axe_problems(driver) == [], "row menu"

    click_row_action(driver, "huge:70b", "details")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#details-body .fit-warning"))
    assert axe_problems(driver) == [], "details"
    css(driver, "#details-close").click()

    click_row_action(driver, "llama3.2:3b", "delete")
    wait(driver, lambda d: css(d, "#confirm-dialog").get_attribute("open") is not None)
    assert axe_problems(driver) == [], "confirm delete"
    css(driver, "#confirm-cancel").click()

    pull_through_box(driver, "llama3.1:70b")
    wait(driver, lambda d: css(d, "#pull-warning").get_attribute("open") is not None)
    assert axe_problems(driver) == [], "pull warning"
    css(driver, "#pull-warning-cancel").click()

    css(driver, "#tab-catalog").click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".family")) > 3)
    assert axe_problems(driver) == [], "catalog"
    css(driver, "#tab-prompt").click()
    assert axe_problems(driver) == [], "prompt"
    fake_ollama.release("held:1b")


def focused(driver):  # noqa: F811
    return driver.switch_to.active_element


def tab_to(driver, matches, limit: int = 80):  # noqa: F811
    """Press Tab until the focused element satisfies ``matches``; fail after ``limit``."""
    for _ in range(limit):
        if matches(focused(driver)):
            return focused(driver)
        focused(driver).send_keys(Keys.TAB)
    raise AssertionError("not reachable with the Tab key")


def test_a_refresh_of_the_list_keeps_keyboard_focus_where_it_was(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("keep:1b")
    fake_ollama.add_model("still:1b")
    fake_ollama.publish_update("keep:1b")
    live = page()
    wait(driver, lambda d: row(d, "keep:1b") and row(d, "still:1b"))
    before = row(driver, "keep:1b")
    toggle = css(driver, '[aria-label="More actions for still:1b"]')
    driver.execute_script("arguments[0].focus()", toggle)
    assert focused(driver) == toggle
    # Another client updates keep:1b: when it ends the page refreshes the list and builds
    # keep:1b's row anew, which moves every row; the keyboard user's place must stay.
    answer = live.post("/api/models/update", json={"models": ["keep:1b"]})
    assert answer.status_code == 202
    wait(driver, lambda d: row(d, "keep:1b") not in (None, before))
    assert focused(driver) == toggle


def test_everything_works_from_the_keyboard(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("keep:1b")
    fake_ollama.add_model("gone:1b")
    fake_ollama.publish_update("keep:1b")
    fake_ollama.allow_pull("typed:1b", PullScript(layers=[300_000, 1_429]))
    page()
    wait(driver, lambda d: row(d, "gone:1b"))
    driver.execute_script("document.activeElement.blur()")
    css(driver, "body").send_keys(Keys.TAB)

    # Pull: type a name in the box and press Enter.
    box = tab_to(driver, lambda e: e.get_attribute("id") == "pull-input")
    box.send_keys("typed:1b", Keys.ENTER)
    wait(driver, lambda d: status(card_of(d, "typed:1b")) == "succeeded")

    # Tabs: arrow keys move between them.
    tab = tab_to(driver, lambda e: e.get_attribute("role") == "tab")
    assert tab.get_attribute("id") == "tab-installed"
    tab.send_keys(Keys.ARROW_RIGHT)
    assert focused(driver).get_attribute("id") == "tab-catalog"
    assert css(driver, "#panel-catalog").is_displayed()
    focused(driver).send_keys(Keys.ARROW_LEFT)
    assert css(driver, "#panel-installed").is_displayed()

    # Update all.
    tab_to(driver, lambda e: e.get_attribute("id") == "update-all").send_keys(Keys.ENTER)
    updated = update_card(driver, "keep:1b")
    wait(driver, lambda d: updated.get_attribute("data-result") == "updated")

    # A row's folded actions: open the list, reach Delete, confirm from the keyboard.
    toggle = tab_to(driver, lambda e: e.get_attribute("aria-label") == "More actions for gone:1b")
    toggle.send_keys(Keys.ENTER)
    assert toggle.get_attribute("aria-expanded") == "true"
    assert focused(driver).text == "Set active"  # focus moved into the list
    focused(driver).send_keys(Keys.ESCAPE)
    assert toggle.get_attribute("aria-expanded") == "false"
    assert focused(driver) == toggle
    dialog = css(driver, "#confirm-dialog")
    toggle.send_keys(Keys.ENTER)
    delete = tab_to(driver, lambda e: e.get_attribute("data-action") == "delete", limit=4)
    delete.send_keys(Keys.ENTER)
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    focused(driver).send_keys(Keys.ESCAPE)  # changed my mind: focus goes back to the row
    wait(driver, lambda d: dialog.get_attribute("open") is None)
    # The row's toggle as it is now: the list may have been refreshed meanwhile (the update
    # that just ended refreshes it), and focus must land on the new row all the same.
    toggle = css(driver, '[aria-label="More actions for gone:1b"]')
    assert focused(driver) == toggle
    toggle.send_keys(Keys.ENTER)
    tab_to(driver, lambda e: e.get_attribute("data-action") == "delete", limit=4).send_keys(
        Keys.ENTER
    )
    wait(driver, lambda d: dialog.get_attribute("open") is not None)
    assert focused(driver).get_attribute("id") == "confirm-cancel"
    focused(driver).send_keys(Keys.TAB)
    focused(driver).send_keys(Keys.ENTER)  # Delete
    wait(driver, lambda d: row(d, "gone:1b") is None)
    assert "gone:1b" not in fake_ollama.installed()

    # Details open and close with the keyboard, and focus comes back.
    details = tab_to(driver, lambda e: e.get_attribute("aria-label") == "Details of keep:1b")
    details.send_keys(Keys.ENTER)
    drawer = css(driver, "#details-drawer")
    wait(driver, lambda d: "VRAM" in drawer.text)
    focused(driver).send_keys(Keys.ESCAPE)
    wait(driver, lambda d: drawer.get_attribute("open") is None)
    assert focused(driver) == details


# ---------------------------------------------------------------- 8. pause, resume, schedule


def test_pause_and_resume_from_a_card_and_a_scheduled_start(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.allow_pull("pausy:1b", PullScript(layers=[3_000_000], step=20_000, interval=0.03))
    live = page()
    pull_through_box(driver, "pausy:1b")
    card = card_of(driver, "pausy:1b")
    wait(driver, lambda d: status(card) == "running" and percent(card) > 1)
    pause = card.find_element(By.CSS_SELECTOR, '[data-action="pause"]')
    resume = card.find_element(By.CSS_SELECTOR, '[data-action="resume"]')
    assert pause.is_displayed() and not resume.is_displayed()
    pause.click()
    wait(driver, lambda d: status(card) == "paused")
    assert card.get_attribute("data-paused-by") == "user"
    assert card.find_element(By.CSS_SELECTOR, ".op-status").text.lower() == "paused"
    assert (
        "Ollama keeps the partial download"
        in card.find_element(By.CSS_SELECTOR, ".op-message").text
    )
    assert resume.is_displayed() and not pause.is_displayed()
    assert card.find_element(By.CSS_SELECTOR, '[data-action="cancel"]').is_displayed()
    wait(driver, lambda d: d.title == "paused · " + TITLE)
    at_pause = percent(card)
    resume.click()
    wait(driver, lambda d: status(card) == "running")
    assert percent(card) >= at_pause
    wait(driver, lambda d: status(card) == "succeeded", timeout=30)

    # A pull asked for later waits, scheduled, and says when it starts (browser time).
    fake_ollama.allow_pull("later:1b", PullScript(layers=[10_000]))
    two_days = datetime.now(UTC) + timedelta(days=2)
    answer = live.post(
        "/api/models/pull", json={"model": "later:1b", "not_before": two_days.isoformat()}
    )
    assert answer.status_code == 202, answer.text
    later = card_of(driver, "later:1b")
    wait(driver, lambda d: status(later) == "scheduled")
    when = later.find_element(By.CSS_SELECTOR, ".op-queue").text
    assert re.fullmatch(r"starts at (\w+ \d+, )?\d\d:\d\d.*", when), when
    assert later.find_element(By.CSS_SELECTOR, '[data-action="pause"]').is_displayed()
